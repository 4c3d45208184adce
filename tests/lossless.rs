//! The written file is the input with only target payloads and one `metadata_props` entry changed
//! (design.md §5), decoded with onnx-protobuf, an implementation independent of renorm's reader.

mod common;

use std::path::Path;

use common::*;
use pb::Message;
use renorm::runtime::{Array, Runner};
use renorm::{PruneOptions, Renorm, Scope, Selector};

fn opts(sparsity: f64) -> PruneOptions {
    PruneOptions { selector: Selector::Sparsity { sparsity, scope: Scope::Global }, ..Default::default() }
}

/// Copies every tensor payload field from `from` into `to` (same names), so only payloads are ignored.
fn restore_payloads(to: &mut pb::ModelProto, from: &pb::ModelProto, targets: &[String]) {
    let copy = |t: &mut pb::TensorProto, f: &pb::TensorProto| {
        t.raw_data = f.raw_data.clone();
        t.float_data = f.float_data.clone();
        t.int32_data = f.int32_data.clone();
        t.double_data = f.double_data.clone();
    };
    let (g_to, g_from) = (to.graph.as_mut().unwrap(), from.graph.as_ref().unwrap());
    for t in g_to.initializer.iter_mut().filter(|t| targets.contains(&t.name)) {
        copy(t, g_from.initializer.iter().find(|f| f.name == t.name).unwrap());
    }
    for (n, f) in g_to.node.iter_mut().zip(&g_from.node) {
        if n.op_type == "Constant" && targets.contains(&n.output[0]) {
            copy(n.attribute[0].t.as_mut().unwrap(), f.attribute[0].t.as_ref().unwrap());
        }
    }
}

/// Asserts `output` equals `input` but for target payloads and the one renorm metadata entry.
fn assert_lossless(input: &Path, output: &Path, targets: &[String]) {
    let before = load(input);
    let mut after = load(output);
    let entries: Vec<_> = after.metadata_props.iter().filter(|e| e.key == "renorm").cloned().collect();
    assert_eq!(entries.len(), 1, "exactly one renorm metadata entry");
    let meta: serde_json::Value = serde_json::from_str(&entries[0].value).unwrap();
    assert!(meta["tool"].as_str().unwrap().starts_with("renorm "));
    after.metadata_props.retain(|e| e.key != "renorm");
    restore_payloads(&mut after, &before, targets);
    assert_eq!(after, before, "{} differs from {} beyond payloads", output.display(), input.display());
}

fn target_names(r: &renorm::report::PruneReport) -> Vec<String> {
    r.targets.iter().map(|t| t.weight.clone()).collect()
}

#[test]
fn fixtures_change_only_payloads_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["mnist_mlp.onnx", "mnist_cnn.onnx"] {
        let input = fixtures().join(name);
        for pattern in [false, true] {
            let output = dir.path().join(format!("{pattern}-{name}"));
            let o = if pattern {
                PruneOptions { selector: Selector::Pattern { n: 2, m: 4 }, ..Default::default() }
            } else {
                opts(0.9)
            };
            let r = renorm::prune_file(&input, &output, &o).unwrap();
            assert!(r.totals.pruned > 0);
            assert_lossless(&input, &output, &target_names(&r));
        }
    }
}

#[test]
fn unknown_fields_doc_strings_and_every_storage_form_survive() {
    let dir = tempfile::tempdir().unwrap();
    let w1 = weights(24, 1);
    let w2 = weights(12, 2);
    let mut gemm = node("Gemm", "fc", &["x", "W1", "B1"], &["h"], vec![attr_int("transB", 1)]);
    gemm.doc_string = "a doc string".into();
    // W2: an fp16 Constant in int32_data, whose varints shrink when weights become zero, so the
    // length prefixes of the tensor, attribute, node and graph all change.
    let nodes = vec![
        constant("W2", tensor("", &[4, 3], &w2, FLOAT16, Form::Typed)),
        gemm,
        node("MatMul", "mm", &["h", "W2"], &["y"], vec![]),
    ];
    let mut m = model(
        nodes,
        vec![tensor("W1", &[4, 6], &w1, FLOAT, Form::Typed), f32_tensor("B1", &[4], &[0.5; 4])],
        vec![value_info("x", &[None, Some(6)], FLOAT)],
        vec![value_info("y", &[None, Some(3)], FLOAT)],
    );
    let mut entry = pb::StringStringEntryProto::new();
    entry.key = "author".into();
    entry.value = "tests".into();
    m.metadata_props.push(entry);
    m.doc_string = "model doc".into();
    let mut bytes = m.write_to_bytes().unwrap();
    // An unknown top-level field (number 1000, varint 7): newer schemas must survive.
    bytes.extend_from_slice(&[0xc0, 0x3e, 7]);
    let input = dir.path().join("m.onnx");
    std::fs::write(&input, &bytes).unwrap();
    let output = dir.path().join("out.onnx");
    let r = renorm::prune_file(&input, &output, &opts(0.5)).unwrap();
    assert_eq!(target_names(&r), vec!["W1".to_string(), "W2".to_string()]);

    assert_lossless(&input, &output, &target_names(&r));
    let out = std::fs::read(&output).unwrap();
    assert!(out.windows(3).any(|w| w == [0xc0, 0x3e, 7]), "unknown field dropped");
    assert!(!load(&output).graph.initializer[0].float_data.is_empty(), "float_data stays float_data");
}

#[test]
fn pruning_a_pruned_model_replaces_the_metadata_entry() {
    let dir = tempfile::tempdir().unwrap();
    let once = dir.path().join("once.onnx");
    let twice = dir.path().join("twice.onnx");
    renorm::prune_file(&fixtures().join("mnist_mlp.onnx"), &once, &opts(0.5)).unwrap();
    renorm::prune_file(&once, &twice, &opts(0.8)).unwrap();
    let m = load(&twice);
    let entries: Vec<_> = m.metadata_props.iter().filter(|e| e.key == "renorm").collect();
    assert_eq!(entries.len(), 1);
    assert!(entries[0].value.contains("0.8"), "{}", entries[0].value);
}

/// A model whose weight and bias live in `weights.bin` beside it (bias at an offset).
fn external_model(dir: &Path) -> (std::path::PathBuf, Vec<f32>) {
    let w = weights(4 * 6, 9);
    let bias = [0.1f32, -0.2, 0.3, -0.4];
    let mut blob = vec![0u8; 16]; // something before the first tensor
    let w_off = blob.len();
    blob.extend(w.iter().flat_map(|v| v.to_le_bytes()));
    let b_off = blob.len();
    blob.extend(bias.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(dir.join("weights.bin"), &blob).unwrap();
    let ext = |name: &str, dims: &[i64], off: usize, len: usize| {
        let mut t = pb::TensorProto::new();
        t.name = name.into();
        t.dims = dims.to_vec();
        t.data_type = FLOAT;
        t.data_location = pb::tensor_proto::DataLocation::EXTERNAL.into();
        for (k, v) in [
            ("location", "weights.bin".to_string()),
            ("offset", off.to_string()),
            ("length", len.to_string()),
        ] {
            let mut e = pb::StringStringEntryProto::new();
            e.key = k.into();
            e.value = v;
            t.external_data.push(e);
        }
        t
    };
    let m = model(
        vec![node("Gemm", "fc", &["x", "W", "B"], &["y"], vec![attr_int("transB", 1)])],
        vec![ext("W", &[4, 6], w_off, 96), ext("B", &[4], b_off, 16)],
        vec![value_info("x", &[Some(2), Some(6)], FLOAT)],
        vec![value_info("y", &[Some(2), Some(4)], FLOAT)],
    );
    let path = dir.join("ext.onnx");
    save(&m, &path);
    (path, w)
}

#[test]
fn external_data_goes_to_a_new_file_beside_the_output() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let (input, w) = external_model(src.path());
    let blob_before = std::fs::read(src.path().join("weights.bin")).unwrap();
    let output = dst.path().join("pruned.onnx");
    let r = renorm::prune_file(&input, &output, &PruneOptions { renorm: Renorm::None, ..opts(0.5) }).unwrap();
    assert_eq!(r.targets[0].storage, "external");
    assert_eq!(std::fs::read(src.path().join("weights.bin")).unwrap(), blob_before, "input data touched");
    // The reported sizes count the external data file too.
    let len = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert_eq!(r.size.before.raw, len(&input) + len(&src.path().join("weights.bin")));
    assert_eq!(r.size.after.raw, len(&output) + len(&dst.path().join("pruned.onnx.data")));

    let out = load(&output);
    for t in &out.graph.initializer {
        let loc = t.external_data.iter().find(|e| e.key == "location").unwrap();
        assert_eq!(loc.value, "pruned.onnx.data");
    }
    let pruned = values(&out.graph.initializer[0], dst.path());
    let expect = reference_pruned(&w.iter().map(|v| f64::from(*v)).collect::<Vec<_>>(), 12);
    for ((a, b), p) in pruned.iter().zip(&w).zip(&expect) {
        assert_eq!(*a, if *p { 0.0 } else { f64::from(*b) });
    }
    // Everything but the location strings is as it was; the bias bytes were copied.
    let mut back = out.clone();
    for t in &mut back.graph.as_mut().unwrap().initializer {
        t.external_data.iter_mut().find(|e| e.key == "location").unwrap().value = "weights.bin".into();
    }
    back.metadata_props.clear();
    assert_eq!(back, load(&input));
    assert_eq!(
        values(&out.graph.initializer[1], dst.path()),
        vec![0.1f32 as f64, -0.2f32 as f64, 0.3f32 as f64, -0.4f32 as f64]
    );

    // tract runs it; at sparsity 0 it computes what the original computes.
    let zero = dst.path().join("zero.onnx");
    renorm::prune_file(&input, &zero, &opts(0.0)).unwrap();
    let x = vec![Array { shape: vec![2, 6], data: (0..12).map(|i| i as f32 / 12.0).collect() }];
    let run = |p: &Path| Runner::load(p, &[vec![2, 6]]).unwrap().run(&x).unwrap();
    assert_eq!(run(&zero), run(&input));
    run(&output);
}

#[test]
fn a_model_without_external_data_gains_no_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.onnx");
    renorm::prune_file(&fixtures().join("mnist_mlp.onnx"), &output, &opts(0.5)).unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files, vec![std::ffi::OsString::from("out.onnx")]);
}

//! The streamed engine (the default for none/l1/l2) writes byte for byte what the in-memory engine
//! (the plain implementation of design.md: every target loaded, `select`, `apply`) writes: the model,
//! its external data files and the report, for every selector, renorm, element type, storage form and
//! target layout, on the bundled fixtures, ONNX's conformance models and hand-built models.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use renorm::prune_job::{Engine, PruneOptions, Scope, Selector};
use renorm::Renorm;

fn selectors() -> Vec<Selector> {
    let s = |sparsity, scope| Selector::Sparsity { sparsity, scope };
    vec![
        s(0.5, Scope::Global),
        s(0.9, Scope::Global),
        s(0.0, Scope::Global),
        s(1.0, Scope::Global),
        s(0.37, Scope::Layer),
        s(0.6, Scope::Unit),
        Selector::Pattern { n: 2, m: 4 },
        Selector::Pattern { n: 1, m: 3 },
    ]
}

/// Every file in `dir`, by name, with its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

/// Prunes `input` with both engines and each selector and renorm; asserts identical files and reports.
/// Returns how many prunes succeeded (a model may hold nothing to prune: both engines must then agree
/// on the error).
fn same_output(input: &Path, allow_nonfinite: bool) -> usize {
    let mut ok = 0;
    for selector in selectors() {
        for renorm in [Renorm::None, Renorm::L1, Renorm::L2] {
            let run = |engine| {
                let dir = tempfile::tempdir().unwrap();
                let opts = PruneOptions { selector, renorm, allow_nonfinite, engine, ..Default::default() };
                let r = renorm::prune_file(input, &dir.path().join("out.onnx"), &opts);
                let r = r.map(|mut r| {
                    r.output = String::new();
                    r
                });
                (r.map_err(|e| e.to_string()), files(dir.path()))
            };
            let (streamed, streamed_files) = run(Engine::Streamed);
            let (reference, reference_files) = run(Engine::InMemory);
            let what = format!("{} {selector:?} {renorm:?}", input.display());
            assert_eq!(streamed, reference, "{what}: reports");
            assert_eq!(streamed_files.len(), reference_files.len(), "{what}: files");
            for ((a, x), (b, y)) in streamed_files.iter().zip(&reference_files) {
                assert_eq!(a, b, "{what}");
                assert!(x == y, "{what}: {a} differs");
            }
            if let Err(e) = &streamed {
                eprintln!("{what}: {e}");
            }
            ok += usize::from(streamed.is_ok());
        }
    }
    ok
}

#[test]
fn fixtures_give_identical_files() {
    for name in ["mnist_mlp.onnx", "mnist_cnn.onnx"] {
        assert_eq!(same_output(&fixtures().join(name), false), 24, "{name}");
    }
}

#[test]
fn conformance_models_give_identical_files() {
    let mut pruned = 0;
    for set in ["node", "pytorch-converted"] {
        for entry in std::fs::read_dir(fixtures().join("onnx-conformance").join(set)).unwrap() {
            let model: PathBuf = entry.unwrap().path().join("model.onnx");
            if model.exists() {
                pruned += same_output(&model, false);
            }
        }
    }
    assert!(pruned >= 24 * 30, "only {pruned} prunes succeeded");
}

/// Every layout (Gemm both ways, MatMul 1-D/2-D/batched, Conv with groups, ConvTranspose with groups),
/// every element type in raw and typed form, a Constant-node weight, and ties across targets.
fn layouts_model(dir: &Path, data_type: i32, form: Form) -> PathBuf {
    let t = |name: &str, dims: &[usize], seed| {
        let n = dims.iter().product();
        tensor(name, dims, &weights(n, seed), data_type, form)
    };
    let nodes = vec![
        node("Gemm", "gemm_t", &["x", "A"], &["g1"], vec![attr_int("transB", 1)]),
        node("Gemm", "gemm", &["g1", "B"], &["g2"], vec![]),
        node("MatMul", "mm", &["g2", "C"], &["m1"], vec![]),
        node("MatMul", "mm_vec", &["m1", "D"], &["m2"], vec![]),
        node("MatMul", "mm_batched", &["x3", "E"], &["m3"], vec![]),
        node("Conv", "conv", &["img", "F"], &["c1"], vec![attr_int("group", 2)]),
        node("ConvTranspose", "convt", &["c1", "G"], &["c2"], vec![attr_int("group", 2)]),
        constant("H", t("H", &[6, 5], 8)),
        node("MatMul", "mm_const", &["g2", "H"], &["m4"], vec![]),
    ];
    let inits = vec![
        t("A", &[7, 6], 1),
        t("B", &[7, 6], 2),
        t("C", &[6, 5], 3),
        t("D", &[5], 4),
        t("E", &[3, 4, 5], 5),
        t("F", &[4, 3, 3, 3], 6),
        t("G", &[4, 3, 2, 2], 7),
    ];
    let m = model(
        nodes,
        inits,
        vec![
            value_info("x", &[Some(2), Some(6)], data_type),
            value_info("x3", &[Some(3), Some(2), Some(4)], data_type),
            value_info("img", &[Some(1), Some(6), Some(5), Some(5)], data_type),
        ],
        vec![value_info("m2", &[Some(2)], data_type), value_info("c2", &[None], data_type)],
    );
    let path = dir.join(format!("layouts-{data_type}-{form:?}.onnx"));
    save(&m, &path);
    path
}

#[test]
fn every_layout_type_and_storage_gives_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    for data_type in [FLOAT, FLOAT16, BFLOAT16, DOUBLE] {
        for form in [Form::Raw, Form::Typed] {
            let path = layouts_model(dir.path(), data_type, form);
            assert_eq!(same_output(&path, false), 24, "{}", path.display());
        }
    }
}

/// Weights in two external data files (one shared by two tensors, at offsets), one of them NaN.
#[test]
fn external_data_and_passed_non_finite_weights_give_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, mut c) = (weights(42, 11), weights(35, 12), weights(20, 13));
    c[5] = f32::NAN;
    let raw = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let one = [vec![7u8; 13], raw(&a), raw(&b)].concat();
    std::fs::write(dir.path().join("one.bin"), &one).unwrap();
    std::fs::write(dir.path().join("two.bin"), raw(&c)).unwrap();
    let ext = |name: &str, dims: &[i64], file: &str, off: usize, len: usize| {
        let mut t = pb::TensorProto::new();
        t.name = name.into();
        t.dims = dims.to_vec();
        t.data_type = FLOAT;
        t.data_location = pb::tensor_proto::DataLocation::EXTERNAL.into();
        for (k, v) in
            [("location", file.to_string()), ("offset", off.to_string()), ("length", len.to_string())]
        {
            let mut e = pb::StringStringEntryProto::new();
            e.key = k.into();
            e.value = v;
            t.external_data.push(e);
        }
        t
    };
    let m = model(
        vec![
            node("Gemm", "fc1", &["x", "A"], &["h"], vec![attr_int("transB", 1)]),
            node("MatMul", "fc2", &["h", "B"], &["y"], vec![]),
            node("MatMul", "fc3", &["y", "C"], &["z"], vec![]),
        ],
        vec![
            ext("A", &[7, 6], "one.bin", 13, 168),
            ext("B", &[7, 5], "one.bin", 181, 140),
            ext("C", &[5, 4], "two.bin", 0, 80),
        ],
        vec![value_info("x", &[Some(2), Some(6)], FLOAT)],
        vec![value_info("z", &[Some(2), Some(4)], FLOAT)],
    );
    let path = dir.path().join("ext.onnx");
    save(&m, &path);
    assert_eq!(same_output(&path, true), 24);
    // Without --allow-nonfinite both refuse, with the same message.
    assert_eq!(same_output(&path, false), 0);
}

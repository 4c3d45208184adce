//! Hostile input, interrupts and determinism, through the `renorm` binary.
//!
//! 1. A corpus built here (unreadable files, truncations, lying payloads and dims, escaping or broken
//!    external data, non-finite, integer and shared weights, broken graphs, nothing to prune): each gets
//!    exactly one `renorm: error:` line naming the file or tensor, exit 1, no panic, no file in the
//!    output folder (temporary ones included), and the input folder untouched (bytes and mtimes).
//!    `tests/bad_input.rs` has the first cases of most kinds; this is the systematic sweep.
//! 2. Interrupts: `prune` and `batch` killed (SIGKILL) at many moments leave nothing that passes for
//!    output, and a rerun completes with the uninterrupted run's bytes and no leftovers.
//! 3. Determinism: every renorm, 1 and 2 threads, twice: byte-identical models and reports.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use pb::Message;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------------------
// Harness

/// Every file under `root` (symlinks not followed): its bytes and mtime, or its link target.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (Vec<u8>, Option<SystemTime>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(e.path()).unwrap();
                out.insert(e.path(), (target.to_string_lossy().as_bytes().to_vec(), None));
            } else if meta.is_dir() {
                stack.push(e.path());
            } else {
                out.insert(e.path(), (std::fs::read(e.path()).unwrap(), Some(meta.modified().unwrap())));
            }
        }
    }
    out
}

/// Names in `dir` (hidden ones included), sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn run(args: &[&str]) -> Output {
    renorm_bin().args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `renorm prune input -o <fresh folder>/out.onnx extra…` must be refused: exit 1, exactly one line
/// `renorm: error: …` holding every needle, no panic, nothing in the output folder, and nothing under
/// `watch` (the input's folder, or a root holding it and what its external data points at) changed.
fn refused_in(input: &Path, watch: &Path, extra: &[&str], needles: &[&str]) {
    let out_dir = tempfile::tempdir().unwrap();
    let output = out_dir.path().join("out.onnx");
    let before = snapshot(watch);
    let mut args = vec!["prune", input.to_str().unwrap(), "-o", output.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = run(&args);
    let (stderr, label) = (text(&o.stderr), format!("{} {extra:?}", input.display()));
    assert!(!stderr.contains("panicked"), "{label}: {stderr}");
    assert_eq!(o.status.code(), Some(1), "{label}: {stderr}");
    assert!(stderr.ends_with('\n') && stderr.lines().count() == 1, "{label}: not one line: {stderr:?}");
    assert!(stderr.starts_with("renorm: error: "), "{label}: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{label}: '{needle}' not in: {stderr}");
    }
    assert!(o.stdout.is_empty(), "{label}: printed {}", text(&o.stdout));
    assert_eq!(names(out_dir.path()), Vec::<String>::new(), "{label}: left files in the output folder");
    assert!(snapshot(watch) == before, "{label}: the input folder changed");
}

/// `refused_in` watching the input's own folder; the message must name the file.
fn refused(input: &Path, extra: &[&str], needles: &[&str]) {
    let file = input.file_name().unwrap().to_str().unwrap();
    let all: Vec<&str> = std::iter::once(file).chain(needles.iter().copied()).collect();
    refused_in(input, input.parent().unwrap(), extra, &all);
}

/// `renorm prune input -o <fresh folder>/out.onnx --json extra…` must succeed: the report, and the
/// output folder (which must hold only the output and its data file).
fn pruned(input: &Path, extra: &[&str]) -> (Value, tempfile::TempDir) {
    let out_dir = tempfile::tempdir().unwrap();
    let output = out_dir.path().join("out.onnx");
    let before = snapshot(input.parent().unwrap());
    let mut args = vec!["prune", input.to_str().unwrap(), "-o", output.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert_eq!(o.status.code(), Some(0), "{}: {}", input.display(), text(&o.stderr));
    assert!(o.stderr.is_empty(), "{}", text(&o.stderr));
    assert!(names(out_dir.path()).iter().all(|n| n == "out.onnx" || n == "out.onnx.data"));
    assert!(snapshot(input.parent().unwrap()) == before, "{}: the input folder changed", input.display());
    (serde_json::from_slice(&o.stdout).unwrap(), out_dir)
}

/// A folder of its own for one case's model, in `root`.
fn case_dir(root: &Path, name: &str) -> PathBuf {
    let d = root.join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn save_in(dir: &Path, name: &str, m: &pb::ModelProto) -> PathBuf {
    let p = dir.join(name);
    save(m, &p);
    p
}

fn write_bytes(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Deterministic bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

/// A Gemm (transB=1) `name` reading `x` and weight `w`, writing `y`.
fn gemm(name: &str, x: &str, w: &str, y: &str) -> pb::NodeProto {
    node("Gemm", name, &[x, w], &[y], vec![attr_int("transB", 1)])
}

/// x (batch, 6) → Gemm fc (W: 4×6) → y, with its input and output declared.
fn one_gemm(w: pb::TensorProto) -> pb::ModelProto {
    model(
        vec![gemm("fc", "x", &w.name, "y")],
        vec![w],
        vec![value_info("x", &[None, Some(6)], FLOAT)],
        vec![value_info("y", &[None, Some(4)], FLOAT)],
    )
}

/// `t` stored in `file` (already written in the model's folder) at `offset`, `length` if given.
fn external(
    mut t: pb::TensorProto,
    location: &str,
    offset: Option<u64>,
    length: Option<u64>,
) -> pb::TensorProto {
    t.raw_data.clear();
    t.data_location = pb::tensor_proto::DataLocation::EXTERNAL.into();
    let mut entries = vec![("location", location.to_string())];
    entries.extend(offset.map(|o| ("offset", o.to_string())));
    entries.extend(length.map(|l| ("length", l.to_string())));
    for (k, v) in entries {
        let mut e = pb::StringStringEntryProto::new();
        e.key = k.into();
        e.value = v;
        t.external_data.push(e);
    }
    t
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

// ---------------------------------------------------------------------------------------------------------
// 1. The corpus

#[test]
fn files_that_are_not_models() {
    let root = tempfile::tempdir().unwrap();
    let d = case_dir(root.path(), "not-models");
    refused(&write_bytes(&d, "empty.onnx", b""), &[], &["the file is empty"]);
    for (i, len) in [1, 2, 3, 17, 100, 999, 4096, 65_536].into_iter().enumerate() {
        let p = write_bytes(&d, &format!("random-{len}.onnx"), &noise(len, i as u64 + 1));
        refused(&p, &[], &["not a valid ONNX model"]);
    }
    // Random bytes behind a plausible start (ir_version 8, then a graph field).
    for seed in 20..26 {
        let mut b = vec![0x08, 0x08, 0x3a];
        b.extend(noise(300, seed));
        refused(&write_bytes(&d, &format!("model-prefix-{seed}.onnx"), &b), &[], &["not a valid ONNX model"]);
    }
    // Valid protobuf messages that are not models.
    let w = f32_tensor("W", &[4, 6], &weights(24, 1));
    let m = one_gemm(w.clone());
    let graph = m.graph.as_ref().unwrap().write_to_bytes().unwrap();
    let fc = m.graph.as_ref().unwrap().node[0].write_to_bytes().unwrap();
    for (name, bytes) in [("tensor.pb", w.write_to_bytes().unwrap()), ("graph.pb", graph), ("node.pb", fc)] {
        refused(&write_bytes(&d, name, &bytes), &[], &["not a valid ONNX model"]);
    }
    // Models lacking what every ONNX model has.
    let mut no_graph = m.clone();
    no_graph.graph = Default::default();
    refused(&save_in(&d, "no-graph.onnx", &no_graph), &[], &["it has no graph"]);
    let mut no_ir = m.clone();
    no_ir.ir_version = 0; // proto3: not written
    refused(&save_in(&d, "no-ir.onnx", &no_ir), &[], &["it has no ir_version"]);
    let mut no_opset = m.clone();
    no_opset.opset_import.clear();
    refused(&save_in(&d, "no-opset.onnx", &no_opset), &[], &["imports no operator set"]);
    // A folder, and a path that does not exist.
    refused(&case_dir(&d, "folder.onnx"), &[], &[]);
    refused(&d.join("missing.onnx"), &[], &[]);
}

/// The end of every top-level field of a protobuf message (the offsets where a cut leaves a well-formed,
/// shorter message).
fn top_level_ends(b: &[u8]) -> Vec<usize> {
    let varint = |p: &mut usize| {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let x = b[*p];
            *p += 1;
            v |= u64::from(x & 0x7f) << shift;
            shift += 7;
            if x < 0x80 {
                return v;
            }
        }
    };
    let (mut p, mut ends) = (0, Vec::new());
    while p < b.len() {
        let tag = varint(&mut p);
        match tag & 7 {
            0 => {
                varint(&mut p);
            }
            2 => p += varint(&mut p) as usize,
            w => panic!("wire type {w} at the top level"),
        }
        ends.push(p);
    }
    ends
}

/// Cuts `bytes` (a model whose external data, if any, is already in `dir`) at each of `cuts`: every
/// prefix is refused. All of them in-process (`renorm::prune_file`), `cli` of them through the binary.
fn truncations(dir: &Path, bytes: &[u8], cuts: &[usize], cli: &[usize]) {
    let out_dir = tempfile::tempdir().unwrap();
    let output = out_dir.path().join("out.onnx");
    let input = dir.join("cut.onnx");
    for &cut in cuts {
        std::fs::write(&input, &bytes[..cut]).unwrap();
        let before = snapshot(dir);
        let e = renorm::prune_file(&input, &output, &renorm::PruneOptions::default())
            .map(|_| ())
            .expect_err(&format!("cut at {cut} of {} was pruned", bytes.len()));
        let message = e.to_string();
        assert_eq!(e.exit_code(), 1, "cut at {cut}: {message}");
        assert!(message.contains("cut.onnx") && !message.contains('\n'), "cut at {cut}: {message}");
        assert_eq!(names(out_dir.path()), Vec::<String>::new(), "cut at {cut}");
        assert!(snapshot(dir) == before, "cut at {cut}: the input folder changed");
    }
    std::fs::remove_file(&input).unwrap();
    for &cut in cli {
        let p = write_bytes(dir, &format!("cut-{cut}.onnx"), &bytes[..cut]);
        refused(&p, &[], &[]);
        std::fs::remove_file(p).unwrap();
    }
}

/// x (batch, dims[0]) → Gemm → Relu → … → Gemm → y: weights (transB=1) in one external file
/// `<stem>.bin` beside the model, biases inline. Returns the model's path.
fn gemm_stack(dir: &Path, stem: &str, dims: &[usize], seed: u64) -> PathBuf {
    let (mut data, mut inits, mut nodes) = (Vec::new(), Vec::new(), Vec::new());
    let mut x = "x".to_string();
    let layers = dims.len() - 1;
    for (i, pair) in dims.windows(2).enumerate() {
        let (k, n) = (pair[0], pair[1]);
        let w = weights(n * k, seed + i as u64);
        let offset = data.len() as u64;
        data.extend(le_bytes(&w));
        let (wn, bn) = (format!("W{i}"), format!("B{i}"));
        let file = format!("{stem}.bin");
        inits.push(external(f32_tensor(&wn, &[n, k], &w), &file, Some(offset), Some(4 * (n * k) as u64)));
        inits.push(f32_tensor(&bn, &[n], &weights(n, seed + 100 + i as u64)));
        let h = if i + 1 == layers { "y".to_string() } else { format!("h{i}") };
        nodes.push(node("Gemm", &format!("fc{i}"), &[&x, &wn, &bn], &[&h], vec![attr_int("transB", 1)]));
        if i + 1 < layers {
            x = format!("r{i}");
            nodes.push(node("Relu", &format!("relu{i}"), &[&h], &[&x], vec![]));
        }
    }
    std::fs::write(dir.join(format!("{stem}.bin")), data).unwrap();
    let m = model(
        nodes,
        inits,
        vec![value_info("x", &[None, Some(dims[0])], FLOAT)],
        vec![value_info("y", &[None, Some(dims[layers])], FLOAT)],
    );
    save_in(dir, &format!("{stem}.onnx"), &m)
}

#[test]
fn truncated_models_at_many_offsets() {
    let root = tempfile::tempdir().unwrap();
    // The MLP (1 MB of inline weights): every offset of its first 300 bytes, 100 spread over the rest,
    // and every top-level field boundary (a cut there is well-formed protobuf: a model missing its
    // graph, or its opset_import).
    let mlp = std::fs::read(fixtures().join("mnist_mlp.onnx")).unwrap();
    let ends = top_level_ends(&mlp);
    assert_eq!(ends.last(), Some(&mlp.len()));
    let mut cuts: Vec<usize> = (1..300).collect();
    cuts.extend((0..100).map(|i| 300 + i * (mlp.len() - 300) / 100));
    cuts.extend(&ends[..ends.len() - 1]);
    cuts.push(mlp.len() - 1);
    let cli: Vec<usize> =
        ends[..ends.len() - 1].iter().copied().chain([1, 23, 150, 4096, mlp.len() - 1]).collect();
    truncations(&case_dir(root.path(), "mlp"), &mlp, &cuts, &cli);

    // A model with external data: every offset.
    let d = case_dir(root.path(), "external");
    let full = std::fs::read(gemm_stack(&d, "ext", &[12, 8, 4], 3)).unwrap();
    std::fs::remove_file(d.join("ext.onnx")).unwrap();
    let cuts: Vec<usize> = (1..full.len()).collect();
    let cli: Vec<usize> =
        top_level_ends(&full).into_iter().filter(|&e| e < full.len()).chain([5, full.len() / 2]).collect();
    truncations(&d, &full, &cuts, &cli);

    // Its data file cut short: at every 4th byte, each refused naming the tensor that no longer fits.
    let data = std::fs::read(d.join("ext.bin")).unwrap();
    let input = write_bytes(&d, "ext.onnx", &full);
    for cut in (0..data.len()).step_by(4 * 7) {
        std::fs::write(d.join("ext.bin"), &data[..cut]).unwrap();
        let tensor = if cut < 12 * 8 * 4 { "'W0'" } else { "'W1'" };
        refused(&input, &[], &[tensor, "too short"]);
    }
}

#[test]
fn payloads_that_do_not_match_their_dims() {
    let root = tempfile::tempdir().unwrap();
    let d = case_dir(root.path(), "payloads");
    let w = weights(24, 5);
    let base = || f32_tensor("W", &[4, 6], &w);
    let with = |f: &dyn Fn(&mut pb::TensorProto)| {
        let mut t = base();
        f(&mut t);
        one_gemm(t)
    };
    let cases: Vec<(&str, pb::ModelProto, &str)> = vec![
        ("raw-short", with(&|t| t.raw_data.truncate(92)), "holds 23 elements but its dims [4, 6] say 24"),
        ("raw-long", with(&|t| t.raw_data.extend([0; 4])), "holds 25 elements but its dims [4, 6] say 24"),
        ("raw-ragged", with(&|t| t.raw_data.truncate(94)), "say 24"),
        ("raw-empty", with(&|t| t.raw_data.clear()), "holds 0 elements"),
        (
            "typed-short",
            with(&|t| {
                t.raw_data.clear();
                t.float_data = vec![0.5; 23];
            }),
            "holds 23 elements",
        ),
        ("typed-long-f16", one_gemm(tensor("W", &[4, 6], &[0.5; 24], FLOAT16, Form::Typed)), ""),
        ("typed-short-f64", one_gemm(tensor("W", &[4, 6], &[0.5; 24], DOUBLE, Form::Typed)), ""),
        // Dims that overflow, are negative, or ask for far more than the file holds (4 TiB here): refused
        // by arithmetic, nothing allocated.
        ("dims-overflow", with(&|t| t.dims = vec![1 << 40, 1 << 40]), "overflow"),
        ("dims-overflow-bytes", with(&|t| t.dims = vec![1 << 31, 1 << 31]), "overflow"),
        ("dims-negative", with(&|t| t.dims = vec![-4, -6]), "negative or overflow"),
        ("dims-huge", with(&|t| t.dims = vec![1 << 20, 1 << 20]), "say 1099511627776"),
        (
            "dims-huge-typed",
            with(&|t| {
                t.raw_data.clear();
                t.float_data = vec![0.5; 24];
                t.dims = vec![1 << 20, 1 << 20];
            }),
            "say 1099511627776",
        ),
    ];
    for (name, mut m, needle) in cases {
        let g = m.graph.as_mut().unwrap();
        match name {
            "typed-long-f16" => g.initializer[0].int32_data.push(0),
            "typed-short-f64" => {
                g.initializer[0].double_data.pop();
            }
            _ => {}
        }
        let p = save_in(&d, &format!("{name}.onnx"), &m);
        refused(&p, &[], &["tensor 'W'", needle]);
    }
    // External data asking for 4 TiB: with a length the file cannot hold, and without one.
    std::fs::write(d.join("w.bin"), le_bytes(&w)).unwrap();
    let mut huge = external(base(), "w.bin", None, Some(4 << 40));
    huge.dims = vec![1 << 20, 1 << 20];
    refused(&save_in(&d, "ext-huge-length.onnx", &one_gemm(huge)), &[], &["tensor 'W'", "too short"]);
    let mut huge = external(base(), "w.bin", None, None);
    huge.dims = vec![1 << 20, 1 << 20];
    refused(
        &save_in(&d, "ext-huge.onnx", &one_gemm(huge)),
        &[],
        &["tensor 'W'", "holds 96 bytes but its dims need 4398046511104"],
    );
}

#[test]
fn external_data_that_escapes_or_is_broken() {
    let root = tempfile::tempdir().unwrap();
    let d = case_dir(root.path(), "model");
    let outside = case_dir(root.path(), "outside");
    let w = weights(24, 6);
    std::fs::write(outside.join("secret.bin"), le_bytes(&w)).unwrap();
    std::fs::write(d.join("w.bin"), le_bytes(&w)).unwrap();
    std::fs::write(d.join("short.bin"), &le_bytes(&w)[..40]).unwrap();
    std::fs::write(d.join("long.bin"), le_bytes(&weights(30, 6))).unwrap();
    std::fs::create_dir(d.join("folder.bin")).unwrap();
    // Cases: (file, location, offset, length, needle).
    let secret = outside.join("secret.bin");
    type Case<'a> = (&'a str, String, Option<u64>, Option<u64>, &'a str);
    let mut cases: Vec<Case> = vec![
        ("absolute", secret.display().to_string(), None, None, "is absolute"),
        ("parent", "../outside/secret.bin".into(), None, None, "'..' is not allowed"),
        ("parent-inside", "sub/../../outside/secret.bin".into(), None, None, "'..' is not allowed"),
        ("empty-location", String::new(), None, None, "is empty"),
        ("missing", "nothing.bin".into(), None, None, "cannot be opened"),
        ("short", "short.bin".into(), None, None, "holds 40 bytes but its dims need 96"),
        ("short-with-length", "short.bin".into(), None, Some(96), "too short for offset 0 + length 96"),
        ("offset-past-end", "w.bin".into(), Some(64), Some(96), "too short for offset 64"),
        ("offset-overflow", "w.bin".into(), Some(u64::MAX - 8), Some(96), "too short"),
        ("wrong-length", "w.bin".into(), None, Some(50), "holds 50 bytes but its dims need 96"),
        ("long", "long.bin".into(), None, None, "holds 120 bytes but its dims need 96"),
        (
            "a-folder",
            "folder.bin".into(),
            None,
            Some(96),
            "external data location 'folder.bin' is not a regular file",
        ),
    ];
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&secret, d.join("link.bin")).unwrap();
        std::os::unix::fs::symlink(&outside, d.join("linkdir")).unwrap();
        cases.push(("symlink", "link.bin".into(), None, None, "through a symbolic link"));
        cases.push(("symlinked-folder", "linkdir/secret.bin".into(), None, None, "through a symbolic link"));
    }
    for (name, location, offset, length, needle) in cases {
        let m = one_gemm(external(f32_tensor("W", &[4, 6], &w), &location, offset, length));
        let p = save_in(&d, &format!("{name}.onnx"), &m);
        // The whole root is watched: neither the model's folder nor what it points at may change.
        let (model, tensor) = (format!("{name}.onnx"), "tensor 'W'");
        let needles: &[&str] = if name == "a-folder" { &[needle] } else { &[&model, tensor, needle] };
        refused_in(&p, root.path(), &[], needles);
    }
    // The same problems in a tensor that is not a target (a bias) are refused too, naming it: the
    // output would get a copy of its data.
    let bias = |loc: &str, offset: Option<u64>, length: Option<u64>| {
        let mut m = one_gemm(f32_tensor("W", &[4, 6], &w));
        let g = m.graph.as_mut().unwrap();
        g.node[0].input.push("B".into());
        g.initializer.push(external(f32_tensor("B", &[4], &[0.5; 4]), loc, offset, length));
        m
    };
    for (name, m, needle) in [
        ("bias-parent", bias("../outside/secret.bin", None, None), "'..' is not allowed"),
        ("bias-missing", bias("nothing.bin", None, None), "cannot be opened"),
        ("bias-wrong-length", bias("short.bin", None, Some(400)), "holds 400 bytes but its dims need 16"),
        ("bias-past-end", bias("short.bin", Some(30), None), "too short for offset 30 + length 16"),
    ] {
        let p = save_in(&d, &format!("{name}.onnx"), &m);
        refused_in(&p, root.path(), &[], &[&format!("{name}.onnx"), "tensor 'B'", needle]);
    }
}

/// The payload of tensor `name` in the model at `path`: its external bytes, or its whole message.
fn payload_of(path: &Path, name: &str) -> Vec<u8> {
    let m = load(path);
    let g = m.graph.as_ref().unwrap();
    let constant = g.node.iter().filter(|n| n.output.first().is_some_and(|o| o == name));
    let t = g
        .initializer
        .iter()
        .find(|t| t.name == name)
        .or_else(|| constant.flat_map(|n| n.attribute.iter()).find_map(|a| a.t.as_ref()))
        .unwrap_or_else(|| panic!("no tensor {name} in {}", path.display()));
    if t.external_data.is_empty() {
        return t.write_to_bytes().unwrap();
    }
    let get = |k: &str| t.external_data.iter().find(|e| e.key == k).map(|e| e.value.clone());
    let data = std::fs::read(path.parent().unwrap().join(get("location").unwrap())).unwrap();
    let off: usize = get("offset").map_or(0, |v| v.parse().unwrap());
    let len: usize = get("length").map_or(data.len() - off, |v| v.parse().unwrap());
    data[off..off + len].to_vec()
}

/// x (batch, 6) → Gemm `fc_bad` (its weight `bad` given, 4×6, as a node list and initializers) → Relu →
/// Gemm `fc_ok` (Wok: 3×4, finite) → y.
fn bad_then_ok(bad_nodes: Vec<pb::NodeProto>, bad_inits: Vec<pb::TensorProto>) -> pb::ModelProto {
    let mut nodes = bad_nodes;
    nodes.push(node("Relu", "relu", &["h"], &["r"], vec![]));
    nodes.push(gemm("fc_ok", "r", "Wok", "y"));
    let mut inits = bad_inits;
    inits.push(f32_tensor("Wok", &[3, 4], &weights(12, 40)));
    model(
        nodes,
        inits,
        vec![value_info("x", &[None, Some(6)], FLOAT)],
        vec![value_info("y", &[None, Some(3)], FLOAT)],
    )
}

/// The skipped entries of a report, as (weight, reason).
fn skipped(r: &Value) -> Vec<(String, String)> {
    r["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["weight"].as_str().unwrap().to_string(), s["reason"].as_str().unwrap().to_string()))
        .collect()
}

fn target_weights(r: &Value) -> Vec<&str> {
    r["targets"].as_array().unwrap().iter().map(|t| t["weight"].as_str().unwrap()).collect()
}

#[test]
fn non_finite_weights_are_refused_or_passed_through_unpruned() {
    let root = tempfile::tempdir().unwrap();
    let d = case_dir(root.path(), "nonfinite");
    let poisoned = |i: usize, v: f32, seed: u64| {
        let mut w = weights(24, seed);
        w[i] = v;
        w
    };
    let (nan, inf, ninf) =
        (poisoned(3, f32::NAN, 1), poisoned(10, f32::INFINITY, 2), poisoned(0, f32::NEG_INFINITY, 3));
    std::fs::write(d.join("bad.bin"), le_bytes(&nan)).unwrap();
    let plain = |t: pb::TensorProto| bad_then_ok(vec![gemm("fc_bad", "x", "Wbad", "h")], vec![t]);
    let cases: Vec<(&str, pb::ModelProto, &str)> = vec![
        ("nan-f32", plain(f32_tensor("Wbad", &[4, 6], &nan)), "holds NaN at element 3"),
        (
            "inf-f16-typed",
            plain(tensor("Wbad", &[4, 6], &inf, FLOAT16, Form::Typed)),
            "holds inf at element 10",
        ),
        ("ninf-f64", plain(tensor("Wbad", &[4, 6], &ninf, DOUBLE, Form::Raw)), "holds -inf at element 0"),
        ("nan-bf16", plain(tensor("Wbad", &[4, 6], &nan, BFLOAT16, Form::Raw)), "holds NaN at element 3"),
        (
            "nan-external",
            plain(external(f32_tensor("Wbad", &[4, 6], &nan), "bad.bin", None, None)),
            "holds NaN at element 3",
        ),
        (
            "nan-constant",
            bad_then_ok(
                vec![constant("Wbad", f32_tensor("", &[4, 6], &nan)), gemm("fc_bad", "x", "Wbad", "h")],
                vec![],
            ),
            "holds NaN at element 3",
        ),
    ];
    for (name, m, what) in cases {
        let p = save_in(&d, &format!("{name}.onnx"), &m);
        // Refused by default, naming the weight and the first bad element.
        refused(&p, &[], &[&format!("weight 'Wbad' {what}"), "--allow-nonfinite"]);
        // Passed through with --allow-nonfinite: listed as skipped, its payload untouched; the other
        // target pruned as usual.
        let (r, out) = pruned(&p, &["--allow-nonfinite", "--sparsity", "0.5", "--scope", "layer"]);
        let reason = format!("{what}; passed through unpruned (--allow-nonfinite)");
        assert_eq!(skipped(&r), vec![("Wbad".to_string(), reason)], "{name}");
        assert_eq!(target_weights(&r), vec!["Wok"], "{name}");
        assert_eq!(r["totals"]["pruned"], 6, "{name}");
        let output = out.path().join("out.onnx");
        assert!(payload_of(&output, "Wbad") == payload_of(&p, "Wbad"), "{name}: the weight changed");
        assert!(payload_of(&output, "Wok") != payload_of(&p, "Wok"), "{name}: Wok was not pruned");
    }
    let p = d.join("nan-f32.onnx");
    // Nothing else to prune: refused even with the flag.
    let alone = save_in(&d, "alone.onnx", &one_gemm(f32_tensor("W", &[4, 6], &nan)));
    refused(
        &alone,
        &["--allow-nonfinite"],
        &["nothing to prune", "'W': holds NaN at element 3; passed through"],
    );
    // Calibration runs the model through the weight: refused, naming it.
    let calib = d.join("calib.npy");
    ndarray_npy::write_npy(&calib, &ndarray::Array2::<f32>::from_elem((8, 6), 0.5)).unwrap();
    for method in ["stats", "refit"] {
        let args = ["--allow-nonfinite", "--renorm", method, "--calib", calib.to_str().unwrap()];
        refused(&p, &args, &["weight 'Wbad' holds NaN at element 3", "--allow-nonfinite works with"]);
    }
    // batch shares the option: refused (one failed model, exit 1) without it, passed through with it.
    let zoo = case_dir(root.path(), "zoo");
    std::fs::copy(&p, zoo.join("m.onnx")).unwrap();
    let out = root.path().join("zoo-out");
    let o = run(&["batch", zoo.to_str().unwrap(), "-o", out.to_str().unwrap(), "--quiet"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stderr).starts_with("renorm: error: 1 of 1 models failed"), "{}", text(&o.stderr));
    let summary: Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert!(summary["models"][0]["error"].as_str().unwrap().contains("'Wbad' holds NaN at element 3"));
    assert!(!out.join("m.onnx").exists());
    let o =
        run(&["batch", zoo.to_str().unwrap(), "-o", out.to_str().unwrap(), "--quiet", "--allow-nonfinite"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let r: Value = serde_json::from_slice(&std::fs::read(out.join("m.onnx.renorm.json")).unwrap()).unwrap();
    assert_eq!(skipped(&r)[0].0, "Wbad");
    assert!(payload_of(&out.join("m.onnx"), "Wbad") == payload_of(&p, "Wbad"));
}

/// Layer, unit and N:M scopes check values as each target is made: a non-finite weight met after a
/// good target was written stops the write (nothing left behind) and is named as the scan names it.
#[test]
fn a_non_finite_weight_met_while_writing_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let d = case_dir(root.path(), "late-nan");
    let mut bad = weights(12, 41);
    bad[7] = f32::NAN;
    let m = model(
        vec![
            gemm("fc_ok", "x", "Wok", "h"),
            node("Relu", "relu", &["h"], &["r"], vec![]),
            gemm("fc_bad", "r", "Wbad", "y"),
        ],
        vec![f32_tensor("Wok", &[4, 6], &weights(24, 40)), f32_tensor("Wbad", &[3, 4], &bad)],
        vec![value_info("x", &[None, Some(6)], FLOAT)],
        vec![value_info("y", &[None, Some(3)], FLOAT)],
    );
    let p = save_in(&d, "late.onnx", &m);
    // Wok is 4 units of 6: half of it, or 2 of the first 4 of each unit (its last 2 stay dense).
    let selectors = [
        (&["--scope", "global"][..], 12),
        (&["--scope", "layer"], 12),
        (&["--scope", "unit"], 12),
        (&["--pattern", "2:4"], 8),
    ];
    for (selector, pruned_count) in selectors {
        refused(&p, selector, &["weight 'Wbad' holds NaN at element 7", "--allow-nonfinite"]);
        let (r, out) = pruned(&p, &[selector, &["--allow-nonfinite"][..]].concat());
        assert_eq!(target_weights(&r), vec!["Wok"], "{selector:?}");
        assert_eq!(skipped(&r)[0].0, "Wbad", "{selector:?}");
        assert_eq!(r["totals"]["pruned"], pruned_count, "{selector:?}");
        let output = out.path().join("out.onnx");
        assert!(payload_of(&output, "Wbad") == payload_of(&p, "Wbad"), "{selector:?}: the weight changed");
        assert!(payload_of(&output, "Wok") != payload_of(&p, "Wok"), "{selector:?}: Wok was not pruned");
    }
}

#[test]
fn integer_and_shared_weights_are_skipped() {
    let root = tempfile::tempdir().unwrap();
    let d = case_dir(root.path(), "skipped");
    let int_tensor = |name: &str, dims: &[i64], data_type: i32| {
        let mut t = pb::TensorProto::new();
        t.name = name.into();
        t.dims = dims.to_vec();
        t.data_type = data_type;
        t.raw_data = noise(dims.iter().product::<i64>() as usize, 9);
        t
    };
    let w = || f32_tensor("Wbad", &[4, 6], &weights(24, 11));
    // (name, the nodes reading Wbad and producing h (batch, 4), its initializers, the skip reason)
    let cases: Vec<(&str, Vec<pb::NodeProto>, Vec<pb::TensorProto>, &str)> = vec![
        (
            "int8-gemm",
            vec![gemm("fc_bad", "x", "Wbad", "h")],
            vec![int_tensor("Wbad", &[4, 6], 3)],
            "integer (quantized) weight (int8) is not pruned",
        ),
        (
            "matmul-integer",
            vec![
                node("MatMulInteger", "mmi", &["xq", "Wbad"], &["hi"], vec![]),
                node("Cast", "cast", &["hi"], &["h"], vec![attr_int("to", 1)]),
            ],
            vec![int_tensor("Wbad", &[6, 4], 2)],
            "integer (quantized) weight of MatMulInteger",
        ),
        (
            "shared-with-add",
            vec![gemm("fc_bad", "x", "Wbad", "h0"), node("Add", "add", &["h0", "Wbad"], &["h"], vec![])],
            vec![w()],
            "also used by Add node 'add' (input 1)",
        ),
        (
            "shared-through-transpose",
            vec![
                gemm("fc_bad", "x", "Wbad", "h"),
                node("Transpose", "t", &["Wbad"], &["Wt"], vec![]),
                node("Relu", "leak", &["Wt"], &["unused"], vec![]),
            ],
            vec![w()],
            "also used by Relu node 'leak'",
        ),
        ("graph-output", vec![gemm("fc_bad", "x", "Wbad", "h")], vec![w()], "it is also a graph output"),
    ];
    for (name, nodes, inits, reason) in cases {
        // Beside a prunable Gemm: pruned, the weight skipped (and untouched), the reason in --json.
        let mut m = bad_then_ok(nodes.clone(), inits.clone());
        let mut alone = model(
            nodes,
            inits,
            m.graph.as_ref().unwrap().input.to_vec(),
            vec![value_info("h", &[None, Some(4)], FLOAT)],
        );
        if name == "matmul-integer" {
            for g in [m.graph.as_mut().unwrap(), alone.graph.as_mut().unwrap()] {
                g.input.push(value_info("xq", &[None, Some(6)], 2));
            }
        }
        if name == "graph-output" {
            for g in [m.graph.as_mut().unwrap(), alone.graph.as_mut().unwrap()] {
                g.output.push(value_info("Wbad", &[Some(4), Some(6)], FLOAT));
            }
        }
        let p = save_in(&d, &format!("{name}.onnx"), &m);
        let (r, out) = pruned(&p, &[]);
        assert_eq!(target_weights(&r), vec!["Wok"], "{name}");
        let s = skipped(&r);
        assert!(s.len() == 1 && s[0].0 == "Wbad" && s[0].1.contains(reason), "{name}: {s:?}");
        assert!(payload_of(&out.path().join("out.onnx"), "Wbad") == payload_of(&p, "Wbad"), "{name}");
        // Alone: nothing to prune, exit 1, the reason given.
        let p = save_in(&d, &format!("{name}-alone.onnx"), &alone);
        refused(&p, &[], &["nothing to prune: all 1 candidate weights were skipped (first: 'Wbad'", reason]);
    }
}

#[test]
fn graphs_no_runtime_would_load_and_graphs_with_no_targets() {
    let root = tempfile::tempdir().unwrap();
    let d = case_dir(root.path(), "graphs");
    let w = || f32_tensor("W", &[4, 6], &weights(24, 12));
    let io =
        || (vec![value_info("x", &[None, Some(6)], FLOAT)], vec![value_info("y", &[None, Some(4)], FLOAT)]);
    let with_io = |nodes: Vec<pb::NodeProto>, inits: Vec<pb::TensorProto>| {
        let (i, o) = io();
        model(nodes, inits, i, o)
    };
    let cases: Vec<(&str, pb::ModelProto, Vec<&str>)> = vec![
        (
            "cycle",
            with_io(
                vec![
                    gemm("fc", "x", "W", "h"),
                    node("Add", "add", &["h", "z"], &["s"], vec![]),
                    node("Relu", "relu", &["s"], &["z"], vec![]),
                    node("Identity", "out", &["s"], &["y"], vec![]),
                ],
                vec![w()],
            ),
            vec!["depend on one another in a cycle ('add' -> 'relu' -> 'add')"],
        ),
        (
            "self-loop",
            with_io(vec![gemm("fc", "x", "W", "h"), node("Add", "acc", &["h", "y"], &["y"], vec![])], vec![w()]),
            vec!["cycle ('acc' -> 'acc')"],
        ),
        (
            "cycle-through-weight",
            with_io(
                vec![node("Relu", "r", &["y"], &["W2"], vec![]), gemm("fc", "x", "W2", "y")],
                vec![],
            ),
            vec!["cycle ("],
        ),
        (
            "cycle-undeclared-inputs",
            model(
                vec![node("Relu", "a", &["q"], &["p"], vec![]), node("Relu", "b", &["p"], &["q"], vec![]), gemm("fc", "x", "W", "y")],
                vec![w()],
                vec![],
                vec![],
            ),
            vec!["cycle ("],
        ),
        (
            "dangling",
            with_io(vec![gemm("fc", "x", "W", "h"), node("Add", "add", &["h", "ghost"], &["y"], vec![])], vec![w()]),
            vec!["Add node 'add' reads 'ghost', which no node, initializer or graph input defines"],
        ),
        (
            "dangling-weight",
            with_io(vec![gemm("fc", "x", "Wmissing", "y")], vec![w()]),
            vec!["Gemm node 'fc' reads 'Wmissing'"],
        ),
        (
            "no-targets",
            with_io(vec![node("Relu", "r", &["x"], &["y"], vec![])], vec![]),
            vec!["nothing to prune: it has no Gemm, Conv, ConvTranspose or MatMul node with a constant float weight"],
        ),
        (
            "weight-is-an-input",
            {
                let (mut i, o) = io();
                i.push(value_info("W", &[Some(4), Some(6)], FLOAT));
                model(vec![gemm("fc", "x", "W", "y")], vec![], i, o)
            },
            vec!["nothing to prune"],
        ),
        (
            "weight-is-computed",
            with_io(vec![node("Relu", "r", &["W0"], &["W"], vec![]), gemm("fc", "x", "W", "y")], vec![{
                let mut t = w();
                t.name = "W0".into();
                t
            }]),
            vec!["nothing to prune"],
        ),
        (
            "custom-domain-gemm",
            with_io(
                vec![{
                    let mut n = gemm("fc", "x", "W", "y");
                    n.domain = "com.example".into();
                    n
                }],
                vec![w()],
            ),
            vec!["nothing to prune"],
        ),
    ];
    for (name, m, needles) in cases {
        refused(&save_in(&d, &format!("{name}.onnx"), &m), &[], &needles);
    }
}

// ---------------------------------------------------------------------------------------------------------
// 2. Interrupts

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Starts `renorm args…` with its output discarded.
fn spawn(args: &[&str]) -> std::process::Child {
    renorm_bin()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Runs `renorm args…` to completion (exit 0) and returns how long it took.
fn complete(args: &[&str]) -> Duration {
    let start = Instant::now();
    let o = run(args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o.stderr));
    start.elapsed()
}

/// A test on a file name.
type NameTest = fn(&str) -> bool;

/// When to kill a run.
#[derive(Clone, Copy)]
enum Moment {
    /// This long after the start.
    After(Duration),
    /// This long after a file whose name passes `seen` (`what`) appears in the watched folder.
    AfterFile { what: &'static str, seen: NameTest, after: Duration },
}

impl std::fmt::Debug for Moment {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Moment::After(d) => write!(f, "{d:?} after the start"),
            Moment::AfterFile { what, after, .. } => write!(f, "{after:?} after a {what} appeared"),
        }
    }
}

/// Kill moments: a few milliseconds after the start, then through a run of `full`, and `files` (what,
/// test, milliseconds after it is seen).
fn kill_moments(full: Duration, files: &[(&'static str, NameTest, u64)]) -> Vec<Moment> {
    let mut v: Vec<Moment> =
        [0, 5, 15, 40].into_iter().map(|ms| Moment::After(Duration::from_millis(ms))).collect();
    v.extend([0.3, 0.6].map(|f| Moment::After(full.mul_f64(f))));
    for &(what, seen, ms) in files {
        v.push(Moment::AfterFile { what, seen, after: Duration::from_millis(ms) });
    }
    v
}

/// Paths of everything under `dir` (folders included), relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Starts `args` and kills it (SIGKILL) at `moment`, watching `dir`; whether it was still running.
fn kill_at(args: &[&str], moment: Moment, dir: &Path) -> bool {
    let mut child = spawn(args);
    match moment {
        Moment::After(d) => std::thread::sleep(d),
        Moment::AfterFile { seen, after, .. } => {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !tree(dir).iter().any(|n| seen(n.rsplit('/').next().unwrap_or_default()))
                && child.try_wait().unwrap().is_none()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_micros(200));
            }
            std::thread::sleep(after);
        }
    }
    let running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    let status = child.wait().unwrap();
    running && status.code().is_none()
}

/// The output model and its data file in `dir` (None when the model is absent).
fn output_pair(dir: &Path) -> Option<(Vec<u8>, Vec<u8>)> {
    let model = std::fs::read(dir.join("out.onnx")).ok()?;
    Some((model, std::fs::read(dir.join("out.onnx.data")).unwrap_or_default()))
}

#[test]
fn killed_prune_leaves_no_partial_output_and_a_rerun_completes() {
    let root = tempfile::tempdir().unwrap();
    // 12 MB of external weights: long enough to be killed while reading, pruning and writing.
    let input = gemm_stack(&case_dir(root.path(), "model"), "big", &[1024; 4], 1);
    let args = |out: &Path, sparsity: &'static str| -> Vec<String> {
        ["prune", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--force", "--sparsity", sparsity]
            .map(String::from)
            .to_vec()
    };
    // Two uninterrupted runs with different options: killed runs alternate between them, so a killed
    // run overwrites a complete output that is not its own.
    let mut refs = Vec::new();
    let mut full = Duration::ZERO;
    for s in ["0.5", "0.9"] {
        let dir = case_dir(root.path(), &format!("ref-{s}"));
        full = full.max(complete(&strs(&args(&dir.join("out.onnx"), s))));
        refs.push(output_pair(&dir).unwrap());
    }
    assert!(refs[0] != refs[1]);
    let work = case_dir(root.path(), "work");
    let out = work.join("out.onnx");
    let mut interrupted = 0;
    let mut temps_left = 0;
    let data_temp: NameTest = |n| n.starts_with(".renorm-out.onnx.data.");
    let model_temp: NameTest =
        |n| n.starts_with(".renorm-out.onnx.") && !n.starts_with(".renorm-out.onnx.data.");
    let moments = kill_moments(
        full,
        &[
            ("data temp", data_temp, 0),
            ("data temp", data_temp, 2),
            ("model temp", model_temp, 0),
            ("model temp", model_temp, 1),
        ],
    );
    for (round, &moment) in moments.iter().enumerate() {
        let (mine, other) = (round % 2, 1 - round % 2);
        let run_args = args(&out, ["0.5", "0.9"][mine]);
        interrupted += usize::from(kill_at(&strs(&run_args), moment, &work));
        // Left: no model, or a whole one (the earlier output or this run's) with its own data file;
        // besides those, only temporary files no one takes for output.
        for n in names(&work) {
            let temp = n.starts_with(".renorm-out.onnx.") && n.ends_with(".tmp");
            temps_left += usize::from(temp);
            assert!(temp || n == "out.onnx" || n == "out.onnx.data", "round {round}: left {n}");
        }
        if let Some(pair) = output_pair(&work) {
            let ok = pair == refs[mine] || (round > 0 && pair == refs[other]);
            assert!(ok, "round {round} (killed at {moment:?}): the output is partial or mixed");
        }
        // A rerun completes, writes the uninterrupted run's bytes, and removes the killed run's temps.
        complete(&strs(&run_args));
        assert_eq!(names(&work), ["out.onnx", "out.onnx.data"], "round {round}");
        assert!(output_pair(&work).unwrap() == refs[mine], "round {round}: the rerun differs");
    }
    assert!(interrupted >= moments.len() / 2, "only {interrupted} kills landed before the end");
    assert!(temps_left > 0, "no kill landed while the output was written");
}

/// The files of a batch output tree that matter, by relative path: models and data files as they are,
/// reports without their `output` path (which names the output folder). Summaries (timings) left out.
fn batch_outputs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for rel in tree(dir) {
        let p = dir.join(&rel);
        if p.is_dir() || rel.starts_with("summary.") {
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        let bytes = if rel.ends_with(".renorm.json") {
            let mut v: Value = serde_json::from_slice(&bytes).unwrap();
            v["output"] = Value::Null;
            serde_json::to_vec(&v).unwrap()
        } else {
            bytes
        };
        out.insert(rel, bytes);
    }
    out
}

#[test]
fn killed_batch_resumes_to_the_same_outputs() {
    let root = tempfile::tempdir().unwrap();
    let zoo = case_dir(root.path(), "zoo");
    gemm_stack(&case_dir(&zoo, "a"), "big", &[1024; 3], 2);
    let inline = gemm_stack(&case_dir(&zoo, "b/c"), "inline", &[512; 4], 3);
    // The second stack with its weights inline (no external file).
    let mut m = load(&inline);
    let data = std::fs::read(zoo.join("b/c/inline.bin")).unwrap();
    for t in &mut m.graph.as_mut().unwrap().initializer {
        if !t.external_data.is_empty() {
            let get = |k: &str| {
                t.external_data.iter().find(|e| e.key == k).unwrap().value.parse::<usize>().unwrap()
            };
            let (off, len) = (get("offset"), get("length"));
            t.raw_data = data[off..off + len].to_vec();
            t.external_data.clear();
            t.data_location = pb::tensor_proto::DataLocation::DEFAULT.into();
        }
    }
    save(&m, &inline);
    std::fs::remove_file(zoo.join("b/c/inline.bin")).unwrap();
    std::fs::copy(fixtures().join("mnist_mlp.onnx"), zoo.join("mlp.onnx")).unwrap();
    std::fs::copy(fixtures().join("mnist_cnn.onnx"), zoo.join("b/cnn.onnx")).unwrap();
    let models = ["a/big.onnx", "b/c/inline.onnx", "b/cnn.onnx", "mlp.onnx"];
    let batch = |out: &Path, jobs: &'static str| -> Vec<String> {
        [
            "batch",
            zoo.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--quiet",
            "--sparsity",
            "0.8",
            "--jobs",
            jobs,
        ]
        .map(String::from)
        .to_vec()
    };
    let reference = root.path().join("ref");
    let full = complete(&strs(&batch(&reference, "1")));
    let want = batch_outputs(&reference);
    assert_eq!(want.len(), 2 * models.len() + 1, "{:?}", want.keys());
    let staging: NameTest = |n| n.starts_with(".renorm-staging-");
    let report: NameTest = |n| n.ends_with(".renorm.json");
    let moments = kill_moments(
        full,
        &[("staging folder", staging, 0), ("staging folder", staging, 3), ("model report", report, 0)],
    );
    let mut interrupted = 0;
    for (round, &moment) in moments.iter().enumerate() {
        let out = root.path().join(format!("out-{round}"));
        std::fs::create_dir(&out).unwrap();
        let args = batch(&out, if round % 2 == 0 { "1" } else { "2" });
        interrupted += usize::from(kill_at(&strs(&args), moment, &out));
        // A model with its report is done: it must be whole.
        for m in models {
            if out.join(format!("{m}.renorm.json")).exists() {
                assert!(
                    std::fs::read(out.join(m)).unwrap() == want[m],
                    "round {round} ({moment:?}): {m} partial"
                );
            }
        }
        // The rerun completes with the uninterrupted run's files, and nothing hidden is left.
        complete(&strs(&args));
        let got = batch_outputs(&out);
        assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "round {round}");
        for (k, v) in &want {
            assert!(got[k] == *v, "round {round} ({moment:?}): {k} differs from the uninterrupted run's");
        }
        let hidden: Vec<String> =
            tree(&out).into_iter().filter(|p| p.split('/').any(|c| c.starts_with('.'))).collect();
        assert!(hidden.is_empty(), "round {round} ({moment:?}): left {hidden:?}");
        let summary: Value =
            serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["totals"]["failed"], 0);
    }
    assert!(interrupted >= moments.len() / 2, "only {interrupted} kills landed before the end");
}

#[test]
fn stale_temporary_files_are_removed_by_the_next_prune() {
    let dir = tempfile::tempdir().unwrap();
    let touch = |n: &str| std::fs::write(dir.path().join(n), b"partial").unwrap();
    let stale = [
        ".renorm-out.onnx.abc123.tmp",
        ".renorm-out.onnx.data.x1Y2z3.tmp",
        ".renorm-out.onnx.0.data.qwerty.tmp",
    ];
    // Another output's, a report's (named differently), an unrelated file, and one a live process holds.
    let kept = [
        ".renorm-other.onnx.abc123.tmp",
        ".renorm-out.onnx-abc123.tmp",
        "notes.txt",
        ".renorm-out.onnx.live01.tmp",
    ];
    for n in stale.iter().chain(&kept) {
        touch(n);
    }
    let held = std::fs::File::open(dir.path().join(kept[3])).unwrap();
    held.lock().unwrap();
    let out = dir.path().join("out.onnx");
    complete(&["prune", fixtures().join("mnist_mlp.onnx").to_str().unwrap(), "-o", out.to_str().unwrap()]);
    let mut want: Vec<String> = kept.iter().map(|s| s.to_string()).chain(["out.onnx".to_string()]).collect();
    want.sort();
    assert_eq!(names(dir.path()), want);
    drop(held);
}

// ---------------------------------------------------------------------------------------------------------
// 3. Determinism

#[test]
fn same_input_and_options_give_identical_bytes_across_runs_and_thread_counts() {
    let root = tempfile::tempdir().unwrap();
    let ext_dir = case_dir(root.path(), "ext");
    let ext = gemm_stack(&ext_dir, "ext", &[64, 48, 10], 4);
    let ext_calib = ext_dir.join("calib.npy");
    let x: Vec<f32> = noise(256 * 64, 5).iter().map(|b| f32::from(*b) / 128.0 - 1.0).collect();
    ndarray_npy::write_npy(&ext_calib, &ndarray::Array2::from_shape_vec((256, 64), x).unwrap()).unwrap();
    // The CNN's conv rows (256 · 24 · 24) exceed refit's 16 384: subsampled, many chunks per Gram matrix.
    let cases =
        [(fixtures().join("mnist_cnn.onnx"), fixtures().join("mnist_calib_1000.npy")), (ext, ext_calib)];
    for (input, calib) in &cases {
        for renorm in ["none", "l1", "l2", "stats", "refit"] {
            let dir =
                case_dir(root.path(), &format!("{}-{renorm}", input.file_stem().unwrap().to_string_lossy()));
            let out = dir.join("out.onnx");
            let mut args =
                vec!["prune", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--force", "--json"];
            args.extend(["--sparsity", "0.9", "--renorm", renorm]);
            if matches!(renorm, "stats" | "refit") {
                args.extend(["--calib", calib.to_str().unwrap(), "--calib-samples", "256"]);
            }
            let mut runs = Vec::new();
            for threads in ["1", "2", "1", "2"] {
                let o = renorm_bin().env("RAYON_NUM_THREADS", threads).args(&args).output().unwrap();
                assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o.stderr));
                let data = std::fs::read(dir.join("out.onnx.data")).ok();
                runs.push((threads, o.stdout, std::fs::read(&out).unwrap(), data));
            }
            let first = &runs[0];
            for r in &runs[1..] {
                let label = format!("{} --renorm {renorm}, {} vs {} threads", input.display(), first.0, r.0);
                assert!(r.1 == first.1, "{label}: the reports differ");
                assert!(r.2 == first.2, "{label}: the models differ");
                assert!(r.3 == first.3, "{label}: the data files differ");
            }
        }
    }
}

#[test]
fn of_several_bad_weights_the_first_in_graph_order_is_named_whatever_the_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    // The first target is large with its NaN last; the 15 after it are small with theirs first, so a
    // second thread finds a later bad target well before the first is read.
    let (mut nodes, mut inits) = (Vec::new(), Vec::new());
    for i in 0..16 {
        let n = if i == 0 { 512 } else { 4 };
        let mut w = weights(n * n, i as u64);
        let at = if i == 0 { n * n - 1 } else { 0 };
        w[at] = f32::NAN;
        let (x, y) = (if i == 0 { "x".to_string() } else { format!("h{i}") }, format!("h{}", i + 1));
        nodes.push(gemm(&format!("fc{i}"), &x, &format!("W{i}"), &y));
        inits.push(f32_tensor(&format!("W{i}"), &[n, n], &w));
    }
    let m = model(nodes, inits, vec![value_info("x", &[None, Some(512)], FLOAT)], vec![]);
    let input = save_in(dir.path(), "bad.onnx", &m);
    let out = dir.path().join("out.onnx");
    for threads in ["1", "2", "2", "2", "1", "2"] {
        let o = renorm_bin()
            .env("RAYON_NUM_THREADS", threads)
            .args(["prune", input.to_str().unwrap(), "-o", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1));
        let stderr = text(&o.stderr);
        assert!(stderr.contains("weight 'W0' holds NaN at element 262143"), "{threads} threads: {stderr}");
    }
}

#[test]
fn subgraphs_nested_deeper_than_the_limit_are_refused_without_recursing_further() {
    // If nodes whose then_branch holds another If, 2 000 levels deep: past the reader's limit (64), a
    // reader recursing without one would go as deep as the file says.
    let tmp = tempfile::tempdir().unwrap();
    let dir = case_dir(tmp.path(), "deep");
    let path = dir.join("deep.onnx");
    std::fs::write(&path, deep_model_bytes(2_000)).unwrap();
    refused(&path, &[], &["nested"]);
}

/// A ModelProto (ir_version 8, opset 17) whose graph holds an If node nested `levels` deep through
/// `then_branch` graph attributes, written field by field.
fn deep_model_bytes(levels: usize) -> Vec<u8> {
    fn field(number: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(&mut out, u64::from(number << 3 | 2));
        varint(&mut out, body.len() as u64);
        out.extend_from_slice(body);
        out
    }
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    // GraphProto { name: "leaf" }
    let mut graph = field(2, b"leaf");
    for _ in 0..levels {
        // AttributeProto { name: "then_branch" (1), g (6), type GRAPH = 5 (20) }
        let mut attr = field(1, b"then_branch");
        attr.extend(field(6, &graph));
        attr.extend([20 << 3, 5]);
        // NodeProto { input "cond" (1), output "o" (2), op_type "If" (4), attribute (5) }
        let mut node = field(1, b"cond");
        node.extend(field(2, b"o"));
        node.extend(field(4, b"If"));
        node.extend(field(5, &attr));
        // GraphProto { node (1), name (2) }
        graph = field(1, &node);
        graph.extend(field(2, b"g"));
    }
    // ModelProto { ir_version 8 (1), graph (7), opset_import { version 17 } (8) }
    let mut model = vec![1 << 3, 8];
    model.extend(field(7, &graph));
    model.extend(field(8, &[2 << 3, 17]));
    model
}

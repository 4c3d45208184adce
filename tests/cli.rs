//! The `renorm` binary: report keys (documented in the README), --report, --json, filters, summaries.

mod common;

use common::*;
use serde_json::Value;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = renorm_bin().args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap(), text(&out.stdout), text(&out.stderr))
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

#[test]
fn prune_json_report_has_the_documented_keys_and_matches_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.onnx");
    let report = dir.path().join("report.json");
    let mlp = fixtures().join("mnist_mlp.onnx");
    let (code, stdout, stderr) = run(&[
        "prune",
        mlp.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--json",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let r: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r, serde_json::from_str::<Value>(&std::fs::read_to_string(&report).unwrap()).unwrap());
    assert_eq!(keys(&r), ["method", "model", "output", "size", "skipped", "targets", "totals", "validation"]);
    assert_eq!(r["validation"], Value::Null);
    // Sizes: the files' own lengths; half the weights zero compress smaller than the dense ones.
    let len = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
    assert_eq!(r["size"]["before"]["raw"].as_u64().unwrap(), len(&mlp));
    assert_eq!(r["size"]["after"]["raw"].as_u64().unwrap(), len(&out));
    let zstd = |k: &str| r["size"][k]["zstd"].as_u64().unwrap();
    assert!(zstd("after") < zstd("before") && zstd("before") < len(&mlp), "{}", r["size"]);
    assert_eq!(keys(&r["method"]), ["pattern", "renorm", "scope", "sparsity"]);
    // The defaults: 0.5, global, l2.
    assert_eq!(
        r["method"],
        serde_json::json!({"sparsity": 0.5, "scope": "global", "renorm": "l2", "pattern": null})
    );
    assert_eq!(keys(&r["totals"]), ["params", "pruned", "sparsity"]);
    let model = load(&out);
    let g = model.graph.as_ref().unwrap();
    let mut total = 0;
    for t in r["targets"].as_array().unwrap() {
        for k in ["node", "op", "weight", "shape", "params", "pruned", "sparsity", "scale"] {
            assert!(t.get(k).is_some(), "target key {k} missing: {t}");
        }
        assert_eq!(keys(&t["scale"]), ["max", "mean", "min"]);
        let w = values(
            g.initializer.iter().find(|i| i.name == t["weight"].as_str().unwrap()).unwrap(),
            dir.path(),
        );
        let zeros = w.iter().filter(|v| **v == 0.0).count() as u64;
        assert_eq!(t["pruned"].as_u64().unwrap(), zeros, "{}", t["weight"]);
        assert_eq!(t["params"].as_u64().unwrap(), w.len() as u64);
        total += zeros;
    }
    assert_eq!(r["totals"]["pruned"].as_u64().unwrap(), total);
    assert_eq!(r["totals"]["pruned"].as_u64().unwrap(), torch_count(0.5, 266_200) as u64);
}

#[test]
fn include_and_exclude_choose_targets_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.onnx");
    let mlp = fixtures().join("mnist_mlp.onnx");
    let (code, stdout, stderr) = run(&[
        "prune",
        mlp.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--include",
        "fc[12]",
        "--exclude",
        "fc2",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let r: Value = serde_json::from_str(&stdout).unwrap();
    let targets: Vec<&str> =
        r["targets"].as_array().unwrap().iter().map(|t| t["weight"].as_str().unwrap()).collect();
    assert_eq!(targets, ["fc1.weight"]);
    let skipped: Vec<(String, String)> = r["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["weight"].as_str().unwrap().into(), s["reason"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        skipped,
        [
            ("fc2.weight".to_string(), "excluded by --exclude 'fc2'".to_string()),
            ("fc3.weight".to_string(), "matched by no --include pattern".to_string())
        ]
    );
}

#[test]
fn inspect_prints_a_table_or_json() {
    let cnn = fixtures().join("mnist_cnn.onnx");
    let (code, stdout, _) = run(&["inspect", cnn.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let r: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(keys(&r), ["model", "skipped", "targets", "totals"]);
    let t = &r["targets"][0];
    assert_eq!(
        keys(t),
        ["dtype", "fan_in", "node", "op", "params", "shape", "storage", "units", "weight", "zero_fraction"]
    );
    let (code, table, _) = run(&["inspect", cnn.to_str().unwrap()]);
    assert_eq!(code, 0);
    for t in r["targets"].as_array().unwrap() {
        assert!(table.contains(t["weight"].as_str().unwrap()), "{table}");
    }
    assert!(table.contains(&format!("{} targets", r["totals"]["targets"])), "{table}");
}

#[test]
fn prune_summary_says_what_zeros_buy() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.onnx");
    let cnn = fixtures().join("mnist_cnn.onnx");
    let (code, stdout, stderr) =
        run(&["prune", cnn.to_str().unwrap(), "-o", out.to_str().unwrap(), "--pattern", "2:4"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert!(stdout.contains("pattern 2:4"), "{stdout}");
    assert!(stdout.contains("not on a dense runtime"), "{stdout}");
}

#[test]
fn shared_weights_are_pruned_once_or_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let w = f32_tensor("W", &[4, 4], &weights(16, 5));
    let two_gemms = model(
        vec![
            node("Gemm", "a", &["x", "W"], &["y1"], vec![attr_int("transB", 1)]),
            node("Gemm", "b", &["x", "W"], &["y2"], vec![attr_int("transB", 1)]),
        ],
        vec![w.clone()],
        vec![],
        vec![],
    );
    let mixed = model(
        vec![
            node("Gemm", "a", &["x", "W"], &["y1"], vec![attr_int("transB", 1)]),
            node("Gemm", "b", &["x", "W"], &["y2"], vec![]),
            node("Transpose", "t", &["W"], &["y3"], vec![]),
        ],
        vec![w],
        vec![],
        vec![],
    );
    save(&two_gemms, &dir.path().join("two.onnx"));
    save(&mixed, &dir.path().join("mixed.onnx"));
    let r = renorm::inspect_file(&dir.path().join("two.onnx")).unwrap();
    assert_eq!(r.targets.len(), 1);
    assert_eq!(r.targets[0].node, "a, b");
    let r = renorm::inspect_file(&dir.path().join("mixed.onnx")).unwrap();
    assert!(r.targets.is_empty());
    assert_eq!(r.skipped.len(), 1);
    assert!(r.skipped[0].reason.contains("also used by Gemm node 'b'"), "{}", r.skipped[0].reason);
}

#[test]
fn matmul_weights_behind_a_transpose_are_targets_unless_the_transpose_has_other_uses() {
    let dir = tempfile::tempdir().unwrap();
    let w = f32_tensor("W", &[3, 4], &weights(12, 7));
    let build = |extra: Vec<pb::NodeProto>| {
        let mut nodes = vec![
            node("Gemm", "g", &["x", "W"], &["y1"], vec![attr_int("transB", 1)]),
            node("Transpose", "t", &["W"], &["Wt"], vec![]),
            node("MatMul", "m", &["x", "Wt"], &["y2"], vec![]),
        ];
        nodes.extend(extra);
        model(nodes, vec![w.clone()], vec![], vec![])
    };
    // Gemm with transB=1 and MatMul(x, Wᵀ) map rows of W to units alike: one target, pruned once.
    save(&build(vec![]), &dir.path().join("shared.onnx"));
    let r = renorm::inspect_file(&dir.path().join("shared.onnx")).unwrap();
    assert_eq!((r.targets.len(), r.skipped.len()), (1, 0), "{:?}", r.skipped);
    assert_eq!((r.targets[0].node.as_str(), r.targets[0].units), ("g, m", 3));
    // The transposed weight also feeds a Relu: pruning would change it, so W is skipped.
    save(&build(vec![node("Relu", "r", &["Wt"], &["y3"], vec![])]), &dir.path().join("relu.onnx"));
    let r = renorm::inspect_file(&dir.path().join("relu.onnx")).unwrap();
    assert!(r.targets.is_empty());
    assert!(r.skipped[0].reason.contains("also used by Relu node 'r'"), "{}", r.skipped[0].reason);
}

#[test]
fn batch_prunes_the_good_models_reports_the_bad_one_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let zoo = dir.path().join("zoo");
    std::fs::create_dir_all(zoo.join("nested")).unwrap();
    std::fs::copy(fixtures().join("mnist_mlp.onnx"), zoo.join("nested/mlp.onnx")).unwrap();
    std::fs::write(zoo.join("broken.onnx"), b"\x0a\xff\xff\xff\x0fnot a model").unwrap();
    let out = dir.path().join("out");
    let (code, stdout, stderr) =
        run(&["batch", zoo.to_str().unwrap(), "-o", out.to_str().unwrap(), "--sparsity", "0.9", "--json"]);
    assert_eq!(code, 1, "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(last.starts_with("renorm: error: 1 of 2 models failed"), "{stderr}");
    // Progress: one plain line per model on a non-terminal stderr, then the error.
    assert_eq!(stderr.lines().count(), 3, "{stderr}");
    let r: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["totals"], serde_json::json!({"models": 2, "pruned": 1, "resumed": 0, "failed": 1}));
    assert!(load(&out.join("nested/mlp.onnx")).graph.is_some());
    assert!(!out.join("broken.onnx").exists());
    for ext in ["json", "md", "html"] {
        assert!(out.join(format!("summary.{ext}")).is_file(), "summary.{ext}");
    }
    let html = std::fs::read_to_string(out.join("summary.html")).unwrap();
    roxmltree::Document::parse(html.trim_start_matches("<!DOCTYPE html>"))
        .expect("summary.html is well-formed");
    // A rerun does no pruning: the good model resumes.
    let (code, stdout, _) = run(&[
        "batch",
        zoo.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--sparsity",
        "0.9",
        "--json",
        "-q",
    ]);
    assert_eq!(code, 1);
    let r: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["totals"]["resumed"], 1);
}

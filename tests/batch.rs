//! `renorm::batch`: discovery (plain models and the model-zoo layout), per-model failures that stop
//! nothing, resume, shards, `jobs`, and what a kill leaves behind.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use renorm::batch::{self, BatchOptions, Found};
use renorm::report::{BatchEntry, BatchReport};
use renorm::validate::DataSpec;
use renorm::{PruneOptions, Scope, Selector};

const GOOD: [&str; 3] = ["mlp/mnist_mlp.onnx", "nested/deeper/cnn.onnx", "zoo/linear/model.onnx"];
const ALL: [&str; 5] = [
    "corrupt.onnx",
    "mlp/mnist_mlp.onnx",
    "nested/deeper/cnn.onnx",
    "relu_only.onnx",
    "zoo/linear/model.onnx",
];

/// A zoo: two good models in nested folders, a truncated model, a model with nothing to prune, a
/// model-zoo folder (model.onnx + test_data_set_0), and what discovery must skip (a hidden folder, a
/// symlinked folder, a non-model file).
fn zoo(root: &Path) -> PathBuf {
    let dir = root.join("in");
    let copy = |from: &Path, to: &str| {
        let to = dir.join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    };
    copy(&fixtures().join("mnist_mlp.onnx"), "mlp/mnist_mlp.onnx");
    copy(&fixtures().join("mnist_cnn.onnx"), "nested/deeper/cnn.onnx");
    let mlp = std::fs::read(fixtures().join("mnist_mlp.onnx")).unwrap();
    std::fs::write(dir.join("corrupt.onnx"), &mlp[..mlp.len() / 2]).unwrap();
    let relu = model(
        vec![node("Relu", "relu", &["x"], &["y"], vec![])],
        vec![],
        vec![value_info("x", &[None, Some(4)], FLOAT)],
        vec![value_info("y", &[None, Some(4)], FLOAT)],
    );
    save(&relu, &dir.join("relu_only.onnx"));
    let linear = fixtures().join("onnx-conformance/pytorch-converted/test_Linear");
    copy(&linear.join("model.onnx"), "zoo/linear/model.onnx");
    for f in ["input_0.pb", "output_0.pb"] {
        copy(&linear.join("test_data_set_0").join(f), &format!("zoo/linear/test_data_set_0/{f}"));
    }
    copy(&fixtures().join("mnist_mlp.onnx"), ".hidden/skipped.onnx");
    std::fs::write(dir.join("notes.txt"), "not a model").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.join("mlp"), dir.join("linked")).unwrap();
    dir
}

fn run(dir: &Path, out: &Path, opts: &BatchOptions) -> BatchReport {
    batch::run(dir, out, opts, &|_| {}).unwrap()
}

fn entry<'a>(r: &'a BatchReport, model: &str) -> &'a BatchEntry {
    r.models.iter().find(|e| e.model == model).unwrap_or_else(|| panic!("{model} not in {:?}", names(r)))
}

fn names(r: &BatchReport) -> Vec<&str> {
    r.models.iter().map(|e| e.model.as_str()).collect()
}

fn statuses(r: &BatchReport) -> Vec<(&str, &str)> {
    r.models.iter().map(|e| (e.model.as_str(), e.status.as_str())).collect()
}

/// Every file under `root` (hidden ones too), by `/`-joined relative path, with its bytes.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap();
                let key = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>();
                out.insert(key.join("/"), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Every entry under `root` whose name starts with a dot (temporary files, staging folders).
fn hidden(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().unwrap().to_string_lossy().starts_with('.') {
                found.push(p.clone());
            }
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    found
}

fn mtime(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

/// The report without what legitimately differs between runs (timings, the output folder's name).
fn comparable(r: &BatchReport) -> BatchReport {
    let mut r = r.clone();
    r.output_dir = String::new();
    for e in &mut r.models {
        e.seconds = 0.0;
    }
    r
}

/// What a completed run over `zoo` leaves in OUTDIR: each good model and its report, and the summary.
fn expected_files(stem: &str) -> Vec<String> {
    let mut v: Vec<String> = GOOD.iter().flat_map(|m| [m.to_string(), format!("{m}.renorm.json")]).collect();
    v.extend(["json", "md", "html"].map(|ext| format!("{stem}.{ext}")));
    v.sort();
    v
}

#[test]
fn discover_lists_models_sorted_and_finds_the_zoo_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = zoo(tmp.path());
    let found = batch::discover(&dir).unwrap();
    let models: Vec<String> = found.iter().map(|f| f.model.to_string_lossy().replace('\\', "/")).collect();
    assert_eq!(models, ALL, "hidden and symlinked folders and non-models are skipped");
    for f in &found {
        let expected = (f.model == Path::new("zoo/linear/model.onnx")).then(|| PathBuf::from("zoo/linear"));
        assert_eq!(f.zoo_data, expected, "{}", f.model.display());
    }
    // A folder with test_data_set_* and a single model of another name is a zoo folder too; with
    // several models and none called model.onnx it is not.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(other.join("test_data_set_0")).unwrap();
    std::fs::copy(fixtures().join("mnist_mlp.onnx"), other.join("resnet.onnx")).unwrap();
    assert_eq!(
        batch::discover(&other).unwrap(),
        [Found { model: "resnet.onnx".into(), zoo_data: Some(".".into()) }]
    );
    std::fs::copy(fixtures().join("mnist_mlp.onnx"), other.join("second.onnx")).unwrap();
    assert!(batch::discover(&other).unwrap().iter().all(|f| f.zoo_data.is_none()));
}

#[test]
fn batch_prunes_good_models_reports_bad_ones_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = zoo(tmp.path());
    let out = tmp.path().join("out");
    let seen = AtomicUsize::new(0);
    let r = batch::run(&dir, &out, &BatchOptions::default(), &|_| {
        seen.fetch_add(1, Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(seen.load(Ordering::Relaxed), 5);
    assert_eq!(names(&r), ALL, "discovery order");
    assert_eq!((r.totals.models, r.totals.pruned, r.totals.resumed, r.totals.failed), (5, 3, 0, 2));
    assert_eq!(r.shard, None);
    assert_eq!(r.method.renorm, "l2");

    for m in GOOD {
        let e = entry(&r, m);
        assert_eq!(e.status, "pruned", "{e:?}");
        assert_eq!(e.output.as_deref(), Some(m));
        assert!(e.error.is_none() && e.params > 0 && e.pruned > 0 && e.seconds > 0.0, "{e:?}");
        assert!((e.sparsity - 0.5).abs() < 0.01, "{e:?}");
        // The output parses (independent decoder) and carries renorm's metadata entry.
        let pruned = load(&out.join(m));
        assert!(pruned.metadata_props.iter().any(|p| p.key == "renorm"), "{m}");
        let size = e.size.unwrap();
        assert_eq!(size.after.raw, std::fs::metadata(out.join(m)).unwrap().len());
        assert_eq!(size.before.raw, std::fs::metadata(dir.join(m)).unwrap().len());
        // Its report beside it: the prune report, with the output's final path.
        let rep: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(format!("{m}.renorm.json"))).unwrap()).unwrap();
        assert_eq!(rep["output"], out.join(m).display().to_string());
        assert_eq!(rep["totals"]["pruned"].as_u64().unwrap() as usize, e.pruned);
    }
    assert!(entry(&r, "mlp/mnist_mlp.onnx").validation.is_none(), "no --data, not a zoo folder");
    // The zoo model is validated on its own test_data_set_0, against its reference outputs too.
    let v = entry(&r, "zoo/linear/model.onnx").validation.clone().expect("zoo data validates it");
    assert_eq!(v.skipped_reason, None);
    assert_eq!(v.samples, 1);
    assert!(!v.outputs.is_empty() && v.outputs[0].reference_max_abs_error.is_some(), "{v:?}");

    for (m, why) in [("corrupt.onnx", "not a valid ONNX model"), ("relu_only.onnx", "nothing to prune")] {
        let e = entry(&r, m);
        assert_eq!((e.status.as_str(), e.output.as_ref(), e.size), ("failed", None, None), "{e:?}");
        let error = e.error.as_deref().unwrap();
        assert!(error.contains(m) && error.contains(why) && !error.contains('\n'), "{error}");
    }
    // Nothing else in OUTDIR: no output of a failed model, no temporary file or staging folder.
    assert_eq!(tree(&out).into_keys().collect::<Vec<_>>(), expected_files("summary"));
    assert!(hidden(&out).is_empty(), "{:?}", hidden(&out));
    // The summary is the report, pretty-printed (compared as text: serde_json may read a float back
    // one ulp off).
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap();
    assert_eq!(summary, format!("{}\n", serde_json::to_string_pretty(&r).unwrap()));

    // A second run does no work: every good model resumed with the same figures, nothing rewritten.
    let before = tree(&out);
    let times: Vec<_> =
        GOOD.iter().map(|m| (mtime(&out.join(m)), mtime(&out.join(format!("{m}.renorm.json"))))).collect();
    let again = run(&dir, &out, &BatchOptions::default());
    assert_eq!((again.totals.pruned, again.totals.resumed, again.totals.failed), (0, 3, 2));
    for m in GOOD {
        let (a, b) = (entry(&r, m), entry(&again, m));
        assert_eq!(b.status, "resumed");
        let same = |e: &BatchEntry| BatchEntry { status: String::new(), seconds: 0.0, ..e.clone() };
        assert_eq!(same(a), same(b), "resumed figures are the stored ones, exactly");
    }
    for (m, t) in GOOD.iter().zip(&times) {
        assert_eq!((mtime(&out.join(m)), mtime(&out.join(format!("{m}.renorm.json")))), *t, "{m} rewritten");
    }
    let after = tree(&out);
    for (k, v) in &before {
        if !k.starts_with("summary.") {
            assert!(after[k] == *v, "{k} changed");
        }
    }
    assert_eq!(after.len(), before.len());

    // Deleting one output prunes just that one again, to the same bytes.
    std::fs::remove_file(out.join("nested/deeper/cnn.onnx")).unwrap();
    let third = run(&dir, &out, &BatchOptions::default());
    let changed: Vec<&str> =
        third.models.iter().filter(|e| e.status == "pruned").map(|e| e.model.as_str()).collect();
    assert_eq!(changed, ["nested/deeper/cnn.onnx"]);
    assert_eq!(third.totals.resumed, 2);
    assert!(tree(&out)["nested/deeper/cnn.onnx"] == before["nested/deeper/cnn.onnx"]);
    assert_eq!(mtime(&out.join("mlp/mnist_mlp.onnx")), times[0].0);
}

#[test]
fn shards_are_disjoint_cover_everything_and_compose_with_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = zoo(tmp.path());
    let out = tmp.path().join("out");
    let shard = |k| BatchOptions { shard: Some((k, 2)), ..Default::default() };
    let (one, two) = (run(&dir, &out, &shard(1)), run(&dir, &out, &shard(2)));
    assert_eq!((one.shard.as_deref(), two.shard.as_deref()), (Some("1/2"), Some("2/2")));
    let (a, b) = (names(&one), names(&two));
    assert!(!a.is_empty() && !b.is_empty(), "{a:?} {b:?}: pick fixture names that split");
    assert!(a.iter().all(|m| !b.contains(m)), "disjoint: {a:?} {b:?}");
    let mut union: Vec<&str> = a.iter().chain(&b).copied().collect();
    union.sort();
    assert_eq!(union, ALL);
    for m in ALL {
        let k = if a.contains(&m) { 1 } else { 2 };
        assert!(batch::in_shard(Path::new(m), k, 2) && !batch::in_shard(Path::new(m), 3 - k, 2));
    }
    assert_eq!(
        batch::plan(&dir, &out, Some((1, 2))).unwrap().iter().map(|f| f.model.clone()).collect::<Vec<_>>(),
        a.iter().map(PathBuf::from).collect::<Vec<_>>()
    );
    // Each shard has its own summary; a final unsharded run over the same folder resumes everything.
    assert!(out.join("summary-1-of-2.json").is_file() && out.join("summary-2-of-2.json").is_file());
    let whole = run(&dir, &out, &BatchOptions::default());
    assert_eq!((whole.totals.models, whole.totals.pruned, whole.totals.resumed), (5, 0, 3));
    assert!(hidden(&out).is_empty());
    // Bad shards are usage errors.
    for bad in [(0, 2), (3, 2), (1, 0)] {
        let e = batch::run(&dir, &out, &BatchOptions { shard: Some(bad), ..Default::default() }, &|_| {});
        assert_eq!(e.unwrap_err().exit_code(), 2, "{bad:?}");
    }
}

#[test]
fn jobs_change_neither_outputs_nor_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = zoo(tmp.path());
    let (out1, out3) = (tmp.path().join("out1"), tmp.path().join("out3"));
    let r1 = run(&dir, &out1, &BatchOptions { jobs: 1, ..Default::default() });
    let r3 = run(&dir, &out3, &BatchOptions { jobs: 3, ..Default::default() });
    assert_eq!(comparable(&r1), comparable(&r3));
    let (t1, t3) = (tree(&out1), tree(&out3));
    assert_eq!(t1.keys().collect::<Vec<_>>(), t3.keys().collect::<Vec<_>>());
    for (k, v) in &t1 {
        if k.starts_with("summary.") && !k.ends_with(".json") {
            continue; // the summary's md/html show seconds; its JSON is compared as a report above
        }
        if k.ends_with(".json") {
            // Reports name their output folder; everything else is the same.
            let strip = |b: &[u8], out: &Path| {
                String::from_utf8(b.to_vec()).unwrap().replace(&out.display().to_string(), "OUT")
            };
            let (a, b) = (strip(v, &out1), strip(&t3[k], &out3));
            if k == "summary.json" {
                continue; // compared as reports above (seconds differ)
            }
            assert_eq!(a, b, "{k}");
        } else {
            assert!(*v == t3[k], "{k} differs between --jobs 1 and 3");
        }
    }
    // Many copies of one model at 4 jobs: each written once, all identical to the single prune.
    let many = tmp.path().join("many");
    for i in 0..8 {
        let d = many.join(format!("m{i}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(fixtures().join("mnist_mlp.onnx"), d.join("mlp.onnx")).unwrap();
    }
    let out_many = tmp.path().join("out_many");
    let count = AtomicUsize::new(0);
    let r = batch::run(&many, &out_many, &BatchOptions { jobs: 4, ..Default::default() }, &|_| {
        count.fetch_add(1, Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!((count.load(Ordering::Relaxed), r.totals.pruned), (8, 8));
    let t = tree(&out_many);
    for i in 0..8 {
        assert!(t[&format!("m{i}/mlp.onnx")] == t1["mlp/mnist_mlp.onnx"], "m{i}");
    }
    assert!(hidden(&out_many).is_empty());
}

#[test]
fn a_kill_leaves_nothing_taken_for_done_and_a_rerun_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = zoo(tmp.path());
    let out = tmp.path().join("out");
    run(&dir, &out, &BatchOptions::default());
    let done = tree(&out);
    // Killed while committing the MLP: its old report gone, a staging folder with a partial file.
    std::fs::remove_file(out.join("mlp/mnist_mlp.onnx.renorm.json")).unwrap();
    let staging = out.join("mlp/.renorm-staging-mnist_mlp.onnx");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("mnist_mlp.onnx"), b"partial").unwrap();
    std::fs::write(staging.join(".renorm-x1y2z3.tmp"), b"partial").unwrap();
    // Killed while pruning the CNN the first time: only a staging folder with a temporary file.
    std::fs::remove_file(out.join("nested/deeper/cnn.onnx")).unwrap();
    std::fs::remove_file(out.join("nested/deeper/cnn.onnx.renorm.json")).unwrap();
    let staging = out.join("nested/deeper/.renorm-staging-cnn.onnx");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join(".renorm-a1b2c3.tmp"), b"partial").unwrap();
    // Killed while writing the summary.
    std::fs::write(out.join(".renorm-summary.json-k1l2m3.tmp"), b"partial").unwrap();
    // An output that no longer matches its report (truncated by hand): not taken for done.
    let linear = out.join("zoo/linear/model.onnx");
    let bytes = std::fs::read(&linear).unwrap();
    std::fs::write(&linear, &bytes[..bytes.len() - 1]).unwrap();

    let r = run(&dir, &out, &BatchOptions::default());
    assert_eq!(
        statuses(&r),
        [
            ("corrupt.onnx", "failed"),
            ("mlp/mnist_mlp.onnx", "pruned"),
            ("nested/deeper/cnn.onnx", "pruned"),
            ("relu_only.onnx", "failed"),
            ("zoo/linear/model.onnx", "pruned"),
        ]
    );
    assert!(hidden(&out).is_empty(), "{:?}", hidden(&out));
    let now = tree(&out);
    assert_eq!(now.keys().collect::<Vec<_>>(), done.keys().collect::<Vec<_>>());
    for m in GOOD {
        assert!(now[m] == done[m], "{m}: same bytes as the uninterrupted run");
    }
}

#[test]
fn files_batch_did_not_write_are_kept_unless_forced_and_changed_options_prune_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = zoo(tmp.path());
    let out = tmp.path().join("out");
    std::fs::create_dir_all(out.join("mlp")).unwrap();
    std::fs::write(out.join("mlp/mnist_mlp.onnx"), b"someone else's file").unwrap();
    let r = run(&dir, &out, &BatchOptions::default());
    let e = entry(&r, "mlp/mnist_mlp.onnx");
    assert_eq!(e.status, "failed");
    assert!(e.error.as_deref().unwrap().contains("--force"), "{e:?}");
    assert_eq!(std::fs::read(out.join("mlp/mnist_mlp.onnx")).unwrap(), b"someone else's file");
    assert_eq!(entry(&r, "nested/deeper/cnn.onnx").status, "pruned");

    let force =
        BatchOptions { prune: PruneOptions { force: true, ..Default::default() }, ..Default::default() };
    let r = run(&dir, &out, &force);
    assert_eq!(r.totals.pruned, 3, "--force prunes every model again: {:?}", statuses(&r));
    load(&out.join("mlp/mnist_mlp.onnx"));

    // Other options: every model pruned again (its old output replaced), then resumed.
    let before = tree(&out);
    let sparser = BatchOptions {
        prune: PruneOptions {
            selector: Selector::Sparsity { sparsity: 0.8, scope: Scope::Layer },
            ..Default::default()
        },
        ..Default::default()
    };
    let r = run(&dir, &out, &sparser);
    assert_eq!((r.totals.pruned, r.totals.resumed), (3, 0));
    for m in GOOD {
        assert!(tree(&out)[m] != before[m], "{m}");
        assert!((entry(&r, m).sparsity - 0.8).abs() < 0.01);
    }
    assert_eq!(run(&dir, &out, &sparser).totals.resumed, 3);
    assert!(hidden(&out).is_empty());
}

#[test]
fn an_output_folder_inside_the_input_is_not_scanned_and_overlaps_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = zoo(tmp.path());
    let inside = dir.join("pruned");
    let r = run(&dir, &inside, &BatchOptions::default());
    assert_eq!(names(&r), ALL);
    let again = run(&dir, &inside, &BatchOptions::default());
    assert_eq!(names(&again), ALL, "the outputs are not taken for inputs");
    assert_eq!(again.totals.resumed, 3);
    for bad in [dir.clone(), tmp.path().to_path_buf(), dir.join("..")] {
        let e = batch::run(&dir, &bad, &BatchOptions::default(), &|_| {}).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{}: {e}", bad.display());
    }
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(batch::run(&empty, &tmp.path().join("o"), &BatchOptions::default(), &|_| {}).is_err());
}

#[test]
fn data_validates_every_model_instead_of_the_zoo_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = zoo(tmp.path());
    let out = tmp.path().join("out");
    let data = DataSpec {
        data: fixtures().join("mnist_test_1000.npy"),
        labels: Some(fixtures().join("mnist_test_1000_labels.npy")),
        batch: 64,
        sample: renorm::samples::SampleOptions { limit: Some(200), ..Default::default() },
        ..Default::default()
    };
    let opts = BatchOptions {
        prune: PruneOptions { validation: Some(data), ..Default::default() },
        jobs: 2,
        shard: None,
    };
    let r = run(&dir, &out, &opts);
    for m in ["mlp/mnist_mlp.onnx", "nested/deeper/cnn.onnx"] {
        let v = entry(&r, m).validation.clone().unwrap();
        assert_eq!((v.samples, v.skipped_reason), (200, None), "{m}");
        assert!(v.accuracy.unwrap().original > 0.9, "{m}");
    }
    // --data is what the zoo model gets too; MNIST images do not fit it, so it fails, naming itself.
    let e = entry(&r, "zoo/linear/model.onnx");
    assert_eq!(e.status, "failed");
    assert!(e.error.as_deref().unwrap().contains("model.onnx"), "{e:?}");
    assert!(!out.join("zoo/linear/model.onnx").exists());
    assert!(batch::gate_error(&r).is_none(), "no gates asked");
    // Same data, same options: resumed; without --data the validation setting differs: pruned again.
    assert_eq!(run(&dir, &out, &opts).totals.resumed, 2);
    assert_eq!(run(&dir, &out, &BatchOptions::default()).totals.pruned, 3);
    // A failed gate leaves the model pruned; gate_error (exit code 3) names every such model.
    let mut gated = opts.clone();
    gated.prune.validation.as_mut().unwrap().gates.min_cosine = Some(2.0);
    let r = run(&dir, &tmp.path().join("gated"), &gated);
    assert_eq!(entry(&r, "mlp/mnist_mlp.onnx").status, "pruned");
    let e = batch::gate_error(&r).unwrap();
    assert_eq!(e.exit_code(), 3);
    assert!(e.to_string().contains("mlp/mnist_mlp.onnx") && e.to_string().contains("cnn.onnx"), "{e}");
}

#[test]
fn zoo_data_that_does_not_fit_skips_the_validation_without_failing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("in");
    let set = dir.join("mlp/test_data_set_0");
    std::fs::create_dir_all(&set).unwrap();
    std::fs::copy(fixtures().join("mnist_mlp.onnx"), dir.join("mlp/model.onnx")).unwrap();
    let linear = fixtures().join("onnx-conformance/pytorch-converted/test_Linear/test_data_set_0");
    std::fs::copy(linear.join("input_0.pb"), set.join("input_0.pb")).unwrap();
    let r = run(&dir, &tmp.path().join("out"), &BatchOptions::default());
    let e = entry(&r, "mlp/model.onnx");
    assert_eq!((e.status.as_str(), r.totals.failed), ("pruned", 0), "{e:?}");
    let why = e.validation.as_ref().unwrap().skipped_reason.clone().unwrap();
    assert!(why.contains("test_data_set_*"), "{why}");
}

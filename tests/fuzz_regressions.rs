//! Inputs the fuzz targets (`fuzz/`, README "Fuzzing") found crashing renorm, kept as regression tests:
//! each must now give a clean error (or a clean result), never a panic or an allocation its size does not
//! justify. The inputs are the fuzzers' minimized files under `tests/fuzz_regressions/`; every test runs
//! them as the fuzz target that found them does.

use std::path::{Path, PathBuf};

use renorm::onnx::model::Model;
use renorm::prune::targets::{self, Filter};
use renorm::prune_job::{self, Scope, Selector};
use renorm::{Renorm, Result};

fn input(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What `fuzz/fuzz_targets/model.rs` does: parse (in an empty folder, so external data finds nothing),
/// plan, read every target's payload, select with every selector, renormalize. Returns the target count.
fn model_target(dir: &Path, bytes: &[u8]) -> Result<usize> {
    let model = Model::from_bytes(&dir.join("model.onnx"), bytes.to_vec())?;
    let plan = targets::plan(&model.graph, &Filter::default());
    let mut loaded = prune_job::load(&model, &plan)?;
    let mut keeps = Vec::new();
    for s in [
        Selector::Sparsity { sparsity: 0.5, scope: Scope::Global },
        Selector::Sparsity { sparsity: 0.9, scope: Scope::Layer },
        Selector::Sparsity { sparsity: 0.3, scope: Scope::Unit },
        Selector::Pattern { n: 2, m: 4 },
    ] {
        keeps = prune_job::select(&loaded, s).into_iter().map(|s| s.keep).collect();
    }
    for (l, keep) in loaded.iter_mut().zip(&keeps) {
        prune_job::apply(l, keep, Renorm::L2);
    }
    Ok(loaded.len())
}

/// Writes `bytes` as `name` in `dir`.
fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The error of `r`: one line, naming `path` and containing `needle`.
#[track_caller]
fn fails<T: std::fmt::Debug>(r: Result<T>, path: &Path, needle: &str) {
    let message = match r {
        Ok(v) => panic!("expected an error containing {needle:?}, got {v:?}"),
        Err(e) => e.to_string(),
    };
    assert!(message.starts_with(&format!("{}: ", path.display())), "{message}");
    assert!(message.contains(needle), "{message:?} does not contain {needle:?}");
    assert!(!message.contains('\n'), "{message:?}");
}

/// `model`: a Conv weight whose kernel dims multiply past `usize::MAX`. Planning multiplied them
/// unchecked (a panic in debug builds, a wrapped layout in release); now the layout saturates and
/// reading the payload refuses the dims.
#[test]
fn model_conv_kernel_dims_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = input("model-conv-kernel-overflow.onnx");
    fails(model_target(dir.path(), &bytes), &dir.path().join("model.onnx"), "overflow");
    let path = write(dir.path(), "model.onnx", &bytes);
    fails(renorm::inspect_file(&path), &path, "overflow");
}

/// `model` (a timeout): a ConvTranspose weight with no elements whose other dims announce 801 078 270
/// output units. Its empty payload read fine, then selection looped over every unit (and l2 would have
/// allocated a scale for each); now a weight with no elements is skipped, nothing to prune.
#[test]
fn model_empty_weight_with_huge_unit_count() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = input("model-empty-weight-many-units.onnx");
    assert_eq!(model_target(dir.path(), &bytes).unwrap(), 0);
    let path = write(dir.path(), "model.onnx", &bytes);
    let report = renorm::inspect_file(&path).unwrap();
    assert_eq!(report.totals.targets, 0);
    assert!(
        report.skipped.iter().any(|s| s.weight == "W" && s.reason.contains("no elements")),
        "{:?}",
        report.skipped
    );
}

//! Masks and scales across targets (design.md §3–4): layer, global (with the collapse guard), unit and
//! 2:4, with none / l1 / l2, each checked against the plain computations in tests/common.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use renorm::report::PruneReport;
use renorm::{PruneOptions, Renorm, Scope, Selector};

/// (weight name, op, shape, transB) of the test network's targets, in graph order.
const TARGETS: [(&str, &str, [usize; 2], bool); 3] =
    [("W1", "Gemm", [6, 10], true), ("W2", "Gemm", [6, 5], false), ("W3", "MatMul", [5, 3], false)];

/// x(2,10) -> Gemm(W1, transB=1) -> Relu -> Gemm(W2) -> MatMul(W3) -> y. `tiny` scales W3 down so a
/// global threshold zeroes it.
fn network(dir: &Path, tiny: bool) -> (PathBuf, Vec<Vec<f64>>) {
    let mut inits = Vec::new();
    let mut all = Vec::new();
    for (i, (name, _, shape, _)) in TARGETS.iter().enumerate() {
        let mut w = weights(shape[0] * shape[1], 100 + i as u64);
        if tiny && *name == "W3" {
            w.iter_mut().for_each(|v| *v = *v * 1e-3 + 1e-4);
        }
        all.push(w.iter().map(|v| f64::from(*v)).collect());
        inits.push(f32_tensor(name, shape, &w));
    }
    let nodes = vec![
        node("Gemm", "fc1", &["x", "W1"], &["h1"], vec![attr_int("transB", 1)]),
        node("Relu", "relu", &["h1"], &["r1"], vec![]),
        node("Gemm", "fc2", &["r1", "W2"], &["h2"], vec![]),
        node("MatMul", "fc3", &["h2", "W3"], &["y"], vec![]),
    ];
    let m = model(
        nodes,
        inits,
        vec![value_info("x", &[None, Some(10)], FLOAT)],
        vec![value_info("y", &[None, Some(3)], FLOAT)],
    );
    let path = dir.join(if tiny { "tiny.onnx" } else { "net.onnx" });
    save(&m, &path);
    (path, all)
}

fn prune(input: &Path, selector: Selector, renorm: Renorm) -> (PruneReport, Vec<Vec<f64>>) {
    let out = input.with_extension(format!("out{}.onnx", rand_suffix()));
    let r =
        renorm::prune_file(input, &out, &PruneOptions { selector, renorm, ..Default::default() }).unwrap();
    let m = load(&out);
    let g = m.graph.as_ref().unwrap();
    let after = TARGETS
        .iter()
        .map(|(n, ..)| values(g.initializer.iter().find(|t| t.name == *n).unwrap(), Path::new("")))
        .collect();
    (r, after)
}

fn rand_suffix() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Checks target `t`: zeros exactly at `pruned`, kept weights rescaled per unit.
fn check(t: usize, before: &[f64], after: &[f64], pruned: &[bool], renorm: &str) {
    let (_, op, shape, trans_b) = TARGETS[t];
    for (u, idx) in reference_units(op, &shape, trans_b, 1).iter().enumerate() {
        let pick = |v: &[f64]| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
        let flags: Vec<bool> = idx.iter().map(|&i| pruned[i]).collect();
        assert_rescaled(&pick(before), &flags, &pick(after), renorm, 1e-6, t * 100 + u);
    }
}

#[test]
fn layer_scope_prunes_round_s_n_of_each_target() {
    let dir = tempfile::tempdir().unwrap();
    let (input, before) = network(dir.path(), false);
    for (s, renorm) in [(0.3, "l2"), (0.5, "l1"), (0.75, "none"), (1.0, "l2")] {
        let method = match renorm {
            "l1" => Renorm::L1,
            "none" => Renorm::None,
            _ => Renorm::L2,
        };
        let (r, after) = prune(&input, Selector::Sparsity { sparsity: s, scope: Scope::Layer }, method);
        for t in 0..TARGETS.len() {
            let pruned = reference_pruned(&before[t], torch_count(s, before[t].len()));
            check(t, &before[t], &after[t], &pruned, renorm);
            assert_eq!(r.targets[t].pruned, pruned.iter().filter(|p| **p).count());
        }
    }
}

#[test]
fn global_scope_uses_one_threshold_over_all_targets() {
    let dir = tempfile::tempdir().unwrap();
    let (input, before) = network(dir.path(), false);
    for s in [0.2, 0.5, 0.9] {
        let (r, after) = prune(&input, Selector::Sparsity { sparsity: s, scope: Scope::Global }, Renorm::L2);
        let all: Vec<f64> = before.concat();
        let pruned = reference_pruned(&all, torch_count(s, all.len()));
        let mut offset = 0;
        for t in 0..TARGETS.len() {
            let n = before[t].len();
            check(t, &before[t], &after[t], &pruned[offset..offset + n], "l2");
            assert!(!r.targets[t].guarded);
            offset += n;
        }
        assert_eq!(r.totals.pruned, torch_count(s, all.len()));
        assert_eq!(r.totals.params, all.len());
    }
}

#[test]
fn collapse_guard_prunes_a_zeroed_target_at_layer_scope() {
    let dir = tempfile::tempdir().unwrap();
    let (input, before) = network(dir.path(), true);
    let s = 0.6;
    let (r, after) = prune(&input, Selector::Sparsity { sparsity: s, scope: Scope::Global }, Renorm::L2);
    let all: Vec<f64> = before.concat();
    let global = reference_pruned(&all, torch_count(s, all.len()));
    let (n1, n2) = (before[0].len(), before[1].len());
    assert!(global[n1 + n2..].iter().all(|p| *p), "the test network must make the global mask zero W3");
    check(0, &before[0], &after[0], &global[..n1], "l2");
    check(1, &before[1], &after[1], &global[n1..n1 + n2], "l2");
    let layer = reference_pruned(&before[2], torch_count(s, before[2].len()));
    check(2, &before[2], &after[2], &layer, "l2");
    assert_eq!(r.targets.iter().map(|t| t.guarded).collect::<Vec<_>>(), vec![false, false, true]);
}

/// The runs of 4 along the input-channel axis of each case, written from design.md §3.
fn runs(op: &str, shape: &[usize], trans_b: bool, group: usize) -> Vec<Vec<usize>> {
    let m = 4;
    let mut out = Vec::new();
    match (op, trans_b) {
        ("Gemm", true) => {
            let (n, k) = (shape[0], shape[1]);
            for j in 0..n {
                for r in 0..k / m {
                    out.push((0..m).map(|t| j * k + r * m + t).collect());
                }
            }
        }
        ("Gemm", false) | ("MatMul", _) => {
            let (k, n) = (shape[0], shape[1]);
            for j in 0..n {
                for r in 0..k / m {
                    out.push((0..m).map(|t| (r * m + t) * n + j).collect());
                }
            }
        }
        ("Conv", _) => {
            let (mm, c) = (shape[0], shape[1]);
            let kk: usize = shape[2..].iter().product();
            for j in 0..mm {
                for p in 0..kk {
                    for r in 0..c / m {
                        out.push((0..m).map(|t| j * c * kk + (r * m + t) * kk + p).collect());
                    }
                }
            }
        }
        ("ConvTranspose", _) => {
            let (c, mg) = (shape[0], shape[1]);
            let kk: usize = shape[2..].iter().product();
            let cg = c / group;
            for grp in 0..group {
                for i in 0..mg {
                    for p in 0..kk {
                        for r in 0..cg / m {
                            out.push((0..m).map(|t| (grp * cg + r * m + t) * mg * kk + i * kk + p).collect());
                        }
                    }
                }
            }
        }
        _ => panic!("{op}"),
    }
    out
}

#[test]
fn two_of_four_along_the_input_channel_axis() {
    let dir = tempfile::tempdir().unwrap();
    // (op, weight shape, transB, group): input-channel lengths 10, 8, 6 and 9 leave tails of 2, 0, 2, 1.
    let cases: [(&str, Vec<usize>, bool, usize); 5] = [
        ("Gemm", vec![3, 10], true, 1),
        ("Gemm", vec![8, 3], false, 1),
        ("MatMul", vec![6, 2], false, 1),
        ("Conv", vec![2, 9, 2, 2], false, 1),
        ("ConvTranspose", vec![10, 2, 3], false, 2),
    ];
    for (op, shape, trans_b, group) in cases {
        let n: usize = shape.iter().product();
        let w = weights(n, n as u64);
        let mut attrs = vec![attr_int("group", group as i64)];
        if op == "Gemm" {
            attrs = vec![attr_int("transB", trans_b as i64)];
        } else if op == "MatMul" {
            attrs.clear();
        }
        let m = model(
            vec![node(op, "t", &["x", "W"], &["y"], attrs)],
            vec![f32_tensor("W", &shape, &w)],
            vec![],
            vec![],
        );
        let input = dir.path().join(format!("{op}{trans_b}.onnx"));
        save(&m, &input);
        let out = input.with_extension("24.onnx");
        let report = renorm::prune_file(
            &input,
            &out,
            &PruneOptions { selector: Selector::Pattern { n: 2, m: 4 }, ..Default::default() },
        )
        .unwrap();
        let before: Vec<f64> = w.iter().map(|v| f64::from(*v)).collect();
        let after = values(&load(&out).graph.initializer[0], Path::new(""));
        let mut pruned = vec![false; n];
        let mut in_runs = 0;
        for run in runs(op, &shape, trans_b, group) {
            let vals: Vec<f64> = run.iter().map(|&i| before[i]).collect();
            for (&i, p) in run.iter().zip(reference_pruned(&vals, 2)) {
                pruned[i] = p;
            }
            in_runs += run.len();
        }
        assert_eq!(report.targets[0].dense_tail, n - in_runs, "{op}");
        assert_eq!(report.targets[0].pruned, in_runs / 2, "{op}");
        for (u, idx) in reference_units(op, &shape, trans_b, group).iter().enumerate() {
            let pick = |v: &[f64]| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
            let flags: Vec<bool> = idx.iter().map(|&i| pruned[i]).collect();
            assert_rescaled(&pick(&before), &flags, &pick(&after), "l2", 1e-6, u);
        }
        assert_eq!(report.method.pattern.as_deref(), Some("2:4"));
        assert_eq!(report.method.sparsity, None);
    }
}

#[test]
fn reruns_give_byte_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = network(dir.path(), false);
    for scope in [Scope::Global, Scope::Layer, Scope::Unit] {
        let opts =
            PruneOptions { selector: Selector::Sparsity { sparsity: 0.7, scope }, ..Default::default() };
        let a = dir.path().join("a.onnx");
        let b = dir.path().join("b.onnx");
        renorm::prune_file(&input, &a, &PruneOptions { force: true, ..opts.clone() }).unwrap();
        renorm::prune_file(&input, &b, &PruneOptions { force: true, ..opts }).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "{scope:?}");
    }
}

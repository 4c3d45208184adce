//! The streamed prune (`--renorm none|l1|l2`): payloads are read where they lie (the mapped model file,
//! or a mapped window of an external data file) and only one target's output is in memory at a time.
//!
//! 1. `scan`: every target's values are checked finite, and for global scope their magnitudes counted
//!    (`prune::cut`), which settles the global threshold in a second pass: a `Cut` per target.
//! 2. `Scanned::write`: the writer copies the model and, reaching a target's payload, has it made: the
//!    target's mask (its cut, or the layer/unit/N:M selection of that target alone), per-unit scales
//!    and the rescaled bytes (`prune::grid`).
//!
//! The output is byte-identical to the in-memory path (`load`, `select`, `apply`), which stats and
//! refit use; `tests/streamed.rs` compares the two.

use std::path::Path;
use std::sync::Mutex;

use super::{nothing_to_prune_error, target_report, PruneOptions, Scope, Selector};
use crate::error::{Error, Result};
use crate::onnx::model::{Model, Tensor};
use crate::onnx::payload::{self, View};
use crate::onnx::tensor::{decode_raw, FloatType};
use crate::onnx::write::Patch;
use crate::prune::cut::{self, Cut};
use crate::prune::grid::{Grid, Rule};
use crate::prune::renorm::{self, Renorm};
use crate::prune::select::{self, prune_count, Weights};
use crate::prune::targets::{Plan, Skipped, Target};
use crate::report::TargetReport;

/// A target to prune, with what the scan settled for it.
pub struct Work<'m> {
    pub target: Target,
    pub tensor: &'m Tensor,
    pub params: usize,
    /// Global scope: the target's cut (None when the collapse guard prunes it at layer scope).
    cut: Option<Cut>,
    /// How many weights its mask prunes (known before any is written, for the metadata).
    pub pruned: usize,
}

/// The targets to prune and those passed through (`--allow-nonfinite`).
pub struct Scanned<'m> {
    pub work: Vec<Work<'m>>,
    pub passed: Vec<Skipped>,
}

/// Checks every target's payload and values, and settles the global threshold.
pub fn scan<'m>(model: &'m Model, plan: &Plan, opts: &PruneOptions) -> Result<Scanned<'m>> {
    let global = matches!(opts.selector, Selector::Sparsity { scope: Scope::Global, .. });
    let mut hist: Option<Vec<u64>> = None;
    let (mut work, mut passed) = (Vec::new(), Vec::new());
    for t in &plan.targets {
        let tensor = super::tensor_of(model, t.source);
        let raw = payload::view(model, tensor, t.dtype)?;
        if let Some(i) = cut::first_non_finite(t.dtype, &raw) {
            let what = super::non_finite_what(t.dtype.value(&raw[i * t.dtype.size()..]), i);
            if !opts.allow_nonfinite {
                return Err(super::non_finite_error(model, &t.weight, &what));
            }
            passed.push(super::passed_non_finite(t, &what));
            continue;
        }
        if global {
            let h = cut::high_histogram(t.dtype, &raw);
            hist = Some(match hist {
                None => h,
                Some(acc) => cut::add(acc, h),
            });
        }
        let params = raw.len() / t.dtype.size();
        work.push(Work { target: t.clone(), tensor, params, cut: None, pruned: 0 });
    }
    super::checks::check_external(model)?;
    if work.is_empty() {
        return Err(nothing_to_prune_error(model, &[plan.skipped.as_slice(), &passed].concat()));
    }
    match opts.selector {
        Selector::Sparsity { sparsity, scope: Scope::Global } => {
            settle_global(model, &mut work, &hist.expect("counted"), sparsity)?
        }
        Selector::Sparsity { sparsity, scope: Scope::Layer } => {
            work.iter_mut().for_each(|w| w.pruned = prune_count(sparsity, w.params))
        }
        Selector::Sparsity { sparsity, scope: Scope::Unit } => work
            .iter_mut()
            .for_each(|w| w.pruned = w.target.layout.units * prune_count(sparsity, w.target.layout.fan_in())),
        Selector::Pattern { n, m } => work.iter_mut().for_each(|w| {
            let l = &w.target.layout;
            w.pruned = l.units * l.cols * (l.rows / m) * (m - n);
        }),
    }
    Ok(Scanned { work, passed })
}

/// One threshold over all targets in graph order (`select::global`), with the collapse guard.
fn settle_global(model: &Model, work: &mut [Work], hist: &[u64], s: f64) -> Result<()> {
    let total: usize = work.iter().map(|w| w.params).sum();
    let k = prune_count(s, total);
    if k == 0 || k >= total {
        let c = if k == 0 { Cut::KEEP_ALL } else { Cut::PRUNE_ALL };
        for w in work.iter_mut() {
            w.cut = Some(c);
            w.pruned = if k == 0 { 0 } else { w.params };
        }
    } else {
        let (bin, below) = cut::bin_of(hist, k as u64);
        let fines = work
            .iter()
            .map(|w| Ok(cut::fine(w.target.dtype, &payload::view(model, w.tensor, w.target.dtype)?, bin)))
            .collect::<Result<Vec<_>>>()?;
        let settled = cut::settle(k as u64, bin, below, &fines);
        for (i, w) in work.iter_mut().enumerate() {
            let (equal, keep) = (settled.equal[i], settled.keep_equal[i]);
            let c = if keep > 0 && keep < equal {
                let raw = payload::view(model, w.tensor, w.target.dtype)?;
                cut::cut(w.target.dtype, &raw, settled.threshold, equal, keep)
            } else {
                cut::cut(w.target.dtype, &[], settled.threshold, equal, keep)
            };
            w.cut = Some(c);
            w.pruned = (settled.below[i] + equal - keep) as usize;
        }
    }
    for w in work.iter_mut() {
        // The collapse guard: a target the threshold would zero entirely is pruned at layer scope.
        if w.params > 0 && w.pruned == w.params && prune_count(s, w.params) < w.params {
            w.cut = None;
            w.pruned = prune_count(s, w.params);
        }
    }
    Ok(())
}

/// What making one target's payload gave, for its report.
struct Made {
    scales: Vec<Option<f64>>,
    guarded: bool,
    dense_tail: usize,
}

impl Scanned<'_> {
    pub fn pruned(&self) -> usize {
        self.work.iter().map(|w| w.pruned).sum()
    }

    pub fn params(&self) -> usize {
        self.work.iter().map(|w| w.params).sum()
    }

    /// Writes the output, making each target's payload as the writer reaches it, and reports them.
    pub fn write(
        &self,
        model: &Model,
        output: &Path,
        meta: &str,
        opts: &PruneOptions,
    ) -> Result<Vec<TargetReport>> {
        let made: Mutex<Vec<Option<Made>>> = Mutex::new((0..self.work.len()).map(|_| None).collect());
        let produce = |i: usize, buf: &mut Vec<u8>| -> Result<()> {
            let m = self.make(model, &self.work[i], opts, buf)?;
            made.lock().expect("not poisoned")[i] = Some(m);
            Ok(())
        };
        let changed = self
            .work
            .iter()
            .enumerate()
            .map(|(i, w)| (w.tensor, w.target.dtype, Patch::Deferred(i)))
            .collect();
        super::write_output(model, output, changed, Vec::new(), meta, &produce)?;
        let made = made.into_inner().expect("not poisoned");
        Ok(self
            .work
            .iter()
            .zip(made)
            .map(|(w, m)| {
                let m = m.expect("every payload was made");
                target_report(&w.target, w.tensor, w.params, w.pruned, &m.scales, m.guarded, m.dense_tail)
            })
            .collect())
    }

    /// One target's pruned and rescaled payload.
    fn make(&self, model: &Model, w: &Work, opts: &PruneOptions, out: &mut Vec<u8>) -> Result<Made> {
        let ty = w.target.dtype;
        let raw = payload::view(model, w.tensor, ty)?;
        let layout = &w.target.layout;
        let (mut guarded, mut dense_tail) = (false, 0);
        let rule = match (opts.selector, w.cut) {
            (Selector::Sparsity { scope: Scope::Global, .. }, Some(c)) => Rule::Cut(c),
            (Selector::Sparsity { sparsity, scope: Scope::Global }, None) => {
                guarded = true;
                Rule::Cut(cut::layer(ty, &raw, prune_count(sparsity, w.params)))
            }
            (Selector::Sparsity { sparsity, scope: Scope::Layer }, _) => {
                Rule::Cut(cut::layer(ty, &raw, prune_count(sparsity, w.params)))
            }
            (Selector::Sparsity { sparsity, scope: Scope::Unit }, _) => {
                let values = decode_raw(ty, &raw);
                Rule::Mask(select::unit(&Weights { values: &values, layout }, sparsity).keep)
            }
            (Selector::Pattern { n, m }, _) => {
                let values = decode_raw(ty, &raw);
                let sel = select::n_of_m(&Weights { values: &values, layout }, n, m);
                dense_tail = sel.dense_tail;
                Rule::Mask(sel.keep)
            }
        };
        let (scales, pruned) = match Grid::of(layout, w.params) {
            Some(grid) => {
                let (scales, pruned) = grid.scales(ty, &raw, &rule, opts.renorm);
                // Every byte is written by `apply`; zeroing a reused buffer costs little.
                out.clear();
                out.resize(raw.len(), 0);
                grid.apply(ty, &raw, &rule, &scales, out);
                (scales, pruned)
            }
            None => by_units(ty, &raw, &rule, w, opts.renorm, out),
        };
        if pruned != w.pruned {
            return Err(Error::model(
                &model.path,
                format!(
                    "internal: weight '{}' pruned {pruned} weights, {} expected",
                    w.target.weight, w.pruned
                ),
            ));
        }
        Ok(Made { scales, guarded, dense_tail })
    }
}

/// For a layout without a grid: the in-memory computation on this one target.
fn by_units(
    ty: FloatType,
    raw: &View,
    rule: &Rule,
    w: &Work,
    method: Renorm,
    out: &mut Vec<u8>,
) -> (Vec<Option<f64>>, usize) {
    let values = decode_raw(ty, raw);
    let size = ty.size();
    let keep: Vec<bool> =
        raw.chunks_exact(size).enumerate().map(|(i, b)| rule.keeps(i, cut::key(ty, b))).collect();
    let scales = renorm::scales(&values, &keep, &w.target.layout, method);
    out.clear();
    out.extend_from_slice(raw);
    for (u, s) in scales.iter().enumerate() {
        for i in w.target.layout.unit_indices(u) {
            ty.rescale(&mut out[i * size..(i + 1) * size], keep[i], s.unwrap_or(1.0));
        }
    }
    let pruned = keep.iter().filter(|k| !**k).count();
    (scales, pruned)
}

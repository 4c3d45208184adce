//! The in-memory engine: every target's weights loaded, selected and renormalized at once (`load`,
//! `select`, `apply`), the plain implementation of design.md. Calibration (`--renorm stats|refit`)
//! runs on it, and the streamed engine is tested against it byte for byte.

use std::path::Path;

use rayon::prelude::*;

use super::options::{PruneOptions, Scope, Selector};
use super::{
    checks, metadata_value, non_finite_error, non_finite_what, nothing_deferred, nothing_to_prune_error,
    passed_non_finite, target_report, tensor_of, write_output,
};
use crate::calibrate;
use crate::error::{Error, Result};
use crate::onnx::atomic_file;
use crate::onnx::model::{Model, Tensor};
use crate::onnx::payload;
use crate::onnx::tensor::{decode_raw, FloatType};
use crate::onnx::write::Patch;
use crate::prune::renorm::{self, Renorm, ScaleStats};
use crate::prune::select::{self, Selection, Weights};
use crate::prune::targets::{Plan, Skipped, Target};
use crate::report::{OutputError, PruneReport, TargetReport, Totals};
use crate::validate;

/// A target with its weights loaded.
pub struct Loaded<'m> {
    pub target: Target,
    pub tensor: &'m Tensor,
    pub raw: Vec<u8>,
    pub values: Vec<f32>,
}

/// Reads one target's weights.
fn load_one<'m>(model: &'m Model, t: &Target) -> Result<Loaded<'m>> {
    let tensor = tensor_of(model, t.source);
    let raw = payload::read(model, tensor, t.dtype)?;
    let values = decode_raw(t.dtype, &raw);
    Ok(Loaded { target: t.clone(), tensor, raw, values })
}

/// "holds NaN at element 3" for weights that are not all finite.
fn non_finite(l: &Loaded) -> Option<String> {
    let i = l.values.iter().position(|v| !v.is_finite())?;
    Some(non_finite_what(l.values[i], i))
}

/// Reads every target's weights (in parallel) and refuses NaN or infinite values. Of several bad
/// targets, the first in graph order is named, whatever the thread count.
pub fn load<'m>(model: &'m Model, plan: &Plan) -> Result<Vec<Loaded<'m>>> {
    let all: Vec<Result<Loaded>> = plan
        .targets
        .par_iter()
        .map(|t| {
            let l = load_one(model, t)?;
            match non_finite(&l) {
                Some(what) => Err(non_finite_error(model, &t.weight, &what)),
                None => Ok(l),
            }
        })
        .collect();
    all.into_iter().collect()
}

/// Reads every target's weights (in parallel); a target holding NaN or infinite values is not
/// loaded but returned as skipped (`--allow-nonfinite`), its payload left as it is.
pub fn load_passing_non_finite<'m>(model: &'m Model, plan: &Plan) -> Result<(Vec<Loaded<'m>>, Vec<Skipped>)> {
    let all: Vec<Result<Loaded>> = plan.targets.par_iter().map(|t| load_one(model, t)).collect();
    let all: Vec<Loaded> = all.into_iter().collect::<Result<_>>()?;
    let (mut loaded, mut skipped) = (Vec::new(), Vec::new());
    for l in all {
        match non_finite(&l) {
            Some(what) => skipped.push(passed_non_finite(&l.target, &what)),
            None => loaded.push(l),
        }
    }
    Ok((loaded, skipped))
}

/// Masks for every target.
pub fn select(loaded: &[Loaded], selector: Selector) -> Vec<Selection> {
    let weights: Vec<Weights> =
        loaded.iter().map(|l| Weights { values: &l.values, layout: &l.target.layout }).collect();
    match selector {
        Selector::Sparsity { sparsity, scope: Scope::Global } => select::global(&weights, sparsity),
        Selector::Sparsity { sparsity, scope: Scope::Layer } => {
            weights.par_iter().map(|w| select::layer(w, sparsity)).collect()
        }
        Selector::Sparsity { sparsity, scope: Scope::Unit } => {
            weights.par_iter().map(|w| select::unit(w, sparsity)).collect()
        }
        Selector::Pattern { n, m } => weights.iter().map(|w| select::n_of_m(w, n, m)).collect(),
    }
}

/// Applies mask and per-unit scales to a target's raw payload in place; returns the scales.
pub fn apply(l: &mut Loaded, keep: &[bool], method: Renorm) -> Vec<Option<f64>> {
    let layout = &l.target.layout;
    let scales = renorm::scales(&l.values, keep, layout, method);
    let size = l.target.dtype.size();
    for (u, scale) in scales.iter().enumerate() {
        let s = scale.unwrap_or(1.0);
        for i in layout.unit_indices(u) {
            l.target.dtype.rescale(&mut l.raw[i * size..(i + 1) * size], keep[i], s);
        }
    }
    scales
}

/// The in-memory engine: every target loaded, selected and renormalized at once (and calibrated).
pub(super) fn prune(
    model: &Model,
    plan: &Plan,
    output: &Path,
    opts: &PruneOptions,
    calib: Option<&validate::Prepared>,
    report: &mut PruneReport,
) -> Result<()> {
    let (mut loaded, passed) = if opts.allow_nonfinite {
        load_passing_non_finite(model, plan)?
    } else {
        (load(model, plan)?, Vec::new())
    };
    // Targets' payloads are checked as they load; this checks every other external tensor.
    checks::check_external(model)?;
    if loaded.is_empty() {
        return Err(nothing_to_prune_error(model, &[plan.skipped.as_slice(), &passed].concat()));
    }
    if let (Some(s), true) = (passed.first(), calib.is_some()) {
        return Err(Error::model(
            &model.path,
            format!(
                "weight '{}' {}: --renorm {} runs the model, and every value past that weight would be \
                 non-finite; --allow-nonfinite works with --renorm none, l1 or l2",
                s.weight,
                s.reason.split(';').next().unwrap_or_default(),
                opts.renorm.name()
            ),
        ));
    }
    let mut selections = select(&loaded, opts.selector);
    let mut scales: Vec<Vec<Option<f64>>> =
        loaded.par_iter_mut().zip(&selections).map(|(l, sel)| apply(l, &sel.keep, opts.renorm)).collect();
    let (mut corrections, mut bias_changed, mut edits) = (Vec::new(), Vec::new(), Vec::new());
    if let Some(calib) = calib {
        let keeps: Vec<Vec<bool>> = selections.iter().map(|s| s.keep.clone()).collect();
        (corrections, bias_changed, edits) =
            calibrate::calibrate(model, &mut loaded, &keeps, calib, opts.renorm, &opts.refit)?;
        for ((sc, c), sel) in scales.iter_mut().zip(&mut corrections).zip(&mut selections) {
            sc.clone_from(&c.scales);
            if let Some(keep) = c.keep.take() {
                sel.keep = keep;
            }
        }
    }
    let mut targets: Vec<TargetReport> = loaded
        .iter()
        .zip(&selections)
        .zip(&scales)
        .map(|((l, sel), sc)| {
            let pruned = sel.keep.iter().filter(|k| !**k).count();
            target_report(&l.target, l.tensor, l.values.len(), pruned, sc, sel.guarded, sel.dense_tail)
        })
        .collect();
    for (t, c) in targets.iter_mut().zip(&corrections) {
        if c.fallback.is_none() {
            t.shift = ScaleStats::of(&c.shifts);
        }
        t.output_error = c.output_error.map(|(before, after)| OutputError { before, after });
        t.note = calibrate::note(c);
    }
    let params = targets.iter().map(|t| t.params).sum();
    let pruned = targets.iter().map(|t| t.pruned).sum();
    report.targets = targets;
    report.skipped = [plan.skipped.as_slice(), &passed].concat();
    report.totals = Totals::of(params, pruned);
    let changed: Vec<(&Tensor, FloatType, Patch)> = loaded
        .into_iter()
        .map(|l| (l.tensor, l.target.dtype, l.raw))
        .chain(bias_changed)
        .map(|(t, ty, raw)| (t, ty, Patch::Bytes(raw)))
        .collect();
    atomic_file::remove_stale(output);
    write_output(model, output, changed, edits, &metadata_value(report), &nothing_deferred)
}

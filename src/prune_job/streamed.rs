//! The streamed prune (`--renorm none|l1|l2`): payloads are read where they lie (the mapped model file,
//! or a mapped window of an external data file) and only a piece of one target's output (about 1 MiB)
//! is in memory at a time.
//!
//! 1. `scan`: how many weights each target prunes is settled before anything is written (the output's
//!    metadata records it). Global scope settles the threshold here, in one pass over the weights that
//!    also finds non-finite values (`prune::kth`, falling back to the histogram passes of `prune::cut`);
//!    a `Cut` per target. Other scopes know their counts from the shapes alone.
//! 2. `Scanned::write`: the writer copies the model and, reaching a target's payload, has it made and
//!    written piece by piece (`make`); what the next target needs before its first piece is settled
//!    meanwhile (`make::settle_ahead`).
//!
//! Layer, unit and N:M scopes check values finite as each target is made (`Check::AsMade`): one read of
//! the weights instead of two. Meeting a non-finite value there stops the write (its temporary file
//! vanishes) and `prune_streamed` starts again with `Check::First`, which checks every target before
//! writing, so errors and `--allow-nonfinite` name the first bad target in graph order, as before.
//!
//! The output is byte-identical to the in-memory path (`load`, `select`, `apply`), which stats and
//! refit use; `tests/streamed.rs` compares the two.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use super::make::{self, settle_ahead, Ahead, Made};
use super::output::ProduceError;
use super::{nothing_to_prune_error, target_report, PruneOptions, Scope, Selector};
use crate::error::{Error, Result};
use crate::onnx::model::{Model, Tensor};
use crate::onnx::payload;
use crate::onnx::tensor::FloatType;
use crate::onnx::write::Patch;
use crate::prune::cut::{self, Cut, NonFinite};
use crate::prune::kth;
use crate::prune::select::prune_count;
use crate::prune::targets::{Plan, Skipped, Target};
use crate::report::TargetReport;

/// A target to prune, with what the scan settled for it.
pub struct Work<'m> {
    pub target: Target,
    pub tensor: &'m Tensor,
    pub params: usize,
    /// Global scope: the target's cut. None: settled by `make::target` at layer scope (layer scope, or
    /// the collapse guard of global scope).
    pub(super) cut: Option<Cut>,
    /// Global scope: the collapse guard prunes this target at layer scope.
    guarded: bool,
    /// Its values are still to be checked finite (`Check::AsMade`).
    pub(super) unchecked: bool,
    /// How many weights its mask prunes (known before any is written, for the metadata).
    pub pruned: usize,
}

/// The targets to prune and those passed through (`--allow-nonfinite`).
pub struct Scanned<'m> {
    pub work: Vec<Work<'m>>,
    pub passed: Vec<Skipped>,
}

/// When the values of layer, unit and N:M targets are checked finite (global scope checks them in its
/// scan either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// As each target is made; a non-finite value stops the write (`Scanned::write` gives None).
    AsMade,
    /// Every target before anything is written.
    First,
}

/// Checks every target's payload and settles how many weights each prunes: for global scope the
/// threshold, in one pass over the weights that also finds non-finite values.
pub fn scan<'m>(model: &'m Model, plan: &Plan, opts: &PruneOptions, check: Check) -> Result<Scanned<'m>> {
    let global = matches!(opts.selector, Selector::Sparsity { scope: Scope::Global, .. });
    let unchecked = check == Check::AsMade && !global;
    let mut work = Vec::new();
    for t in &plan.targets {
        let tensor = super::tensor_of(model, t.source);
        let raw = payload::view(model, tensor, t.dtype)?;
        let params = raw.len() / t.dtype.size();
        work.push(Work {
            target: t.clone(),
            tensor,
            params,
            cut: None,
            guarded: false,
            unchecked,
            pruned: 0,
        });
    }
    let mut scanned = Scanned { work, passed: Vec::new() };
    let pruned = |w: &Work| match opts.selector {
        Selector::Sparsity { sparsity, scope: Scope::Global | Scope::Layer } => {
            prune_count(sparsity, w.params)
        }
        Selector::Sparsity { sparsity, scope: Scope::Unit } => {
            w.target.layout.units * prune_count(sparsity, w.target.layout.fan_in())
        }
        Selector::Pattern { n, m } => {
            let l = &w.target.layout;
            l.units * l.cols * (l.rows / m) * (m - n)
        }
    };
    match (opts.selector, check) {
        (Selector::Sparsity { sparsity, scope: Scope::Global }, _) => {
            scanned.settle_global(model, sparsity, opts.allow_nonfinite)?
        }
        (_, Check::AsMade) => scanned.work.iter_mut().for_each(|w| w.pruned = pruned(w)),
        (_, Check::First) => scanned.each_checked(model, opts.allow_nonfinite, |w, raw| {
            w.pruned = pruned(w);
            finite(w.target.dtype, raw)
        })?,
    }
    super::checks::check_external(model)?;
    if scanned.work.is_empty() {
        return Err(nothing_to_prune_error(model, &[plan.skipped.as_slice(), &scanned.passed].concat()));
    }
    Ok(scanned)
}

pub(super) fn finite(ty: FloatType, raw: &[u8]) -> std::result::Result<(), NonFinite> {
    cut::first_non_finite(ty, raw).map_or(Ok(()), |i| Err(NonFinite(i)))
}

impl<'m> Scanned<'m> {
    /// Runs `settle` on each target with its payload (targets in parallel); of targets with a
    /// non-finite value, refused, or passed through with `--allow-nonfinite`, the first in graph order
    /// is named.
    fn each_checked(
        &mut self,
        model: &'m Model,
        allow: bool,
        settle: impl Fn(&mut Work, &[u8]) -> std::result::Result<(), NonFinite> + Sync,
    ) -> Result<()> {
        let results = self
            .work
            .par_iter_mut()
            .map(|w| Ok(settle(w, &payload::view(model, w.tensor, w.target.dtype)?).err()))
            .collect::<Vec<Result<Option<NonFinite>>>>();
        let mut removed = 0;
        for (i, r) in results.into_iter().enumerate() {
            if let Some(NonFinite(at)) = r? {
                let w = &self.work[i - removed];
                let what = raw_value(w, &payload::view(model, w.tensor, w.target.dtype)?, at);
                self.pass_through(model, i - removed, &what, allow)?;
                removed += 1;
            }
        }
        Ok(())
    }

    /// Target `i` holds a non-finite value: an error, or (`--allow-nonfinite`) passed through.
    fn pass_through(&mut self, model: &Model, i: usize, what: &str, allow: bool) -> Result<()> {
        let w = self.work.remove(i);
        if !allow {
            return Err(super::non_finite_error(model, &w.target.weight, what));
        }
        self.passed.push(super::passed_non_finite(&w.target, what));
        Ok(())
    }

    /// One threshold over all targets in graph order (`select::global`), with the collapse guard.
    fn settle_global(&mut self, model: &'m Model, s: f64, allow: bool) -> Result<()> {
        let settled = loop {
            let total: usize = self.work.iter().map(|w| w.params).sum();
            let k = prune_count(s, total);
            if k == 0 || k >= total {
                self.each_checked(model, allow, |w, raw| finite(w.target.dtype, raw))?;
                let c = if k == 0 { Cut::KEEP_ALL } else { Cut::PRUNE_ALL };
                for w in self.work.iter_mut() {
                    w.cut = Some(c);
                    w.pruned = if k == 0 { 0 } else { w.params };
                }
                break None;
            }
            let (k, total) = (k as u64, total as u64);
            let samples = self
                .work
                .par_iter()
                .map(|w| {
                    let mut s = Vec::new();
                    kth::sample(
                        w.target.dtype,
                        &payload::view(model, w.tensor, w.target.dtype)?,
                        kth::stride(total),
                        &mut s,
                    );
                    Ok(s)
                })
                .collect::<Result<Vec<_>>>()?
                .concat();
            let (lo, hi) = kth::window(samples, k, total);
            let mut passes = Vec::new();
            let mut bad = None;
            for w in &self.work {
                let raw = payload::view(model, w.tensor, w.target.dtype)?;
                let pass = kth::pass(w.target.dtype, &raw, lo, hi, kth::inside_cap(total));
                if pass.max >= cut::INFINITE {
                    let at = cut::first_non_finite(w.target.dtype, &raw).expect("a non-finite value");
                    bad = Some((passes.len(), raw_value(w, &raw, at)));
                    break;
                }
                passes.push(pass);
            }
            if let Some((i, what)) = bad {
                // Refused, or passed through: then settled again without it.
                self.pass_through(model, i, &what, allow)?;
                continue;
            }
            break Some(match kth::settle(k, &passes) {
                Some(settled) => settled,
                None => self.settle_by_histograms(model, k)?,
            });
        };
        if let Some(settled) = settled {
            for (i, w) in self.work.iter_mut().enumerate() {
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
        for w in self.work.iter_mut() {
            // The collapse guard: a target the threshold would zero entirely is pruned at layer scope.
            if w.params > 0 && w.pruned == w.params && prune_count(s, w.params) < w.params {
                w.cut = None;
                w.guarded = true;
                w.pruned = prune_count(s, w.params);
            }
        }
        Ok(())
    }

    /// The global threshold by the histogram passes of `cut`, when `kth`'s window missed.
    fn settle_by_histograms(&self, model: &Model, k: u64) -> Result<cut::Settled> {
        let mut hist: Option<Vec<u64>> = None;
        for w in &self.work {
            let h = cut::high_histogram(w.target.dtype, &payload::view(model, w.tensor, w.target.dtype)?);
            hist = Some(match hist {
                None => h,
                Some(acc) => cut::add(acc, h),
            });
        }
        let (bin, below) = cut::bin_of(&hist.expect("a target"), k);
        let fines = self
            .work
            .iter()
            .map(|w| Ok(cut::fine(w.target.dtype, &payload::view(model, w.tensor, w.target.dtype)?, bin)))
            .collect::<Result<Vec<_>>>()?;
        Ok(cut::settle(k, bin, below, &fines))
    }
}

/// "holds NaN at element 7" for the non-finite value at flat index `at`.
fn raw_value(w: &Work, raw: &[u8], at: usize) -> String {
    let size = w.target.dtype.size();
    super::non_finite_what(w.target.dtype.value(&raw[at * size..]), at)
}

impl Scanned<'_> {
    pub fn pruned(&self) -> usize {
        self.work.iter().map(|w| w.pruned).sum()
    }

    pub fn params(&self) -> usize {
        self.work.iter().map(|w| w.params).sum()
    }

    /// Writes the output, making each target's payload as the writer reaches it, and reports them.
    /// None: a value still to be checked was not finite, and nothing was written.
    pub fn write(
        &self,
        model: &Model,
        output: &Path,
        meta: &str,
        opts: &PruneOptions,
    ) -> Result<Option<Vec<TargetReport>>> {
        let made: Mutex<Vec<Option<Made>>> = Mutex::new((0..self.work.len()).map(|_| None).collect());
        let non_finite = AtomicBool::new(false);
        let ahead: Vec<Ahead> = (0..self.work.len()).map(|_| Ahead::default()).collect();
        let produce = |i: usize, w: &mut (dyn Write + Send)| -> std::result::Result<(), ProduceError> {
            // What the next target needs before its first piece is settled while this one is made
            // and written, on the cores the writer leaves idle, not while the writer waits for it.
            let (result, ()) = rayon::join(
                || make::target(model, &self.work[i], &ahead[i], opts, w),
                || {
                    if let (Some(next), Some(a)) = (self.work.get(i + 1), ahead.get(i + 1)) {
                        settle_ahead(model, next, a, opts);
                    }
                },
            );
            match result? {
                Some(m) => made.lock().expect("not poisoned")[i] = Some(m),
                None => {
                    non_finite.store(true, Ordering::Relaxed);
                    return Err(Error::Failed("a non-finite value stopped the write".into()).into());
                }
            }
            Ok(())
        };
        let changed = self
            .work
            .iter()
            .enumerate()
            .map(|(i, w)| (w.tensor, w.target.dtype, Patch::Deferred(i)))
            .collect();
        let written = super::write_output(model, output, changed, Vec::new(), meta, &produce);
        if non_finite.into_inner() {
            return Ok(None);
        }
        written?;
        let made = made.into_inner().expect("not poisoned");
        Ok(Some(
            self.work
                .iter()
                .zip(made)
                .map(|(w, m)| {
                    let m = m.expect("every payload was made");
                    target_report(&w.target, w.tensor, w.params, w.pruned, &m.scales, w.guarded, m.dense_tail)
                })
                .collect(),
        ))
    }
}

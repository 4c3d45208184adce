//! The f32 fast path of `grid` for the commonest case: units that are one contiguous run each (Gemm
//! transB=1, Conv, a 1-D MatMul) under a magnitude cut or an N:M pattern. A group of eight units is
//! selected, summed, scaled and written while it is in cache, so each weight is read from memory once.
//! Sums stay in flat order per unit, so the scales are bit-identical to `Grid::scales`; kept tests are
//! masks, never branches, since whether a weight is kept is a coin toss for the CPU. On x86-64, N:4 of a
//! whole group of eight units with consecutive fan-in rows goes to `quads`.

use rayon::prelude::*;
use wide::{f64x2, CmpGe};

use super::cut::{Cut, INFINITE};
use super::n_of_m::n_of_m;
use super::renorm::{kept_part, magnitude, unit_scale, Renorm};

/// Units summed in lockstep: their independent f64 sums hide the latency of each add.
pub(super) const LOCKSTEP: usize = 8;
const PAIRS: usize = LOCKSTEP / 2;

/// The least key kept in the unit at flat elements `[start, start + len)`, when one bound holds for
/// the whole unit (every unit but the one, at most, holding the cut's index bound).
fn least_kept(c: &Cut, start: usize, len: usize) -> Option<u32> {
    if c.equal_before <= start {
        Some(c.threshold.saturating_add(1))
    } else if c.equal_before >= start + len {
        Some(c.threshold)
    } else {
        None
    }
}

/// A thread's buffers for `one_group`, kept from group to group and call to call: a fresh 128 KiB mask
/// per group would be zeroed and page-faulted in each time.
#[derive(Default)]
struct Scratch {
    mask: Vec<u64>,
    keys: Vec<u32>,
    /// Kept bits of `quads`.
    bits: Vec<u16>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// Bytes of a group of units that `runs` makes together: a piece it makes starts at a multiple.
pub fn group(run: usize) -> usize {
    LOCKSTEP * run * 4
}

/// Which weights of each run are kept.
pub enum RunRule {
    /// A magnitude cut (global and layer scope).
    Cut(Cut),
    /// N:M along the fan-in rows of each unit's run of `rows * cols` elements (`m <= 16`): of every `m`
    /// consecutive rows at one kernel position, the `n` largest; a tail of fewer rows is kept.
    NofM { n: usize, m: usize, rows: usize, cols: usize },
}

/// Sums, scales and rescaled bytes of units of `run` f32 elements each, laid end to end in `raw`:
/// `out` gets the bytes `Grid::apply` writes at `raw[at..at + out.len()]` (`at` and the length whole
/// groups of `group(run)` bytes, or the length up to the end); returns those units' scales and how
/// many of their weights were pruned.
pub fn runs(raw: &[u8], run: usize, rule: &RunRule, method: Renorm, at: usize, out: &mut [u8]) -> Runs {
    let src = &raw[at..at + out.len()];
    if run == 0 || src.is_empty() {
        let scales = vec![None; if run == 0 { 0 } else { src.len() / (4 * run) }];
        return Runs { scales, pruned: 0, non_finite: false };
    }
    let group = group(run);
    debug_assert!(
        at.is_multiple_of(group) && (out.len().is_multiple_of(group) || at + out.len() == raw.len())
    );
    let parts: Vec<Runs> = src
        .par_chunks(group)
        .zip(out.par_chunks_mut(group))
        .enumerate()
        .map(|(g, (src, dst))| {
            let first = (at / group + g) * LOCKSTEP * run;
            SCRATCH.with_borrow_mut(|scratch| one_group(rule, method, src, dst, first, run, scratch))
        })
        .collect();
    let pruned = parts.iter().map(|p| p.pruned).sum();
    let non_finite = parts.iter().any(|p| p.non_finite);
    Runs { scales: parts.into_iter().flat_map(|p| p.scales).collect(), pruned, non_finite }
}

/// `runs` of one group of up to `LOCKSTEP` units, the first at flat element `first`.
#[allow(clippy::too_many_arguments)]
fn one_group(
    rule: &RunRule,
    method: Renorm,
    src: &[u8],
    dst: &mut [u8],
    first: usize,
    run: usize,
    scratch: &mut Scratch,
) -> Runs {
    let l2 = method == Renorm::L2;
    let units = src.len() / (run * 4);
    #[cfg(target_arch = "x86_64")]
    if let RunRule::NofM { n, m: 4, cols: 1, .. } = *rule {
        if units == LOCKSTEP && n < 4 && n > 0 {
            return super::quads::group(src, dst, run, 4 - n, method, &mut scratch.bits);
        }
    }
    let (keep, non_finite) = Keep::of(rule, src, first, run, &mut scratch.mask, &mut scratch.keys);
    let sums: Vec<(f64, f64, usize)> = match (&keep, units == LOCKSTEP) {
        (Keep::Bounds(least), true) => {
            let least: [f64x2; PAIRS] =
                std::array::from_fn(|p| f64x2::from([bound(least[2 * p]), bound(least[2 * p + 1])]));
            lockstep_sums(src, run, l2, |p, _, v| v.cmp_ge(least[p])).to_vec()
        }
        (Keep::Masks(mask), true) => {
            let rows: [&[u64]; LOCKSTEP] = std::array::from_fn(|q| &mask[q * run..(q + 1) * run]);
            lockstep_sums(src, run, l2, |p, j, _| {
                f64x2::from([f64::from_bits(rows[2 * p][j]), f64::from_bits(rows[2 * p + 1][j])])
            })
            .to_vec()
        }
        _ => (0..units)
            .map(|q| unit_sums(&src[q * run * 4..(q + 1) * run * 4], l2, |j, k| keep.keeps(q, j, k, run)))
            .collect(),
    };
    let scales: Vec<Option<f64>> = sums.iter().map(|s| unit_scale(s.0, s.1, method)).collect();
    for (q, ((s, e), o)) in
        scales.iter().zip(src.chunks_exact(run * 4)).zip(dst.chunks_exact_mut(run * 4)).enumerate()
    {
        let s = s.unwrap_or(1.0) as f32;
        match &keep {
            Keep::Bounds(least) => rescale_run(e, o, s, |_, k| k >= least[q]),
            Keep::Masks(mask) => rescale_masked(e, o, s, &mask[q * run..(q + 1) * run]),
        }
    }
    Runs { scales, pruned: sums.iter().map(|s| s.2).sum(), non_finite }
}

/// What `runs` made of some units.
#[derive(Debug, Clone, PartialEq)]
pub struct Runs {
    pub scales: Vec<Option<f64>>,
    /// Weights pruned.
    pub pruned: usize,
    /// An N:M selection met a NaN or infinity (a cut is settled on values already checked).
    pub non_finite: bool,
}

/// What a group of units keeps: per unit, the least key kept; or per element, all ones (kept) or zero.
enum Keep<'a> {
    Bounds([u32; LOCKSTEP]),
    Masks(&'a [u64]),
}

impl<'a> Keep<'a> {
    /// The group's keep rule, and whether a key it read was a NaN or infinity (cuts read none).
    /// `mask` and `keys` are buffers reused from group to group: every mask element is written.
    fn of(
        rule: &RunRule,
        src: &[u8],
        first: usize,
        run: usize,
        mask: &'a mut Vec<u64>,
        keys: &mut Vec<u32>,
    ) -> (Keep<'a>, bool) {
        let units = src.len() / (run * 4);
        let mut least = [0u32; LOCKSTEP];
        if let RunRule::Cut(c) = rule {
            let bounds: Vec<Option<u32>> = (0..units).map(|q| least_kept(c, first + q * run, run)).collect();
            if bounds.iter().all(Option::is_some) {
                least[..units].copy_from_slice(&bounds.into_iter().flatten().collect::<Vec<_>>());
                return (Keep::Bounds(least), false);
            }
        }
        mask.resize(units * run, 0);
        keys.resize(run, 0);
        // Bit 31 of a key plus 2^23 is set from `INFINITE` up: one add and one or per key.
        let mut beyond = 0u32;
        for (q, unit) in src.chunks_exact(run * 4).enumerate() {
            for (k, b) in keys.iter_mut().zip(unit.as_chunks::<4>().0) {
                *k = u32::from_le_bytes(*b) & 0x7fff_ffff;
                beyond |= k.wrapping_add(0x0080_0000);
            }
            let mask = &mut mask[q * run..(q + 1) * run];
            match *rule {
                RunRule::Cut(c) => {
                    for (j, (m, k)) in mask.iter_mut().zip(keys.iter()).enumerate() {
                        *m = 0u64.wrapping_sub(u64::from(c.keeps(first + q * run + j, *k)));
                    }
                }
                RunRule::NofM { n, m, rows, cols } => n_of_m(keys, n, m, rows, cols, mask),
            }
        }
        (Keep::Masks(&mask[..units * run]), beyond >> 31 != 0)
    }

    #[inline]
    fn keeps(&self, q: usize, j: usize, key: u32, run: usize) -> bool {
        match self {
            Keep::Bounds(least) => key >= least[q],
            Keep::Masks(mask) => mask[q * run + j] != 0,
        }
    }
}

/// One unit's (sum of magnitudes over all, over kept, pruned count), in flat order.
fn unit_sums(unit: &[u8], l2: bool, keeps: impl Fn(usize, u32) -> bool) -> (f64, f64, usize) {
    let method = if l2 { Renorm::L2 } else { Renorm::L1 };
    let mut sum = (0f64, 0f64, 0usize);
    for (j, e) in unit.as_chunks::<4>().0.iter().enumerate() {
        let v = f32::from_le_bytes(*e);
        let kept = keeps(j, v.to_bits() & 0x7fff_ffff);
        let m = magnitude(v, method);
        sum.0 += m;
        sum.1 += kept_part(m, kept);
        sum.2 += usize::from(!kept);
    }
    sum
}

/// key >= least  <=>  |v| >= the float with bits `least` (NaN, so never, past +inf).
fn bound(least: u32) -> f64 {
    if least > INFINITE {
        f64::NAN
    } else {
        f64::from(f32::from_bits(least))
    }
}

/// (sum of magnitudes over all, over kept, pruned count) of `LOCKSTEP` consecutive runs, each in flat
/// order. Two units share each f64x2: the same adds in the same order as one at a time, and the kept
/// test is a mask from `keep(pair, j, |v|)`, not a branch (whether a weight is kept is a coin toss).
// `j` indexes eight runs at once, which no single iterator gives.
#[allow(clippy::needless_range_loop)]
fn lockstep_sums(
    src: &[u8],
    run: usize,
    l2: bool,
    keep: impl Fn(usize, usize, f64x2) -> f64x2,
) -> [(f64, f64, usize); LOCKSTEP] {
    let rows: [&[[u8; 4]]; LOCKSTEP] =
        std::array::from_fn(|q| src[q * run * 4..(q + 1) * run * 4].as_chunks().0);
    let (mut full, mut kept, mut count) = ([f64x2::ZERO; PAIRS], [f64x2::ZERO; PAIRS], f64x2::ZERO);
    for j in 0..run {
        for p in 0..PAIRS {
            let a = f32::from_le_bytes(rows[2 * p][j]);
            let b = f32::from_le_bytes(rows[2 * p + 1][j]);
            let v = f64x2::from([f64::from(a), f64::from(b)]).abs();
            // magnitude(): |w| or w * w (|w|² == w² exactly).
            let m = if l2 { v * v } else { v };
            let keep = keep(p, j, v);
            full[p] += m;
            kept[p] += m & keep;
            count += f64x2::ONE & keep;
        }
    }
    let kept_total: f64 = count.to_array().iter().sum();
    let pruned = LOCKSTEP * run - kept_total as usize;
    let (full, kept) = (full.map(|x| x.to_array()).concat(), kept.map(|x| x.to_array()).concat());
    std::array::from_fn(|q| (full[q], kept[q], if q == 0 { pruned } else { 0 }))
}

/// One unit's rescaled elements: kept ones times `s` (`v * 1.0 == v`), the others +0.0.
#[inline]
pub(crate) fn rescale_run(src: &[u8], dst: &mut [u8], s: f32, keeps: impl Fn(usize, u32) -> bool) {
    let (src, dst) = (src.as_chunks::<4>().0, dst.as_chunks_mut::<4>().0);
    for (j, (o, e)) in dst.iter_mut().zip(src).enumerate() {
        *o = rescaled(*e, s, |k| keeps(j, k));
    }
}

/// One f32 element rescaled: `v * s` when `keeps` its key, else +0.0.
#[inline]
pub(crate) fn rescaled(e: [u8; 4], s: f32, keeps: impl Fn(u32) -> bool) -> [u8; 4] {
    let v = f32::from_le_bytes(e);
    std::hint::select_unpredictable(keeps(v.to_bits() & 0x7fff_ffff), v * s, 0.0).to_le_bytes()
}

/// `rescale_run` by a mask of all ones (kept) or zeros: `v * s` with its bits masked, no branch.
fn rescale_masked(src: &[u8], dst: &mut [u8], s: f32, mask: &[u64]) {
    let (src, dst) = (src.as_chunks::<4>().0, dst.as_chunks_mut::<4>().0);
    for ((o, e), m) in dst.iter_mut().zip(src).zip(mask) {
        let w = (f32::from_le_bytes(*e) * s).to_bits() & (*m as u32);
        *o = w.to_le_bytes();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::tensor::FloatType;
    use crate::prune::grid::{Grid, Rule};
    use crate::prune::select::{self, Weights};
    use crate::prune::targets::Layout;

    /// Values with ties and both signs of zero.
    fn values(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 37 % 23) as f32 - 11.0) / 3.0 * if i % 5 == 0 { -1.0 } else { 1.0 }).collect()
    }

    fn raw(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// The generic grid path (`scales` then `apply`), which `tests/streamed.rs` ties to the reference.
    fn generic(
        units: usize,
        run: usize,
        raw: &[u8],
        rule: &Rule,
        method: Renorm,
    ) -> (Vec<Option<f64>>, usize, Vec<u8>) {
        let g = Grid { blocks: 1, rows: 1, units, run };
        let (scales, pruned) = g.scales(FloatType::F32, raw, rule, method);
        let mut out = vec![0u8; raw.len()];
        g.apply(FloatType::F32, raw, rule, &scales, 0, &mut out);
        (scales, pruned, out)
    }

    #[test]
    fn n_of_m_runs_find_non_finite_values() {
        let (units, run) = (9, 8);
        for (bad, want) in [
            (f32::MAX, false),
            (-f32::MAX, false),
            (f32::INFINITY, true),
            (f32::NEG_INFINITY, true),
            (f32::NAN, true),
        ] {
            // In the first group of eight units (`quads` on x86-64) and in the partial one after.
            for at in [0, run * 3 + 5, run * 8 + 7] {
                let mut v = values(units * run);
                v[at] = bad;
                let mut out = vec![0u8; v.len() * 4];
                let rule = RunRule::NofM { n: 2, m: 4, rows: run, cols: 1 };
                let r = runs(&raw(&v), run, &rule, Renorm::L2, 0, &mut out);
                assert_eq!(r.non_finite, want, "{bad} at {at}");
            }
        }
    }

    #[test]
    fn n_of_4_runs_match_the_generic_path() {
        // Whole groups of eight units (the vector path of `quads` on x86-64) and a partial one, runs
        // with and without a tail of rows, ties everywhere (few distinct magnitudes, both zeros),
        // subnormals and the largest floats.
        let special = [0.0, -0.0, 1e-45, -3e-39, f32::MAX, -f32::MAX, 1.0, -1.0];
        for run in [1, 3, 4, 5, 8, 12, 13, 64] {
            for units in [8, 16, 19] {
                let mut x = (run * 31 + units) as u32;
                let v: Vec<f32> = (0..units * run)
                    .map(|_| {
                        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                        match (x >> 16) % 8 {
                            0 => special[(x >> 8) as usize % special.len()],
                            r => (r as f32 - 4.0) / 2.0,
                        }
                    })
                    .collect();
                let r = raw(&v);
                for n in 1..4 {
                    for method in [Renorm::None, Renorm::L1, Renorm::L2] {
                        let rule = RunRule::NofM { n, m: 4, rows: run, cols: 1 };
                        let mut out = vec![0u8; r.len()];
                        let got = runs(&r, run, &rule, method, 0, &mut out);
                        assert!(!got.non_finite);
                        let layout = Layout {
                            units,
                            inner_units: units,
                            inner_stride: run,
                            outer_stride: 0,
                            rows: run,
                            row_stride: 1,
                            cols: 1,
                        };
                        let sel = select::n_of_m(&Weights { values: &v, layout: &layout }, n, 4);
                        let want = generic(units, run, &r, &Rule::Mask(sel.keep), method);
                        assert_eq!((got.scales, got.pruned, out), want, "{units}x{run} {n}:4 {method:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn runs_under_a_cut_match_the_generic_path() {
        // 8-unit groups and a partial one; cuts with the index bound before, inside and after units.
        let (units, run) = (19, 13);
        let v = values(units * run);
        let r = raw(&v);
        let thresholds = [0, 1.0f32.to_bits(), (2.0f32 / 3.0).to_bits(), 3.0f32.to_bits(), u32::MAX];
        for threshold in thresholds {
            for equal_before in [0, 5, run * 3 + 4, run * 8, units * run, usize::MAX] {
                let cut = Cut { threshold, equal_before };
                for method in [Renorm::None, Renorm::L1, Renorm::L2] {
                    let mut out = vec![0u8; r.len()];
                    let Runs { scales, pruned, .. } = runs(&r, run, &RunRule::Cut(cut), method, 0, &mut out);
                    let want = generic(units, run, &r, &Rule::Cut(cut), method);
                    assert_eq!((scales, pruned, out), want, "{cut:?} {method:?}");
                }
            }
        }
    }

    #[test]
    fn runs_under_n_of_m_match_select() {
        // Gemm-like runs (cols 1) and Conv-like ones (3 kernel positions), with a tail of rows.
        for (units, rows, cols) in [(17, 10, 1), (9, 7, 3)] {
            let run = rows * cols;
            let layout = Layout {
                units,
                inner_units: units,
                inner_stride: run,
                outer_stride: 0,
                rows,
                row_stride: cols,
                cols,
            };
            let v = values(units * run);
            let r = raw(&v);
            for (n, m) in [(2, 4), (1, 3), (1, 2), (3, 8), (6, 7)] {
                let sel = select::n_of_m(&Weights { values: &v, layout: &layout }, n, m);
                for method in [Renorm::L1, Renorm::L2] {
                    let mut out = vec![0u8; r.len()];
                    let rule = RunRule::NofM { n, m, rows, cols };
                    let Runs { scales, pruned, .. } = runs(&r, run, &rule, method, 0, &mut out);
                    let want = generic(units, run, &r, &Rule::Mask(sel.keep.clone()), method);
                    assert_eq!((scales, pruned, out), want, "{units}x{rows}x{cols} {n}:{m} {method:?}");
                }
            }
        }
    }
}

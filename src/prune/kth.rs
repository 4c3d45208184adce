//! The k-th smallest |w| key over raw payloads in one pass over the weights (design.md §3 at model-zoo
//! scale). A sample of the keys guesses a narrow window that holds the k-th key; one exact pass counts
//! the keys below the window, keeps those inside it and finds each payload's largest key (so non-finite
//! values are found on the way). A window that misses, or holds too many keys, settles nothing: the
//! caller falls back to the histogram passes of `cut`, which always settle.
//!
//! The caller maps one payload at a time (`sample`, then `pass`), so memory stays bounded by the
//! largest payload, not the model.

use rayon::prelude::*;

use crate::onnx::tensor::FloatType;
use crate::prune::cut::{key, Settled};

/// Elements per parallel task of the exact pass.
const TASK: usize = 1 << 20;
/// Elements per parallel task of `sample` (rounded up to whole strides).
const SAMPLE_TASK: usize = 1 << 20;
/// Keys kept inside the window, at most: beyond, the window settles nothing (many equal keys).
const INSIDE_MIN_CAP: u64 = 1 << 20;

/// Every `stride`-th key of a payload (from the middle of the first stride), appended to `out`. Its
/// reads are the first touch of a mapped payload's pages, whose faults cost more than the reads: the
/// payload's parts are sampled in parallel.
pub fn sample(ty: FloatType, raw: &[u8], stride: u64, out: &mut Vec<u32>) {
    let size = ty.size();
    let n = raw.len() / size;
    let stride = stride.max(1) as usize;
    let per_task = SAMPLE_TASK.div_ceil(stride) * stride;
    let parts: Vec<Vec<u32>> = (0..n.div_ceil(per_task))
        .into_par_iter()
        .map(|t| {
            let (start, end) = (t * per_task + stride / 2, ((t + 1) * per_task).min(n));
            (start..end).step_by(stride).map(|i| key(ty, &raw[i * size..(i + 1) * size])).collect()
        })
        .collect();
    parts.iter().for_each(|p| out.extend_from_slice(p));
}

/// The stride that samples keys out of `total`. More samples narrow the window (its share of the keys
/// falls as one over their square root) but each costs a cache miss: about 1.5 n^(2/3) balances the
/// two (320 000 keys of 100 M, 38 000 of 4 M).
pub fn stride(total: u64) -> u64 {
    let samples = (1.5 * (total as f64).powf(2.0 / 3.0)).max(1024.0) as u64;
    total.div_ceil(samples).max(1)
}

/// The window `[lo, hi]` of keys that holds the `k`-th smallest of `total` keys (`1 <= k <= total`) with
/// high probability, from a sample of them: the sample's quantiles three standard deviations either
/// side (a systematic sample of weights varies less than a random one: rows of every scale are in it).
pub fn window(mut samples: Vec<u32>, k: u64, total: u64) -> (u32, u32) {
    let s = samples.len();
    if s == 0 {
        return (0, u32::MAX);
    }
    let p = k as f64 / total as f64;
    let rank = p * s as f64;
    let margin = 3.0 * (s as f64 * p * (1.0 - p)).sqrt() + 16.0;
    let lo_rank = (rank - margin).floor();
    let hi_rank = (rank + margin).ceil();
    let lo = if lo_rank < 0.0 { 0 } else { *samples.select_nth_unstable(lo_rank as usize).1 };
    let hi = if hi_rank >= s as f64 { u32::MAX } else { *samples.select_nth_unstable(hi_rank as usize).1 };
    (lo, hi.max(lo))
}

/// One payload's exact pass over a window.
#[derive(Debug, Clone, Default)]
pub struct Pass {
    /// Keys below the window.
    pub below: u64,
    /// Keys inside it, in no order (incomplete when `overflow`).
    pub inside: Vec<u32>,
    pub overflow: bool,
    /// The largest key: `>= 0x7f80_0000` for a payload with a NaN or infinity.
    pub max: u32,
}

/// The most keys the window may hold over `total` keys.
pub fn inside_cap(total: u64) -> u64 {
    (total / 32).max(INSIDE_MIN_CAP)
}

/// Counts, collects and checks one payload's keys against the window `[lo, hi]`, keeping at most
/// `cap` keys inside it.
pub fn pass(ty: FloatType, raw: &[u8], lo: u32, hi: u32, cap: u64) -> Pass {
    let size = ty.size();
    let n = raw.len() / size;
    let parts: Vec<Pass> = raw
        .par_chunks(TASK * size)
        .map(|c| {
            let task_cap = (cap as u128 * (c.len() / size) as u128 / n.max(1) as u128) as usize + 1024;
            match ty {
                FloatType::F32 => pass_f32(c, lo, hi, task_cap),
                _ => pass_any(ty, c, lo, hi, task_cap),
            }
        })
        .collect();
    let mut all = Pass::default();
    for p in parts {
        all.below += p.below;
        all.max = all.max.max(p.max);
        all.overflow |= p.overflow;
        if !all.overflow {
            all.inside.extend_from_slice(&p.inside);
        }
    }
    if all.overflow || all.inside.len() as u64 > cap {
        all.overflow = true;
        all.inside = Vec::new();
    }
    all
}

/// The f32 pass, 16 keys at a time: counts and maxima without branches (keys are below 2^31, so
/// signed compares, which every x86-64 vector unit has), and a look inside only for the blocks with a
/// key in the window.
fn pass_f32(raw: &[u8], lo: u32, hi: u32, cap: usize) -> Pass {
    let (lo, hi) = (lo.min(i32::MAX as u32) as i32, hi.min(i32::MAX as u32) as i32);
    let mut p = Pass::default();
    let (blocks, rest) = raw.as_chunks::<64>();
    let (mut below, mut max) = ([0u32; 16], [0i32; 16]);
    for b in blocks {
        let words = b.as_chunks::<4>().0;
        let mut any = false;
        for i in 0..16 {
            let k = i32::from_le_bytes(words[i]) & i32::MAX;
            below[i] += u32::from(k < lo);
            max[i] = max[i].max(k);
            any |= (k >= lo) & (k <= hi);
        }
        if any && !p.overflow {
            // Every key is stored, and the length moves past those inside: no branch per key.
            let len = p.inside.len();
            p.inside.resize(len + 16, 0);
            let slots = &mut p.inside[len..];
            let mut kept = 0;
            for w in words {
                let k = i32::from_le_bytes(*w) & i32::MAX;
                slots[kept & 15] = k as u32;
                kept += usize::from((k >= lo) & (k <= hi));
            }
            p.inside.truncate(len + kept);
            p.overflow = p.inside.len() > cap;
        }
    }
    p.below = below.iter().map(|b| u64::from(*b)).sum();
    p.max = max.iter().copied().max().unwrap_or(0) as u32;
    let tail = pass_any(FloatType::F32, rest, lo as u32, hi as u32, cap);
    p.below += tail.below;
    p.max = p.max.max(tail.max);
    p.inside.extend_from_slice(&tail.inside);
    p.overflow |= p.inside.len() > cap;
    p
}

fn pass_any(ty: FloatType, raw: &[u8], lo: u32, hi: u32, cap: usize) -> Pass {
    let mut p = Pass::default();
    for b in raw.chunks_exact(ty.size()) {
        let k = key(ty, b);
        p.below += u64::from(k < lo);
        p.max = p.max.max(k);
        if k.wrapping_sub(lo) <= hi - lo && !p.overflow {
            p.inside.push(k);
            p.overflow = p.inside.len() > cap;
        }
    }
    p
}

/// Where the `k`-th smallest key falls, from every payload's pass (in index order), or None when the
/// window missed it or overflowed.
pub fn settle(k: u64, passes: &[Pass]) -> Option<Settled> {
    if passes.iter().any(|p| p.overflow) {
        return None;
    }
    let below: u64 = passes.iter().map(|p| p.below).sum();
    let inside: u64 = passes.iter().map(|p| p.inside.len() as u64).sum();
    if k <= below || k > below + inside {
        return None;
    }
    let mut all: Vec<u32> = passes.iter().flat_map(|p| p.inside.iter().copied()).collect();
    let threshold = *all.select_nth_unstable((k - below - 1) as usize).1;
    let (below, equal): (Vec<u64>, Vec<u64>) = passes
        .iter()
        .map(|p| {
            let lower = p.inside.iter().filter(|x| **x < threshold).count() as u64;
            let equal = p.inside.iter().filter(|x| **x == threshold).count() as u64;
            (p.below + lower, equal)
        })
        .unzip();
    Some(Settled::split(k, threshold, below, equal))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prune::cut::tests::{raw, weights};
    use crate::prune::cut::{self, Cut};
    use crate::prune::select::smallest;

    /// The keep mask over all payloads of a settlement (as `streamed` turns it into cuts).
    fn mask(s: &Settled, raws: &[Vec<u8>]) -> Vec<bool> {
        raws.iter()
            .enumerate()
            .flat_map(|(i, r)| {
                let c: Cut = cut::cut(FloatType::F32, r, s.threshold, s.equal[i], s.keep_equal[i]);
                r.chunks_exact(4).enumerate().map(move |(j, b)| c.keeps(j, cut::key(FloatType::F32, b)))
            })
            .collect()
    }

    fn passes(raws: &[Vec<u8>], lo: u32, hi: u32, cap: u64) -> Vec<Pass> {
        raws.iter().map(|r| pass(FloatType::F32, r, lo, hi, cap)).collect()
    }

    #[test]
    fn a_sampled_window_settles_what_smallest_prunes() {
        // Sizes off the 16-key blocks, ties from few to none, 1 to 3 payloads.
        for (sizes, distinct) in [(vec![5000], 1_000_000), (vec![3001, 17, 4096], 40), (vec![70_001], 3)] {
            let parts: Vec<Vec<f32>> = sizes
                .iter()
                .enumerate()
                .map(|(i, n)| weights(*n, i as u64 + u64::from(distinct), distinct))
                .collect();
            let raws: Vec<Vec<u8>> = parts.iter().map(|p| raw(p)).collect();
            let keys: Vec<u32> = parts.iter().flatten().map(|x| x.abs().to_bits()).collect();
            let total = keys.len() as u64;
            for k in [1, total / 10, total / 2, total * 9 / 10, total - 1] {
                let mut samples = Vec::new();
                raws.iter().for_each(|r| sample(FloatType::F32, r, stride(total), &mut samples));
                let (lo, hi) = window(samples, k, total);
                let s =
                    settle(k, &passes(&raws, lo, hi, inside_cap(total))).expect("the window holds the key");
                assert_eq!(
                    mask(&s, &raws),
                    smallest(&keys, k as usize),
                    "{sizes:?} distinct {distinct} k {k}"
                );
            }
        }
    }

    #[test]
    fn a_window_that_misses_or_overflows_settles_nothing() {
        let raws = vec![raw(&weights(10_000, 3, 1_000_000)), raw(&weights(333, 4, 1_000_000))];
        let mut keys: Vec<u32> =
            raws.iter().flat_map(|r| r.chunks_exact(4).map(|b| cut::key(FloatType::F32, b))).collect();
        keys.sort_unstable();
        let k = 5000u64;
        let kth = keys[k as usize - 1];
        // The exact window settles; one above the k-th key, or below it, or holding too many, does not.
        assert!(settle(k, &passes(&raws, kth, kth, 1 << 20)).is_some());
        assert!(settle(k, &passes(&raws, kth + 1, u32::MAX >> 1, 1 << 20)).is_none());
        assert!(settle(k, &passes(&raws, 0, kth - 1, 1 << 20)).is_none());
        assert!(settle(k, &passes(&raws, 0, u32::MAX >> 1, 100)).is_none());
    }

    #[test]
    fn the_pass_finds_non_finite_values() {
        let mut v = weights(1000, 5, 100);
        assert!(pass(FloatType::F32, &raw(&v), 0, 10, 1 << 20).max < cut::INFINITE);
        v[999] = f32::NEG_INFINITY; // in the tail after the 16-key blocks
        assert!(pass(FloatType::F32, &raw(&v), 0, 10, 1 << 20).max >= cut::INFINITE);
        v[999] = 0.0;
        v[17] = f32::NAN;
        assert!(pass(FloatType::F32, &raw(&v), 0, 10, 1 << 20).max >= cut::INFINITE);
    }
}

//! Magnitude thresholds in O(n) time and without copying the weights (design.md §3 at model-zoo scale).
//! A `Cut` per target keeps exactly what `select::smallest` keeps over the same keys (ties: the lower
//! index is kept). The k-th smallest key is found in one pass by `kth` when its sampled window holds it;
//! otherwise here, with two histogram passes: the first over the high 16 bits of each 31-bit key, the
//! second over the low 15 bits inside the one high bin that holds the k-th key.

use rayon::prelude::*;

use crate::onnx::tensor::FloatType;
use crate::prune::kth;

/// Keys are |w| bits: 31 significant bits, split 16 high + 15 low.
const LOW_BITS: u32 = 15;
const HIGH_BINS: usize = 1 << 16;
/// Elements per parallel chunk.
const CHUNK: usize = 1 << 20;
/// The key of +inf; NaN keys are above it.
pub const INFINITE: u32 = 0x7f80_0000;

/// Which weights of one target are kept: keys above `threshold`, and keys equal to it at a flat index
/// below `equal_before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    pub threshold: u32,
    pub equal_before: usize,
}

impl Cut {
    pub const KEEP_ALL: Cut = Cut { threshold: 0, equal_before: usize::MAX };
    pub const PRUNE_ALL: Cut = Cut { threshold: u32::MAX, equal_before: 0 };

    /// Branch-free: on weights, whether a key lies above the threshold is a coin toss.
    #[inline]
    pub fn keeps(&self, index: usize, key: u32) -> bool {
        (key > self.threshold) | ((key == self.threshold) & (index < self.equal_before))
    }
}

/// |w| as sortable bits (as `select` orders weights), read straight from a raw element.
#[inline]
pub fn key(ty: FloatType, b: &[u8]) -> u32 {
    match ty {
        FloatType::F32 => u32::from_le_bytes(b[..4].try_into().expect("4 bytes")) & 0x7fff_ffff,
        _ => ty.value(b).abs().to_bits(),
    }
}

/// Calls `f` on every key of a chunk of raw elements (specialized per type so the loop vectorizes).
#[inline]
fn each_key(ty: FloatType, raw: &[u8], mut f: impl FnMut(u32)) {
    match ty {
        FloatType::F32 => {
            for b in raw.chunks_exact(4) {
                f(u32::from_le_bytes(b.try_into().expect("4 bytes")) & 0x7fff_ffff)
            }
        }
        _ => raw.chunks_exact(ty.size()).for_each(|b| f(key(ty, b))),
    }
}

/// The first element that is NaN or infinite, if any.
pub fn first_non_finite(ty: FloatType, raw: &[u8]) -> Option<usize> {
    let size = ty.size();
    let chunk_bad = |c: &[u8]| {
        let mut max = 0u32;
        each_key(ty, c, |k| max = max.max(k));
        max >= INFINITE
    };
    let bad = raw.par_chunks(CHUNK * size).position_first(chunk_bad)?;
    let start = bad * CHUNK;
    let chunk = &raw[start * size..];
    chunk.chunks_exact(size).position(|b| key(ty, b) >= INFINITE).map(|i| start + i)
}

/// Counts of keys per high bin (first pass).
pub fn high_histogram(ty: FloatType, raw: &[u8]) -> Vec<u64> {
    let size = ty.size();
    raw.par_chunks(CHUNK * size)
        .map(|c| {
            let mut h = vec![0u32; HIGH_BINS];
            each_key(ty, c, |k| h[(k >> LOW_BITS) as u16 as usize] += 1);
            h
        })
        .fold(
            || vec![0u64; HIGH_BINS],
            |mut acc, h| {
                acc.iter_mut().zip(h).for_each(|(a, b)| *a += u64::from(b));
                acc
            },
        )
        .reduce(|| vec![0u64; HIGH_BINS], add)
}

/// Adds histogram `b` to `a`.
pub fn add(mut a: Vec<u64>, b: Vec<u64>) -> Vec<u64> {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
    a
}

/// The high bin holding the `k`-th smallest key (1-based, `1 <= k <= total`), and how many keys lie
/// in lower bins.
pub fn bin_of(hist: &[u64], k: u64) -> (u32, u64) {
    let mut below = 0u64;
    for (bin, &count) in hist.iter().enumerate() {
        if below + count >= k {
            return (bin as u32, below);
        }
        below += count;
    }
    unreachable!("k is at most the number of keys")
}

/// One target's keys around the threshold (second pass): how many fall in lower high bins, and the
/// low bits of those in `bin`, as sorted (low bits, count) runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fine {
    pub below: u64,
    pub runs: Vec<(u16, u64)>,
}

pub fn fine(ty: FloatType, raw: &[u8], bin: u32) -> Fine {
    let size = ty.size();
    let (below, low_hist) = raw
        .par_chunks(CHUNK * size)
        .map(|c| {
            let (mut below, mut low) = (0u64, vec![0u32; 1 << LOW_BITS]);
            each_key(ty, c, |k| {
                let high = k >> LOW_BITS;
                below += u64::from(high < bin);
                if high == bin {
                    low[(k & ((1 << LOW_BITS) - 1)) as usize] += 1;
                }
            });
            (below, low)
        })
        .fold(
            || (0u64, vec![0u64; 1 << LOW_BITS]),
            |(b, mut acc), (below, low)| {
                acc.iter_mut().zip(low).for_each(|(a, n)| *a += u64::from(n));
                (b + below, acc)
            },
        )
        .reduce(|| (0, vec![0u64; 1 << LOW_BITS]), |(a, x), (b, y)| (a + b, add(x, y)));
    let runs = low_hist.into_iter().enumerate().filter(|(_, n)| *n > 0).map(|(v, n)| (v as u16, n)).collect();
    Fine { below, runs }
}

/// Where the k-th smallest key falls over several targets (in index order), from their `Fine`s in
/// `bin`, and what each target keeps of the keys equal to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    pub threshold: u32,
    /// Per target: keys below the threshold, keys equal to it, and how many of those equal keys are kept
    /// (the first ones in index order over all targets).
    pub below: Vec<u64>,
    pub equal: Vec<u64>,
    pub keep_equal: Vec<u64>,
}

/// Settles the threshold that prunes the `k` smallest keys (`k >= 1`), `below_bin` of them in lower
/// high bins than `bin`.
pub fn settle(k: u64, bin: u32, below_bin: u64, fines: &[Fine]) -> Settled {
    let mut low_hist = vec![0u64; 1 << LOW_BITS];
    for f in fines {
        for &(v, n) in &f.runs {
            low_hist[v as usize] += n;
        }
    }
    let (low, _) = bin_of(&low_hist, k - below_bin);
    let threshold = (bin << LOW_BITS) | low;
    let (below, equal) = fines
        .iter()
        .map(|f| {
            let lower: u64 = f.runs.iter().filter(|(v, _)| u32::from(*v) < low).map(|(_, n)| n).sum();
            let eq = f.runs.iter().find(|(v, _)| u32::from(*v) == low).map_or(0, |(_, n)| *n);
            (f.below + lower, eq)
        })
        .unzip();
    Settled::split(k, threshold, below, equal)
}

impl Settled {
    /// The settlement of `threshold`, the `k`-th smallest key, given each target's keys below it and
    /// equal to it: the equal keys first in index order over all targets are kept, the `k`-th and
    /// those after it are pruned.
    pub fn split(k: u64, threshold: u32, below: Vec<u64>, equal: Vec<u64>) -> Settled {
        let equal_total: u64 = equal.iter().sum();
        let mut keep_left = equal_total - (k - below.iter().sum::<u64>());
        let keep_equal = equal
            .iter()
            .map(|&eq| {
                let keep = eq.min(keep_left);
                keep_left -= keep;
                keep
            })
            .collect();
        Settled { threshold, below, equal, keep_equal }
    }
}

/// The cut of a target whose first `keep_equal` of `equal` keys equal to `threshold` are kept: the flat
/// index bound is found by a scan only when the target keeps some of them but not all.
pub fn cut(ty: FloatType, raw: &[u8], threshold: u32, equal: u64, keep_equal: u64) -> Cut {
    let equal_before = if keep_equal == 0 {
        0
    } else if keep_equal >= equal {
        usize::MAX
    } else {
        // The index of the first equal key that is not kept.
        raw.chunks_exact(ty.size())
            .enumerate()
            .filter(|(_, b)| key(ty, b) == threshold)
            .nth(keep_equal as usize)
            .map_or(usize::MAX, |(i, _)| i)
    };
    Cut { threshold, equal_before }
}

/// A payload holds a NaN or an infinity, the first at this flat index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonFinite(pub usize);

/// The cut that prunes the `k` smallest keys of one payload (layer scope; `select::layer` in place),
/// checking on the way that every value is finite: one pass when `kth`'s window holds the k-th key,
/// the two histogram passes otherwise.
pub fn layer(ty: FloatType, raw: &[u8], k: usize) -> Result<Cut, NonFinite> {
    let n = raw.len() / ty.size();
    if k == 0 || k >= n {
        if let Some(i) = first_non_finite(ty, raw) {
            return Err(NonFinite(i));
        }
        return Ok(if k == 0 { Cut::KEEP_ALL } else { Cut::PRUNE_ALL });
    }
    let mut samples = Vec::new();
    kth::sample(ty, raw, kth::stride(n as u64), &mut samples);
    let (lo, hi) = kth::window(samples, k as u64, n as u64);
    let pass = kth::pass(ty, raw, lo, hi, kth::inside_cap(n as u64));
    if pass.max >= INFINITE {
        return Err(NonFinite(first_non_finite(ty, raw).expect("a non-finite value")));
    }
    let s = kth::settle(k as u64, &[pass]).unwrap_or_else(|| {
        let (bin, below_bin) = bin_of(&high_histogram(ty, raw), k as u64);
        settle(k as u64, bin, below_bin, &[fine(ty, raw, bin)])
    });
    Ok(cut(ty, raw, s.threshold, s.equal[0], s.keep_equal[0]))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::prune::select::smallest;

    /// Deterministic pseudo-random weights with many exact ties and both signs of zero.
    pub(crate) fn weights(n: usize, seed: u64, distinct: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let v = (x % u64::from(distinct)) as f32 / 7.0 - 3.0;
                if x & 0x100 == 0 {
                    -v
                } else {
                    v
                }
            })
            .collect()
    }

    pub(crate) fn raw(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn mask(c: &Cut, r: &[u8]) -> Vec<bool> {
        r.chunks_exact(4).enumerate().map(|(i, b)| c.keeps(i, key(FloatType::F32, b))).collect()
    }

    #[test]
    fn layer_cut_keeps_what_smallest_keeps() {
        for (n, distinct) in [(1, 5), (7, 2), (100, 3), (1000, 50), (5000, 1_000_000), (3000, 1)] {
            let v = weights(n, n as u64 + u64::from(distinct), distinct);
            let keys: Vec<u32> = v.iter().map(|x| x.abs().to_bits()).collect();
            let r = raw(&v);
            for k in [0, 1, n / 3, n / 2, n.saturating_sub(1), n] {
                assert_eq!(
                    mask(&layer(FloatType::F32, &r, k).unwrap(), &r),
                    smallest(&keys, k),
                    "n {n} k {k}"
                );
            }
        }
    }

    #[test]
    fn global_cuts_split_ties_in_index_order_across_targets() {
        let parts: Vec<Vec<f32>> = (0..4).map(|i| weights(300 + 50 * i, i as u64, 4)).collect();
        let all: Vec<u32> = parts.iter().flatten().map(|x| x.abs().to_bits()).collect();
        let raws: Vec<Vec<u8>> = parts.iter().map(|p| raw(p)).collect();
        for k in [1, 100, 700, 1299, all.len() - 1] {
            let hist = raws.iter().map(|r| high_histogram(FloatType::F32, r)).reduce(add).unwrap();
            let (bin, below) = bin_of(&hist, k as u64);
            let fines: Vec<Fine> = raws.iter().map(|r| fine(FloatType::F32, r, bin)).collect();
            let s = settle(k as u64, bin, below, &fines);
            let got: Vec<bool> = raws
                .iter()
                .enumerate()
                .flat_map(|(i, r)| mask(&cut(FloatType::F32, r, s.threshold, s.equal[i], s.keep_equal[i]), r))
                .collect();
            assert_eq!(got, smallest(&all, k), "k {k}");
        }
    }

    #[test]
    fn non_finite_is_found_at_its_index() {
        let mut v = weights(3 * CHUNK + 5, 9, 1000);
        assert_eq!(first_non_finite(FloatType::F32, &raw(&v)), None);
        v[2 * CHUNK + 3] = f32::NAN;
        v[3 * CHUNK + 1] = f32::INFINITY;
        assert_eq!(first_non_finite(FloatType::F32, &raw(&v)), Some(2 * CHUNK + 3));
    }
}

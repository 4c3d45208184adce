//! Masks (design.md §3): which weights are kept. `true` = kept.
//!
//! Order of pruning: smallest |w| first (zeros first), and among equal |w| the higher index first, so
//! the lower index is kept, as in N:M runs. For `global`, the index runs over all targets in graph order.
//! The count is `round(s·n)` with ties to even, as Python's `round` in torch.nn.utils.prune.

use rayon::prelude::*;

use crate::prune::targets::Layout;

/// The weights of one target as the selection sees them.
pub struct Weights<'a> {
    pub values: &'a [f32],
    pub layout: &'a Layout,
}

/// What a mask selection produced for one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub keep: Vec<bool>,
    /// Global scope only: the global threshold would have zeroed this target, so it was pruned at layer
    /// scope instead (the collapse guard).
    pub guarded: bool,
    /// N:M only: weights left dense because their run along the input axis was shorter than M.
    pub dense_tail: usize,
}

impl Selection {
    fn plain(keep: Vec<bool>) -> Self {
        Selection { keep, guarded: false, dense_tail: 0 }
    }
}

/// How many of `n` weights sparsity `s` prunes: round(s·n), ties to even.
pub fn prune_count(s: f64, n: usize) -> usize {
    ((s * n as f64).round_ties_even() as usize).min(n)
}

/// Sortable magnitude key: |w| as bits (non-negative floats order like their bits).
fn key(v: f32) -> u32 {
    v.abs().to_bits()
}

/// Keep-mask over `keys` (magnitude bits) pruning the `k` smallest; ties prune the higher index first.
/// O(n): a selection finds the k-th smallest key, not a sort.
pub fn smallest(keys: &[u32], k: usize) -> Vec<bool> {
    let n = keys.len();
    if k == 0 {
        return vec![true; n];
    }
    if k >= n {
        return vec![false; n];
    }
    let mut scratch = keys.to_vec();
    let (_, &mut threshold, _) = scratch.select_nth_unstable(k - 1);
    drop(scratch);
    let below = keys.iter().filter(|&&x| x < threshold).count();
    let mut ties = k - below;
    let mut keep: Vec<bool> = keys.iter().map(|&x| x > threshold).collect();
    for i in (0..n).rev() {
        if keys[i] == threshold {
            if ties > 0 {
                ties -= 1;
            } else {
                keep[i] = true;
            }
        }
    }
    keep
}

/// `layer` scope: round(s·n) smallest of each target.
pub fn layer(w: &Weights, s: f64) -> Selection {
    let keys: Vec<u32> = w.values.iter().map(|v| key(*v)).collect();
    Selection::plain(smallest(&keys, prune_count(s, keys.len())))
}

/// `unit` scope: round(s·fan-in) smallest of each output unit.
pub fn unit(w: &Weights, s: f64) -> Selection {
    let mut keep = vec![true; w.values.len()];
    let k = prune_count(s, w.layout.fan_in());
    for u in 0..w.layout.units {
        let idx: Vec<usize> = w.layout.unit_indices(u).collect();
        let keys: Vec<u32> = idx.iter().map(|&i| key(w.values[i])).collect();
        for (&i, kept) in idx.iter().zip(smallest(&keys, k)) {
            keep[i] = kept;
        }
    }
    Selection::plain(keep)
}

/// `global` scope: one threshold over all targets together, with the collapse guard.
pub fn global(all: &[Weights], s: f64) -> Vec<Selection> {
    let keys: Vec<u32> = all.iter().flat_map(|w| w.values.iter().map(|v| key(*v))).collect();
    let mut mask = smallest(&keys, prune_count(s, keys.len()));
    drop(keys);
    let mut out = Vec::with_capacity(all.len());
    for w in all {
        let rest = mask.split_off(w.values.len());
        let keep = std::mem::replace(&mut mask, rest);
        let n = keep.len();
        let collapsed = n > 0 && !keep.iter().any(|k| *k);
        if collapsed && prune_count(s, n) < n {
            out.push(Selection { guarded: true, ..layer(w, s) });
        } else {
            out.push(Selection::plain(keep));
        }
    }
    out
}

/// `N:M` pattern: along the input-channel axis (layout rows) of each unit and kernel position, every
/// full run of `m` weights keeps its `n` largest |w| (ties: lower index kept); a shorter trailing run
/// stays dense.
pub fn n_of_m(w: &Weights, n: usize, m: usize) -> Selection {
    let l = w.layout;
    let mut keep = vec![true; w.values.len()];
    let full_runs = l.rows / m;
    let tail_rows = l.rows % m;
    let k = m - n;
    let pruned_per_unit: Vec<Vec<usize>> = (0..l.units)
        .into_par_iter()
        .map(|u| {
            let start = l.unit_start(u);
            let mut pruned = Vec::with_capacity(l.cols * full_runs * k);
            let (mut idx, mut keys) = (vec![0usize; m], vec![0u32; m]);
            for c in 0..l.cols {
                for run in 0..full_runs {
                    for r in 0..m {
                        idx[r] = start + (run * m + r) * l.row_stride + c;
                        keys[r] = key(w.values[idx[r]]);
                    }
                    if m <= 16 {
                        // Short runs: each element's place counted directly, without allocating.
                        let (mut out, mut count) = ([0usize; 16], 0);
                        for (r, i) in idx.iter().enumerate() {
                            out[count] = *i;
                            count += usize::from(place_in_group(&keys, r) < k);
                        }
                        pruned.extend_from_slice(&out[..count]);
                    } else {
                        pruned.extend(
                            smallest(&keys, k)
                                .into_iter()
                                .zip(&idx)
                                .filter(|(kept, _)| !kept)
                                .map(|(_, i)| *i),
                        );
                    }
                }
            }
            pruned
        })
        .collect();
    for i in pruned_per_unit.into_iter().flatten() {
        keep[i] = false;
    }
    Selection { keep, guarded: false, dense_tail: l.units * l.cols * tail_rows }
}

/// Where key `r` of an N:M group falls in pruning order (smallest first; ties, the higher index
/// first): it is pruned when this is below `m - n`, as `smallest` decides. Counted without branches,
/// since which weights of a group go is a coin toss for the CPU.
#[inline]
pub fn place_in_group(keys: &[u32], r: usize) -> usize {
    keys.iter().enumerate().map(|(q, &k)| usize::from((k < keys[r]) | ((k == keys[r]) & (q > r)))).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_half_to_even_like_torch() {
        assert_eq!(prune_count(0.5, 5), 2); // 2.5 -> 2
        assert_eq!(prune_count(0.5, 7), 4); // 3.5 -> 4
        assert_eq!(prune_count(1.0, 7), 7);
    }

    #[test]
    fn ties_prune_higher_index_first() {
        let keep = smallest(&[5, 5, 5, 1], 2);
        assert_eq!(keep, vec![true, true, false, false]);
    }
}

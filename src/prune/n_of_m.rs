//! N:M keep masks for the f32 kernel (`grid_f32`): of every group of `m` fan-in rows at one kernel
//! position, the `n` largest |w| are kept, as `select::n_of_m` decides, as masks of all ones (kept) or
//! zero, made without a branch per weight. 2:4 takes a sorting network, four groups per vector.

use wide::{i32x4, CmpGt, CmpLt};

use super::select::place_in_group;

/// Clears the mask of the `m - n` smallest keys of every group of `m` rows at one kernel position
/// (ties: the higher index goes first), as `select::n_of_m` decides. Branch-free: which weights of a
/// group go is a coin toss for the CPU.
pub(crate) fn n_of_m(keys: &[u32], n: usize, m: usize, rows: usize, cols: usize, mask: &mut [u64]) {
    // A tail of fewer than m rows is kept.
    mask[rows / m * m * cols..rows * cols].fill(u64::MAX);
    match m {
        2 => n_of_m_const::<2>(keys, n, rows, cols, mask),
        4 => n_of_m_const::<4>(keys, n, rows, cols, mask),
        8 => n_of_m_const::<8>(keys, n, rows, cols, mask),
        16 => n_of_m_const::<16>(keys, n, rows, cols, mask),
        _ => {
            for c in 0..cols {
                for g in 0..rows / m {
                    let at = |t: usize| (g * m + t) * cols + c;
                    let group: [u32; 16] = std::array::from_fn(|t| if t < m { keys[at(t)] } else { 0 });
                    for r in 0..m {
                        mask[at(r)] = 0u64.wrapping_sub(u64::from(place_in_group(&group[..m], r) >= m - n));
                    }
                }
            }
        }
    }
}

/// `n_of_m` for a group size known when compiling, so each group's compares unroll.
fn n_of_m_const<const M: usize>(keys: &[u32], n: usize, rows: usize, cols: usize, mask: &mut [u64]) {
    let k = M - n;
    let masks = |group: [u32; M]| -> [u64; M] {
        if M == 4 && (1..4).contains(&k) {
            let four = masks_of_4(group[..4].try_into().expect("4 keys"), k);
            std::array::from_fn(|r| four[r])
        } else {
            std::array::from_fn(|r| 0u64.wrapping_sub(u64::from(place_in_group(&group, r) >= k)))
        }
    };
    if cols == 1 {
        // Groups of M consecutive elements (Gemm, MatMul): whole arrays, no index arithmetic.
        let whole = rows / M * M;
        let mut done = 0;
        if M == 4 && (1..4).contains(&k) {
            // Four groups at a time, one per vector lane.
            done = whole / 16 * 16;
            let quads = keys[..done].as_chunks::<16>().0.iter().zip(mask[..done].as_chunks_mut::<16>().0);
            for (g, out) in quads {
                *out = masks_of_4x4(g, k);
            }
        }
        let groups = keys[done..whole].as_chunks::<M>().0.iter();
        for (g, out) in groups.zip(mask[done..whole].as_chunks_mut::<M>().0) {
            *out = masks(*g);
        }
        return;
    }
    for c in 0..cols {
        for g in 0..rows / M {
            let base = g * M * cols + c;
            let group = masks(std::array::from_fn(|t| keys[base + t * cols]));
            for (r, m) in group.into_iter().enumerate() {
                mask[base + r * cols] = m;
            }
        }
    }
}

/// `masks_of_4` of four consecutive groups of four keys, the groups in the lanes of 32-bit vectors.
fn masks_of_4x4(keys: &[u32; 16], k: usize) -> [u64; 16] {
    let v: [i32x4; 4] = std::array::from_fn(|r| {
        i32x4::from([keys[r] as i32, keys[4 + r] as i32, keys[8 + r] as i32, keys[12 + r] as i32])
    });
    let kept: [[i32; 4]; 4] = kept_of_4(v, k).map(|m| m.to_array());
    std::array::from_fn(|i| i64::from(kept[i % 4][i / 4]) as u64)
}

/// Of four groups of four keys, one group per lane (`v[r]`: the key of place r), all ones where the
/// key is kept, `k` (1 to 3) of each group pruned: place `r` goes before place `q < r` when its key is
/// smaller, or equal (the higher index first), so six compares give every place's count of keys going
/// before it, and a place with `k` or more before it is kept. Keys are below 2^31: signed compares,
/// which SSE2 has, order them.
#[inline]
pub(crate) fn kept_of_4(v: [i32x4; 4], k: usize) -> [i32x4; 4] {
    // first(q, r), q < r: all ones (-1) where key q goes before key r (strictly smaller).
    let first = |q: usize, r: usize| v[q].cmp_lt(v[r]);
    let (f01, f02, f03, f12, f13, f23) =
        (first(0, 1), first(0, 2), first(0, 3), first(1, 2), first(1, 3), first(2, 3));
    let one = i32x4::splat(1);
    // Keys going before place r: q < r when smaller (-mask is 1), q > r when r's key is not smaller
    // (1 + mask is 1).
    let before = [
        one + f01 + one + f02 + one + f03,
        i32x4::ZERO - f01 + one + f12 + one + f13,
        i32x4::ZERO - f02 - f12 + one + f23,
        i32x4::ZERO - f03 - f13 - f23,
    ];
    before.map(|b| b.cmp_gt(i32x4::splat(k as i32 - 1)))
}

/// The masks of a group of four keys of which `k` (1 to 3) are pruned (2:4, the commonest pattern):
/// the keys made distinct by their place (ties: the higher index goes first, as `place_in_group`
/// decides), a sorting network finds the k-th smallest, and every key up to it is pruned. Seven
/// min/max and four compares instead of sixteen.
fn masks_of_4(g: [u32; 4], k: usize) -> [u64; 4] {
    let key: [u64; 4] = std::array::from_fn(|r| (u64::from(g[r]) << 2) | (3 - r) as u64);
    let (a, b) = (key[0].min(key[1]), key[0].max(key[1]));
    let (c, d) = (key[2].min(key[3]), key[2].max(key[3]));
    let last = match k {
        1 => a.min(c),
        2 => a.max(c).min(b.min(d)),
        _ => b.min(d).max(a.max(c)),
    };
    std::array::from_fn(|r| 0u64.wrapping_sub(u64::from(key[r] > last)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_of_4x4_are_masks_of_4_of_each_group() {
        for code in 0..65536u32 {
            let g: [u32; 16] =
                std::array::from_fn(|i| (code.wrapping_mul(2_654_435_761) >> i) & 3 | ((i as u32 % 2) << 30));
            for k in 1..4 {
                let want: Vec<u64> = g.as_chunks::<4>().0.iter().flat_map(|q| masks_of_4(*q, k)).collect();
                assert_eq!(masks_of_4x4(&g, k).to_vec(), want, "{g:?} k={k}");
            }
        }
    }

    #[test]
    fn masks_of_4_prune_what_place_in_group_prunes() {
        // Every group of four keys from {0, 1, 2, 3} (all ties included), every k.
        for code in 0..256u32 {
            let g: [u32; 4] = std::array::from_fn(|r| (code >> (2 * r)) & 3);
            for k in 1..4 {
                let want: [u64; 4] =
                    std::array::from_fn(|r| 0u64.wrapping_sub(u64::from(place_in_group(&g, r) >= k)));
                assert_eq!(masks_of_4(g, k), want, "{g:?} k={k}");
            }
        }
    }
}

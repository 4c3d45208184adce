//! N:4 (1:4, 2:4, 3:4) of a whole group of eight units whose fan-in rows are consecutive (Gemm
//! transB=1, MatMul of one kernel position), with the units in vector lanes: four units' next four
//! weights, loaded and transposed, give four vectors of one row across four units. One sorting network
//! then selects four groups at once, and the same vectors feed the units' f64 sums, so a weight is read
//! once to select and sum it and once more to rescale it, and the only buffer is one bit per weight.
//! SSE2, which every x86-64 has; elsewhere `grid_f32` takes its generic N:M path, which these tests
//! compare against.

use std::arch::x86_64::*;

use super::grid_f32::{Runs, LOCKSTEP as UNITS};
use super::n_of_m::kept_of_4;
use super::renorm::{unit_scale, Renorm};

// The group `grid_f32` hands over is two quads of units.
const _: () = assert!(UNITS == 8);

/// Sums, scales and rescaled bytes of eight units of `run` f32 weights each, end to end in `src`, of
/// which every group of four consecutive weights keeps all but its `k` smallest |w| (ties: the later
/// one goes first), a tail of fewer than four kept. The results are bit-identical to `grid_f32`'s
/// generic path. `bits` is scratch.
pub fn group(src: &[u8], dst: &mut [u8], run: usize, k: usize, method: Renorm, bits: &mut Vec<u16>) -> Runs {
    assert!(src.len() == UNITS * run * 4 && dst.len() == src.len() && (1..4).contains(&k));
    let blocks = run / 4;
    bits.resize(2 * blocks, 0);
    // SAFETY: SSE2 is part of every x86-64.
    let (full, kept) = unsafe { sums(src, run, k, method == Renorm::L2, &mut bits[..]) };
    let scales: Vec<Option<f64>> = (0..UNITS).map(|q| unit_scale(full[q], kept[q], method)).collect();
    // Magnitudes are >= 0 and an f32 squared is below 2^256: a sum is finite exactly when every
    // weight it adds is.
    let non_finite = full.iter().any(|s| !s.is_finite());
    let factors: [f32; UNITS] = std::array::from_fn(|q| scales[q].unwrap_or(1.0) as f32);
    // SAFETY: as above.
    unsafe { rescale(src, dst, run, &factors, bits) };
    Runs { scales, pruned: UNITS * blocks * k, non_finite }
}

/// Rows `4b..4b + 4` of units `quad*4..quad*4 + 4`, transposed: vector `r` holds row `4b + r` of the
/// four units, one per lane.
#[inline]
#[target_feature(enable = "sse2")]
fn rows_of(src: &[u8], run: usize, quad: usize, b: usize) -> [__m128i; 4] {
    let unit = |u: usize| {
        let at = ((quad * 4 + u) * run + 4 * b) * 4;
        let bytes: &[u8; 16] = src[at..at + 16].try_into().expect("16 bytes");
        // SAFETY: `bytes` is 16 readable bytes; the load needs no alignment.
        unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
    };
    let (a, b, c, d) = (unit(0), unit(1), unit(2), unit(3));
    let (ab_lo, cd_lo) = (_mm_unpacklo_epi32(a, b), _mm_unpacklo_epi32(c, d));
    let (ab_hi, cd_hi) = (_mm_unpackhi_epi32(a, b), _mm_unpackhi_epi32(c, d));
    [
        _mm_unpacklo_epi64(ab_lo, cd_lo),
        _mm_unpackhi_epi64(ab_lo, cd_lo),
        _mm_unpacklo_epi64(ab_hi, cd_hi),
        _mm_unpackhi_epi64(ab_hi, cd_hi),
    ]
}

/// The units' (sum of magnitudes over all, over kept), each in flat order, and the kept bits of each
/// quad's 4x4 blocks (`bits[2b + quad]`, bit `4r + u`: row `4b + r` of unit `quad*4 + u`).
#[target_feature(enable = "sse2")]
fn sums(src: &[u8], run: usize, k: usize, l2: bool, bits: &mut [u16]) -> ([f64; UNITS], [f64; UNITS]) {
    let zero = _mm_setzero_pd();
    // Pair p: units 2p and 2p + 1, in the lanes of one f64 vector.
    let (mut full, mut kept) = ([zero; 4], [zero; 4]);
    let magnitude = |a: __m128d| if l2 { _mm_mul_pd(a, a) } else { a };
    let abs = _mm_set1_epi32(i32::MAX);
    for b in 0..run / 4 {
        for quad in 0..2 {
            let keys = rows_of(src, run, quad, b).map(|r| _mm_and_si128(r, abs));
            let keep: [__m128i; 4] = kept_of_4(keys.map(bytemuck::cast), k).map(bytemuck::cast);
            let mut mask = 0;
            for r in 0..4 {
                mask |= _mm_movemask_ps(_mm_castsi128_ps(keep[r])) << (4 * r);
                // |w| of the four units as f32 (the key's bits), then as f64 by pairs.
                let a = _mm_castsi128_ps(keys[r]);
                let (lo, hi) = (_mm_cvtps_pd(a), _mm_cvtps_pd(_mm_movehl_ps(a, a)));
                let lanes =
                    [(lo, _mm_unpacklo_epi32(keep[r], keep[r])), (hi, _mm_unpackhi_epi32(keep[r], keep[r]))];
                for (h, (v, m)) in lanes.into_iter().enumerate() {
                    let p = 2 * quad + h;
                    let v = magnitude(v);
                    full[p] = _mm_add_pd(full[p], v);
                    kept[p] = _mm_add_pd(kept[p], _mm_and_pd(v, _mm_castsi128_pd(m)));
                }
            }
            bits[2 * b + quad] = mask as u16;
        }
    }
    let (mut full, mut kept) = (full.map(|v| pair(v)), kept.map(|v| pair(v)));
    // A tail of fewer than four rows is kept.
    for j in run / 4 * 4..run {
        for q in 0..UNITS {
            let at = (q * run + j) * 4;
            let w = f64::from(f32::from_le_bytes(src[at..at + 4].try_into().expect("4 bytes")));
            let m = if l2 { w * w } else { w.abs() };
            full[q / 2][q % 2] += m;
            kept[q / 2][q % 2] += m;
        }
    }
    (full.concat().try_into().expect("8"), kept.concat().try_into().expect("8"))
}

#[inline]
#[target_feature(enable = "sse2")]
fn pair(v: __m128d) -> [f64; 2] {
    let mut out = [0.0; 2];
    // SAFETY: `out` is two writable f64; the store needs no alignment.
    unsafe { _mm_storeu_pd(out.as_mut_ptr(), v) };
    out
}

/// Kept weights times their unit's factor, the others +0.0, as the bits of `sums` say.
#[target_feature(enable = "sse2")]
fn rescale(src: &[u8], dst: &mut [u8], run: usize, factors: &[f32; UNITS], bits: &[u16]) {
    for (q, (from, to)) in src.chunks_exact(run * 4).zip(dst.chunks_exact_mut(run * 4)).enumerate() {
        let (quad, u) = (q / 4, (q % 4) as i32);
        let s = _mm_set1_ps(factors[q]);
        // Bit 4r + u of a block is row r of this unit.
        let select = _mm_setr_epi32(1 << u, 1 << (4 + u), 1 << (8 + u), 1 << (12 + u));
        let (whole, tail) = from.as_chunks::<16>();
        let (out, out_tail) = to.as_chunks_mut::<16>();
        for (b, (e, o)) in whole.iter().zip(out.iter_mut()).enumerate() {
            let m = _mm_and_si128(_mm_set1_epi32(i32::from(bits[2 * b + quad])), select);
            let m = _mm_castsi128_ps(_mm_cmpeq_epi32(m, select));
            // SAFETY: `e` and `o` are 16 bytes each; the load and the store need no alignment.
            unsafe {
                let w = _mm_mul_ps(_mm_loadu_ps(e.as_ptr().cast()), s);
                _mm_storeu_ps(o.as_mut_ptr().cast(), _mm_and_ps(w, m));
            }
        }
        for (e, o) in tail.as_chunks::<4>().0.iter().zip(out_tail.as_chunks_mut::<4>().0) {
            *o = (f32::from_le_bytes(*e) * factors[q]).to_le_bytes();
        }
    }
}

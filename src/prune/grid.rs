//! Renormalizing a raw payload in one streaming pass, without decoding it: the flat elements of every
//! target layout renorm knows are a grid `[blocks][rows][units][run]`, where output unit `(block, u)`
//! owns `run` consecutive elements in each row. Per-unit sums are taken in flat order, which is the
//! order of `Layout::unit_indices`, so the scales are bit-identical to `renorm::scales`.

use rayon::prelude::*;

use crate::onnx::tensor::FloatType;
use crate::prune::cut::Cut;
use crate::prune::grid_f32;
use crate::prune::renorm::{kept_part, magnitude, unit_scale, Renorm};
use crate::prune::targets::Layout;

/// Elements per parallel task.
const TASK: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub blocks: usize,
    pub rows: usize,
    pub units: usize,
    pub run: usize,
}

/// Which elements are kept: a magnitude cut (global and layer scope) or an explicit mask.
pub enum Rule {
    Cut(Cut),
    Mask(Vec<bool>),
}

impl Rule {
    #[inline]
    pub fn keeps(&self, i: usize, key: u32) -> bool {
        match self {
            Rule::Cut(c) => c.keeps(i, key),
            Rule::Mask(m) => m[i],
        }
    }
}

impl Grid {
    /// The grid of `layout` over `n` elements, or None for a layout it does not describe.
    pub fn of(l: &Layout, n: usize) -> Option<Grid> {
        let f = l.fan_in();
        let grid = if l.row_stride == l.cols
            && (l.units == 1 || (l.inner_units == l.units && l.inner_stride == f))
        {
            // Each unit's fan-in is one contiguous stretch (Gemm transB=1, Conv, a 1-D MatMul).
            Grid { blocks: 1, rows: 1, units: l.units, run: f }
        } else if l.inner_stride == l.cols
            && l.inner_units > 0
            && l.units.is_multiple_of(l.inner_units)
            && l.row_stride == l.inner_units * l.cols
            && (l.units == l.inner_units || l.outer_stride == l.rows * l.row_stride)
        {
            // Units along the last axes (Gemm transB=0, MatMul, ConvTranspose).
            Grid { blocks: l.units / l.inner_units, rows: l.rows, units: l.inner_units, run: l.cols }
        } else {
            return None;
        };
        let total =
            [grid.blocks, grid.rows, grid.units, grid.run].iter().try_fold(1usize, |a, d| a.checked_mul(*d));
        (total == Some(n)).then_some(grid)
    }

    fn line(&self) -> usize {
        self.units * self.run
    }

    /// Every unit's scale, and how many weights the rule prunes.
    pub fn scales(
        &self,
        ty: FloatType,
        raw: &[u8],
        rule: &Rule,
        method: Renorm,
    ) -> (Vec<Option<f64>>, usize) {
        let l1 = |v: f32| magnitude(v, Renorm::L1);
        let l2 = |v: f32| magnitude(v, Renorm::L2);
        let f32_value = |b: &[u8]| f32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
        let any_value = |b: &[u8]| ty.value(b);
        // One instance per element type, rule and norm, so that each inner loop is plain arithmetic.
        let (sums, pruned) = match (ty, rule, method) {
            (FloatType::F32, Rule::Cut(c), Renorm::L2) => {
                self.sums(raw, 4, f32_value, |i, k| c.keeps(i, k), l2)
            }
            (FloatType::F32, Rule::Cut(c), _) => self.sums(raw, 4, f32_value, |i, k| c.keeps(i, k), l1),
            (FloatType::F32, Rule::Mask(m), Renorm::L2) => self.sums(raw, 4, f32_value, |i, _| m[i], l2),
            (FloatType::F32, Rule::Mask(m), _) => self.sums(raw, 4, f32_value, |i, _| m[i], l1),
            (_, rule, Renorm::L2) => self.sums(raw, ty.size(), any_value, |i, k| rule.keeps(i, k), l2),
            (_, rule, _) => self.sums(raw, ty.size(), any_value, |i, k| rule.keeps(i, k), l1),
        };
        (sums.into_iter().map(|(full, kept)| unit_scale(full, kept, method)).collect(), pruned)
    }

    /// Per unit (sum of `mag` over all weights, over the kept ones), summed in flat order, and how
    /// many weights are pruned. Tasks take whole units, so each unit's sums run in one thread, in order.
    fn sums(
        &self,
        raw: &[u8],
        size: usize,
        value: impl Fn(&[u8]) -> f32 + Sync,
        keeps: impl Fn(usize, u32) -> bool + Sync,
        mag: impl Fn(f32) -> f64 + Sync,
    ) -> (Vec<(f64, f64)>, usize) {
        let per_task = (TASK / (self.rows * self.run).max(1)).clamp(1, self.units.max(1));
        let tasks: Vec<(usize, usize)> =
            (0..self.blocks).flat_map(|b| (0..self.units).step_by(per_task).map(move |u| (b, u))).collect();
        // Adds element `i` to `sum`; returns 1 when it is pruned.
        let add = |i: usize, sum: &mut (f64, f64)| -> usize {
            let v = value(&raw[i * size..(i + 1) * size]);
            let m = mag(v);
            let kept = keeps(i, v.abs().to_bits());
            sum.0 += m;
            sum.1 += kept_part(m, kept);
            usize::from(!kept)
        };
        let parts: Vec<(Vec<(f64, f64)>, usize)> = tasks
            .par_iter()
            .map(|&(b, u0)| {
                let u1 = (u0 + per_task).min(self.units);
                let mut sums = vec![(0f64, 0f64); u1 - u0];
                let mut pruned = 0;
                if self.rows == 1 {
                    // Each unit is one stretch: four units at a time, so that four sums advance together.
                    let base = b * self.line();
                    for (g, group) in sums.chunks_mut(4).enumerate() {
                        let first = base + (u0 + 4 * g) * self.run;
                        if let [s0, s1, s2, s3] = group {
                            let mut acc = [*s0, *s1, *s2, *s3];
                            for j in 0..self.run {
                                for (q, a) in acc.iter_mut().enumerate() {
                                    pruned += add(first + q * self.run + j, a);
                                }
                            }
                            [*s0, *s1, *s2, *s3] = acc;
                        } else {
                            for (q, sum) in group.iter_mut().enumerate() {
                                let start = first + q * self.run;
                                for i in start..start + self.run {
                                    pruned += add(i, sum);
                                }
                            }
                        }
                    }
                } else {
                    for r in 0..self.rows {
                        let line = (b * self.rows + r) * self.line();
                        for (u, sum) in (u0..u1).zip(sums.iter_mut()) {
                            let start = line + u * self.run;
                            for i in start..start + self.run {
                                pruned += add(i, sum);
                            }
                        }
                    }
                }
                (sums, pruned)
            })
            .collect();
        let pruned = parts.iter().map(|p| p.1).sum();
        (parts.into_iter().flat_map(|p| p.0).collect(), pruned)
    }

    /// Writes the pruned and rescaled elements `[at, at + out.len() / size)` of the payload into `out`,
    /// exactly as `FloatType::rescale` does element by element; `at` is a multiple of `run`.
    pub fn apply(
        &self,
        ty: FloatType,
        raw: &[u8],
        rule: &Rule,
        scales: &[Option<f64>],
        at: usize,
        out: &mut [u8],
    ) {
        let size = ty.size();
        let line = self.line();
        // Whole runs per task, at least four tasks a piece.
        let per_task = ((out.len() / size / 4).min(TASK) / self.run.max(1)).max(1) * self.run.max(1);
        let scales32: Vec<f32> = scales.iter().map(|s| s.unwrap_or(1.0) as f32).collect();
        out.par_chunks_mut(per_task * size).enumerate().for_each(|(t, out)| {
            let first = at + t * per_task;
            let end = first + out.len() / size;
            let mut i = first;
            while i < end {
                // A span: the rest of this line within the task, whole runs.
                let (l, in_line) = (i / line, i % line);
                let len = (line - in_line).min(end - i);
                let unit0 = (l / self.rows) * self.units + in_line / self.run;
                let src = &raw[i * size..(i + len) * size];
                let dst = &mut out[(i - first) * size..(i - first + len) * size];
                match (ty, rule) {
                    (FloatType::F32, Rule::Cut(c)) => {
                        span_f32(src, dst, i, self.run, &scales32[unit0..], |i, k| c.keeps(i, k))
                    }
                    (FloatType::F32, Rule::Mask(m)) => {
                        span_f32(src, dst, i, self.run, &scales32[unit0..], |i, _| m[i])
                    }
                    _ => {
                        for (j, (o, e)) in dst.chunks_exact_mut(size).zip(src.chunks_exact(size)).enumerate()
                        {
                            o.copy_from_slice(e);
                            let keep = rule.keeps(i + j, ty.value(e).abs().to_bits());
                            ty.rescale(o, keep, scales[unit0 + j / self.run].unwrap_or(1.0));
                        }
                    }
                }
                i += len;
            }
        });
    }
}

/// f32 elements of consecutive units (`run` each, scales from `scales[0]`), starting at flat index
/// `first`, rescaled unit by unit as `grid_f32::rescale_run` does.
#[inline]
fn span_f32(
    src: &[u8],
    dst: &mut [u8],
    first: usize,
    run: usize,
    scales: &[f32],
    keeps: impl Fn(usize, u32) -> bool,
) {
    if run == 1 {
        // A unit per element (MatMul and Gemm transB=0 weights): each element its own scale.
        let (src, dst) = (src.as_chunks::<4>().0, dst.as_chunks_mut::<4>().0);
        for (r, ((o, e), s)) in dst.iter_mut().zip(src).zip(scales).enumerate() {
            *o = grid_f32::rescaled(*e, *s, |k| keeps(first + r, k));
        }
        return;
    }
    for (r, (o, e)) in dst.chunks_mut(run * 4).zip(src.chunks(run * 4)).enumerate() {
        let base = first + r * run;
        grid_f32::rescale_run(e, o, scales[r], |j, k| keeps(base + j, k));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::prune::renorm;

    /// A layout of each kind a grid describes, with its element count.
    pub(crate) fn layouts() -> Vec<(Layout, usize)> {
        let l = |units, inner_units, inner_stride, outer_stride, rows, row_stride, cols| Layout {
            units,
            inner_units,
            inner_stride,
            outer_stride,
            rows,
            row_stride,
            cols,
        };
        vec![
            (l(6, 6, 5, 0, 5, 1, 1), 30),   // Gemm transB=1 [6, 5]
            (l(6, 6, 1, 0, 5, 6, 1), 30),   // Gemm transB=0 / MatMul [5, 6]
            (l(1, 1, 0, 0, 7, 1, 1), 7),    // MatMul [7]
            (l(6, 3, 1, 12, 4, 3, 1), 24),  // MatMul [2, 4, 3]
            (l(4, 4, 18, 0, 2, 9, 9), 72),  // Conv [4, 2, 3, 3]
            (l(6, 3, 4, 24, 2, 12, 4), 48), // ConvTranspose [4, 3, 2, 2], group 2
        ]
    }

    #[test]
    fn grid_order_is_unit_indices_order() {
        for (layout, n) in layouts() {
            let g = Grid::of(&layout, n).expect("a grid");
            let mut seen = vec![Vec::new(); layout.units];
            for (run, i) in (0..n).step_by(g.run).enumerate() {
                let line = run / g.units;
                let unit = (line / g.rows) * g.units + run % g.units;
                seen[unit].extend(i..i + g.run);
            }
            for (u, s) in seen.iter().enumerate() {
                assert_eq!(*s, layout.unit_indices(u).collect::<Vec<_>>(), "{layout:?} unit {u}");
            }
        }
    }

    #[test]
    fn scales_and_apply_match_the_reference() {
        for (layout, n) in layouts() {
            let g = Grid::of(&layout, n).unwrap();
            let values: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0).collect();
            let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let keep: Vec<bool> = (0..n).map(|i| i % 3 != 1 && i % 7 != 0).collect();
            for method in [Renorm::None, Renorm::L1, Renorm::L2] {
                let want = renorm::scales(&values, &keep, &layout, method);
                let rule = Rule::Mask(keep.clone());
                let (got, pruned) = g.scales(FloatType::F32, &raw, &rule, method);
                assert_eq!(got, want);
                assert_eq!(pruned, keep.iter().filter(|k| !**k).count());
                let mut expected = raw.clone();
                for (u, s) in want.iter().enumerate() {
                    for i in layout.unit_indices(u) {
                        FloatType::F32.rescale(&mut expected[i * 4..i * 4 + 4], keep[i], s.unwrap_or(1.0));
                    }
                }
                let mut out = vec![0u8; raw.len()];
                g.apply(FloatType::F32, &raw, &rule, &got, 0, &mut out);
                assert_eq!(out, expected, "{layout:?} {method:?}");
            }
        }
    }
}

//! Per-unit scales (design.md §4): none / l1 / l2, computed in f64 from the original weights.

use serde::Serialize;

use crate::prune::targets::Layout;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Renorm {
    None,
    L1,
    L2,
    /// Calibrated (design.md §4 `stats`): masks here, factors and shifts from `crate::calibrate`.
    Stats,
    /// Calibrated least-squares refit of kept weights and bias (design.md §4 `refit`): masks here,
    /// weights from `crate::calibrate::refit`.
    Refit,
}

impl Renorm {
    pub fn name(self) -> &'static str {
        match self {
            Renorm::None => "none",
            Renorm::L1 => "l1",
            Renorm::L2 => "l2",
            Renorm::Stats => "stats",
            Renorm::Refit => "refit",
        }
    }
}

/// The scale of each output unit. A unit with nothing kept (or whose kept weights are all zero) gets 1:
/// there is nothing to rescale. `None` in the second vector marks those units, for the statistics.
pub fn scales(values: &[f32], keep: &[bool], layout: &Layout, method: Renorm) -> Vec<Option<f64>> {
    (0..layout.units)
        .map(|u| {
            let (mut full, mut kept) = (0f64, 0f64);
            for i in layout.unit_indices(u) {
                let m = magnitude(values[i], method);
                full += m;
                if keep[i] {
                    kept += m;
                }
            }
            unit_scale(full, kept, method)
        })
        .collect()
}

/// What a weight adds to its unit's norm: |w| (l1, and the statistics of the other methods) or w².
#[inline]
pub fn magnitude(w: f32, method: Renorm) -> f64 {
    let w = f64::from(w);
    match method {
        Renorm::L1 | Renorm::None | Renorm::Stats | Renorm::Refit => w.abs(),
        Renorm::L2 => w * w,
    }
}

/// `m` if the weight is kept, else +0.0, for a unit's kept sum: adding +0.0 leaves the sum as skipping
/// the weight would (sums start at +0.0 and magnitudes are >= 0). A product by 0 or 1, not a branch:
/// whether a weight is kept is a coin toss for the CPU, and the compiler turns a plain select (or a
/// product by a bool it can see) into a branch, so the flag passes through `black_box`.
#[inline]
pub fn kept_part(m: f64, kept: bool) -> f64 {
    m * f64::from(std::hint::black_box(u8::from(kept)))
}

/// A unit's scale from the sums of `magnitude` over all its weights and over those kept (summed in
/// the order of `Layout::unit_indices`).
pub fn unit_scale(full: f64, kept: f64, method: Renorm) -> Option<f64> {
    if kept == 0.0 {
        return None;
    }
    Some(match method {
        Renorm::None | Renorm::Stats | Renorm::Refit => 1.0,
        Renorm::L1 => full / kept,
        Renorm::L2 => (full / kept).sqrt(),
    })
}

/// min / mean / max of the applied scales (over units that kept a non-zero weight).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScaleStats {
    pub min: f64,
    pub mean: f64,
    pub max: f64,
}

impl ScaleStats {
    pub fn of(scales: &[Option<f64>]) -> Option<ScaleStats> {
        let v: Vec<f64> = scales.iter().flatten().copied().collect();
        if v.is_empty() {
            return None;
        }
        Some(ScaleStats {
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            mean: v.iter().sum::<f64>() / v.len() as f64,
            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

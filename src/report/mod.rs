//! What a run did, as data: the JSON reports (stable keys, documented in the README) and the text
//! summaries printed for people.

pub mod text;

use serde::Serialize;

use crate::prune::renorm::ScaleStats;
pub use crate::prune::targets::Skipped;

/// `renorm prune`'s report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PruneReport {
    pub model: String,
    pub output: String,
    pub method: Method,
    pub targets: Vec<TargetReport>,
    pub skipped: Vec<Skipped>,
    pub totals: Totals,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Method {
    /// Requested sparsity (null with a pattern).
    pub sparsity: Option<f64>,
    /// global | layer | unit (null with a pattern).
    pub scope: Option<String>,
    pub renorm: String,
    /// "N:M" or null.
    pub pattern: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TargetReport {
    pub node: String,
    pub op: String,
    pub weight: String,
    pub shape: Vec<usize>,
    pub dtype: String,
    pub storage: String,
    pub params: usize,
    pub pruned: usize,
    pub sparsity: f64,
    /// Per-unit scales applied (null when no unit kept a non-zero weight).
    pub scale: Option<ScaleStats>,
    /// Global scope: pruned at layer scope because the global threshold would have zeroed it.
    pub guarded: bool,
    /// N:M: weights left dense in trailing runs shorter than M.
    pub dense_tail: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Totals {
    pub params: usize,
    pub pruned: usize,
    pub sparsity: f64,
}

impl Totals {
    pub fn of(params: usize, pruned: usize) -> Totals {
        Totals { params, pruned, sparsity: fraction(pruned, params) }
    }
}

/// `part / whole`, 0 for an empty whole.
pub fn fraction(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// `renorm inspect`'s report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InspectReport {
    pub model: String,
    pub targets: Vec<InspectTarget>,
    pub skipped: Vec<Skipped>,
    pub totals: InspectTotals,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InspectTarget {
    pub node: String,
    pub op: String,
    pub weight: String,
    pub shape: Vec<usize>,
    pub dtype: String,
    pub storage: String,
    pub units: usize,
    pub fan_in: usize,
    pub params: usize,
    /// Fraction of the weights already exactly zero.
    pub zero_fraction: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InspectTotals {
    pub targets: usize,
    pub skipped: usize,
    pub params: usize,
    pub zero_fraction: f64,
}

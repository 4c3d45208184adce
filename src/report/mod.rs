//! What a run did, as data: the JSON reports (stable keys, documented in the README) and the text
//! summaries printed for people.

pub mod html;
pub mod markdown;
pub mod svg;
pub mod text;

use serde::{Deserialize, Serialize};

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
    /// The model's size before and after, raw and zstd-compressed (external data included).
    pub size: crate::sizes::SizeChange,
    /// With `--data`: how the written model compares with the input (null otherwise).
    pub validation: Option<ValidationReport>,
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
    /// `stats`: per-unit shifts folded into the bias (null otherwise).
    pub shift: Option<ScaleStats>,
    /// `refit`: relative L2 error of the target's output (bias included) against the original's on the
    /// calibration rows, with the plain-pruned weights (`before`) and the refitted ones (`after`).
    pub output_error: Option<OutputError>,
    /// `stats`/`refit`: what calibration did beyond the factors (bias created, units left plain-pruned,
    /// or why it fell back to l2).
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct OutputError {
    pub before: f64,
    pub after: f64,
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

/// Writes a report file atomically (temporary file `.renorm-<name>-*.tmp` in the same folder, then
/// rename), readable by all (0644 on Unix, where temporary files start as 0600).
pub fn write_file(path: &std::path::Path, text: &str) -> crate::Result<()> {
    use std::io::Write;
    let io = |e: std::io::Error| crate::Error::io(path, e);
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let name = path.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned());
    let prefix = format!(".renorm-{name}-");
    let mut temp = tempfile::Builder::new().prefix(&prefix).suffix(".tmp").tempfile_in(folder).map_err(io)?;
    temp.write_all(text.as_bytes()).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        temp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(io)?;
    }
    temp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
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

/// What `validate` (and `prune --data`) found: original and pruned run on the same samples (design.md §6).
#[derive(Debug, Clone, Serialize, PartialEq, Default, Deserialize)]
pub struct ValidationReport {
    pub samples: usize,
    /// Top-1 accuracy of the first output against the labels (null without labels).
    pub accuracy: Option<Accuracy>,
    pub outputs: Vec<OutputReport>,
    /// Conversions applied to the data on request (`--scale`, `--add-channel-axis`).
    pub conversions: Vec<String>,
    /// Why tract could not run the models (null when it did).
    pub skipped_reason: Option<String>,
    /// Every requested gate and whether it passed.
    pub gates: Vec<Gate>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Deserialize)]
pub struct Accuracy {
    pub original: f64,
    pub pruned: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Deserialize)]
pub struct OutputReport {
    pub name: String,
    /// Fraction of samples whose argmax agrees (null unless the output is (samples, classes)).
    pub top1_agreement: Option<f64>,
    pub max_abs_error: f64,
    pub mean_abs_error: f64,
    /// ‖pruned − original‖₂ / ‖original‖₂.
    pub rel_l2_error: f64,
    pub cosine: f64,
    /// Max |error| of each model against the data's own reference outputs (test_data_set folders).
    pub reference_max_abs_error: Option<Accuracy>,
}

/// A validation gate: `--max-top1-drop`, `--max-accuracy-drop` or `--min-cosine`.
#[derive(Debug, Clone, Serialize, PartialEq, Deserialize)]
pub struct Gate {
    pub gate: String,
    pub limit: f64,
    /// Null when it could not be measured.
    pub value: Option<f64>,
    pub passed: bool,
}

/// `renorm sweep`'s report (`DIR/sweep.json`): one point per (sparsity, scope, renorm).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SweepReport {
    pub model: String,
    /// What the plot's y axis shows: "accuracy" (with labels) or "top1_agreement" (without).
    pub metric: String,
    /// The dense model: its accuracy (null without labels) and size.
    pub dense: DensePoint,
    pub points: Vec<SweepPoint>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DensePoint {
    pub accuracy: Option<f64>,
    pub size: crate::sizes::Sizes,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SweepPoint {
    /// Requested sparsity.
    pub sparsity: f64,
    pub scope: String,
    pub renorm: String,
    /// Sparsity reached over the targets (`totals.sparsity` of the prune report).
    pub achieved_sparsity: f64,
    /// The pruned model's size (raw and zstd-compressed).
    pub size: crate::sizes::Sizes,
    /// The `validate` keys for this point.
    #[serde(flatten)]
    pub validation: ValidationReport,
}

impl SweepPoint {
    /// The y value plotted: pruned accuracy with labels, else the first output's top-1 agreement.
    pub fn metric(&self) -> Option<f64> {
        match &self.validation.accuracy {
            Some(a) => Some(a.pruned),
            None => self.validation.outputs.first().and_then(|o| o.top1_agreement),
        }
    }
}

/// `renorm batch`'s report (`OUTDIR/summary.json`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatchReport {
    pub input_dir: String,
    pub output_dir: String,
    /// The prune options every model got.
    pub method: Method,
    /// "K/N" when only a shard was taken.
    pub shard: Option<String>,
    pub models: Vec<BatchEntry>,
    pub totals: BatchTotals,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatchEntry {
    /// The model's path relative to the input folder.
    pub model: String,
    /// "pruned", "resumed" (output and report already there for the same options) or "failed".
    pub status: String,
    /// The output path relative to the output folder (null when failed).
    pub output: Option<String>,
    /// Why it failed (one line), else null.
    pub error: Option<String>,
    pub params: usize,
    pub pruned: usize,
    pub sparsity: f64,
    pub size: Option<crate::sizes::SizeChange>,
    /// Validation with `--data`, or with the model's own test_data_set_* folders; null otherwise.
    pub validation: Option<ValidationReport>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatchTotals {
    pub models: usize,
    pub pruned: usize,
    pub resumed: usize,
    pub failed: usize,
}

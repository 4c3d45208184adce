//! Resuming a batch: what a model's report file records (the options fingerprint, its files and their
//! lengths, its figures) and whether an existing output can be taken as done.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::prune_job::PruneOptions;
use crate::report::{PruneReport, ValidationReport};
use crate::sizes::SizeChange;

/// What decides whether an existing output can be reused: tool version, every prune option, the
/// validation data, and the input file's length and modification time.
pub(super) fn fingerprint(opts: &PruneOptions, validation: Option<String>, input: &Path) -> String {
    let meta = std::fs::metadata(input).ok();
    let modified = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos().to_string());
    let refit = matches!(opts.renorm, crate::Renorm::Refit).then(|| format!("{:?}", opts.refit));
    serde_json::json!({
        "tool": format!("renorm {}", env!("CARGO_PKG_VERSION")),
        "method": opts.method(),
        "filter": format!("{:?}", opts.filter),
        "calib": opts.calib.as_ref().map(|c| format!("{c:?}")),
        "refit": refit,
        "allow_nonfinite": opts.allow_nonfinite,
        "validation": validation,
        "input": { "bytes": meta.map(|m| m.len()), "modified_ns": modified },
    })
    .to_string()
}

/// The figures an entry reports, fresh or resumed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Figures {
    pub params: usize,
    pub pruned: usize,
    pub sparsity: f64,
    pub size: SizeChange,
    pub validation: Option<ValidationReport>,
}

/// The model's report file: the prune report, plus what a rerun needs to resume.
#[derive(Serialize)]
pub(super) struct ReportFile<'a> {
    #[serde(flatten)]
    pub report: &'a PruneReport,
    pub batch: BatchInfo,
}

#[derive(Serialize)]
pub(super) struct BatchInfo {
    /// Compact JSON of what the output was made from and with (see `fingerprint`).
    pub fingerprint: String,
    /// The output's files (the model last), in its folder, with their lengths.
    pub files: Vec<FileLen>,
    /// The entry's figures (serde_json's float_roundtrip reads them back exactly).
    pub figures: Figures,
}

#[derive(Serialize)]
pub(super) struct FileLen {
    pub name: String,
    pub bytes: u64,
}

/// The model's existing report file, parsed (None when absent or unreadable).
pub(super) fn stored(report_file: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(report_file).ok()?).ok()
}

pub(super) fn stored_files(v: &Value) -> Vec<FileLen> {
    let Some(files) = v["batch"]["files"].as_array() else { return Vec::new() };
    files
        .iter()
        .filter_map(|f| Some(FileLen { name: f["name"].as_str()?.to_string(), bytes: f["bytes"].as_u64()? }))
        .collect()
}

/// The stored figures, when the report was made with the same fingerprint and every output file is
/// there with its recorded length.
pub(super) fn resumable(v: &Value, folder: &Path, fp: &str) -> Option<Figures> {
    if v["batch"]["fingerprint"].as_str()? != fp {
        return None;
    }
    let files = stored_files(v);
    if files.is_empty() || files.len() != v["batch"]["files"].as_array()?.len() {
        return None;
    }
    for f in &files {
        let meta = std::fs::metadata(folder.join(&f.name)).ok()?;
        if !meta.is_file() || meta.len() != f.bytes {
            return None;
        }
    }
    serde_json::from_value(v["batch"]["figures"].clone()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Accuracy, Gate, OutputReport};
    use crate::sizes::Sizes;

    #[test]
    fn figures_read_back_exactly() {
        let tricky = [0.1 + 0.2, 1.0 / 3.0, 0.123_456_789_012_345_68, 5e-324, 1.0, 0.0, 2.0f64.sqrt() / 7.0];
        let validation = ValidationReport {
            samples: 3,
            accuracy: Some(Accuracy { original: tricky[0], pruned: tricky[1] }),
            outputs: vec![OutputReport {
                name: "y".into(),
                top1_agreement: None,
                max_abs_error: tricky[2],
                mean_abs_error: tricky[3],
                rel_l2_error: tricky[4],
                cosine: tricky[6],
                reference_max_abs_error: Some(Accuracy { original: tricky[5], pruned: tricky[6] }),
            }],
            conversions: vec!["uint8 → float32".into()],
            skipped_reason: None,
            gates: vec![Gate { gate: "min-cosine".into(), limit: 0.99, value: None, passed: false }],
        };
        let f = Figures {
            params: 10,
            pruned: 7,
            sparsity: 0.7,
            size: SizeChange {
                before: Sizes { raw: 5, zstd: 4, estimated: false },
                after: Sizes { raw: 5, zstd: 3, estimated: false },
            },
            validation: Some(validation),
        };
        let text = serde_json::to_string_pretty(&serde_json::json!({"batch": {"figures": f}})).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let back: Figures = serde_json::from_value(v["batch"]["figures"].clone()).unwrap();
        assert_eq!(
            (back.params, back.pruned, back.sparsity, back.size),
            (f.params, f.pruned, f.sparsity, f.size)
        );
        assert_eq!(back.validation, f.validation);
    }
}

//! Markdown reports of `sweep` and `batch`, and what the HTML reports share with them: the tables, the
//! summary lines and the number formats.

use std::fmt::Write;

use super::{BatchReport, Method, SweepReport, ValidationReport};
use crate::sizes::SizeChange;

/// What zeros buy, said once under every sweep and batch table.
pub(crate) const ZEROS_NOTE: &str = "Zeros make the zstd-compressed file smaller but do not make the model \
run any faster on a dense runtime: only sparse kernels skip them. The zstd size of a file over 16 MiB is \
estimated from 24 evenly spaced blocks.";

/// A value that was not measured.
pub(crate) const MISSING: &str = "–";

/// Bytes in human units (B, KB, MB, GB; powers of 1000, as file managers show them).
pub(crate) fn bytes(n: u64) -> String {
    crate::sizes::human(n)
}

/// A fraction as a percentage with `decimals` decimals: "97.10 %".
pub(crate) fn percent(f: f64, decimals: usize) -> String {
    format!("{:.*} %", decimals, 100.0 * f)
}

/// A requested fraction as a short percentage: 0.9 → "90 %", 0.975 → "97.5 %".
pub(crate) fn percent_short(f: f64) -> String {
    let s = format!("{:.2}", 100.0 * f);
    format!("{} %", s.trim_end_matches('0').trim_end_matches('.'))
}

fn missing<const N: usize>() -> [String; N] {
    std::array::from_fn(|_| MISSING.to_string())
}

fn optional(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| MISSING.to_string(), f)
}

/// A table both renderers draw: header, which columns hold numbers (right-aligned), rows of cells.
pub(crate) struct Table {
    pub header: Vec<&'static str>,
    pub numeric: Vec<bool>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    fn new(columns: &[(&'static str, bool)]) -> Table {
        Table {
            header: columns.iter().map(|c| c.0).collect(),
            numeric: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }
}

/// "accuracy" or "top-1 agreement": what a sweep's metric column and plot show.
pub(crate) fn metric_name(r: &SweepReport) -> &'static str {
    if r.metric == "top1_agreement" {
        "top-1 agreement"
    } else {
        "accuracy"
    }
}

/// The dense model's figures, one sentence.
pub(crate) fn dense_line(r: &SweepReport) -> String {
    let size = format!("{} raw, {} zstd", bytes(r.dense.size.raw), bytes(r.dense.size.zstd));
    let mut line = match (r.dense.accuracy, metric_name(r)) {
        (Some(a), _) => format!("Dense model: accuracy {}, {size}.", percent(a, 2)),
        (None, "accuracy") => format!("Dense model: accuracy not measured, {size}."),
        (None, _) => format!(
            "Dense model: {size}. No labels: each pruned model is scored by how often its top-1 class \
             agrees with the dense model's."
        ),
    };
    if let Some(p) = r.points.first().filter(|p| p.validation.samples > 0) {
        let _ = write!(line, " Validated on {} samples.", p.validation.samples);
    }
    line
}

/// First output's top-1 agreement, cosine and relative L2 error.
fn first_output(v: &ValidationReport) -> [String; 3] {
    let o = v.outputs.first();
    [
        optional(o.and_then(|o| o.top1_agreement), |a| percent(a, 2)),
        optional(o.map(|o| o.cosine), |c| format!("{c:.5}")),
        optional(o.map(|o| o.rel_l2_error), |e| format!("{e:.4}")),
    ]
}

/// One row per point, in the report's order. The metric column is left out when the metric is the top-1
/// agreement, which has its own column.
pub(crate) fn sweep_table(r: &SweepReport) -> Table {
    let accuracy = metric_name(r) == "accuracy";
    let mut columns =
        vec![("sparsity", true), ("scope", false), ("renorm", false), ("achieved sparsity", true)];
    if accuracy {
        columns.push(("accuracy", true));
    }
    columns.extend([
        ("top-1 agreement", true),
        ("cosine", true),
        ("rel. L2 error", true),
        ("size raw", true),
        ("size zstd (vs dense)", true),
    ]);
    let mut t = Table::new(&columns);
    for p in &r.points {
        let mut row = vec![
            percent_short(p.sparsity),
            p.scope.clone(),
            p.renorm.clone(),
            percent(p.achieved_sparsity, 2),
        ];
        if accuracy {
            row.push(optional(p.validation.accuracy.map(|a| a.pruned), |a| percent(a, 2)));
        }
        row.extend(first_output(&p.validation));
        row.push(bytes(p.size.raw));
        let dense = r.dense.size.zstd;
        row.push(match dense {
            0 => bytes(p.size.zstd),
            _ => format!(
                "{} ({:+.0} %)",
                bytes(p.size.zstd),
                100.0 * (p.size.zstd as f64 / dense as f64 - 1.0)
            ),
        });
        t.rows.push(row);
    }
    t
}

/// The prune options, one phrase: "sparsity 90 %, scope global, renorm l2".
pub(crate) fn method(m: &Method) -> String {
    let mut parts = Vec::new();
    if let Some(p) = &m.pattern {
        parts.push(format!("pattern {p}"));
    }
    if let Some(s) = m.sparsity {
        parts.push(format!("sparsity {}", percent_short(s)));
    }
    if let Some(s) = &m.scope {
        parts.push(format!("scope {s}"));
    }
    parts.push(format!("renorm {}", m.renorm));
    parts.join(", ")
}

/// The lines above a batch table: totals, method, shard, folders.
pub(crate) fn batch_lines(r: &BatchReport) -> Vec<String> {
    let t = &r.totals;
    let mut lines = vec![
        format!("{} models: {} pruned, {} resumed, {} failed.", t.models, t.pruned, t.resumed, t.failed),
        format!("Method: {}.", method(&r.method)),
    ];
    if let Some(s) = &r.shard {
        lines.push(format!("Shard {s}."));
    }
    lines.push(format!("From {} to {}.", r.input_dir, r.output_dir));
    lines
}

fn size_change(s: &SizeChange) -> [String; 3] {
    let saved = match s.before.zstd {
        0 => MISSING.to_string(),
        b => percent(1.0 - s.after.zstd as f64 / b as f64, 1),
    };
    [
        format!("{} → {}", bytes(s.before.raw), bytes(s.after.raw)),
        format!("{} → {}", bytes(s.before.zstd), bytes(s.after.zstd)),
        saved,
    ]
}

/// One row per model. Validation columns only when some model was validated, the error column only when
/// some model failed.
pub(crate) fn batch_table(r: &BatchReport) -> Table {
    let validated = r.models.iter().any(|m| m.validation.is_some());
    let failed = r.models.iter().any(|m| m.status == "failed" || m.error.is_some());
    let mut columns = vec![
        ("model", false),
        ("status", false),
        ("sparsity", true),
        ("size raw", true),
        ("size zstd", true),
        ("zstd saving", true),
    ];
    if validated {
        columns.extend([("accuracy", true), ("top-1 agreement", true), ("cosine", true)]);
    }
    columns.push(("seconds", true));
    if failed {
        columns.push(("error", false));
    }
    let mut t = Table::new(&columns);
    for m in &r.models {
        let mut row = vec![m.model.clone(), m.status.clone()];
        row.push(if m.status == "failed" { MISSING.to_string() } else { percent(m.sparsity, 2) });
        row.extend(m.size.as_ref().map_or_else(missing, size_change));
        if validated {
            let v = m.validation.as_ref();
            row.push(match v.and_then(|v| v.accuracy) {
                Some(a) => format!("{} → {}", percent(a.original, 2), percent(a.pruned, 2)),
                None => MISSING.to_string(),
            });
            let [agreement, cosine, _] = v.map_or_else(missing, first_output);
            row.extend([agreement, cosine]);
        }
        row.push(format!("{:.1}", m.seconds));
        if failed {
            row.push(m.error.clone().unwrap_or_default());
        }
        t.rows.push(row);
    }
    t
}

/// `s` safe in Markdown text and table cells: punctuation Markdown would act on is backslash-escaped,
/// line breaks become spaces.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '&' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn table(t: &Table) -> String {
    let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
    let mut out = line(t.header.iter().map(|h| escape(h)).collect());
    out += &line(t.numeric.iter().map(|&n| if n { "---:" } else { "---" }.to_string()).collect());
    for row in &t.rows {
        out += &line(row.iter().map(|c| escape(c)).collect());
    }
    out
}

/// A sweep as Markdown: heading, dense figures, one table row per point, what zeros buy.
pub fn sweep(r: &SweepReport) -> String {
    format!(
        "# Sparsity sweep: {}\n\n{}\n\n{}\n{}\n",
        escape(&r.model),
        escape(&dense_line(r)),
        table(&sweep_table(r)),
        ZEROS_NOTE
    )
}

/// A batch as Markdown: totals, method, shard, one table row per model, what zeros buy.
pub fn batch(r: &BatchReport) -> String {
    let mut out = format!("# Batch prune: {}\n\n", escape(&r.input_dir));
    for l in batch_lines(r) {
        let _ = write!(out, "{}\n\n", escape(&l));
    }
    let _ = write!(out, "{}\n{}\n", table(&batch_table(r)), ZEROS_NOTE);
    out
}

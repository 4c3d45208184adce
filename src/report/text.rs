//! Plain-text tables for the terminal.

use std::fmt::Write;

use super::{InspectReport, PruneReport, ValidationReport};

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let parts: Vec<String> = cells.zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(&mut out, &mut header.iter().copied());
    for row in rows {
        line(&mut out, &mut row.iter().map(String::as_str));
    }
    out
}

fn shape(s: &[usize]) -> String {
    let dims: Vec<String> = s.iter().map(usize::to_string).collect();
    format!("[{}]", dims.join("x"))
}

fn skipped_lines(out: &mut String, skipped: &[super::Skipped]) {
    if !skipped.is_empty() {
        let _ = writeln!(out, "\nskipped:");
        for s in skipped {
            let _ = writeln!(out, "  {} ({}): {}", s.weight, s.node, s.reason);
        }
    }
}

pub fn inspect(r: &InspectReport) -> String {
    let rows: Vec<Vec<String>> = r
        .targets
        .iter()
        .map(|t| {
            vec![
                t.node.clone(),
                t.op.clone(),
                t.weight.clone(),
                shape(&t.shape),
                t.dtype.clone(),
                t.storage.clone(),
                t.units.to_string(),
                t.fan_in.to_string(),
                t.params.to_string(),
                format!("{:.1}%", 100.0 * t.zero_fraction),
            ]
        })
        .collect();
    let mut out = format!("{}\n", r.model);
    out += &table(
        &["node", "op", "weight", "shape", "dtype", "storage", "units", "fan-in", "params", "zero"],
        &rows,
    );
    skipped_lines(&mut out, &r.skipped);
    let _ = writeln!(
        out,
        "\n{} targets, {} params ({:.1}% already zero), {} skipped",
        r.totals.targets,
        r.totals.params,
        100.0 * r.totals.zero_fraction,
        r.totals.skipped
    );
    out
}

pub fn prune(r: &PruneReport) -> String {
    let refit = r.targets.iter().any(|t| t.output_error.is_some());
    let rows: Vec<Vec<String>> = r
        .targets
        .iter()
        .map(|t| {
            let scale = t.scale.map(|s| format!("{:.3}..{:.3}", s.min, s.max)).unwrap_or_else(|| "-".into());
            let mut note = String::new();
            if t.guarded {
                note += "collapse guard: layer scope";
            }
            if t.dense_tail > 0 {
                note += &format!("{} dense in short runs", t.dense_tail);
            }
            if let Some(n) = &t.note {
                note += n;
            }
            let mut row = vec![
                t.node.clone(),
                t.op.clone(),
                t.weight.clone(),
                shape(&t.shape),
                t.params.to_string(),
                format!("{:.1}%", 100.0 * t.sparsity),
                scale,
            ];
            if refit {
                row.push(t.output_error.map_or("-".into(), |e| format!("{:.3} -> {:.3}", e.before, e.after)));
            }
            row.push(note);
            row
        })
        .collect();
    let mut header = vec!["node", "op", "weight", "shape", "params", "pruned", "scale"];
    if refit {
        header.push("output error");
    }
    header.push("");
    let m = &r.method;
    let how = match &m.pattern {
        Some(p) => format!("pattern {p}"),
        None => format!("sparsity {} {}", m.sparsity.unwrap_or(0.0), m.scope.as_deref().unwrap_or("")),
    };
    let mut out = format!("{} -> {} ({how}, renorm {})\n", r.model, r.output, m.renorm);
    out += &table(&header, &rows);
    if refit {
        out += "output error: relative L2 error of each target's output against the original's on the calibration rows, pruned as is -> refitted\n";
    }
    skipped_lines(&mut out, &r.skipped);
    let _ = writeln!(
        out,
        "\npruned {} of {} weights ({:.2}%); {}.\nZeros make the file compress smaller and run faster only on sparse kernels, not on a dense runtime.",
        r.totals.pruned,
        r.totals.params,
        100.0 * r.totals.sparsity,
        r.size.summary()
    );
    if let Some(v) = &r.validation {
        out += "\n";
        out += &validation(v);
    }
    out
}

/// The validation summary: accuracy, per-output errors, gates.
pub fn validation(v: &ValidationReport) -> String {
    let mut out = format!("validation on {} samples", v.samples);
    if !v.conversions.is_empty() {
        out += &format!(" ({})", v.conversions.join("; "));
    }
    out += "\n";
    if let Some(why) = &v.skipped_reason {
        let _ = writeln!(out, "  skipped: {why}");
    }
    if let Some(a) = v.accuracy {
        let _ = writeln!(
            out,
            "  accuracy: original {:.2}%, pruned {:.2}% ({:+.2} points)",
            100.0 * a.original,
            100.0 * a.pruned,
            100.0 * (a.pruned - a.original)
        );
    }
    let rows: Vec<Vec<String>> = v
        .outputs
        .iter()
        .map(|o| {
            vec![
                o.name.clone(),
                o.top1_agreement.map_or("-".into(), |a| format!("{:.2}%", 100.0 * a)),
                format!("{:.3e}", o.max_abs_error),
                format!("{:.3e}", o.mean_abs_error),
                format!("{:.4}", o.rel_l2_error),
                format!("{:.5}", o.cosine),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out += &table(&["output", "top-1 agree", "max |err|", "mean |err|", "rel L2", "cosine"], &rows);
    }
    for g in &v.gates {
        let _ = writeln!(
            out,
            "  gate --{} {}: {} ({})",
            g.gate,
            g.limit,
            if g.passed { "passed" } else { "FAILED" },
            g.value.map_or("not measurable".to_string(), |v| format!("{v:.4}"))
        );
    }
    out
}

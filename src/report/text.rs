//! Plain-text tables for the terminal.

use std::fmt::Write;

use super::{InspectReport, PruneReport};

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
            vec![
                t.node.clone(),
                t.op.clone(),
                t.weight.clone(),
                shape(&t.shape),
                t.params.to_string(),
                format!("{:.1}%", 100.0 * t.sparsity),
                scale,
                note,
            ]
        })
        .collect();
    let m = &r.method;
    let how = match &m.pattern {
        Some(p) => format!("pattern {p}"),
        None => format!("sparsity {} {}", m.sparsity.unwrap_or(0.0), m.scope.as_deref().unwrap_or("")),
    };
    let mut out = format!("{} -> {} ({how}, renorm {})\n", r.model, r.output, m.renorm);
    out += &table(&["node", "op", "weight", "shape", "params", "pruned", "scale", ""], &rows);
    skipped_lines(&mut out, &r.skipped);
    let _ = writeln!(
        out,
        "\npruned {} of {} weights ({:.2}%). Zeros make the file compress smaller and run faster only on sparse kernels, not on a dense runtime.",
        r.totals.pruned,
        r.totals.params,
        100.0 * r.totals.sparsity
    );
    out
}

//! Self-contained HTML5 reports of `sweep` and `batch`: inline CSS and SVG, no scripts, nothing fetched.
//! The markup is also well-formed XML (every tag closed, attributes quoted, only XML's own entities).

use std::fmt::Write;

use super::markdown::{batch_lines, batch_table, dense_line, sweep_table, Table, ZEROS_NOTE};
use super::svg::{escape, plot, sweep_plot};
use super::{BatchReport, SweepReport};

const CSS: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; color: #222222; margin: 2em auto;
       max-width: 80em; padding: 0 1em; line-height: 1.4; }
h1 { font-size: 1.5em; word-break: break-all; }
figure { margin: 1.5em 0; }
svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: 0.9em; margin: 1em 0; }
th, td { padding: 0.3em 0.7em; border-bottom: 1px solid #dddddd; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.failed td { background: #fde4e0; }
tr.failed td.status { color: #a50f15; font-weight: bold; }
.note { color: #555555; }
";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(title)
    )
}

/// The table; rows whose `failed` flag is set get the class "failed".
fn table(t: &Table, failed: &[bool]) -> String {
    let class = |i: usize| if t.numeric[i] { " class=\"num\"" } else { "" };
    let mut out = String::from("<table>\n<thead><tr>");
    for (i, h) in t.header.iter().enumerate() {
        let _ = write!(out, "<th{}>{}</th>", class(i), escape(h));
    }
    out += "</tr></thead>\n<tbody>\n";
    for (r, row) in t.rows.iter().enumerate() {
        out += if failed.get(r) == Some(&true) { "<tr class=\"failed\">" } else { "<tr>" };
        for (i, cell) in row.iter().enumerate() {
            let class = match (t.header[i], class(i)) {
                ("status", _) => " class=\"status\"",
                (_, c) => c,
            };
            let _ = write!(out, "<td{class}>{}</td>", escape(cell));
        }
        out += "</tr>\n";
    }
    out += "</tbody>\n</table>\n";
    out
}

/// A sweep as an HTML page: heading, dense figures, the plot of the metric against sparsity, the table.
pub fn sweep(r: &SweepReport) -> String {
    let body = format!(
        "<h1>Sparsity sweep: {}</h1>\n<p>{}</p>\n<figure>\n{}</figure>\n{}<p class=\"note\">{}</p>\n",
        escape(&r.model),
        escape(&dense_line(r)),
        plot(&sweep_plot(r)),
        table(&sweep_table(r), &[]),
        escape(ZEROS_NOTE)
    );
    page(&format!("renorm sweep: {}", r.model), &body)
}

/// A batch as an HTML page: totals, method, shard, one table row per model (failed ones marked).
pub fn batch(r: &BatchReport) -> String {
    let mut body = format!("<h1>Batch prune: {}</h1>\n", escape(&r.input_dir));
    for l in batch_lines(r) {
        let _ = writeln!(body, "<p>{}</p>", escape(&l));
    }
    let failed: Vec<bool> = r.models.iter().map(|m| m.status == "failed").collect();
    body += &table(&batch_table(r), &failed);
    let _ = writeln!(body, "<p class=\"note\">{}</p>", escape(ZEROS_NOTE));
    page(&format!("renorm batch: {}", r.input_dir), &body)
}

//! A line plot as a standalone SVG element (no XML prolog: it can be inlined in HTML or saved as a .svg).
//!
//! Output is deterministic: every coordinate is printed with two decimals, nothing depends on hashing.

use std::fmt::Write;

use super::SweepReport;

/// A plot: one polyline with point markers per series, an optional dashed horizontal reference line.
#[derive(Debug, Clone, PartialEq)]
pub struct Plot {
    pub title: String,
    /// With units, e.g. "sparsity (%)".
    pub x_label: String,
    /// With units, e.g. "top-1 accuracy (%)".
    pub y_label: String,
    pub series: Vec<Series>,
    /// Label and y value of a dashed horizontal line, e.g. ("dense 98.4 %", 98.4).
    pub reference: Option<(String, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    /// Drawn in the order given; points with a non-finite coordinate are left out.
    pub points: Vec<(f64, f64)>,
}

/// Okabe–Ito: distinguishable with every common colour-vision deficiency (yellow last: weak on white).
const PALETTE: [&str; 8] =
    ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"];

// Layout, in pixels.
const LEFT: f64 = 70.0;
const TOP: f64 = 44.0;
const WIDTH: f64 = 480.0;
const HEIGHT: f64 = 300.0;
const BOTTOM: f64 = 56.0;
const LEGEND_ROW: f64 = 20.0;
/// Rough width of one character at 12 px, to size the legend.
const CHAR_WIDTH: f64 = 7.0;

/// `s` with `&`, `<`, `>`, `"` and `'` escaped: safe in XML/HTML text and quoted attributes.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out += "&amp;",
            '<' => out += "&lt;",
            '>' => out += "&gt;",
            '"' => out += "&quot;",
            '\'' => out += "&#39;",
            c => out.push(c),
        }
    }
    out
}

/// An axis: its range, rounded out to whole tick steps, and the ticks.
struct Axis {
    lo: f64,
    hi: f64,
    step: f64,
}

impl Axis {
    /// Covers `values` with "nice" steps (1, 2, 2.5 or 5 × 10^k), about five intervals.
    fn covering(values: impl Iterator<Item = f64>) -> Axis {
        let (mut lo, mut hi) =
            values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        } else if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            (lo, hi) = (lo - pad, hi + pad);
        }
        let raw = (hi - lo) / 5.0;
        let magnitude = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * magnitude)
            .find(|s| *s >= raw * (1.0 - 1e-9))
            .unwrap_or(10.0 * magnitude);
        Axis { lo: (lo / step + 1e-9).floor() * step, hi: (hi / step - 1e-9).ceil() * step, step }
    }

    fn ticks(&self) -> Vec<f64> {
        let n = ((self.hi - self.lo) / self.step).round() as usize;
        (0..=n).map(|i| self.lo + i as f64 * self.step).collect()
    }

    /// Tick label: as many decimals as the step needs, never "-0".
    fn label(&self, v: f64) -> String {
        let decimals = (0..10).find(|&d| {
            let x = self.step * 10f64.powi(d);
            (x - x.round()).abs() < 1e-6 * x.max(1.0)
        });
        let v = if v.abs() < self.step * 1e-6 { 0.0 } else { v };
        format!("{v:.*}", decimals.unwrap_or(10) as usize)
    }

    /// Maps `v` onto the pixel span `from..to`.
    fn map(&self, v: f64, from: f64, to: f64) -> f64 {
        from + (v - self.lo) / (self.hi - self.lo) * (to - from)
    }
}

/// A point marker: circle, square, triangle or diamond (by series), so series differ in shape too.
fn marker(out: &mut String, shape: usize, x: f64, y: f64, fill: &str) {
    let _ = match shape % 4 {
        0 => writeln!(out, r#"<circle class="marker" cx="{x:.2}" cy="{y:.2}" r="3.5" fill="{fill}"/>"#),
        1 => writeln!(
            out,
            r#"<rect class="marker" x="{:.2}" y="{:.2}" width="7" height="7" fill="{fill}"/>"#,
            x - 3.5,
            y - 3.5
        ),
        2 => writeln!(
            out,
            r#"<polygon class="marker" points="{x:.2},{:.2} {:.2},{:.2} {:.2},{:.2}" fill="{fill}"/>"#,
            y - 4.5,
            x + 4.5,
            y + 3.5,
            x - 4.5,
            y + 3.5
        ),
        _ => writeln!(
            out,
            r#"<polygon class="marker" points="{x:.2},{:.2} {:.2},{y:.2} {x:.2},{:.2} {:.2},{y:.2}" fill="{fill}"/>"#,
            y - 4.5,
            x + 4.5,
            y + 4.5,
            x - 4.5
        ),
    };
}

/// The plot as one `<svg>` element.
pub fn plot(p: &Plot) -> String {
    let finite = |s: &Series| -> Vec<(f64, f64)> {
        s.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect()
    };
    let series: Vec<Vec<(f64, f64)>> = p.series.iter().map(finite).collect();
    let reference = p.reference.as_ref().filter(|(_, v)| v.is_finite());
    let xs = Axis::covering(series.iter().flatten().map(|&(x, _)| x));
    let ys = Axis::covering(series.iter().flatten().map(|&(_, y)| y).chain(reference.map(|r| r.1)));
    let (right, bottom) = (LEFT + WIDTH, TOP + HEIGHT);
    let px = |x: f64| xs.map(x, LEFT, right);
    let py = |y: f64| ys.map(y, bottom, TOP);

    let labels = p.series.iter().map(|s| &s.name).chain(reference.map(|r| &r.0));
    let longest = labels.map(|l| l.chars().count()).max().unwrap_or(0) as f64;
    let items = p.series.len() + usize::from(reference.is_some());
    let legend_x = right + 20.0;
    let width = legend_x + 34.0 + CHAR_WIDTH * longest + 10.0;
    let height = (bottom + BOTTOM).max(TOP + LEGEND_ROW * items as f64 + 10.0);

    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12" role="img">"#
    );
    let title = escape(&p.title);
    let _ = writeln!(o, "<title>{title}</title>");
    let _ = writeln!(o, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = writeln!(
        o,
        r#"<text class="title" x="{:.2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{title}</text>"#,
        LEFT + WIDTH / 2.0
    );

    // Grid, ticks and their labels.
    for v in xs.ticks() {
        let x = px(v);
        let _ = writeln!(
            o,
            r##"<g class="xtick"><line x1="{x:.2}" y1="{TOP:.2}" x2="{x:.2}" y2="{bottom:.2}" stroke="#e6e6e6"/><line x1="{x:.2}" y1="{bottom:.2}" x2="{x:.2}" y2="{:.2}" stroke="#333333"/><text x="{x:.2}" y="{:.2}" text-anchor="middle">{}</text></g>"##,
            bottom + 5.0,
            bottom + 19.0,
            xs.label(v)
        );
    }
    for v in ys.ticks() {
        let y = py(v);
        let _ = writeln!(
            o,
            r##"<g class="ytick"><line x1="{LEFT:.2}" y1="{y:.2}" x2="{right:.2}" y2="{y:.2}" stroke="#e6e6e6"/><line x1="{:.2}" y1="{y:.2}" x2="{LEFT:.2}" y2="{y:.2}" stroke="#333333"/><text x="{:.2}" y="{y:.2}" dy="0.32em" text-anchor="end">{}</text></g>"##,
            LEFT - 5.0,
            LEFT - 8.0,
            ys.label(v)
        );
    }
    let _ = writeln!(
        o,
        r##"<path class="axes" d="M{LEFT:.2},{TOP:.2} V{bottom:.2} H{right:.2}" fill="none" stroke="#333333"/>"##
    );
    let _ = writeln!(
        o,
        r#"<text class="x-title" x="{:.2}" y="{:.2}" text-anchor="middle">{}</text>"#,
        LEFT + WIDTH / 2.0,
        bottom + 40.0,
        escape(&p.x_label)
    );
    let (yx, yy) = (LEFT - 50.0, TOP + HEIGHT / 2.0);
    let _ = writeln!(
        o,
        r#"<text class="y-title" x="{yx:.2}" y="{yy:.2}" text-anchor="middle" transform="rotate(-90 {yx:.2} {yy:.2})">{}</text>"#,
        escape(&p.y_label)
    );

    if let Some((label, v)) = reference {
        let y = py(*v);
        let _ = writeln!(
            o,
            r##"<g class="reference"><line x1="{LEFT:.2}" y1="{y:.2}" x2="{right:.2}" y2="{y:.2}" stroke="#555555" stroke-width="1.5" stroke-dasharray="6 4"/><text x="{:.2}" y="{:.2}" text-anchor="end" fill="#555555">{}</text></g>"##,
            right - 4.0,
            y - 5.0,
            escape(label)
        );
    }

    for (i, (s, points)) in p.series.iter().zip(&series).enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let _ = writeln!(o, r#"<g class="series" data-name="{}">"#, escape(&s.name));
        if !points.is_empty() {
            let coords: Vec<String> =
                points.iter().map(|&(x, y)| format!("{:.2},{:.2}", px(x), py(y))).collect();
            let _ = writeln!(
                o,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
                coords.join(" ")
            );
        }
        for &(x, y) in points {
            marker(&mut o, i, px(x), py(y), colour);
        }
        o += "</g>\n";
    }

    o += "<g class=\"legend\">\n";
    for (i, s) in p.series.iter().enumerate() {
        let y = TOP + LEGEND_ROW * i as f64;
        let colour = PALETTE[i % PALETTE.len()];
        let _ = write!(
            o,
            r#"<g class="legend-item"><line x1="{legend_x:.2}" y1="{y:.2}" x2="{:.2}" y2="{y:.2}" stroke="{colour}" stroke-width="2"/>"#,
            legend_x + 24.0
        );
        marker(&mut o, i, legend_x + 12.0, y, colour);
        let _ = writeln!(
            o,
            r#"<text x="{:.2}" y="{y:.2}" dy="0.32em">{}</text></g>"#,
            legend_x + 32.0,
            escape(&s.name)
        );
    }
    if let Some((label, _)) = reference {
        let y = TOP + LEGEND_ROW * p.series.len() as f64;
        let _ = writeln!(
            o,
            r##"<g class="legend-item"><line x1="{legend_x:.2}" y1="{y:.2}" x2="{:.2}" y2="{y:.2}" stroke="#555555" stroke-width="1.5" stroke-dasharray="6 4"/><text x="{:.2}" y="{y:.2}" dy="0.32em">{}</text></g>"##,
            legend_x + 24.0,
            legend_x + 32.0,
            escape(label)
        );
    }
    o += "</g>\n</svg>\n";
    o
}

/// A sweep's plot: its metric (%) against the requested sparsity (%), one series per (renorm, scope) in
/// the order they first appear (named "l2", or "l2, layer" when the sweep has several scopes), sorted by
/// sparsity, the dense model as reference. Points without a metric are left out.
pub fn sweep_plot(r: &SweepReport) -> Plot {
    let agreement = r.metric == "top1_agreement";
    let scopes = r.points.iter().any(|p| p.scope != r.points[0].scope);
    let mut series: Vec<((&str, &str), Series)> = Vec::new();
    for p in &r.points {
        let key = (p.renorm.as_str(), p.scope.as_str());
        let i = series.iter().position(|(k, _)| *k == key).unwrap_or_else(|| {
            let name = if scopes { format!("{}, {}", p.renorm, p.scope) } else { p.renorm.clone() };
            series.push((key, Series { name, points: Vec::new() }));
            series.len() - 1
        });
        if let Some(m) = p.metric() {
            series[i].1.points.push((100.0 * p.sparsity, 100.0 * m));
        }
    }
    let mut series: Vec<Series> = series.into_iter().map(|(_, s)| s).collect();
    for s in &mut series {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let reference = match (agreement, r.dense.accuracy) {
        (true, _) => Some(("dense 100 %".to_string(), 100.0)),
        (false, Some(a)) => Some((format!("dense {:.1} %", 100.0 * a), 100.0 * a)),
        (false, None) => None,
    };
    Plot {
        title: format!("{}: {} vs sparsity", r.model, super::markdown::metric_name(r)),
        x_label: "sparsity (%)".into(),
        y_label: if agreement { "top-1 agreement with dense (%)" } else { "top-1 accuracy (%)" }.into(),
        series,
        reference,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axes() {
        let a = Axis::covering([50.0, 95.0].into_iter());
        assert_eq!((a.lo, a.hi, a.step), (50.0, 100.0, 10.0));
        let a = Axis::covering([60.46, 98.4].into_iter());
        assert_eq!((a.lo, a.hi, a.step), (60.0, 100.0, 10.0));
        let a = Axis::covering([0.1, 0.35].into_iter());
        assert_eq!(
            a.ticks().iter().map(|&v| a.label(v)).collect::<Vec<_>>(),
            ["0.10", "0.15", "0.20", "0.25", "0.30", "0.35"]
        );
        let a = Axis::covering([98.4].into_iter());
        assert!(a.lo < 98.4 && a.hi > 98.4);
        let a = Axis::covering(std::iter::empty());
        assert_eq!((a.lo, a.hi), (0.0, 1.0));
        let a = Axis::covering([-1.0, 1.0].into_iter());
        assert_eq!(a.label(-1.0 + 2.0 * 0.5 - 1e-12), "0.0");
    }
}

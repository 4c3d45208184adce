//! The sweep and batch reports for people: SVG plot, HTML pages and Markdown, checked by parsing them
//! (SVG and HTML as XML with roxmltree) and reading back what they show.

use renorm::report::svg::{plot, Plot, Series};
use renorm::report::*;
use renorm::sizes::{SizeChange, Sizes};
use roxmltree::{Document, Node};

const MODEL: &str = "nets/a<b>&\"c\".onnx";
/// A renorm name that needs escaping everywhere.
const ODD: &str = "st<&>\"ats";

// ---------- building reports by hand ----------

fn output(top1: Option<f64>, cosine: f64, rel: f64) -> OutputReport {
    OutputReport {
        name: "logits".into(),
        top1_agreement: top1,
        max_abs_error: 0.5,
        mean_abs_error: 0.1,
        rel_l2_error: rel,
        cosine,
        reference_max_abs_error: None,
    }
}

/// A point; `metric` None: validation skipped (no accuracy, no outputs).
fn point(sparsity: f64, scope: &str, renorm: &str, labelled: bool, metric: Option<f64>) -> SweepPoint {
    let validation = match metric {
        None => {
            ValidationReport { skipped_reason: Some("tract could not run it".into()), ..Default::default() }
        }
        Some(m) => ValidationReport {
            samples: 1000,
            accuracy: labelled.then_some(Accuracy { original: 0.984, pruned: m }),
            outputs: vec![output(
                Some(if labelled { m + 0.01 } else { m }),
                0.99 - sparsity / 10.0,
                sparsity / 4.0,
            )],
            ..Default::default()
        },
    };
    SweepPoint {
        sparsity,
        scope: scope.into(),
        renorm: renorm.into(),
        achieved_sparsity: sparsity - 0.001,
        size: Sizes { raw: 1_234_567, zstd: (1_100_000.0 * (1.0 - sparsity / 2.0)) as u64, estimated: false },
        validation,
    }
}

/// Two renorms × two scopes × three sparsities, labelled; two points without a metric.
fn labelled() -> SweepReport {
    let mut points = Vec::new();
    for (i, s) in [0.5, 0.9, 0.95].into_iter().enumerate() {
        for scope in ["global", "layer"] {
            for (j, renorm) in ["l2", ODD].into_iter().enumerate() {
                let skipped =
                    (s, scope, renorm) == (0.95, "layer", "l2") || (s, scope, renorm) == (0.9, "global", ODD);
                let m = 0.97 - 0.1 * i as f64 + 0.02 * j as f64 - if scope == "layer" { 0.05 } else { 0.0 };
                points.push(point(s, scope, renorm, true, (!skipped).then_some(m)));
            }
        }
    }
    SweepReport {
        model: MODEL.into(),
        metric: "accuracy".into(),
        dense: DensePoint {
            accuracy: Some(0.984),
            size: Sizes { raw: 1_234_567, zstd: 1_100_000, estimated: false },
        },
        points,
    }
}

/// One scope, no labels: the metric is the top-1 agreement; one point's output has none. Given out of
/// sparsity order: the plot sorts each series.
fn unlabelled() -> SweepReport {
    let points = vec![
        point(0.9, "unit", "none", false, Some(0.80)),
        point(0.8, "unit", "none", false, Some(0.93)),
        point(0.8, "unit", "l2", false, Some(0.95)),
        point(0.9, "unit", "l2", false, Some(0.85)),
        SweepPoint {
            validation: ValidationReport {
                samples: 1000,
                outputs: vec![output(None, 0.9, 0.3)],
                ..Default::default()
            },
            ..point(0.95, "unit", "l2", false, Some(0.0))
        },
    ];
    SweepReport {
        model: "mlp.onnx".into(),
        metric: "top1_agreement".into(),
        dense: DensePoint {
            accuracy: None,
            size: Sizes { raw: 1_234_567, zstd: 1_100_000, estimated: false },
        },
        points,
    }
}

/// The series each sweep should plot: name and (sparsity %, metric %) sorted by sparsity.
fn expected_series(r: &SweepReport, with_scope: bool) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for p in &r.points {
        let name = if with_scope { format!("{}, {}", p.renorm, p.scope) } else { p.renorm.clone() };
        let i = out.iter().position(|(n, _)| *n == name).unwrap_or_else(|| {
            out.push((name, vec![]));
            out.len() - 1
        });
        if let Some(m) = p.metric() {
            out[i].1.push((100.0 * p.sparsity, 100.0 * m));
        }
    }
    for (_, pts) in &mut out {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

fn batch_report() -> BatchReport {
    let size = |after_zstd| SizeChange {
        before: Sizes { raw: 1_234_567, zstd: 1_100_000, estimated: false },
        after: Sizes { raw: 1_234_567, zstd: after_zstd, estimated: false },
    };
    let entry = |model: &str, status: &str| BatchEntry {
        model: model.into(),
        status: status.into(),
        output: Some(model.into()),
        error: None,
        params: 1000,
        pruned: 900,
        sparsity: 0.9,
        size: Some(size(400_000)),
        validation: None,
        seconds: 1.26,
    };
    let validated = BatchEntry {
        validation: Some(ValidationReport {
            samples: 1000,
            accuracy: Some(Accuracy { original: 0.984, pruned: 0.97 }),
            outputs: vec![output(Some(0.975), 0.99912, 0.05)],
            ..Default::default()
        }),
        ..entry("a/mlp.onnx", "pruned")
    };
    let failed = BatchEntry {
        output: None,
        error: Some("not an ONNX model: <bad> & \"worse\"".into()),
        params: 0,
        pruned: 0,
        sparsity: 0.0,
        size: None,
        seconds: 0.02,
        ..entry("broken.onnx", "failed")
    };
    BatchReport {
        input_dir: "models<&>".into(),
        output_dir: "out".into(),
        method: Method {
            sparsity: Some(0.9),
            scope: Some("global".into()),
            renorm: "l2".into(),
            pattern: None,
        },
        shard: Some("2/3".into()),
        models: vec![validated, entry(MODEL, "resumed"), failed],
        totals: BatchTotals { models: 3, pruned: 1, resumed: 1, failed: 1 },
    }
}

// ---------- reading XML back ----------

fn parse(xml: &str) -> Document<'_> {
    Document::parse(xml).unwrap_or_else(|e| panic!("not well-formed: {e}\n{xml}"))
}

/// An HTML page parsed as XML (after its doctype, which XML parsers refuse without a DTD).
fn parse_html(html: &str) -> Document<'_> {
    let rest = html.strip_prefix("<!DOCTYPE html>\n").expect("starts with the HTML5 doctype");
    parse(rest)
}

fn text(n: Node) -> String {
    n.descendants().filter(|d| d.is_text()).map(|d| d.text().unwrap()).collect()
}

fn with_class<'a, 'i>(root: Node<'a, 'i>, tag: &str, class: &str) -> Vec<Node<'a, 'i>> {
    root.descendants().filter(|n| n.has_tag_name(tag) && n.attribute("class") == Some(class)).collect()
}

fn num(n: Node, attr: &str) -> f64 {
    n.attribute(attr).unwrap_or_else(|| panic!("no {attr}")).parse().unwrap()
}

fn child<'a, 'i>(n: Node<'a, 'i>, tag: &str) -> Node<'a, 'i> {
    n.children().find(|c| c.has_tag_name(tag)).unwrap_or_else(|| panic!("no <{tag}>"))
}

/// An axis read back from its ticks: (value, pixel) per tick, from the tick label and the tick line.
struct Axis(Vec<(f64, f64)>);

impl Axis {
    fn read(svg: Node, class: &str, coordinate: &str) -> Axis {
        let ticks: Vec<(f64, f64)> = with_class(svg, "g", class)
            .into_iter()
            .map(|g| {
                let label = text(child(g, "text"));
                let value = label.parse().unwrap_or_else(|_| panic!("tick label {label:?} is not a number"));
                (value, num(child(g, "line"), coordinate))
            })
            .collect();
        assert!(ticks.len() >= 3, "{class}: {} ticks", ticks.len());
        // Evenly stepped values at evenly spaced pixels.
        let (dv, dp) = (ticks[1].0 - ticks[0].0, ticks[1].1 - ticks[0].1);
        assert!(dv > 0.0 && dp != 0.0);
        for w in ticks.windows(2) {
            assert!((w[1].0 - w[0].0 - dv).abs() < 1e-9 * dv.max(1.0), "{class}: uneven steps {ticks:?}");
            assert!((w[1].1 - w[0].1 - dp).abs() < 0.02, "{class}: uneven spacing {ticks:?}");
        }
        Axis(ticks)
    }

    fn range(&self) -> (f64, f64) {
        (self.0[0].0, self.0[self.0.len() - 1].0)
    }

    fn value(&self, pixel: f64) -> f64 {
        let ((v0, p0), (v1, p1)) = (self.0[0], self.0[self.0.len() - 1]);
        v0 + (pixel - p0) * (v1 - v0) / (p1 - p0)
    }

    fn pixel(&self, value: f64) -> f64 {
        let ((v0, p0), (v1, p1)) = (self.0[0], self.0[self.0.len() - 1]);
        p0 + (value - v0) * (p1 - p0) / (v1 - v0)
    }
}

/// Checks a plot against the series and reference it should show, reading every value back through the
/// labelled ticks.
fn check_plot(
    svg: Node,
    x_title: &str,
    y_title: &str,
    series: &[(String, Vec<(f64, f64)>)],
    reference: (&str, f64),
) {
    assert_eq!(svg.tag_name().namespace(), Some("http://www.w3.org/2000/svg"));
    assert_eq!(text(with_class(svg, "text", "x-title")[0]), x_title);
    assert_eq!(text(with_class(svg, "text", "y-title")[0]), y_title);
    let xs = Axis::read(svg, "xtick", "x1");
    let ys = Axis::read(svg, "ytick", "y1");

    let groups = with_class(svg, "g", "series");
    assert_eq!(groups.len(), series.len());
    let mut colours = Vec::new();
    for (g, (name, points)) in groups.iter().zip(series) {
        assert_eq!(g.attribute("data-name"), Some(name.as_str()));
        let lines: Vec<Node> = g.children().filter(|c| c.has_tag_name("polyline")).collect();
        let markers = g.descendants().filter(|c| c.attribute("class") == Some("marker")).count();
        assert_eq!(markers, points.len(), "{name}: markers");
        if points.is_empty() {
            assert!(lines.is_empty(), "{name}: a polyline without points");
            continue;
        }
        assert_eq!(lines.len(), 1, "{name}: one polyline");
        colours.push(lines[0].attribute("stroke").unwrap().to_string());
        let drawn: Vec<(f64, f64)> = lines[0]
            .attribute("points")
            .unwrap()
            .split_whitespace()
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (xs.value(x.parse().unwrap()), ys.value(y.parse().unwrap()))
            })
            .collect();
        assert_eq!(drawn.len(), points.len(), "{name}: polyline points");
        // Read back through the ticks, each point is where it should be (to 1/1000 of the axis).
        let ((x0, x1), (y0, y1)) = (xs.range(), ys.range());
        for (d, e) in drawn.iter().zip(points) {
            let close = (d.0 - e.0).abs() < 1e-3 * (x1 - x0) && (d.1 - e.1).abs() < 1e-3 * (y1 - y0);
            assert!(close, "{name}: drew {d:?}, expected {e:?}");
        }
        // The axes cover the data.
        assert!(points.iter().all(|&(x, y)| x0 <= x && x <= x1 && y0 <= y && y <= y1));
    }
    let mut distinct = colours.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), colours.len(), "series colours {colours:?}");

    let legend: Vec<String> =
        with_class(svg, "g", "legend-item").into_iter().map(|g| text(child(g, "text"))).collect();
    let mut expected: Vec<String> = series.iter().map(|s| s.0.clone()).collect();
    expected.push(reference.0.to_string());
    assert_eq!(legend, expected);

    let r = with_class(svg, "g", "reference");
    assert_eq!(r.len(), 1);
    assert_eq!(text(child(r[0], "text")), reference.0);
    let line = child(r[0], "line");
    assert!(line.attribute("stroke-dasharray").is_some(), "reference line is dashed");
    assert_eq!(num(line, "y1"), num(line, "y2"));
    assert!((num(line, "y1") - ys.pixel(reference.1)).abs() < 0.02, "reference at the wrong height");
    let (y0, y1) = ys.range();
    assert!(y0 <= reference.1 && reference.1 <= y1);
}

// ---------- SVG ----------

#[test]
fn plot_draws_series_reference_ticks_and_escapes_text() {
    let p = Plot {
        title: "a<b & \"c\" 'd'".into(),
        x_label: "sparsity (%)".into(),
        y_label: "top-1 accuracy (%)".into(),
        series: vec![
            Series { name: "l2 <&>".into(), points: vec![(50.0, 97.5), (90.0, 91.2)] },
            Series { name: "none".into(), points: vec![(50.0, 96.0), (90.0, f64::NAN), (95.0, 60.46)] },
            Series { name: "stats \"q\"".into(), points: vec![] },
        ],
        reference: Some(("dense 98.4 %".into(), 98.4)),
    };
    let svg = plot(&p);
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "no prolog, namespaced");
    assert_eq!(svg, plot(&p), "deterministic");
    assert!(svg.contains("a&lt;b &amp; &quot;c&quot; &#39;d&#39;") && svg.contains("l2 &lt;&amp;&gt;"));
    assert!(!svg.contains("l2 <&>") && !svg.contains("NaN"));
    let doc = parse(&svg);
    let root = doc.root_element();
    assert_eq!(text(with_class(root, "text", "title")[0]), p.title);
    let series = vec![
        ("l2 <&>".to_string(), vec![(50.0, 97.5), (90.0, 91.2)]),
        ("none".to_string(), vec![(50.0, 96.0), (95.0, 60.46)]),
        ("stats \"q\"".to_string(), vec![]),
    ];
    check_plot(root, "sparsity (%)", "top-1 accuracy (%)", &series, ("dense 98.4 %", 98.4));
    // Nice ticks: 50..100 by 10 on x, 60..100 by 10 on y.
    let labels = |class| with_class(root, "g", class).into_iter().map(|g| text(g)).collect::<Vec<_>>();
    assert_eq!(labels("xtick"), ["50", "60", "70", "80", "90", "100"]);
    assert_eq!(labels("ytick"), ["60", "70", "80", "90", "100"]);
}

#[test]
fn plot_range_covers_a_reference_far_from_the_data() {
    let p = Plot {
        title: "t".into(),
        x_label: "x".into(),
        y_label: "y".into(),
        series: vec![Series { name: "s".into(), points: vec![(0.1, 0.2), (0.35, 0.3)] }],
        reference: Some(("ref".into(), 0.9)),
    };
    let svg = plot(&p);
    let doc = parse(&svg);
    let series = vec![("s".to_string(), vec![(0.1, 0.2), (0.35, 0.3)])];
    check_plot(doc.root_element(), "x", "y", &series, ("ref", 0.9));
}

// ---------- HTML ----------

/// A self-contained page: nothing fetched, nothing run.
fn check_self_contained(html: &str) {
    for bad in ["<script", "<link", "src=", "@import", "url("] {
        assert!(!html.contains(bad), "page contains {bad}");
    }
    assert_eq!(html.matches("http").count(), html.matches("http://www.w3.org/2000/svg").count());
}

/// A table row: its class attribute and its cells as text.
type Row = (Option<String>, Vec<String>);

/// Header cells and rows of the page's only table, checking every row is as wide.
fn html_table(doc: &Document) -> (Vec<String>, Vec<Row>) {
    let tables: Vec<Node> = doc.descendants().filter(|n| n.has_tag_name("table")).collect();
    assert_eq!(tables.len(), 1);
    let header: Vec<String> = tables[0].descendants().filter(|n| n.has_tag_name("th")).map(text).collect();
    let body = tables[0].descendants().find(|n| n.has_tag_name("tbody")).unwrap();
    let rows: Vec<Row> = body
        .children()
        .filter(|n| n.has_tag_name("tr"))
        .map(|tr| {
            let cells: Vec<String> = tr.children().filter(|n| n.has_tag_name("td")).map(text).collect();
            assert_eq!(cells.len(), header.len(), "row {cells:?}");
            (tr.attribute("class").map(String::from), cells)
        })
        .collect();
    (header, rows)
}

fn column(header: &[String], name: &str) -> usize {
    header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name:?} in {header:?}"))
}

#[test]
fn html_sweep_with_labels_plots_each_renorm_and_scope() {
    let r = labelled();
    let html = html::sweep(&r);
    assert_eq!(html, html::sweep(&r), "deterministic");
    check_self_contained(&html);
    assert!(!html.contains(MODEL) && html.contains("a&lt;b&gt;&amp;&quot;c&quot;.onnx"));
    let doc = parse_html(&html);
    let title = doc.descendants().find(|n| n.has_tag_name("title")).unwrap();
    assert_eq!(text(title), format!("renorm sweep: {MODEL}"));
    let h1 = doc.descendants().find(|n| n.has_tag_name("h1")).unwrap();
    assert_eq!(text(h1), format!("Sparsity sweep: {MODEL}"));
    let body = text(doc.root_element());
    assert!(body.contains("Dense model: accuracy 98.40 %"));
    assert!(body.contains("dense runtime"));

    let svgs: Vec<Node> = doc.descendants().filter(|n| n.has_tag_name("svg")).collect();
    assert_eq!(svgs.len(), 1);
    let series = expected_series(&r, true);
    let names: Vec<&str> = series.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["l2, global", "st<&>\"ats, global", "l2, layer", "st<&>\"ats, layer"]);
    assert_eq!(series.iter().map(|s| s.1.len()).collect::<Vec<_>>(), [3, 2, 2, 3]);
    check_plot(svgs[0], "sparsity (%)", "top-1 accuracy (%)", &series, ("dense 98.4 %", 98.4));

    let (header, rows) = html_table(&doc);
    assert_eq!(
        header,
        [
            "sparsity",
            "scope",
            "renorm",
            "achieved sparsity",
            "accuracy",
            "top-1 agreement",
            "cosine",
            "rel. L2 error",
            "size raw",
            "size zstd (vs dense)"
        ]
    );
    assert_eq!(rows.len(), r.points.len(), "points left out of the plot stay in the table");
    for ((_, cells), p) in rows.iter().zip(&r.points) {
        assert_eq!(cells[1], p.scope);
        assert_eq!(cells[2], p.renorm);
        let acc = &cells[column(&header, "accuracy")];
        match p.metric() {
            Some(m) => assert_eq!(*acc, format!("{:.2} %", 100.0 * m)),
            None => assert_eq!(acc, "–"),
        }
    }
    // The second point: 50 %, global, the odd renorm at 99 % accuracy (top-1 99.99 %).
    assert_eq!(
        rows[1].1,
        [
            "50 %",
            "global",
            ODD,
            "49.90 %",
            "99.00 %",
            "100.00 %",
            "0.94000",
            "0.1250",
            "1.2 MB",
            "825.0 KB (-25 %)"
        ]
    );
}

#[test]
fn html_sweep_without_labels_plots_top1_agreement_by_renorm() {
    let r = unlabelled();
    let html = html::sweep(&r);
    check_self_contained(&html);
    let doc = parse_html(&html);
    let svg = doc.descendants().find(|n| n.has_tag_name("svg")).unwrap();
    let series = expected_series(&r, false);
    assert_eq!(series[0], ("none".to_string(), vec![(80.0, 93.0), (90.0, 80.0)]));
    assert_eq!(series[1].0, "l2");
    assert_eq!(series[1].1.len(), 2, "the point without a metric is not plotted");
    check_plot(svg, "sparsity (%)", "top-1 agreement with dense (%)", &series, ("dense 100 %", 100.0));
    let (header, rows) = html_table(&doc);
    assert_eq!(header.len(), 9);
    assert!(!header.contains(&"accuracy".to_string()));
    assert_eq!(header.iter().filter(|h| *h == "top-1 agreement").count(), 1);
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[4].1[column(&header, "top-1 agreement")], "–");
    assert_eq!(rows[4].1[column(&header, "size raw")], "1.2 MB");
}

#[test]
fn html_batch_marks_failed_models() {
    let r = batch_report();
    let html = html::batch(&r);
    assert_eq!(html, html::batch(&r), "deterministic");
    check_self_contained(&html);
    let doc = parse_html(&html);
    let paragraphs: Vec<String> = doc.descendants().filter(|n| n.has_tag_name("p")).map(text).collect();
    for line in [
        "3 models: 1 pruned, 1 resumed, 1 failed.",
        "Method: sparsity 90 %, scope global, renorm l2.",
        "Shard 2/3.",
    ] {
        assert!(paragraphs.iter().any(|p| p == line), "{line:?} not in {paragraphs:?}");
    }
    let (header, rows) = html_table(&doc);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows.iter().map(|r| r.0.as_deref()).collect::<Vec<_>>(), [None, None, Some("failed")]);
    let cell = |row: usize, col: &str| rows[row].1[column(&header, col)].clone();
    assert_eq!(cell(0, "model"), "a/mlp.onnx");
    assert_eq!(cell(1, "model"), MODEL);
    assert_eq!(cell(0, "size raw"), "1.2 MB → 1.2 MB");
    assert_eq!(cell(0, "size zstd"), "1.1 MB → 400.0 KB");
    assert_eq!(cell(0, "zstd saving"), "63.6 %");
    assert_eq!(cell(0, "accuracy"), "98.40 % → 97.00 %");
    assert_eq!(cell(0, "top-1 agreement"), "97.50 %");
    assert_eq!(cell(0, "cosine"), "0.99912");
    assert_eq!(cell(1, "accuracy"), "–");
    assert_eq!(cell(0, "seconds"), "1.3");
    assert_eq!(cell(2, "status"), "failed");
    assert_eq!(cell(2, "error"), "not an ONNX model: <bad> & \"worse\"");
    assert_eq!(cell(2, "size zstd"), "–");
    assert_eq!(cell(0, "error"), "");
}

// ---------- Markdown ----------

/// Cells of a Markdown table line, split on unescaped pipes and unescaped.
fn md_cells(line: &str) -> Vec<String> {
    let inner = line.strip_prefix("| ").and_then(|l| l.strip_suffix(" |")).expect("| cells |");
    let (mut cells, mut cell, mut chars) = (Vec::new(), String::new(), inner.chars());
    while let Some(c) = chars.next() {
        match c {
            '\\' => cell.push(chars.next().unwrap()),
            '|' => cells.push(std::mem::take(&mut cell).trim().to_string()),
            c => cell.push(c),
        }
    }
    cells.push(cell.trim().to_string());
    cells
}

/// The only table: header, alignment row, rows; all as wide as the header.
fn md_table(md: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let lines: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
    let header = md_cells(lines[0]);
    let align = md_cells(lines[1]);
    assert!(align.iter().all(|a| a == "---" || a == "---:"), "{align:?}");
    let rows: Vec<Vec<String>> = lines[2..].iter().map(|l| md_cells(l)).collect();
    for row in std::iter::once(&align).chain(&rows) {
        assert_eq!(row.len(), header.len(), "{row:?}");
    }
    (header, rows)
}

#[test]
fn markdown_sweep_tables() {
    let r = labelled();
    let md = markdown::sweep(&r);
    assert_eq!(md, markdown::sweep(&r), "deterministic");
    assert_eq!(md.lines().next().unwrap(), r#"# Sparsity sweep: nets/a\<b\>\&"c".onnx"#);
    assert!(md.contains("Dense model: accuracy 98.40 %, 1.2 MB raw, 1.1 MB zstd. Validated on 1000 samples."));
    assert!(md.contains("do not make the model run any faster on a dense runtime"));
    let (header, rows) = md_table(&md);
    assert_eq!(header.len(), 10);
    assert_eq!(header[4], "accuracy");
    assert_eq!(rows.len(), 12);
    assert_eq!(
        rows[1],
        [
            "50 %",
            "global",
            ODD,
            "49.90 %",
            "99.00 %",
            "100.00 %",
            "0.94000",
            "0.1250",
            "1.2 MB",
            "825.0 KB (-25 %)"
        ]
    );
    // (95 %, layer, l2) was not validated: its figures are missing, its sizes are not.
    assert_eq!(rows[10][..9], ["95 %", "layer", "l2", "94.90 %", "–", "–", "–", "–", "1.2 MB"]);

    let r = unlabelled();
    let (header, rows) = md_table(&markdown::sweep(&r));
    assert_eq!(header.len(), 9);
    assert_eq!(header[4], "top-1 agreement");
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[0][..5], ["90 %", "unit", "none", "89.90 %", "80.00 %"]);
    assert_eq!(rows[0][8], "605.0 KB (-45 %)");
}

#[test]
fn markdown_batch_table() {
    let r = batch_report();
    let md = markdown::batch(&r);
    assert_eq!(md, markdown::batch(&r), "deterministic");
    assert!(md.starts_with("# Batch prune: models\\<\\&\\>\n"));
    for line in [
        "3 models: 1 pruned, 1 resumed, 1 failed.",
        "Method: sparsity 90 %, scope global, renorm l2.",
        "Shard 2/3.",
    ] {
        assert!(md.lines().any(|l| l == line), "{line:?}");
    }
    let (header, rows) = md_table(&md);
    assert_eq!(
        header,
        [
            "model",
            "status",
            "sparsity",
            "size raw",
            "size zstd",
            "zstd saving",
            "accuracy",
            "top-1 agreement",
            "cosine",
            "seconds",
            "error"
        ]
    );
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0],
        [
            "a/mlp.onnx",
            "pruned",
            "90.00 %",
            "1.2 MB → 1.2 MB",
            "1.1 MB → 400.0 KB",
            "63.6 %",
            "98.40 % → 97.00 %",
            "97.50 %",
            "0.99912",
            "1.3",
            ""
        ]
    );
    assert_eq!(rows[1][0], MODEL);
    assert_eq!(rows[2][..3], ["broken.onnx", "failed", "–"]);
    assert_eq!(rows[2][10], "not an ONNX model: <bad> & \"worse\"");
    assert!(md.contains(r#"not an ONNX model: \<bad\> \& "worse""#));

    // Nothing validated, nothing failed: neither the validation nor the error columns.
    let mut r = batch_report();
    r.models.retain(|m| m.status == "resumed");
    let (header, rows) = md_table(&markdown::batch(&r));
    assert_eq!(header, ["model", "status", "sparsity", "size raw", "size zstd", "zstd saving", "seconds"]);
    assert_eq!(rows.len(), 1);
}

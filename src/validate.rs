//! Validation (design.md §6): run the original and the pruned model with tract on the same samples and
//! compare their outputs, against labels too when given; then check the user's gates.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::data;
use crate::error::{Error, Result};
use crate::onnx::model::Model;
use crate::report::{Accuracy, Gate, OutputReport, ValidationReport};
use crate::runtime::{Array, Runner};
use crate::samples::{self, SampleOptions, Samples};

/// Limits a pipeline sets; any failed gate makes the command exit 3 (after writing file and report).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Gates {
    /// Largest allowed fraction of samples whose top-1 class changes.
    pub max_top1_drop: Option<f64>,
    /// Largest allowed drop in top-1 accuracy against the labels.
    pub max_accuracy_drop: Option<f64>,
    /// Smallest allowed cosine similarity of every output.
    pub min_cosine: Option<f64>,
}

/// Where the samples come from and how to run them.
#[derive(Debug, Clone, Default)]
pub struct DataSpec {
    pub data: PathBuf,
    pub labels: Option<PathBuf>,
    pub sample: SampleOptions,
    /// Samples per tract run (a model with a fixed batch dim uses its own).
    pub batch: usize,
    pub gates: Gates,
}

/// Samples and labels read and checked against a model, ready to run.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub samples: Samples,
    pub labels: Option<Vec<i64>>,
    pub output_names: Vec<String>,
    pub batch: usize,
    pub gates: Gates,
}

/// Reads and checks the data for `model`: every data problem is reported here, before anything runs.
pub fn prepare(model: &Model, spec: &DataSpec) -> Result<Prepared> {
    let inputs = samples::model_inputs(model);
    let samples = samples::load(&spec.data, &inputs, &spec.sample)?;
    if samples.count == 0 {
        return Err(Error::model(&spec.data, "holds no samples"));
    }
    let labels = match &spec.labels {
        None if spec.gates.max_accuracy_drop.is_some() => {
            return Err(Error::Usage("--max-accuracy-drop needs --labels".to_string()))
        }
        None => None,
        Some(path) => {
            let mut labels = data::read_labels(path)?;
            if labels.len() < samples.count || (spec.sample.limit.is_none() && labels.len() != samples.count)
            {
                return Err(Error::model(
                    path,
                    format!("holds {} labels for {} samples", labels.len(), samples.count),
                ));
            }
            labels.truncate(samples.count);
            Some(labels)
        }
    };
    // A fixed (non-symbolic) first dim on every input sets the batch size.
    let fixed = inputs.iter().filter_map(|i| i.dims.as_ref()?.first().copied().flatten()).next();
    let batch = match fixed {
        Some(b) if samples.batchable && samples.count % b as usize != 0 => {
            return Err(Error::model(
                &spec.data,
                format!("{} samples do not split into the model's fixed batch of {b}", samples.count),
            ))
        }
        Some(b) => b as usize,
        None => spec.batch.max(1),
    };
    Ok(Prepared { samples, labels, output_names: model.graph.outputs.clone(), batch, gates: spec.gates })
}

/// Validates `pruned` against `original` on `spec`'s data.
pub fn validate_files(original: &Path, pruned: &Path, spec: &DataSpec) -> Result<ValidationReport> {
    let model = Model::open(original)?;
    let prepared = prepare(&model, spec)?;
    Model::open(pruned)?;
    Ok(run(original, pruned, &prepared))
}

/// Runs both models and compares. Never fails: when tract cannot run a model, `skipped_reason` says why.
pub fn run(original: &Path, pruned: &Path, p: &Prepared) -> ValidationReport {
    run_against(&run_model(original, p, &[]), pruned, p)
}

/// `run` with the original's outputs already computed (a sweep runs the original once).
pub fn run_against(original: &Result<Vec<Array>>, pruned: &Path, p: &Prepared) -> ValidationReport {
    let mut report = ValidationReport {
        samples: p.samples.count,
        conversions: p.samples.conversions.clone(),
        ..Default::default()
    };
    let outputs = match original {
        Ok(o) => run_model(pruned, p, &[]).map(|q| (o, q)),
        Err(e) => Err(crate::Error::Usage(e.to_string())),
    };
    match outputs {
        Ok((orig, prun)) => match compare(orig, &prun, p) {
            Ok((outputs, accuracy)) => {
                report.outputs = outputs;
                report.accuracy = accuracy;
            }
            Err(why) => report.skipped_reason = Some(why),
        },
        Err(e) => report.skipped_reason = Some(e.to_string()),
    }
    report.gates = gates(&report, &p.gates);
    report
}

/// Every output of `path` (then the `extra` values) over all samples, batches joined along axis 0.
pub fn run_model(path: &Path, p: &Prepared, extra: &[String]) -> Result<Vec<Array>> {
    run_batches(p, |shapes| Runner::load_with_outputs(path, shapes, extra))
}

/// Only the named values of `path` over all samples (tract computes only what they need).
pub fn run_values(path: &Path, p: &Prepared, names: &[String]) -> Result<Vec<Array>> {
    run_batches(p, |shapes| Runner::load_values(path, shapes, names))
}

/// Runs the samples in batches (in parallel) with runners from `load`, one per input shape.
fn run_batches(p: &Prepared, load: impl Fn(&[Vec<usize>]) -> Result<Runner>) -> Result<Vec<Array>> {
    let s = &p.samples;
    // (set, sample range) per run; batchable data is cut into batches.
    let runs: Vec<(usize, std::ops::Range<usize>)> = if s.batchable {
        (0..s.count).step_by(p.batch).map(|a| (0, a..(a + p.batch).min(s.count))).collect()
    } else {
        (0..s.sets.len()).map(|i| (i, 0..0)).collect()
    };
    let inputs_of = |(set, range): &(usize, std::ops::Range<usize>)| -> Vec<Array> {
        let set = &s.sets[*set];
        if !s.batchable {
            return set.inputs.clone();
        }
        set.inputs.iter().map(|a| rows(a, range.clone())).collect()
    };
    let mut runners: HashMap<Vec<Vec<usize>>, Runner> = HashMap::new();
    for run in &runs {
        let shapes: Vec<Vec<usize>> = inputs_of(run).iter().map(|a| a.shape.clone()).collect();
        if let std::collections::hash_map::Entry::Vacant(e) = runners.entry(shapes) {
            let runner = load(e.key())?;
            e.insert(runner);
        }
    }
    let results: Vec<Vec<Array>> = runs
        .par_iter()
        .map(|run| {
            let inputs = inputs_of(run);
            let shapes: Vec<Vec<usize>> = inputs.iter().map(|a| a.shape.clone()).collect();
            runners[&shapes].run(&inputs)
        })
        .collect::<Vec<Result<_>>>()
        .into_iter()
        // The first failing batch in order, whatever the thread timing.
        .collect::<Result<_>>()?;
    Ok(join(results))
}

/// Rows `range` of axis 0.
fn rows(a: &Array, range: std::ops::Range<usize>) -> Array {
    let per: usize = a.shape[1..].iter().product();
    let mut shape = a.shape.clone();
    shape[0] = range.len();
    Array { shape, data: a.data[range.start * per..range.end * per].to_vec() }
}

/// Joins per-run outputs along axis 0 (outputs without axes become one row per run).
/// Joins each output's per-run parts along axis 0, freeing each part as it is copied.
fn join(mut runs: Vec<Vec<Array>>) -> Vec<Array> {
    let n = runs.first().map_or(0, Vec::len);
    (0..n)
        .map(|k| {
            let mut shape = runs[0][k].shape.clone();
            if shape.is_empty() || runs.iter().any(|r| r[k].shape[1..] != shape[1..]) {
                shape = vec![runs.iter().map(|r| r[k].data.len()).sum()];
            } else {
                shape[0] = runs.iter().map(|r| r[k].shape[0]).sum();
            }
            let mut data = Vec::with_capacity(runs.iter().map(|r| r[k].data.len()).sum());
            for r in &mut runs {
                data.extend_from_slice(&std::mem::take(&mut r[k].data));
            }
            Array { shape, data }
        })
        .collect()
}

type Compared = (Vec<OutputReport>, Option<Accuracy>);

fn compare(orig: &[Array], prun: &[Array], p: &Prepared) -> std::result::Result<Compared, String> {
    let references: Vec<Array> = if p.samples.sets.iter().all(|s| !s.references.is_empty()) {
        join(p.samples.sets.iter().map(|s| s.references.clone()).collect())
    } else {
        Vec::new()
    };
    let mut outputs = Vec::new();
    for (k, (o, q)) in orig.iter().zip(prun).enumerate() {
        let name = p.output_names.get(k).cloned().unwrap_or_else(|| format!("output {k}"));
        if o.shape != q.shape {
            return Err(format!(
                "output '{name}' has shape {:?} in the original, {:?} pruned",
                o.shape, q.shape
            ));
        }
        let reference_max_abs_error = references
            .get(k)
            .filter(|r| r.data.len() == o.data.len())
            .map(|r| Accuracy { original: max_abs(&o.data, &r.data), pruned: max_abs(&q.data, &r.data) });
        outputs.push(metrics(name, o, q, reference_max_abs_error));
    }
    let accuracy = match (&p.labels, orig.first(), prun.first()) {
        (Some(labels), Some(o), Some(q)) => {
            let (a, b) = (argmax_rows(o), argmax_rows(q));
            match (a, b) {
                (Some(a), Some(b)) if a.len() == labels.len() => {
                    Some(Accuracy { original: hits(&a, labels), pruned: hits(&b, labels) })
                }
                _ => {
                    return Err(format!(
                        "labels need a (samples, classes) first output; '{}' has shape {:?}",
                        outputs[0].name, o.shape
                    ))
                }
            }
        }
        _ => None,
    };
    Ok((outputs, accuracy))
}

fn metrics(name: String, o: &Array, q: &Array, reference: Option<Accuracy>) -> OutputReport {
    let (mut max, mut sum, mut diff2, mut oo, mut qq, mut oq) = (0f64, 0f64, 0f64, 0f64, 0f64, 0f64);
    for (&a, &b) in o.data.iter().zip(&q.data) {
        let (a, b) = (f64::from(a), f64::from(b));
        let d = (a - b).abs();
        max = max.max(d);
        sum += d;
        diff2 += d * d;
        oo += a * a;
        qq += b * b;
        oq += a * b;
    }
    let n = o.data.len().max(1) as f64;
    let top1_agreement = match (argmax_rows(o), argmax_rows(q)) {
        (Some(a), Some(b)) => Some(a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64),
        _ => None,
    };
    OutputReport {
        name,
        top1_agreement,
        max_abs_error: max,
        mean_abs_error: sum / n,
        rel_l2_error: if oo > 0.0 { (diff2 / oo).sqrt() } else { diff2.sqrt() },
        cosine: if oo > 0.0 && qq > 0.0 { oq / (oo * qq).sqrt() } else { f64::from(u8::from(oo == qq)) },
        reference_max_abs_error: reference,
    }
}

fn max_abs(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs()).fold(0.0, f64::max)
}

/// The argmax of each row of a (samples, classes) output with at least two classes (first index on
/// ties; NaN counts as the largest).
pub fn argmax_rows(a: &Array) -> Option<Vec<usize>> {
    let &[rows, classes] = a.shape.as_slice() else { return None };
    if classes < 2 || rows == 0 {
        return None;
    }
    let best = |r: &[f32]| (0..r.len()).fold(0, |b, i| if r[i].total_cmp(&r[b]).is_gt() { i } else { b });
    Some(a.data.chunks(classes).map(best).collect())
}

fn hits(pred: &[usize], labels: &[i64]) -> f64 {
    pred.iter().zip(labels).filter(|(p, l)| **p as i64 == **l).count() as f64 / pred.len() as f64
}

/// Evaluates the requested gates. A gate that cannot be measured (validation skipped, no classifier
/// output) fails, with a null value.
fn gates(r: &ValidationReport, g: &Gates) -> Vec<Gate> {
    let top1 = r.outputs.iter().find_map(|o| o.top1_agreement).map(|a| 1.0 - a);
    let acc = r.accuracy.map(|a| a.original - a.pruned);
    let cos =
        (!r.outputs.is_empty()).then(|| r.outputs.iter().map(|o| o.cosine).fold(f64::INFINITY, f64::min));
    let mut out = Vec::new();
    let mut push = |gate: &str, limit: Option<f64>, value: Option<f64>, ok: fn(f64, f64) -> bool| {
        if let Some(limit) = limit {
            let passed = value.is_some_and(|v| ok(v, limit));
            out.push(Gate { gate: gate.to_string(), limit, value, passed });
        }
    };
    push("max-top1-drop", g.max_top1_drop, top1, |v, l| v <= l);
    push("max-accuracy-drop", g.max_accuracy_drop, acc, |v, l| v <= l);
    push("min-cosine", g.min_cosine, cos, |v, l| v >= l);
    out
}

/// The error for the first failed gate (exit code 3), if any.
pub fn gate_error(r: &ValidationReport) -> Option<Error> {
    let failed: Vec<String> = r
        .gates
        .iter()
        .filter(|g| !g.passed)
        .map(|g| match g.value {
            None => {
                let why = r.skipped_reason.as_deref().unwrap_or("not measurable on these outputs");
                format!("--{} {}: could not be measured ({why})", g.gate, g.limit)
            }
            Some(v) => {
                format!("--{} {}: measured {v:.4} (off by {:.4})", g.gate, g.limit, (v - g.limit).abs())
            }
        })
        .collect();
    (!failed.is_empty()).then(|| Error::Gate(format!("validation gate failed: {}", failed.join("; "))))
}

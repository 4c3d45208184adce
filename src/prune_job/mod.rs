//! The prune job: read the model, find targets, select masks, renormalize, write the output (and its
//! external data) atomically, and report what was done.

use std::path::{Path, PathBuf};

mod checks;
mod in_memory;
mod make;
mod options;
mod output;
pub mod streamed;

pub use checks::check_graph;
pub use in_memory::{apply, load, load_passing_non_finite, select, Loaded};
pub use options::{Engine, PruneOptions, Scope, Selector};
pub use output::{nothing_deferred, write_output};

use crate::error::{Error, Result};
use crate::onnx::atomic_file;
use crate::onnx::model::{Model, Tensor};
use crate::prune::renorm::ScaleStats;
use crate::prune::targets::{self, Filter, Plan, Skipped, Source, Target};
use crate::report::{PruneReport, TargetReport, Totals};
use crate::sizes::{self, SizeChange};
use crate::validate;

/// The key of the `metadata_props` entry that records what renorm did.
pub const METADATA_KEY: &str = "renorm";

/// The targets of a model, or a clear error when there are none. The model must be one a runtime
/// could load (see `check_graph`): renorm would otherwise write a pruned copy of a broken file.
pub fn plan(model: &Model, filter: &Filter) -> Result<Plan> {
    check_graph(model)?;
    let plan = targets::plan(&model.graph, filter);
    if plan.targets.is_empty() {
        return Err(nothing_to_prune_error(model, &plan.skipped));
    }
    Ok(plan)
}

fn nothing_to_prune_error(model: &Model, skipped: &[Skipped]) -> Error {
    let why = match skipped.first() {
        None => "it has no Gemm, Conv, ConvTranspose or MatMul node with a constant float weight".to_string(),
        Some(s) => format!(
            "all {} candidate weights were skipped (first: '{}': {})",
            skipped.len(),
            s.weight,
            s.reason
        ),
    };
    Error::model(&model.path, format!("nothing to prune: {why}"))
}

/// The tensor behind a target.
pub fn tensor_of(model: &Model, source: Source) -> &Tensor {
    match source {
        Source::Initializer(i) => &model.graph.initializers[i],
        Source::Constant(n) => model.graph.nodes[n]
            .attribute("value")
            .and_then(|a| a.tensor.as_ref())
            .expect("a Constant target has a value tensor"),
    }
}

fn non_finite_what(value: f32, i: usize) -> String {
    format!("holds {value} at element {i}")
}

fn non_finite_error(model: &Model, weight: &str, what: &str) -> Error {
    Error::model(
        &model.path,
        format!(
            "weight '{weight}' {what}; renorm does not prune non-finite weights \
             (prune --allow-nonfinite passes them through unpruned)"
        ),
    )
}

fn passed_non_finite(t: &Target, what: &str) -> Skipped {
    Skipped {
        node: t.node_label(),
        weight: t.weight.clone(),
        reason: format!("{what}; passed through unpruned (--allow-nonfinite)"),
    }
}

/// The output path must differ from the input, and may exist only with `force`.
pub fn check_output(input: &Path, output: &Path, force: bool) -> Result<()> {
    let same = match (input.canonicalize(), canonical_dest(output)) {
        (Ok(a), Some(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(Error::Usage(format!(
            "output '{}' is the input; renorm never overwrites its input, choose another -o",
            output.display()
        )));
    }
    if output.exists() && !force {
        return Err(Error::model(output, "already exists; pass --force to overwrite it"));
    }
    if output.is_dir() {
        return Err(Error::model(output, "is a folder; -o takes the output file's path"));
    }
    Ok(())
}

fn canonical_dest(path: &Path) -> Option<PathBuf> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.canonicalize().ok()?,
        _ => std::env::current_dir().ok()?.canonicalize().ok()?,
    };
    Some(parent.join(path.file_name()?))
}

/// Prunes `input` into `output` and returns the report (with `validation` when asked). Every input
/// problem, data included, is found before anything is written.
pub fn prune_file(input: &Path, output: &Path, opts: &PruneOptions) -> Result<PruneReport> {
    opts.check()?;
    check_output(input, output, opts.force)?;
    let model = Model::open(input)?;
    let plan = plan(&model, &opts.filter)?;
    let validation = opts.validation.as_ref().map(|spec| validate::prepare(&model, spec)).transpose()?;
    let calib = opts.calib.as_ref().map(|spec| validate::prepare(&model, spec)).transpose()?;
    if let (Some(spec), Some(p)) = (&opts.calib, &calib) {
        check_finite(&spec.data, p)?;
    }
    let mut report = PruneReport {
        model: input.display().to_string(),
        output: output.display().to_string(),
        method: opts.method(),
        targets: Vec::new(),
        skipped: Vec::new(),
        totals: Totals::of(0, 0),
        size: SizeChange::default(),
        validation: None,
    };
    match (opts.engine, &calib) {
        (Engine::Streamed, None) => prune_streamed(&model, &plan, output, opts, &mut report)?,
        _ => in_memory::prune(&model, &plan, output, opts, calib.as_ref(), &mut report)?,
    }
    report.size = SizeChange { before: sizes::measure(input)?, after: sizes::measure(output)? };
    if let Some(prepared) = &validation {
        report.validation = Some(validate::run(input, output, prepared));
    }
    Ok(report)
}

/// The streamed engine: payloads read in place, a piece of one target's output in memory at a time.
fn prune_streamed(
    model: &Model,
    plan: &Plan,
    output: &Path,
    opts: &PruneOptions,
    report: &mut PruneReport,
) -> Result<()> {
    atomic_file::remove_stale(output);
    let mut check = streamed::Check::AsMade;
    loop {
        let scanned = streamed::scan(model, plan, opts, check)?;
        report.skipped = [plan.skipped.as_slice(), &scanned.passed].concat();
        report.totals = Totals::of(scanned.params(), scanned.pruned());
        match scanned.write(model, output, &metadata_value(report), opts)? {
            Some(targets) => {
                report.targets = targets;
                return Ok(());
            }
            // A non-finite value, met while writing: every target is checked first this time.
            None => check = streamed::Check::First,
        }
    }
}

/// Calibration fits to the data, so a NaN or infinity in it would spread into the weights: refuse it.
fn check_finite(path: &Path, p: &validate::Prepared) -> Result<()> {
    for (s, set) in p.samples.sets.iter().enumerate() {
        for (i, a) in set.inputs.iter().enumerate() {
            if let Some(e) = a.data.iter().position(|v| !v.is_finite()) {
                let per: usize = a.shape.iter().skip(1).product::<usize>().max(1);
                let sample = if p.samples.batchable { e / per } else { s };
                return Err(Error::model(
                    path,
                    format!(
                        "calibration sample {sample} of input {i} holds {}; calibration needs finite data",
                        a.data[e]
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn target_report(
    target: &Target,
    tensor: &Tensor,
    params: usize,
    pruned: usize,
    scales: &[Option<f64>],
    guarded: bool,
    dense_tail: usize,
) -> TargetReport {
    TargetReport {
        node: target.node_label(),
        op: target.op.clone(),
        weight: target.weight.clone(),
        shape: target.shape.clone(),
        dtype: target.dtype.name().to_string(),
        storage: targets::storage(target.source, tensor).to_string(),
        params,
        pruned,
        sparsity: crate::report::fraction(pruned, params),
        scale: ScaleStats::of(scales),
        guarded,
        dense_tail,
        shift: None,
        output_error: None,
        note: None,
    }
}

/// What the metadata entry records: tool version, method, achieved sparsity. No timestamps, so reruns
/// are byte-identical.
fn metadata_value(r: &PruneReport) -> String {
    serde_json::json!({
        "tool": format!("renorm {}", env!("CARGO_PKG_VERSION")),
        "method": r.method,
        "sparsity": r.totals.sparsity,
        "pruned": r.totals.pruned,
        "params": r.totals.params,
    })
    .to_string()
}

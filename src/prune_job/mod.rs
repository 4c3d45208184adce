//! The prune job: read the model, find targets, select masks, renormalize, write the output (and its
//! external data) atomically, and report what was done.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

mod checks;
mod make;
mod output;
pub mod streamed;

pub use checks::check_graph;
pub use output::{nothing_deferred, write_output};

use crate::calibrate::{self, refit::RefitOptions};
use crate::error::{Error, Result};
use crate::onnx::atomic_file;
use crate::onnx::model::{Model, Tensor};
use crate::onnx::payload;
use crate::onnx::tensor::{decode_raw, FloatType};
use crate::onnx::write::Patch;
use crate::prune::renorm::{self, Renorm, ScaleStats};
use crate::prune::select::{self, Selection, Weights};
use crate::prune::targets::{self, Filter, Plan, Skipped, Source, Target};
use crate::report::{Method, OutputError, PruneReport, TargetReport, Totals};
use crate::sizes::{self, SizeChange};
use crate::validate::{self, DataSpec};

/// The key of the `metadata_props` entry that records what renorm did.
pub const METADATA_KEY: &str = "renorm";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    Layer,
    Unit,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Layer => "layer",
            Scope::Unit => "unit",
        }
    }
}

/// How weights are selected: a sparsity at a scope, or an N:M pattern.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Selector {
    Sparsity { sparsity: f64, scope: Scope },
    Pattern { n: usize, m: usize },
}

#[derive(Debug, Clone)]
pub struct PruneOptions {
    pub selector: Selector,
    pub renorm: Renorm,
    pub filter: Filter,
    /// Overwrite an existing output.
    pub force: bool,
    /// Calibration samples (required by `Renorm::Stats` and `Renorm::Refit`).
    pub calib: Option<DataSpec>,
    /// `Renorm::Refit`'s settings.
    pub refit: RefitOptions,
    /// Validate the written model on these samples; the report gains `validation`.
    pub validation: Option<DataSpec>,
    /// A target holding NaN or infinite values is left unpruned (listed as skipped) instead of refused.
    pub allow_nonfinite: bool,
    /// How none/l1/l2 prunes are computed (stats and refit always load every target).
    pub engine: Engine,
}

/// The two ways to compute a none/l1/l2 prune; they write byte-identical files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Engine {
    /// One target in memory at a time, payloads read in place (`streamed`).
    #[default]
    Streamed,
    /// Every target's weights loaded and selected at once (`load`, `select`, `apply`): the plain
    /// implementation of design.md, kept as the reference the streamed engine is tested against.
    InMemory,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            selector: Selector::Sparsity { sparsity: 0.5, scope: Scope::Global },
            renorm: Renorm::L2,
            filter: Filter::default(),
            force: false,
            calib: None,
            refit: RefitOptions::default(),
            validation: None,
            allow_nonfinite: false,
            engine: Engine::default(),
        }
    }
}

impl PruneOptions {
    /// Whether the options make sense together (checked again by `prune_file`).
    pub fn check(&self) -> Result<()> {
        match self.selector {
            Selector::Sparsity { sparsity, .. } if !(0.0..=1.0).contains(&sparsity) => {
                Err(Error::Usage(format!("--sparsity must be between 0 and 1, got {sparsity}")))
            }
            Selector::Pattern { n, m } if m == 0 || n > m => {
                Err(Error::Usage(format!("--pattern {n}:{m}: need 0 <= N <= M and M > 0")))
            }
            _ if self.calibrated() && self.calib.is_none() => Err(Error::Missing(format!(
                "--renorm {} needs calibration samples: --calib DATA",
                self.renorm.name()
            ))),
            _ if !self.calibrated() && self.calib.is_some() => {
                Err(Error::Usage("--calib is used only by --renorm stats and --renorm refit".to_string()))
            }
            _ => self.refit.check(),
        }
    }

    fn calibrated(&self) -> bool {
        matches!(self.renorm, Renorm::Stats | Renorm::Refit)
    }

    /// The method as reports record it.
    pub fn method(&self) -> Method {
        let (sparsity, scope, pattern) = match self.selector {
            Selector::Sparsity { sparsity, scope } => (Some(sparsity), Some(scope.name().to_string()), None),
            Selector::Pattern { n, m } => (None, None, Some(format!("{n}:{m}"))),
        };
        Method { sparsity, scope, renorm: self.renorm.name().to_string(), pattern }
    }
}

/// A target with its weights loaded.
pub struct Loaded<'m> {
    pub target: Target,
    pub tensor: &'m Tensor,
    pub raw: Vec<u8>,
    pub values: Vec<f32>,
}

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

/// Reads one target's weights.
fn load_one<'m>(model: &'m Model, t: &Target) -> Result<Loaded<'m>> {
    let tensor = tensor_of(model, t.source);
    let raw = payload::read(model, tensor, t.dtype)?;
    let values = decode_raw(t.dtype, &raw);
    Ok(Loaded { target: t.clone(), tensor, raw, values })
}

/// "holds NaN at element 3" for weights that are not all finite.
fn non_finite(l: &Loaded) -> Option<String> {
    let i = l.values.iter().position(|v| !v.is_finite())?;
    Some(non_finite_what(l.values[i], i))
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

/// Reads every target's weights (in parallel) and refuses NaN or infinite values. Of several bad
/// targets, the first in graph order is named, whatever the thread count.
pub fn load<'m>(model: &'m Model, plan: &Plan) -> Result<Vec<Loaded<'m>>> {
    let all: Vec<Result<Loaded>> = plan
        .targets
        .par_iter()
        .map(|t| {
            let l = load_one(model, t)?;
            match non_finite(&l) {
                Some(what) => Err(non_finite_error(model, &t.weight, &what)),
                None => Ok(l),
            }
        })
        .collect();
    all.into_iter().collect()
}

/// Reads every target's weights (in parallel); a target holding NaN or infinite values is not
/// loaded but returned as skipped (`--allow-nonfinite`), its payload left as it is.
pub fn load_passing_non_finite<'m>(model: &'m Model, plan: &Plan) -> Result<(Vec<Loaded<'m>>, Vec<Skipped>)> {
    let all: Vec<Result<Loaded>> = plan.targets.par_iter().map(|t| load_one(model, t)).collect();
    let all: Vec<Loaded> = all.into_iter().collect::<Result<_>>()?;
    let (mut loaded, mut skipped) = (Vec::new(), Vec::new());
    for l in all {
        match non_finite(&l) {
            Some(what) => skipped.push(passed_non_finite(&l.target, &what)),
            None => loaded.push(l),
        }
    }
    Ok((loaded, skipped))
}

/// Masks for every target.
pub fn select(loaded: &[Loaded], selector: Selector) -> Vec<Selection> {
    let weights: Vec<Weights> =
        loaded.iter().map(|l| Weights { values: &l.values, layout: &l.target.layout }).collect();
    match selector {
        Selector::Sparsity { sparsity, scope: Scope::Global } => select::global(&weights, sparsity),
        Selector::Sparsity { sparsity, scope: Scope::Layer } => {
            weights.par_iter().map(|w| select::layer(w, sparsity)).collect()
        }
        Selector::Sparsity { sparsity, scope: Scope::Unit } => {
            weights.par_iter().map(|w| select::unit(w, sparsity)).collect()
        }
        Selector::Pattern { n, m } => weights.iter().map(|w| select::n_of_m(w, n, m)).collect(),
    }
}

/// Applies mask and per-unit scales to a target's raw payload in place; returns the scales.
pub fn apply(l: &mut Loaded, keep: &[bool], method: Renorm) -> Vec<Option<f64>> {
    let layout = &l.target.layout;
    let scales = renorm::scales(&l.values, keep, layout, method);
    let size = l.target.dtype.size();
    for (u, scale) in scales.iter().enumerate() {
        let s = scale.unwrap_or(1.0);
        for i in layout.unit_indices(u) {
            l.target.dtype.rescale(&mut l.raw[i * size..(i + 1) * size], keep[i], s);
        }
    }
    scales
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
        _ => prune_in_memory(&model, &plan, output, opts, calib.as_ref(), &mut report)?,
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

/// The in-memory engine: every target loaded, selected and renormalized at once (and calibrated).
fn prune_in_memory(
    model: &Model,
    plan: &Plan,
    output: &Path,
    opts: &PruneOptions,
    calib: Option<&validate::Prepared>,
    report: &mut PruneReport,
) -> Result<()> {
    let (mut loaded, passed) = if opts.allow_nonfinite {
        load_passing_non_finite(model, plan)?
    } else {
        (load(model, plan)?, Vec::new())
    };
    // Targets' payloads are checked as they load; this checks every other external tensor.
    checks::check_external(model)?;
    if loaded.is_empty() {
        return Err(nothing_to_prune_error(model, &[plan.skipped.as_slice(), &passed].concat()));
    }
    if let (Some(s), true) = (passed.first(), calib.is_some()) {
        return Err(Error::model(
            &model.path,
            format!(
                "weight '{}' {}: --renorm {} runs the model, and every value past that weight would be \
                 non-finite; --allow-nonfinite works with --renorm none, l1 or l2",
                s.weight,
                s.reason.split(';').next().unwrap_or_default(),
                opts.renorm.name()
            ),
        ));
    }
    let mut selections = select(&loaded, opts.selector);
    let mut scales: Vec<Vec<Option<f64>>> =
        loaded.par_iter_mut().zip(&selections).map(|(l, sel)| apply(l, &sel.keep, opts.renorm)).collect();
    let (mut corrections, mut bias_changed, mut edits) = (Vec::new(), Vec::new(), Vec::new());
    if let Some(calib) = calib {
        let keeps: Vec<Vec<bool>> = selections.iter().map(|s| s.keep.clone()).collect();
        (corrections, bias_changed, edits) =
            calibrate::calibrate(model, &mut loaded, &keeps, calib, opts.renorm, &opts.refit)?;
        for ((sc, c), sel) in scales.iter_mut().zip(&mut corrections).zip(&mut selections) {
            sc.clone_from(&c.scales);
            if let Some(keep) = c.keep.take() {
                sel.keep = keep;
            }
        }
    }
    let mut targets: Vec<TargetReport> = loaded
        .iter()
        .zip(&selections)
        .zip(&scales)
        .map(|((l, sel), sc)| {
            let pruned = sel.keep.iter().filter(|k| !**k).count();
            target_report(&l.target, l.tensor, l.values.len(), pruned, sc, sel.guarded, sel.dense_tail)
        })
        .collect();
    for (t, c) in targets.iter_mut().zip(&corrections) {
        if c.fallback.is_none() {
            t.shift = ScaleStats::of(&c.shifts);
        }
        t.output_error = c.output_error.map(|(before, after)| OutputError { before, after });
        t.note = calibrate::note(c);
    }
    let params = targets.iter().map(|t| t.params).sum();
    let pruned = targets.iter().map(|t| t.pruned).sum();
    report.targets = targets;
    report.skipped = [plan.skipped.as_slice(), &passed].concat();
    report.totals = Totals::of(params, pruned);
    let changed: Vec<(&Tensor, FloatType, Patch)> = loaded
        .into_iter()
        .map(|l| (l.tensor, l.target.dtype, l.raw))
        .chain(bias_changed)
        .map(|(t, ty, raw)| (t, ty, Patch::Bytes(raw)))
        .collect();
    atomic_file::remove_stale(output);
    write_output(model, output, changed, edits, &metadata_value(report), &nothing_deferred)
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

//! `renorm sweep`: which sparsity and method can I afford? Prunes the model for every combination of
//! sparsity, scope and renorm (each into a temporary file, kept only on request), validates each with
//! tract against the original on the same samples, and writes `sweep.json`, `sweep.md` and `sweep.html`
//! (a self-contained page with an SVG plot of accuracy against sparsity).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::onnx::model::Model;
use crate::prune::renorm::Renorm;
use crate::prune::targets::Filter;
use crate::prune_job::{self, PruneOptions, Scope, Selector};
use crate::report::{self, DensePoint, SweepPoint, SweepReport};
use crate::validate::{self, DataSpec};
use crate::RefitOptions;

#[derive(Debug, Clone)]
pub struct SweepOptions {
    pub sparsities: Vec<f64>,
    pub scopes: Vec<Scope>,
    pub renorms: Vec<Renorm>,
    pub filter: Filter,
    /// The samples every point is validated on (with labels for accuracy).
    pub data: DataSpec,
    /// Calibration samples, required when `renorms` holds stats or refit.
    pub calib: Option<DataSpec>,
    pub refit: RefitOptions,
    /// Also keep each point's model as `DIR/models/<renorm>-<scope>-<sparsity>.onnx`.
    pub keep_models: bool,
}

impl SweepOptions {
    fn check(&self) -> Result<()> {
        let empty = |what: &str| Error::Usage(format!("sweep needs at least one {what}"));
        if self.sparsities.is_empty() {
            return Err(empty("sparsity"));
        }
        if self.scopes.is_empty() {
            return Err(empty("scope"));
        }
        if self.renorms.is_empty() {
            return Err(empty("renorm"));
        }
        if let Some(s) = self.sparsities.iter().find(|s| !(0.0..=1.0).contains(*s)) {
            return Err(Error::Usage(format!("--sparsities: {s} is not between 0 and 1")));
        }
        let calibrated = self.renorms.iter().find(|r| matches!(r, Renorm::Stats | Renorm::Refit));
        match (calibrated, &self.calib) {
            (Some(r), None) => Err(Error::Missing(format!(
                "sweep with --renorm {} needs calibration samples: --calib DATA",
                r.name()
            ))),
            _ => self.refit.check(),
        }
    }

    /// Every point, renorm outer, then scope, then sparsity (the plot's series order).
    fn points(&self) -> Vec<(Renorm, Scope, f64)> {
        let mut out = Vec::new();
        for &r in &self.renorms {
            for &sc in &self.scopes {
                for &sp in &self.sparsities {
                    out.push((r, sc, sp));
                }
            }
        }
        out
    }
}

/// Runs the sweep of `model` into `out_dir` (created if needed); `on_point` sees each point as it
/// finishes (for progress). Data and calibration problems are found before any pruning.
pub fn run(
    model: &Path,
    out_dir: &Path,
    opts: &SweepOptions,
    on_point: &(dyn Fn(usize, usize, &SweepPoint) + Sync),
) -> Result<SweepReport> {
    opts.check()?;
    let parsed = Model::open(model)?;
    prune_job::plan(&parsed, &opts.filter)?;
    let prepared = validate::prepare(&parsed, &opts.data)?;
    if let Some(c) = &opts.calib {
        validate::prepare(&parsed, c)?;
    }
    drop(parsed);
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let work = tempfile::tempdir_in(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let models = out_dir.join("models");
    if opts.keep_models {
        std::fs::create_dir_all(&models).map_err(|e| Error::io(&models, e))?;
    }
    let original = validate::run_model(model, &prepared, &[]);
    let points = opts.points();
    let mut report = SweepReport {
        model: model.display().to_string(),
        metric: if prepared.labels.is_some() { "accuracy" } else { "top1_agreement" }.to_string(),
        dense: DensePoint { accuracy: None, size: crate::sizes::measure(model)? },
        points: Vec::with_capacity(points.len()),
    };
    for (i, &(renorm, scope, sparsity)) in points.iter().enumerate() {
        let name = format!("{}-{}-{}.onnx", renorm.name(), scope.name(), sparsity);
        let path: PathBuf = if opts.keep_models { models.join(&name) } else { work.path().join(&name) };
        let prune_opts = PruneOptions {
            selector: Selector::Sparsity { sparsity, scope },
            renorm,
            filter: opts.filter.clone(),
            force: true,
            calib: if matches!(renorm, Renorm::Stats | Renorm::Refit) { opts.calib.clone() } else { None },
            refit: opts.refit,
            validation: None,
            allow_nonfinite: false,
            engine: Default::default(),
        };
        let pruned = prune_job::prune_file(model, &path, &prune_opts)?;
        let validation = validate::run_against(&original, &path, &prepared);
        if report.dense.accuracy.is_none() {
            report.dense.accuracy = validation.accuracy.map(|a| a.original);
        }
        let point = SweepPoint {
            sparsity,
            scope: scope.name().to_string(),
            renorm: renorm.name().to_string(),
            achieved_sparsity: pruned.totals.sparsity,
            size: pruned.size.after,
            validation,
        };
        on_point(i, points.len(), &point);
        report.points.push(point);
        if !opts.keep_models {
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(format!("{}.data", path.display()));
        }
    }
    write(
        out_dir,
        "sweep.json",
        &format!("{}\n", serde_json::to_string_pretty(&report).expect("serializes")),
    )?;
    write(out_dir, "sweep.md", &report::markdown::sweep(&report))?;
    write(out_dir, "sweep.svg", &report::svg::plot(&report::svg::sweep_plot(&report)))?;
    write(out_dir, "sweep.html", &report::html::sweep(&report))?;
    Ok(report)
}

fn write(dir: &Path, name: &str, text: &str) -> Result<()> {
    report::write_file(&dir.join(name), text)
}

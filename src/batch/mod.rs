//! `renorm batch`: prune every model under a folder with the same options into a mirrored output tree.
//! One bad model never stops the others; a rerun resumes (models whose output and report exist for the
//! same options are not pruned again); `--shard K/N` takes a deterministic share of the models, so N
//! machines split a zoo with no coordinator.
//!
//! Each model is pruned into a private staging folder beside its output (`.renorm-staging-<name>/`),
//! then its files are renamed into place: external data first, the model, and last its JSON report
//! (`<output>.renorm.json`), which marks the model done. A kill at any moment leaves at most a staging
//! folder, which the next run for that model deletes, and never an output taken for done.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

mod discover;
mod resume;

use discover::slash;
pub use discover::{discover, in_shard, plan, Found};
use resume::{fingerprint, resumable, stored, stored_files, BatchInfo, Figures, FileLen, ReportFile};

use crate::error::{Error, Result};
use crate::onnx::model::Model;
use crate::prune_job::{prune_file, PruneOptions};
use crate::report::{BatchEntry, BatchReport, BatchTotals, ValidationReport};
use crate::validate::{self, DataSpec};

/// What each model's report file is called: `<output>` + this.
pub const REPORT_SUFFIX: &str = ".renorm.json";
/// The staging folder of output `<name>` is `<name>`'s folder / this + `<name>`.
pub const STAGING_PREFIX: &str = ".renorm-staging-";

#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// What every model gets. `validation` (`--data`) validates every model; without it, a model-zoo
    /// model is validated on its own `test_data_set_*`. `force` re-prunes models that would resume and
    /// overwrites outputs renorm batch did not write.
    pub prune: PruneOptions,
    /// Models pruned at once; 0 means one per CPU.
    pub jobs: usize,
    /// `--shard K/N` (1-based): only the models with `in_shard(model, K, N)`.
    pub shard: Option<(usize, usize)>,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions { prune: PruneOptions::default(), jobs: 1, shard: None }
    }
}

/// The summary's file stem in the output folder: `summary`, or `summary-K-of-N` for a shard (so shards
/// sharing an output folder do not overwrite each other's summaries).
pub fn summary_stem(shard: Option<(usize, usize)>) -> String {
    match shard {
        Some((k, n)) => format!("summary-{k}-of-{n}"),
        None => "summary".to_string(),
    }
}

/// Prunes the models of `plan(dir, out, opts.shard)` into `out` (created if needed), `opts.jobs` at a
/// time, and writes `<summary_stem>.json` there. `on_done` sees each model's entry as it finishes (from
/// worker threads, in completion order); the report lists them in discovery order. Per-model problems
/// are entries with status "failed", never an `Err`.
pub fn run(
    dir: &Path,
    out: &Path,
    opts: &BatchOptions,
    on_done: &(dyn Fn(&BatchEntry) + Sync),
) -> Result<BatchReport> {
    opts.prune.check()?;
    let found = plan(dir, out, opts.shard)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs)
        .thread_name(|i| format!("renorm-batch-{i}"))
        .build()
        .map_err(|e| Error::Usage(format!("--jobs {}: cannot start the threads: {e}", opts.jobs)))?;
    // One plain thread per job takes models in order and runs each inside the pool, so exactly `jobs`
    // models are in flight (a pool thread waiting inside a prune may run another prune's tasks, never
    // start a further model), and every prune's own parallel work shares the same `jobs` threads.
    let workers = pool.current_num_threads().min(found.len()).max(1);
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<BatchEntry>>> = Mutex::new(vec![None; found.len()]);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(f) = found.get(i) else { break };
                let entry = pool.install(|| process(dir, out, f, &opts.prune));
                on_done(&entry);
                slots.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(entry);
            });
        }
    });
    let models: Vec<BatchEntry> = slots
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|e| e.expect("every model was processed"))
        .collect();
    let count = |s: &str| models.iter().filter(|e| e.status == s).count();
    let totals = BatchTotals {
        models: models.len(),
        pruned: count("pruned"),
        resumed: count("resumed"),
        failed: count("failed"),
    };
    let report = BatchReport {
        input_dir: dir.display().to_string(),
        output_dir: out.display().to_string(),
        method: opts.prune.method(),
        shard: opts.shard.map(|(k, n)| format!("{k}/{n}")),
        models,
        totals,
    };
    write_summary(out, &summary_stem(opts.shard), &report)?;
    Ok(report)
}

/// Writes `<stem>.json`, `.md` and `.html` atomically, first deleting the temporary files a killed run of
/// the same summary left (`.renorm-<stem>.<ext>-*.tmp`; only this shard writes this stem).
fn write_summary(out: &Path, stem: &str, r: &BatchReport) -> Result<()> {
    let prefix = format!(".renorm-{stem}.");
    for entry in std::fs::read_dir(out).map_err(|e| Error::io(out, e))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let json = format!("{}\n", serde_json::to_string_pretty(r).expect("reports serialize"));
    crate::report::write_file(&out.join(format!("{stem}.json")), &json)?;
    crate::report::write_file(&out.join(format!("{stem}.md")), &crate::report::markdown::batch(r))?;
    crate::report::write_file(&out.join(format!("{stem}.html")), &crate::report::html::batch(r))
}

/// The gate error (exit code 3) when `--data` gates failed for some models, naming them.
pub fn gate_error(r: &BatchReport) -> Option<Error> {
    let failed: Vec<&str> = r
        .models
        .iter()
        .filter(|e| e.validation.as_ref().is_some_and(|v| v.gates.iter().any(|g| !g.passed)))
        .map(|e| e.model.as_str())
        .collect();
    (!failed.is_empty()).then(|| {
        Error::Gate(format!("validation gate failed for {} model(s): {}", failed.len(), failed.join(", ")))
    })
}

fn process(dir: &Path, out: &Path, found: &Found, opts: &PruneOptions) -> BatchEntry {
    let start = Instant::now();
    let input = dir.join(&found.model);
    let result = catch_unwind(AssertUnwindSafe(|| prune_one(dir, out, found, opts))).unwrap_or_else(|p| {
        let why = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        Err(Error::Failed(format!("renorm panicked: {why}")))
    });
    let seconds = start.elapsed().as_secs_f64();
    let model = slash(&found.model);
    match result {
        Ok((resumed, f)) => BatchEntry {
            model: model.clone(),
            status: if resumed { "resumed" } else { "pruned" }.to_string(),
            output: Some(model),
            error: None,
            params: f.params,
            pruned: f.pruned,
            sparsity: f.sparsity,
            size: Some(f.size),
            validation: f.validation,
            seconds,
        },
        Err(e) => {
            let mut error = one_line(&e.to_string());
            let staged =
                staging_dir(&out.join(&found.model)).join(found.model.file_name().unwrap_or_default());
            error =
                error.replace(&staged.display().to_string(), &out.join(&found.model).display().to_string());
            if !error.contains(&input.display().to_string()) {
                error = format!("{}: {error}", input.display());
            }
            BatchEntry {
                model,
                status: "failed".to_string(),
                output: None,
                error: Some(error),
                params: 0,
                pruned: 0,
                sparsity: 0.0,
                size: None,
                validation: None,
                seconds,
            }
        }
    }
}

fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

fn staging_dir(output: &Path) -> PathBuf {
    let name = output.file_name().unwrap_or_default().to_string_lossy();
    output.with_file_name(format!("{STAGING_PREFIX}{name}"))
}

fn report_path(output: &Path) -> PathBuf {
    let name = output.file_name().unwrap_or_default().to_string_lossy();
    output.with_file_name(format!("{name}{REPORT_SUFFIX}"))
}

/// Resumes or prunes one model: (resumed, figures).
fn prune_one(dir: &Path, out: &Path, found: &Found, opts: &PruneOptions) -> Result<(bool, Figures)> {
    let input = dir.join(&found.model);
    let output = out.join(&found.model);
    let folder = output.parent().expect("an output path has a folder").to_path_buf();
    let name = output.file_name().expect("a model has a file name").to_os_string();
    let report_file = report_path(&output);
    let staging = staging_dir(&output);
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| Error::io(&p, e)
    };

    // --data validates every model; otherwise a zoo model its own test_data_set_*.
    let (spec, zoo) = match (&opts.validation, &found.zoo_data) {
        (Some(s), _) => (Some(s.clone()), false),
        (None, Some(z)) => (Some(DataSpec { data: dir.join(z), batch: 1, ..Default::default() }), true),
        (None, None) => (None, false),
    };
    let described = match (&opts.validation, &found.zoo_data) {
        (Some(s), _) => Some(format!("{s:?}")),
        (None, Some(z)) => Some(format!("test_data_set_* in {}", slash(z))),
        (None, None) => None,
    };
    let fp = fingerprint(opts, described, &input);
    let previous = stored(&report_file);

    if !opts.force {
        if let Some(figures) = previous.as_ref().and_then(|v| resumable(v, &folder, &fp)) {
            if staging.exists() {
                let _ = std::fs::remove_dir_all(&staging);
            }
            return Ok((true, figures));
        }
    }
    std::fs::create_dir_all(&folder).map_err(io(&folder))?;
    let ours = report_file.exists() || staging.exists();
    if output.symlink_metadata().is_ok() && !ours && !opts.force {
        return Err(Error::model(
            &output,
            "already exists and was not written by renorm batch; pass --force to overwrite it",
        ));
    }
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    std::fs::create_dir(&staging).map_err(io(&staging))?;
    let result = (|| {
        let mut popts = opts.clone();
        popts.force = true;
        popts.validation = None;
        let mut unfit = None;
        match spec {
            // The zoo's own data may not suit a model renorm can prune (integer inputs, say): prune it
            // anyway, with the validation skipped and the reason given.
            Some(spec) if zoo => {
                let model = Model::open(&input)?;
                match validate::prepare(&model, &spec) {
                    Ok(_) => popts.validation = Some(spec),
                    Err(e) => {
                        unfit = Some(format!(
                            "its test_data_set_* data does not fit: {}",
                            one_line(&e.to_string())
                        ))
                    }
                }
            }
            spec => popts.validation = spec,
        }
        let staged = staging.join(&name);
        let mut report = prune_file(&input, &staged, &popts)?;
        report.output = output.display().to_string();
        if report.validation.is_none() && unfit.is_some() {
            report.validation = Some(ValidationReport { skipped_reason: unfit, ..Default::default() });
        }
        let figures = Figures {
            params: report.totals.params,
            pruned: report.totals.pruned,
            sparsity: report.totals.sparsity,
            size: report.size,
            validation: report.validation.clone(),
        };
        // The output's files as prune_file left them: its data files, then the model.
        let mut files: Vec<FileLen> = Vec::new();
        for entry in std::fs::read_dir(&staging).map_err(io(&staging))? {
            let entry = entry.map_err(io(&staging))?;
            let len = entry.metadata().map_err(io(&entry.path()))?.len();
            files.push(FileLen { name: entry.file_name().to_string_lossy().into_owned(), bytes: len });
        }
        let model_name = name.to_string_lossy().into_owned();
        files.sort_by(|a, b| (a.name == model_name).cmp(&(b.name == model_name)).then(a.name.cmp(&b.name)));
        let file = ReportFile {
            report: &report,
            batch: BatchInfo { fingerprint: fp, files, figures: figures.clone() },
        };
        let text = format!("{}\n", serde_json::to_string_pretty(&file).expect("reports serialize"));
        let staged_report = staging.join(report_path(Path::new(&name)));
        std::fs::write(&staged_report, text).map_err(io(&staged_report))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&staged_report, std::fs::Permissions::from_mode(0o644))
                .map_err(io(&staged_report))?;
        }
        // Commit: the old report goes first (a model without one is not done), the new one last.
        match std::fs::remove_file(&report_file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&report_file, e)),
            _ => {}
        }
        let moved = file.batch.files.iter().try_for_each(|f| {
            let dest = folder.join(&f.name);
            std::fs::rename(staging.join(&f.name), &dest).map_err(io(&dest))
        });
        if let Err(e) =
            moved.and_then(|_| std::fs::rename(&staged_report, &report_file).map_err(io(&report_file)))
        {
            // Without its report the output is not done, and without the staging folder a rerun would
            // take it for someone else's file: remove what was moved.
            for f in &file.batch.files {
                let _ = std::fs::remove_file(folder.join(&f.name));
            }
            return Err(e);
        }
        // Data files of an earlier output that this one no longer has.
        let kept: Vec<&str> = file.batch.files.iter().map(|f| f.name.as_str()).collect();
        for old in previous.as_ref().map(stored_files).unwrap_or_default() {
            if !kept.contains(&old.name.as_str())
                && !old.name.contains(['/', '\\'])
                && !old.name.starts_with('.')
            {
                let _ = std::fs::remove_file(folder.join(&old.name));
            }
        }
        Ok(figures)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result.map(|f| (false, f))
}

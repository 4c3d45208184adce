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
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::onnx::model::Model;
use crate::prune_job::{prune_file, PruneOptions};
use crate::report::{
    Accuracy, BatchEntry, BatchReport, BatchTotals, Gate, OutputReport, PruneReport, ValidationReport,
};
use crate::sizes::{SizeChange, Sizes};
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

/// A model found under the input folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Relative to the input folder.
    pub model: PathBuf,
    /// Model-zoo layout: the folder (relative to the input folder, `.` for the folder itself) that holds
    /// `test_data_set_*` beside this model.
    pub zoo_data: Option<PathBuf>,
}

/// Every `*.onnx` file under `dir` (not following symlinked folders, skipping hidden entries and the
/// `test_data_set_*` folders), sorted by relative path. In a folder holding `test_data_set_*`, the zoo
/// model is `model.onnx`, or the folder's only `.onnx` file.
pub fn discover(dir: &Path) -> Result<Vec<Found>> {
    scan(dir, None)
}

/// Whether `model` (a path relative to the input folder) belongs to shard `k` of `n` (1-based): FNV-1a
/// (64 bit) of its components joined by `/`, modulo `n`, is `k - 1`. The same on every machine and OS.
pub fn in_shard(model: &Path, k: usize, n: usize) -> bool {
    n > 0 && (fnv1a(slash(model).as_bytes()) % n as u64) as usize + 1 == k
}

/// The models `run` prunes: those `discover` finds, minus `out`'s own tree when it lies inside `dir`,
/// minus those outside the shard. Refuses an `out` that is `dir` or holds it.
pub fn plan(dir: &Path, out: &Path, shard: Option<(usize, usize)>) -> Result<Vec<Found>> {
    check_shard(shard)?;
    let root = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    if !root.is_dir() {
        return Err(Error::model(dir, "is not a folder; batch takes a folder of models"));
    }
    let out_abs = absolute(out)?;
    if out_abs == root {
        return Err(Error::Usage(format!(
            "output folder '{}' is the input folder; choose another -o",
            out.display()
        )));
    }
    if root.starts_with(&out_abs) {
        return Err(Error::Usage(format!(
            "input folder '{}' lies inside the output folder '{}'; choose an -o outside it",
            dir.display(),
            out.display()
        )));
    }
    if out_abs.exists() && !out_abs.is_dir() {
        return Err(Error::model(out, "is not a folder; -o takes the output folder"));
    }
    let found = scan(dir, out_abs.starts_with(&root).then_some(out_abs.as_path()))?;
    if found.is_empty() {
        return Err(Error::model(dir, "holds no .onnx model"));
    }
    Ok(match shard {
        Some((k, n)) => found.into_iter().filter(|f| in_shard(&f.model, k, n)).collect(),
        None => found,
    })
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

fn check_shard(shard: Option<(usize, usize)>) -> Result<()> {
    match shard {
        Some((k, n)) if n == 0 || k == 0 || k > n => {
            Err(Error::Usage(format!("--shard {k}/{n}: need 1 <= K <= N")))
        }
        _ => Ok(()),
    }
}

fn scan(dir: &Path, skip: Option<&Path>) -> Result<Vec<Found>> {
    let root = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let folder = root.join(&rel);
        let io = |e: std::io::Error| Error::io(&dir.join(&rel), e);
        let mut models: Vec<std::ffi::OsString> = Vec::new();
        let mut has_sets = false;
        for entry in std::fs::read_dir(&folder).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let text = name.to_string_lossy();
            if text.starts_with('.') {
                continue;
            }
            // Not followed: the entry's own type, a symlink stays a symlink.
            let kind = entry.file_type().map_err(io)?;
            let path = entry.path();
            if kind.is_dir() {
                if text.starts_with("test_data_set_") {
                    has_sets = true;
                } else if skip != Some(path.as_path()) {
                    stack.push(rel.join(&name));
                }
            } else if is_onnx(&text) && (kind.is_file() || (kind.is_symlink() && path.is_file())) {
                models.push(name);
            }
        }
        models.sort();
        let zoo = match models.iter().find(|n| *n == "model.onnx") {
            Some(m) if has_sets => Some(m.clone()),
            None if has_sets && models.len() == 1 => Some(models[0].clone()),
            _ => None,
        };
        for name in models {
            let data = if rel.as_os_str().is_empty() { PathBuf::from(".") } else { rel.clone() };
            found.push(Found {
                model: rel.join(&name),
                zoo_data: (zoo.as_ref() == Some(&name)).then_some(data),
            });
        }
    }
    found.sort_by(|a, b| a.model.cmp(&b.model));
    Ok(found)
}

fn is_onnx(name: &str) -> bool {
    name.len() > 5 && name.get(name.len() - 5..).is_some_and(|e| e.eq_ignore_ascii_case(".onnx"))
}

/// A relative path's components joined by `/` (the same text on every OS).
fn slash(p: &Path) -> String {
    p.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// `p` made absolute with symlinks resolved as far as it exists, the rest appended lexically.
fn absolute(p: &Path) -> Result<PathBuf> {
    let cwd = std::env::current_dir().map_err(|e| Error::io(Path::new("."), e))?;
    let full = cwd.join(p);
    let mut base = full.as_path();
    let mut rest: Vec<Component> = Vec::new();
    loop {
        if let Ok(c) = base.canonicalize() {
            let mut out = c;
            for comp in rest.into_iter().rev() {
                match comp {
                    Component::CurDir => {}
                    Component::ParentDir => {
                        out.pop();
                    }
                    other => out.push(other.as_os_str()),
                }
            }
            return Ok(out);
        }
        match (base.parent(), base.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last);
                base = parent;
            }
            _ => return Ok(full),
        }
    }
}

/// The method every model gets (as `PruneReport::method`).
/// What decides whether an existing output can be reused: tool version, every prune option, the
/// validation data, and the input file's length and modification time.
fn fingerprint(opts: &PruneOptions, validation: Option<String>, input: &Path) -> String {
    let meta = std::fs::metadata(input).ok();
    let modified = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos().to_string());
    let refit = matches!(opts.renorm, crate::Renorm::Refit).then(|| format!("{:?}", opts.refit));
    serde_json::json!({
        "tool": format!("renorm {}", env!("CARGO_PKG_VERSION")),
        "method": opts.method(),
        "filter": format!("{:?}", opts.filter),
        "calib": opts.calib.as_ref().map(|c| format!("{c:?}")),
        "refit": refit,
        "validation": validation,
        "input": { "bytes": meta.map(|m| m.len()), "modified_ns": modified },
    })
    .to_string()
}

/// The figures an entry reports, fresh or resumed.
struct Figures {
    params: usize,
    pruned: usize,
    sparsity: f64,
    size: SizeChange,
    validation: Option<ValidationReport>,
}

/// The model's report file: the prune report, plus what a rerun needs to resume.
#[derive(Serialize)]
struct ReportFile<'a> {
    #[serde(flatten)]
    report: &'a PruneReport,
    batch: BatchInfo,
}

#[derive(Serialize)]
struct BatchInfo {
    /// Compact JSON of what the output was made from and with (see `fingerprint`).
    fingerprint: String,
    /// The output's files (the model last), in its folder, with their lengths.
    files: Vec<FileLen>,
    /// The entry's figures with every float written as a string, so they read back exactly.
    figures: Value,
}

#[derive(Serialize)]
struct FileLen {
    name: String,
    bytes: u64,
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
            batch: BatchInfo { fingerprint: fp, files, figures: encode(&figures) },
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

/// The model's existing report file, parsed (None when absent or unreadable).
fn stored(report_file: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(report_file).ok()?).ok()
}

fn stored_files(v: &Value) -> Vec<FileLen> {
    let Some(files) = v["batch"]["files"].as_array() else { return Vec::new() };
    files
        .iter()
        .filter_map(|f| Some(FileLen { name: f["name"].as_str()?.to_string(), bytes: f["bytes"].as_u64()? }))
        .collect()
}

/// The stored figures, when the report was made with the same fingerprint and every output file is
/// there with its recorded length.
fn resumable(v: &Value, folder: &Path, fp: &str) -> Option<Figures> {
    if v["batch"]["fingerprint"].as_str()? != fp {
        return None;
    }
    let files = stored_files(v);
    if files.is_empty() || files.len() != v["batch"]["files"].as_array()?.len() {
        return None;
    }
    for f in &files {
        let meta = std::fs::metadata(folder.join(&f.name)).ok()?;
        if !meta.is_file() || meta.len() != f.bytes {
            return None;
        }
    }
    decode(&v["batch"]["figures"])
}

/// The figures as JSON with every float as a string: serde_json without `float_roundtrip` may read a
/// float back one ulp off, Rust's own parser reads the shortest representation back exactly.
fn encode(f: &Figures) -> Value {
    fn strings(v: Value) -> Value {
        match v {
            Value::Number(n) if n.is_f64() => Value::String(n.as_f64().expect("f64").to_string()),
            Value::Array(a) => Value::Array(a.into_iter().map(strings).collect()),
            Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, strings(v))).collect()),
            other => other,
        }
    }
    strings(serde_json::json!({
        "params": f.params,
        "pruned": f.pruned,
        "sparsity": f.sparsity,
        "size": f.size,
        "validation": f.validation,
    }))
}

fn decode(v: &Value) -> Option<Figures> {
    Some(Figures {
        params: count(&v["params"])?,
        pruned: count(&v["pruned"])?,
        sparsity: float(&v["sparsity"])?,
        size: SizeChange { before: sizes(&v["size"]["before"])?, after: sizes(&v["size"]["after"])? },
        validation: opt(&v["validation"], validation)?,
    })
}

/// A float written by `encode` (a string), a plain number, or null (NaN: JSON has no NaN).
fn float(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_f64(),
        Value::Null => Some(f64::NAN),
        _ => None,
    }
}

fn count(v: &Value) -> Option<usize> {
    usize::try_from(v.as_u64()?).ok()
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

/// Null as None, else `read`'s value (the outer None: unreadable).
fn opt<T>(v: &Value, read: impl Fn(&Value) -> Option<T>) -> Option<Option<T>> {
    if v.is_null() {
        Some(None)
    } else {
        read(v).map(Some)
    }
}

fn list<T>(v: &Value, read: impl Fn(&Value) -> Option<T>) -> Option<Vec<T>> {
    v.as_array()?.iter().map(read).collect()
}

fn sizes(v: &Value) -> Option<Sizes> {
    Some(Sizes { raw: v["raw"].as_u64()?, zstd: v["zstd"].as_u64()? })
}

fn accuracy(v: &Value) -> Option<Accuracy> {
    Some(Accuracy { original: float(&v["original"])?, pruned: float(&v["pruned"])? })
}

fn validation(v: &Value) -> Option<ValidationReport> {
    Some(ValidationReport {
        samples: count(&v["samples"])?,
        accuracy: opt(&v["accuracy"], accuracy)?,
        outputs: list(&v["outputs"], |o| {
            Some(OutputReport {
                name: text(&o["name"])?,
                top1_agreement: opt(&o["top1_agreement"], float)?,
                max_abs_error: float(&o["max_abs_error"])?,
                mean_abs_error: float(&o["mean_abs_error"])?,
                rel_l2_error: float(&o["rel_l2_error"])?,
                cosine: float(&o["cosine"])?,
                reference_max_abs_error: opt(&o["reference_max_abs_error"], accuracy)?,
            })
        })?,
        conversions: list(&v["conversions"], text)?,
        skipped_reason: opt(&v["skipped_reason"], text)?,
        gates: list(&v["gates"], |g| {
            Some(Gate {
                gate: text(&g["gate"])?,
                limit: float(&g["limit"])?,
                value: float(&g["value"])?,
                passed: g["passed"].as_bool()?,
            })
        })?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_back_exactly() {
        let tricky = [0.1 + 0.2, 1.0 / 3.0, 0.123_456_789_012_345_68, 5e-324, 1.0, 0.0, 2.0f64.sqrt() / 7.0];
        let validation = ValidationReport {
            samples: 3,
            accuracy: Some(Accuracy { original: tricky[0], pruned: tricky[1] }),
            outputs: vec![OutputReport {
                name: "y".into(),
                top1_agreement: None,
                max_abs_error: tricky[2],
                mean_abs_error: tricky[3],
                rel_l2_error: tricky[4],
                cosine: tricky[6],
                reference_max_abs_error: Some(Accuracy { original: tricky[5], pruned: tricky[6] }),
            }],
            conversions: vec!["uint8 → float32".into()],
            skipped_reason: None,
            gates: vec![Gate { gate: "min-cosine".into(), limit: 0.99, value: f64::NAN, passed: false }],
        };
        let f = Figures {
            params: 10,
            pruned: 7,
            sparsity: 0.7,
            size: SizeChange { before: Sizes { raw: 5, zstd: 4 }, after: Sizes { raw: 5, zstd: 3 } },
            validation: Some(validation),
        };
        let text = serde_json::to_string_pretty(&encode(&f)).unwrap();
        let back = decode(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(back.sparsity, 0.7);
        let v = back.validation.as_ref().unwrap();
        assert_eq!(v.accuracy, f.validation.as_ref().unwrap().accuracy);
        assert_eq!(v.outputs, f.validation.as_ref().unwrap().outputs);
        assert!(v.gates[0].value.is_nan());
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            serde_json::to_string(&f.validation.unwrap()).unwrap()
        );
        assert_eq!(back.size, f.size);
    }

    #[test]
    fn shards_hash_slash_joined_paths() {
        // FNV-1a 64 of "" is the offset basis; of "a" a published test vector.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let p = Path::new("zoo").join("resnet").join("model.onnx");
        assert_eq!(slash(&p), "zoo/resnet/model.onnx");
        let n = 5;
        assert_eq!((1..=n).filter(|&k| in_shard(&p, k, n)).count(), 1);
        assert!(!in_shard(&p, 1, 0));
    }

    #[test]
    fn onnx_names() {
        assert!(is_onnx("a.onnx") && is_onnx("B.ONNX") && !is_onnx(".onnx") && !is_onnx("a.onnx.data"));
    }
}

//! The `renorm` binary: parse the command line, call the library, map errors to exit codes
//! (0 success, 1 bad input or failure, 2 usage, 3 a validation gate failed).

mod cli;
mod progress;

use std::process::ExitCode;

use clap::Parser;
use regex::Regex;

use cli::{
    BatchArgs, CalibArgs, Cli, Command, DataArgs, MethodArgs, PruneArgs, RenormArg, ScopeArg, SweepArgs,
    TargetArgs, ValidateArgs,
};
use renorm::batch::BatchOptions;
use renorm::samples::SampleOptions;
use renorm::sweep::SweepOptions;
use renorm::validate::{DataSpec, Gates};
use renorm::{report, Error, Filter, PruneOptions, RefitOptions, Renorm, Scope, Selector};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // One line, like every other error, for logs and pipelines.
            let text = e.to_string();
            let first: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
            eprintln!(
                "renorm: error: {} (see 'renorm --help')",
                first.join(" ").trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("renorm: error: {}", e.to_string().replace('\n', " "));
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Inspect { model, json } => {
            let r = renorm::inspect_file(&model)?;
            if json {
                println!("{}", to_json(&r));
            } else {
                print!("{}", report::text::inspect(&r));
            }
            Ok(())
        }
        Command::Prune(args) => prune(args),
        Command::Validate(args) => validate(args),
        Command::Sweep(args) => sweep(args),
        Command::Batch(args) => batch(args),
    }
}

fn validate(args: ValidateArgs) -> Result<(), Error> {
    let spec =
        data_spec(&args.data)?.ok_or_else(|| Error::Usage("validate needs --data DATA".to_string()))?;
    let r = renorm::validate::validate_files(&args.original, &args.pruned, &spec)?;
    emit(&r, args.report.as_deref(), args.json, report::text::validation)?;
    renorm::validate::gate_error(&r).map_or(Ok(()), Err)
}

/// The validation data options, or None without --data.
fn data_spec(d: &DataArgs) -> Result<Option<DataSpec>, Error> {
    let Some(data) = &d.data else { return Ok(None) };
    if d.batch == 0 {
        return Err(Error::Usage("--batch must be at least 1".to_string()));
    }
    Ok(Some(DataSpec {
        data: data.clone(),
        labels: d.labels.clone(),
        sample: SampleOptions { limit: d.samples, scale: d.scale, add_channel_axis: d.add_channel_axis },
        batch: d.batch,
        gates: Gates {
            max_top1_drop: d.max_top1_drop,
            max_accuracy_drop: d.max_accuracy_drop,
            min_cosine: d.min_cosine,
        },
    }))
}

fn prune(args: PruneArgs) -> Result<(), Error> {
    let opts = PruneOptions {
        force: args.force,
        validation: data_spec(&args.data)?,
        ..prune_options(&args.method, &args.targets, &args.calib, args.data.batch)?
    };
    let r = renorm::prune_file(&args.model, &args.output, &opts)?;
    emit(&r, args.report.as_deref(), args.json, report::text::prune)?;
    match &r.validation {
        Some(v) => renorm::validate::gate_error(v).map_or(Ok(()), Err),
        None => Ok(()),
    }
}

/// The options shared by prune and batch (no output handling, no validation).
fn prune_options(m: &MethodArgs, t: &TargetArgs, c: &CalibArgs, batch: usize) -> Result<PruneOptions, Error> {
    let selector = match m.pattern {
        Some((n, m)) => Selector::Pattern { n, m },
        None => Selector::Sparsity { sparsity: m.sparsity, scope: scope(m.scope) },
    };
    Ok(PruneOptions {
        selector,
        renorm: renorm_of(m.renorm),
        filter: filter(t)?,
        calib: calib_spec(c, batch),
        refit: RefitOptions { steps: c.refit_steps, ridge: c.ridge },
        allow_nonfinite: m.allow_nonfinite,
        engine: Default::default(),
        ..Default::default()
    })
}

fn scope(s: ScopeArg) -> Scope {
    match s {
        ScopeArg::Global => Scope::Global,
        ScopeArg::Layer => Scope::Layer,
        ScopeArg::Unit => Scope::Unit,
    }
}

fn renorm_of(r: RenormArg) -> Renorm {
    match r {
        RenormArg::None => Renorm::None,
        RenormArg::L1 => Renorm::L1,
        RenormArg::L2 => Renorm::L2,
        RenormArg::Stats => Renorm::Stats,
        RenormArg::Refit => Renorm::Refit,
    }
}

fn filter(t: &TargetArgs) -> Result<Filter, Error> {
    let regexes = |pats: &[String], flag: &str| -> Result<Vec<Regex>, Error> {
        pats.iter()
            .map(|p| {
                Regex::new(p).map_err(|e| Error::Usage(format!("{flag} '{p}' is not a valid regex: {e}")))
            })
            .collect()
    };
    Ok(Filter { include: regexes(&t.include, "--include")?, exclude: regexes(&t.exclude, "--exclude")? })
}

/// Calibration reads like --data, without labels or gates, with its own conversions.
fn calib_spec(c: &CalibArgs, batch: usize) -> Option<DataSpec> {
    c.calib.as_ref().map(|path| DataSpec {
        data: path.clone(),
        sample: SampleOptions {
            limit: c.calib_samples,
            scale: c.calib_scale,
            add_channel_axis: c.calib_add_channel_axis,
        },
        batch,
        ..Default::default()
    })
}

fn no_gates(d: &DataArgs, command: &str) -> Result<(), Error> {
    if d.max_top1_drop.is_some() || d.max_accuracy_drop.is_some() || d.min_cosine.is_some() {
        return Err(Error::Usage(format!(
            "{command} reports every model's figures; gates apply to prune and validate"
        )));
    }
    Ok(())
}

fn sweep(args: SweepArgs) -> Result<(), Error> {
    no_gates(&args.data, "sweep")?;
    let data = data_spec(&args.data)?.ok_or_else(|| Error::Usage("sweep needs --data DATA".to_string()))?;
    let mut renorms: Vec<Renorm> = args.renorm.iter().map(|r| renorm_of(*r)).collect();
    if renorms.is_empty() {
        renorms = vec![Renorm::None, Renorm::L1, Renorm::L2];
        if args.calib.calib.is_some() {
            renorms.push(Renorm::Stats);
        }
    }
    let opts = SweepOptions {
        sparsities: args.sparsities.clone(),
        scopes: args.scope.iter().map(|s| scope(*s)).collect(),
        renorms,
        filter: filter(&args.targets)?,
        calib: calib_spec(&args.calib, args.data.batch),
        refit: RefitOptions { steps: args.calib.refit_steps, ridge: args.calib.ridge },
        data,
        keep_models: args.keep_models,
    };
    let bar = progress::Progress::new(args.quiet, "points");
    let r = renorm::sweep::run(&args.model, &args.out, &opts, &|i, n, p| bar.point(i, n, p))?;
    bar.finish();
    if args.json {
        println!("{}", to_json(&r));
    } else {
        print!("{}", report::markdown::sweep(&r));
        println!("\nwrote {0}/sweep.json, sweep.md, sweep.svg and sweep.html", args.out.display());
    }
    Ok(())
}

fn batch(args: BatchArgs) -> Result<(), Error> {
    if args.jobs == 0 {
        return Err(Error::Usage("--jobs must be at least 1".to_string()));
    }
    let opts = BatchOptions {
        prune: PruneOptions {
            force: args.force,
            validation: data_spec(&args.data)?,
            ..prune_options(&args.method, &args.targets, &args.calib, args.data.batch)?
        },
        jobs: args.jobs,
        shard: args.shard,
    };
    let bar = progress::Progress::new(args.quiet, "models");
    bar.total(renorm::batch::plan(&args.dir, &args.output, args.shard)?.len());
    let r = renorm::batch::run(&args.dir, &args.output, &opts, &|e| bar.model(e))?;
    bar.finish();
    if args.json {
        println!("{}", to_json(&r));
    } else {
        print!("{}", report::markdown::batch(&r));
    }
    if r.totals.failed > 0 {
        return Err(Error::Failed(format!(
            "{} of {} models failed (listed in {}/summary.json)",
            r.totals.failed,
            r.totals.models,
            args.output.display()
        )));
    }
    renorm::batch::gate_error(&r).map_or(Ok(()), Err)
}

/// Writes the JSON report to `--report` if given, then prints it (`--json`) or the text summary.
fn emit<T: serde::Serialize>(
    r: &T,
    report: Option<&std::path::Path>,
    json: bool,
    text: fn(&T) -> String,
) -> Result<(), Error> {
    let encoded = to_json(r);
    if let Some(path) = report {
        // Atomically: a run killed while writing it leaves no half report.
        report::write_file(path, &format!("{encoded}\n"))?;
    }
    if json {
        println!("{encoded}");
    } else {
        print!("{}", text(r));
    }
    Ok(())
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("reports serialize")
}

//! The `renorm` binary: parse the command line, call the library, map errors to exit codes
//! (0 success, 1 bad input or failure, 2 usage, 3 a validation gate failed).

mod cli;

use std::process::ExitCode;

use clap::Parser;
use regex::Regex;

use cli::{Cli, Command, DataArgs, PruneArgs, RenormArg, ScopeArg, ValidateArgs};
use renorm::samples::SampleOptions;
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
    let opts = options(&args)?;
    let r = renorm::prune_file(&args.model, &args.output, &opts)?;
    emit(&r, args.report.as_deref(), args.json, report::text::prune)?;
    match &r.validation {
        Some(v) => renorm::validate::gate_error(v).map_or(Ok(()), Err),
        None => Ok(()),
    }
}

fn options(args: &PruneArgs) -> Result<PruneOptions, Error> {
    let regexes = |pats: &[String], flag: &str| -> Result<Vec<Regex>, Error> {
        pats.iter()
            .map(|p| {
                Regex::new(p).map_err(|e| Error::Usage(format!("{flag} '{p}' is not a valid regex: {e}")))
            })
            .collect()
    };
    let selector = match args.pattern {
        Some((n, m)) => Selector::Pattern { n, m },
        None => Selector::Sparsity {
            sparsity: args.sparsity,
            scope: match args.scope {
                ScopeArg::Global => Scope::Global,
                ScopeArg::Layer => Scope::Layer,
                ScopeArg::Unit => Scope::Unit,
            },
        },
    };
    Ok(PruneOptions {
        selector,
        renorm: match args.renorm {
            RenormArg::None => Renorm::None,
            RenormArg::L1 => Renorm::L1,
            RenormArg::L2 => Renorm::L2,
            RenormArg::Stats => Renorm::Stats,
            RenormArg::Refit => Renorm::Refit,
        },
        refit: RefitOptions { steps: args.refit_steps, ridge: args.ridge },
        filter: Filter {
            include: regexes(&args.include, "--include")?,
            exclude: regexes(&args.exclude, "--exclude")?,
        },
        force: args.force,
        // Calibration reads like --data, without labels or gates, with its own conversions.
        calib: args.calib.as_ref().map(|c| DataSpec {
            data: c.clone(),
            sample: SampleOptions {
                limit: args.calib_samples,
                scale: args.calib_scale,
                add_channel_axis: args.calib_add_channel_axis,
            },
            batch: args.data.batch,
            ..Default::default()
        }),
        validation: data_spec(&args.data)?,
    })
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
        std::fs::write(path, format!("{encoded}\n")).map_err(|e| Error::io(path, e))?;
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

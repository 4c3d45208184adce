//! Command-line definitions only (clap). The work is in the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "renorm",
    version,
    about = "Prune trained ONNX models without retraining, renormalizing what each output unit keeps",
    after_help = "Examples:\n  renorm inspect fixtures/mnist_mlp.onnx\n  renorm prune fixtures/mnist_mlp.onnx -o mlp-90.onnx --sparsity 0.9\n  renorm prune model.onnx -o model-2of4.onnx --pattern 2:4 --json"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List every prunable weight (target) and every skipped one, with totals.
    Inspect {
        /// The ONNX model.
        model: PathBuf,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Zero the smallest weights, renormalize each output unit, write a new model.
    #[command(
        after_help = "Examples:\n  renorm prune fixtures/mnist_mlp.onnx -o mlp-90.onnx --sparsity 0.9\n  renorm prune model.onnx -o out.onnx --scope layer --renorm l1 --exclude 'classifier'\n  renorm prune model.onnx -o out.onnx --pattern 2:4 --report report.json"
    )]
    Prune(PruneArgs),
}

#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// The ONNX model to prune (never modified).
    pub model: PathBuf,
    /// Where to write the pruned model.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Fraction of weights to zero, 0 to 1.
    #[arg(long, default_value_t = 0.5, conflicts_with = "pattern")]
    pub sparsity: f64,
    /// Where the smallest weights are counted: over all targets, per target, or per output unit.
    #[arg(long, value_enum, default_value_t = ScopeArg::Global, conflicts_with = "pattern")]
    pub scope: ScopeArg,
    /// N:M structured sparsity along the input-channel axis (e.g. 2:4); replaces --sparsity/--scope.
    #[arg(long, value_name = "N:M", value_parser = parse_pattern)]
    pub pattern: Option<(usize, usize)>,
    /// How each output unit's kept weights are rescaled.
    #[arg(long, value_enum, default_value_t = RenormArg::L2)]
    pub renorm: RenormArg,
    /// Prune only targets whose node or weight name matches (repeatable).
    #[arg(long, value_name = "REGEX")]
    pub include: Vec<String>,
    /// Leave targets whose node or weight name matches (repeatable).
    #[arg(long, value_name = "REGEX")]
    pub exclude: Vec<String>,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Print the JSON report on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Overwrite the output if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ScopeArg {
    Global,
    Layer,
    Unit,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum RenormArg {
    None,
    L1,
    L2,
}

fn parse_pattern(s: &str) -> Result<(usize, usize), String> {
    let (n, m) = s.split_once(':').ok_or_else(|| format!("'{s}' is not N:M (e.g. 2:4)"))?;
    let n: usize = n.trim().parse().map_err(|_| format!("'{s}': N is not a whole number"))?;
    let m: usize = m.trim().parse().map_err(|_| format!("'{s}': M is not a whole number"))?;
    if m == 0 || n > m {
        return Err(format!("'{s}': need 0 <= N <= M and M > 0"));
    }
    Ok((n, m))
}

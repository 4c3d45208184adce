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
    /// Run the original and a pruned model with tract on the same samples and compare them.
    #[command(
        after_help = "Examples:\n  renorm validate fixtures/mnist_mlp.onnx mlp-90.onnx --data fixtures/mnist_test_1000.npy --labels fixtures/mnist_test_1000_labels.npy\n  renorm validate model.onnx pruned.onnx --data test_data/ --min-cosine 0.99 --json\n\nExit codes: 0 ok, 1 bad input, 2 usage, 3 a gate failed (the report is still written)."
    )]
    Validate(ValidateArgs),
    /// Prune at every sparsity x scope x renorm, validate each, and plot accuracy against sparsity.
    #[command(
        after_help = "Examples:\n  renorm sweep fixtures/mnist_mlp.onnx --data fixtures/mnist_test_1000.npy --labels fixtures/mnist_test_1000_labels.npy --out sweep/\n  renorm sweep model.onnx --data val.npz --renorm l2,stats,refit --calib train.npy --scope global,layer --out sweep/\n\nWrites DIR/sweep.json, DIR/sweep.md and DIR/sweep.html (self-contained, with an SVG plot)."
    )]
    Sweep(SweepArgs),
    /// Prune every model under a folder with the same options (resumable, shardable).
    #[command(
        after_help = "Examples:\n  renorm batch zoo/ -o zoo-pruned/ --sparsity 0.9 --jobs 2\n  renorm batch zoo/ -o out/ --shard 3/8   # machine 3 of 8\n\nA model that fails is listed in the summary; the exit code is 1 if any failed. A rerun skips models already done with the same options."
    )]
    Batch(BatchArgs),
}

#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// The model before pruning.
    pub original: PathBuf,
    /// The pruned model.
    pub pruned: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Print the JSON report on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
}

/// Sample data, how to read it, and the gates to check (shared by `validate` and `prune --data`).
#[derive(clap::Args, Debug, Clone)]
pub struct DataArgs {
    /// Samples: .npy (first axis = samples), .npz (one array per input name), IDX, or a folder of
    /// test_data_set_*/input_*.pb.
    #[arg(long, value_name = "DATA", required = false)]
    pub data: Option<PathBuf>,
    /// Class labels (.npy or IDX) for accuracy.
    #[arg(long, value_name = "LABELS", requires = "data")]
    pub labels: Option<PathBuf>,
    /// Use only the first N samples.
    #[arg(long, value_name = "N")]
    pub samples: Option<usize>,
    /// Samples per tract run (runs go in parallel across cores).
    #[arg(long, value_name = "B", default_value_t = 64)]
    pub batch: usize,
    /// Divide the data by S, converting integer data (e.g. uint8 pixels: --scale 255) to float.
    #[arg(long, value_name = "S")]
    pub scale: Option<f32>,
    /// Insert a size-1 channel axis after the samples axis (e.g. (N, 28, 28) → (N, 1, 28, 28)).
    #[arg(long)]
    pub add_channel_axis: bool,
    /// Gate: fail (exit 3) if more than this fraction of samples change their top-1 class.
    #[arg(long, value_name = "X", requires = "data")]
    pub max_top1_drop: Option<f64>,
    /// Gate: fail (exit 3) if top-1 accuracy against --labels drops by more than X.
    #[arg(long, value_name = "X", requires = "labels")]
    pub max_accuracy_drop: Option<f64>,
    /// Gate: fail (exit 3) if any output's cosine similarity to the original is below X.
    #[arg(long, value_name = "X", requires = "data")]
    pub min_cosine: Option<f64>,
}

#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// The ONNX model to prune (never modified).
    pub model: PathBuf,
    /// Where to write the pruned model.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    #[command(flatten)]
    pub method: MethodArgs,
    #[command(flatten)]
    pub targets: TargetArgs,
    #[command(flatten)]
    pub calib: CalibArgs,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Print the JSON report on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Overwrite the output if it exists.
    #[arg(long)]
    pub force: bool,
    /// Validate the written model against the input on these samples (see `renorm validate`).
    #[command(flatten)]
    pub data: DataArgs,
}

/// How much is pruned and how units are renormalized (prune, batch).
#[derive(clap::Args, Debug, Clone)]
pub struct MethodArgs {
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
    /// Leave a weight holding NaN or infinite values unpruned (listed as skipped) instead of refusing
    /// the model; the other weights are pruned as usual (--renorm none, l1 or l2 only).
    #[arg(long)]
    pub allow_nonfinite: bool,
}

/// Which targets are pruned (prune, batch, sweep).
#[derive(clap::Args, Debug, Clone)]
pub struct TargetArgs {
    /// Prune only targets whose node or weight name matches (repeatable).
    #[arg(long, value_name = "REGEX")]
    pub include: Vec<String>,
    /// Leave targets whose node or weight name matches (repeatable).
    #[arg(long, value_name = "REGEX")]
    pub exclude: Vec<String>,
}

/// Calibration for --renorm stats and refit (prune, batch, sweep).
#[derive(clap::Args, Debug, Clone)]
pub struct CalibArgs {
    /// Calibration samples for --renorm stats and refit (training data, not the validation data).
    #[arg(long, value_name = "DATA")]
    pub calib: Option<PathBuf>,
    /// Use only the first N calibration samples.
    #[arg(long, value_name = "N", requires = "calib")]
    pub calib_samples: Option<usize>,
    /// Like --scale, for the calibration data (--scale applies to --data only).
    #[arg(long, value_name = "S", requires = "calib")]
    pub calib_scale: Option<f32>,
    /// Like --add-channel-axis, for the calibration data.
    #[arg(long, requires = "calib")]
    pub calib_add_channel_axis: bool,
    /// refit: refits per unit while the mask moves toward its magnitude-mask count (1 keeps the
    /// magnitude mask exactly).
    #[arg(long, value_name = "K", default_value_t = 4)]
    pub refit_steps: usize,
    /// refit: ridge strength toward the original weights, relative to the mean input energy.
    #[arg(long, value_name = "A", default_value_t = 0.01)]
    pub ridge: f64,
}

#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    /// The ONNX model (never modified).
    pub model: PathBuf,
    /// Folder for sweep.json, sweep.md and sweep.html (created if needed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Sparsities to try, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.5,0.7,0.8,0.9,0.95,0.97")]
    pub sparsities: Vec<f64>,
    /// Renormalizations to compare, comma-separated (default: none,l1,l2, plus stats with --calib).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub renorm: Vec<RenormArg>,
    /// Scopes to try, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "global")]
    pub scope: Vec<ScopeArg>,
    #[command(flatten)]
    pub targets: TargetArgs,
    #[command(flatten)]
    pub calib: CalibArgs,
    /// Also keep each point's model in DIR/models/.
    #[arg(long)]
    pub keep_models: bool,
    /// Print the JSON report on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// No progress output on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// The samples every point is validated on (required).
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(clap::Args, Debug)]
pub struct BatchArgs {
    /// Folder of models: every *.onnx below it, and model-zoo folders (model.onnx + test_data_set_*).
    pub dir: PathBuf,
    /// Output folder: the input tree mirrored, plus summary.json, summary.md and summary.html.
    #[arg(short = 'o', long = "output", value_name = "OUTDIR")]
    pub output: PathBuf,
    #[command(flatten)]
    pub method: MethodArgs,
    #[command(flatten)]
    pub targets: TargetArgs,
    #[command(flatten)]
    pub calib: CalibArgs,
    /// Models pruned at once.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub jobs: usize,
    /// Prune every model again (no resume), overwriting outputs batch did not write.
    #[arg(long)]
    pub force: bool,
    /// Take only share K of N (1-based), deterministically: N machines split a zoo with no coordinator.
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    pub shard: Option<(usize, usize)>,
    /// Print the JSON summary on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// No progress output on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Validate every model on these samples (model-zoo folders use their own test_data_set_* without it).
    #[command(flatten)]
    pub data: DataArgs,
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
    /// Match each unit's output mean and std to the original's on --calib samples.
    Stats,
    /// Re-solve each unit's kept weights and bias by ridge least squares on --calib samples.
    Refit,
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (k, n) = s.split_once('/').ok_or_else(|| format!("'{s}' is not K/N (e.g. 2/4)"))?;
    let k: usize = k.trim().parse().map_err(|_| format!("'{s}': K is not a whole number"))?;
    let n: usize = n.trim().parse().map_err(|_| format!("'{s}': N is not a whole number"))?;
    if n == 0 || k == 0 || k > n {
        return Err(format!("'{s}': need 1 <= K <= N"));
    }
    Ok((k, n))
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

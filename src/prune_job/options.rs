//! What a prune job is asked to do: how weights are selected (a sparsity at a scope, or an N:M
//! pattern), how kept weights are renormalized, which targets, and which engine computes it.

use crate::calibrate::refit::RefitOptions;
use crate::error::{Error, Result};
use crate::prune::renorm::Renorm;
use crate::prune::targets::Filter;
use crate::report::Method;
use crate::validate::DataSpec;

/// Where a sparsity applies: over all targets at once, each target, or each output unit.
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

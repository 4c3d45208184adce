//! renorm: prune trained ONNX models without retraining, renormalizing what each output unit keeps
//! (Rawson 2022), and write a file identical to the input but for the pruned payloads.
//!
//! Data flows one way: bytes ([`onnx`]) → targets → masks → scales ([`prune`]) → patched bytes.

pub mod batch;
pub mod calibrate;
pub mod data;
pub mod error;
pub mod inspect;
pub mod onnx;
pub mod prune;
pub mod prune_job;
pub mod report;
pub mod runtime;
pub mod samples;
pub mod sizes;
pub mod sweep;
pub mod validate;

pub use calibrate::refit::RefitOptions;
pub use error::{Error, Result};
pub use inspect::inspect_file;
pub use prune::renorm::Renorm;
pub use prune::targets::Filter;
pub use prune_job::{prune_file, PruneOptions, Scope, Selector};

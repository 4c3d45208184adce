//! The method, on plain arrays: which weights are targets, masks, and scales. No file formats here.

pub mod renorm;
pub mod select;
pub mod targets;

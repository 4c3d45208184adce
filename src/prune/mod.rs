//! The method, on plain arrays: which weights are targets, masks, and scales. No file formats here.

pub mod cut;
pub mod grid;
pub mod grid_f32;
pub mod kth;
mod n_of_m;
#[cfg(target_arch = "x86_64")]
mod quads;
pub mod renorm;
pub mod select;
pub mod targets;

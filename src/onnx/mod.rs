//! Reading and writing ONNX files, nothing about pruning.

pub mod atomic_file;
mod decode;
pub mod external;
pub mod file_bytes;
pub mod graph_edit;
pub mod model;
pub mod payload;
pub mod tensor;
pub mod wire;
pub mod write;

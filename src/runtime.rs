//! tract: load a model with its input shapes fixed from the data, and run it.

use std::path::Path;

use tract_onnx::prelude::*;

use crate::error::{Error, Result};

/// A model ready to run on inputs of fixed shapes.
pub struct Runner {
    plan: std::sync::Arc<TypedRunnableModel>,
    path: std::path::PathBuf,
}

/// An f32 tensor: shape and row-major values.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Runner {
    /// Loads `path` for inputs of `shapes` (f32). Stored value_info and output shapes are ignored, as
    /// they may name symbolic dims that conflict with the fixed ones.
    pub fn load(path: &Path, shapes: &[Vec<usize>]) -> Result<Runner> {
        Runner::load_with_outputs(path, shapes, &[])
    }

    /// Like `load`, with the named intermediate values as extra outputs after the model's own.
    pub fn load_with_outputs(path: &Path, shapes: &[Vec<usize>], extra: &[String]) -> Result<Runner> {
        Runner::load_selected(path, shapes, extra, true)
    }

    /// Loads `path` with the named values as its only outputs: tract then computes only what they need.
    pub fn load_values(path: &Path, shapes: &[Vec<usize>], names: &[String]) -> Result<Runner> {
        Runner::load_selected(path, shapes, names, false)
    }

    fn load_selected(path: &Path, shapes: &[Vec<usize>], extra: &[String], own: bool) -> Result<Runner> {
        let fail = |e: anyhow::Error| Error::model(path, format!("tract cannot run it: {}", one_line(&e)));
        let mut model = tract_onnx::onnx()
            .with_ignore_output_shapes(true)
            .with_ignore_value_info(true)
            .model_for_path(path)
            .map_err(fail)?;
        if !extra.is_empty() {
            let mut outlets = if own { model.output_outlets().map_err(fail)?.to_vec() } else { Vec::new() };
            for name in extra {
                // Graph inputs carry no outlet label; their source node has the input's name.
                let outlet = model
                    .find_outlet_label(name)
                    .or_else(|| model.node_by_name(name).ok().map(|n| OutletId::new(n.id, 0)))
                    .ok_or_else(|| {
                        Error::model(path, format!("tract cannot expose value '{name}' as an output"))
                    })?;
                outlets.push(outlet);
            }
            model.select_output_outlets(&outlets).map_err(fail)?;
        }
        for (i, shape) in shapes.iter().enumerate() {
            model = model.with_input_fact(i, f32::fact(shape).into()).map_err(fail)?;
        }
        let plan = model.into_optimized().and_then(|m| m.into_runnable()).map_err(fail)?;
        Ok(Runner { plan, path: path.to_path_buf() })
    }

    /// Runs the model on `inputs` and returns every output as f32.
    pub fn run(&self, inputs: &[Array]) -> Result<Vec<Array>> {
        let fail =
            |e: anyhow::Error| Error::model(&self.path, format!("tract failed to run it: {}", one_line(&e)));
        let tensors: TVec<TValue> = inputs
            .iter()
            .map(|a| Tensor::from_shape(&a.shape, &a.data).map(|t| t.into_tvalue()))
            .collect::<TractResult<_>>()
            .map_err(fail)?;
        let outputs = self.plan.run(tensors).map_err(fail)?;
        outputs
            .into_iter()
            .map(|t| {
                let t = t.cast_to::<f32>().map_err(fail)?;
                Ok(Array {
                    shape: t.shape().to_vec(),
                    data: t.to_plain_array_view::<f32>().map_err(fail)?.iter().copied().collect(),
                })
            })
            .collect()
    }
}

fn one_line(e: &anyhow::Error) -> String {
    e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ").replace('\n', " ")
}

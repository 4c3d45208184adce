//! The inspect job: every target with its layout, every skipped weight with its reason, and totals.

use std::path::Path;

use crate::error::Result;
use crate::onnx::model::Model;
use crate::prune::targets::{self, Filter};
use crate::prune_job::{load, tensor_of};
use crate::report::{fraction, InspectReport, InspectTarget, InspectTotals};

pub fn inspect_file(path: &Path) -> Result<InspectReport> {
    let model = Model::open(path)?;
    let plan = targets::plan(&model.graph, &Filter::default());
    let loaded = load(&model, &plan)?;
    let targets: Vec<InspectTarget> = loaded
        .iter()
        .map(|l| {
            let t = &l.target;
            let zeros = l.values.iter().filter(|v| **v == 0.0).count();
            InspectTarget {
                node: t.node_label(),
                op: t.op.clone(),
                weight: t.weight.clone(),
                shape: t.shape.clone(),
                dtype: t.dtype.name().to_string(),
                storage: targets::storage(t.source, tensor_of(&model, t.source)).to_string(),
                units: t.layout.units,
                fan_in: t.layout.fan_in(),
                params: t.params(),
                zero_fraction: fraction(zeros, t.params()),
            }
        })
        .collect();
    let params: usize = targets.iter().map(|t| t.params).sum();
    let zeros: f64 = targets.iter().map(|t| t.zero_fraction * t.params as f64).sum();
    Ok(InspectReport {
        model: path.display().to_string(),
        totals: InspectTotals {
            targets: targets.len(),
            skipped: plan.skipped.len(),
            params,
            zero_fraction: if params == 0 { 0.0 } else { zeros / params as f64 },
        },
        targets,
        skipped: plan.skipped,
    })
}

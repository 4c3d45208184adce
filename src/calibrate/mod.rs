//! Calibrated renormalization (design.md §4): `stats` matches each unit's output mean and standard
//! deviation, `refit` re-solves each unit's kept weights and bias by ridge least squares. Both go target by
//! target in graph order, each measured on calibration samples with the earlier targets already
//! corrected, and fold their result into the weights and the bias (created, or an Add inserted after a
//! MatMul, where there is none). This file holds what both share: where a target is measured and its bias
//! lives, the candidate model each step runs, and the l2 fallback.

pub mod refit;
pub mod rows;
pub mod solve;
pub mod stats;

use std::collections::HashMap;
use std::path::PathBuf;

use crate::error::Result;
use crate::onnx::graph_edit::{self, NewNode};
use crate::onnx::model::{Model, Node, Tensor};
use crate::onnx::payload;
use crate::onnx::tensor::{decode_raw, FloatType};
use crate::onnx::write::Edit;
use crate::onnx::write::Patch;
use crate::prune::renorm::Renorm;
use crate::prune::targets::{self, Source};
use crate::prune_job::{self, Loaded};
use crate::runtime::Array;
use crate::validate::{self, Prepared};

/// What calibration did to one target.
#[derive(Debug, Clone, Default)]
pub struct Correction {
    /// Per unit: the scale; None where the unit was left plain-pruned (`stats`) or kept no weight
    /// (`refit`). `stats`: the factor a. `refit`: ‖w_refit‖₂ / ‖w_kept‖₂.
    pub scales: Vec<Option<f64>>,
    /// Per unit: the shift; None where the unit was left as it was. `stats`: t. `refit`: the change of the
    /// (effective) bias, for every unit.
    pub shifts: Vec<Option<f64>>,
    /// Why the target was renormalized with l2 instead (no calibration possible), if so.
    pub fallback: Option<String>,
    pub bias_added: bool,
    /// `refit`: relative L2 error of the target's output before and after.
    pub output_error: Option<(f64, f64)>,
    /// `refit` with moving masks: the final mask (same per-unit counts as the magnitude mask).
    pub keep: Option<Vec<bool>>,
}

/// Where a target's shift goes.
#[derive(Debug, Clone)]
pub(crate) enum Bias {
    /// An existing constant bias: `scaled` when it is an input of the target node itself (Gemm/Conv:
    /// stats scales it by a), `beta` Gemm's factor on it.
    Existing { source: Source, scaled: bool, beta: f64 },
    /// No bias: append one as the node's input 2.
    NewInput { beta: f64 },
    /// MatMul without a bias Add: insert one.
    NewAdd,
}

/// How to measure and correct one target.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub node: usize,
    /// The value whose units are matched (the target node's output).
    pub value: String,
    /// The unit axis of that value: 1 (Gemm, Conv, ConvTranspose) or the last (MatMul).
    pub last_axis: bool,
    pub bias: Bias,
}

/// A tensor whose payload changes: the tensor, its type, its new raw bytes.
pub type Changed<'m> = (&'m Tensor, FloatType, Vec<u8>);

/// What calibration returns: per-target corrections, changed bias tensors, and edits that add biases.
pub type Calibrated<'m> = (Vec<Correction>, Vec<Changed<'m>>, Vec<Edit>);

/// Calibrates every target in `loaded` (already masked, unscaled) with `method` (stats or refit).
pub fn calibrate<'m>(
    model: &'m Model,
    loaded: &mut [Loaded<'m>],
    keeps: &[Vec<bool>],
    calib: &Prepared,
    method: Renorm,
    refit: &refit::RefitOptions,
) -> Result<Calibrated<'m>> {
    let sites: Vec<std::result::Result<Site, String>> = loaded.iter().map(|l| site(model, l)).collect();
    let mut corrections: Vec<Correction> = vec![Correction::default(); loaded.len()];
    for (k, s) in sites.iter().enumerate() {
        if let Err(why) = s {
            // Without a place to measure or fold into, fall back to l2.
            corrections[k] = l2_fallback(&mut loaded[k], &keeps[k], why);
        }
    }
    let work = tempfile::tempdir().map_err(|e| crate::Error::io(&std::env::temp_dir(), e))?;
    let mut state =
        State { model, sites, biases: HashMap::new(), candidate: work.path().join("candidate.onnx") };
    match method {
        Renorm::Refit => refit::refit(&mut state, loaded, keeps, calib, refit, &mut corrections)?,
        _ => stats::stats(&mut state, loaded, keeps, calib, &mut corrections)?,
    }
    let (changed, edits) = bias_changes(model, loaded, &state.sites, &state.biases)?;
    Ok((corrections, changed, edits))
}

/// The calibration in progress: the sites and the bias values decided so far (target → stored values).
pub(crate) struct State<'m> {
    pub model: &'m Model,
    pub sites: Vec<std::result::Result<Site, String>>,
    pub biases: HashMap<usize, Vec<f64>>,
    /// Where the model as it stands is written to be run (in a temporary folder).
    pub candidate: PathBuf,
}

impl State<'_> {
    /// Runs the model as it stands (weights in `loaded`, biases so far) on the calibration samples and
    /// returns the values `names` (only what they need is computed).
    pub fn measure(&self, loaded: &[Loaded], calib: &Prepared, names: &[String]) -> Result<Vec<Array>> {
        let (changed, edits) = bias_changes(self.model, loaded, &self.sites, &self.biases)?;
        let weights = loaded.iter().map(|l| (l.tensor, l.target.dtype, l.raw.clone()));
        let changed = weights.chain(changed).map(|(t, ty, raw)| (t, ty, Patch::Bytes(raw))).collect();
        prune_job::write_output(
            self.model,
            &self.candidate,
            changed,
            edits,
            "{}",
            &prune_job::nothing_deferred,
        )?;
        validate::run_values(&self.candidate, calib, names).map_err(|e| {
            let why =
                e.to_string().replace(&self.candidate.display().to_string(), "the partly calibrated model");
            crate::Error::model(&self.model.path, format!("calibration failed: {why}"))
        })
    }
}

/// l2 renormalization of a target that cannot be calibrated, and the correction saying why.
pub(crate) fn l2_fallback(l: &mut Loaded, keep: &[bool], why: &str) -> Correction {
    let values = l.values.clone();
    let scales = crate::prune::renorm::scales(&values, keep, &l.target.layout, Renorm::L2);
    rescale_units(l, keep, &scales.iter().map(|s| s.unwrap_or(1.0)).collect::<Vec<_>>());
    Correction { scales, fallback: Some(why.to_string()), ..Default::default() }
}

/// A one-line note on what calibration did to a target, if anything beyond its factors and shifts.
pub fn note(c: &Correction) -> Option<String> {
    if let Some(why) = &c.fallback {
        return Some(format!("not calibrated, l2 instead: {why}"));
    }
    let mut parts = Vec::new();
    if c.bias_added {
        parts.push("bias added".to_string());
    }
    let empty = c.scales.iter().filter(|u| u.is_none()).count();
    if empty > 0 && c.output_error.is_some() {
        parts.push(format!("{empty} units kept no weight (bias set to their mean output)"));
    } else if empty > 0 {
        parts.push(format!("{empty} units left plain-pruned (output collapsed)"));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

pub(crate) fn rescale_units(l: &mut Loaded, keep: &[bool], factors: &[f64]) {
    let size = l.target.dtype.size();
    for (u, &a) in factors.iter().enumerate() {
        for i in l.target.layout.unit_indices(u) {
            l.target.dtype.rescale(&mut l.raw[i * size..(i + 1) * size], keep[i], a);
        }
    }
}

/// Where target `l` is measured and its shift folded, or why it cannot be.
fn site(model: &Model, l: &Loaded) -> std::result::Result<Site, String> {
    let g = &model.graph;
    if l.target.nodes.len() != 1 {
        return Err("its weight is shared by several nodes".to_string());
    }
    let n = l.target.first_node;
    let node = &g.nodes[n];
    let value = node.outputs.first().cloned().ok_or("its node has no output")?;
    let constants = targets::constants(g);
    let only_user = |name: &str| g.nodes.iter().filter(|x| x.inputs.iter().any(|i| i == name)).count() == 1;
    let units = l.target.layout.units;
    let existing = |name: &str, scaled: bool, beta: f64| -> std::result::Result<Bias, String> {
        let (source, t) = constants.get(name).ok_or(format!("its bias '{name}' is not a constant"))?;
        let count = t.element_count().unwrap_or(0);
        if count != units || !only_user(name) || FloatType::from_code(t.data_type).is_none() {
            return Err(format!("its bias '{name}' is not a float per-unit constant of its own"));
        }
        Ok(Bias::Existing { source: *source, scaled, beta })
    };
    let bias = match node.op_type.as_str() {
        "Gemm" | "Conv" | "ConvTranspose" => {
            let beta = if node.op_type == "Gemm" { node.float_attribute("beta", 1.0) } else { 1.0 };
            if beta == 0.0 {
                return Err("Gemm beta is 0".to_string());
            }
            match node.inputs.get(2).filter(|b| !b.is_empty()) {
                Some(b) => existing(b, true, beta)?,
                None if node.inputs.len() == 2 => Bias::NewInput { beta },
                None => return Err("its node has an empty bias input".to_string()),
            }
        }
        "MatMul" if l.target.shape.len() == 2 => {
            let users: Vec<&Node> = g.nodes.iter().filter(|x| x.inputs.contains(&value)).collect();
            match users.as_slice() {
                [add] if add.op_type == "Add" && add.is_onnx_domain() && !g.outputs.contains(&value) => {
                    let other = add.inputs.iter().find(|i| **i != value).cloned().unwrap_or_default();
                    existing(&other, false, 1.0).unwrap_or(Bias::NewAdd)
                }
                _ => Bias::NewAdd,
            }
        }
        _ => return Err(format!("only 2-D MatMul weights are calibrated, this one is {:?}", l.target.shape)),
    };
    Ok(Site { node: n, value, last_axis: node.op_type == "MatMul", bias })
}

/// The bias values of `site` as stored now (zeros for a bias yet to be created).
pub(crate) fn current_bias(model: &Model, l: &Loaded, site: &Site) -> Result<Vec<f64>> {
    match &site.bias {
        Bias::Existing { source, .. } => {
            let t = prune_job::tensor_of(model, *source);
            let ty = FloatType::from_code(t.data_type).expect("checked in site()");
            Ok(decode_raw(ty, &payload::read(model, t, ty)?).into_iter().map(f64::from).collect())
        }
        _ => Ok(vec![0.0; l.target.layout.units]),
    }
}

type BiasChanges<'m> = (Vec<Changed<'m>>, Vec<Edit>);

/// The payload changes and graph edits that store `biases` (target index → new values).
fn bias_changes<'m>(
    model: &'m Model,
    loaded: &[Loaded],
    sites: &[std::result::Result<Site, String>],
    biases: &HashMap<usize, Vec<f64>>,
) -> Result<BiasChanges<'m>> {
    let g = &model.graph;
    let (mut changed, mut node_edits, mut graph_edits) = (Vec::new(), Vec::new(), Vec::new());
    let mut taken: Vec<String> = Vec::new();
    let mut order: Vec<&usize> = biases.keys().collect();
    order.sort();
    for k in order {
        let (Ok(site), values) = (&sites[*k], &biases[k]) else { continue };
        let node = &g.nodes[site.node];
        let ty = loaded[*k].target.dtype;
        match &site.bias {
            Bias::Existing { source, .. } => {
                let t = prune_job::tensor_of(model, *source);
                let ty = FloatType::from_code(t.data_type).expect("checked in site()");
                changed.push((t, ty, ty.encode(values)));
            }
            Bias::NewInput { .. } => {
                let name =
                    graph_edit::fresh_name(g, &format!("{}_renorm_bias", loaded[*k].target.weight), &taken);
                node_edits.push(graph_edit::add_input(node, &name));
                let dims = [values.len()];
                graph_edits.push(graph_edit::add_initializer(
                    g,
                    &graph_edit::tensor_message(&name, &dims, ty, &ty.encode(values)),
                ));
                taken.push(name);
            }
            Bias::NewAdd => {
                let bias =
                    graph_edit::fresh_name(g, &format!("{}_renorm_bias", loaded[*k].target.weight), &taken);
                taken.push(bias.clone());
                let unbiased = graph_edit::fresh_name(g, &format!("{}_renorm_unbiased", site.value), &taken);
                taken.push(unbiased.clone());
                let add = NewNode {
                    name: graph_edit::fresh_name(g, &format!("{}_renorm_bias_add", node.label()), &taken),
                    op_type: "Add".to_string(),
                    inputs: vec![unbiased.clone(), bias.clone()],
                    outputs: vec![site.value.clone()],
                };
                taken.push(add.name.clone());
                node_edits.push(graph_edit::rename_output(node, 0, &unbiased));
                graph_edits.push(graph_edit::add_node_after(g, node, &add));
                let dims = [values.len()];
                graph_edits.push(graph_edit::add_initializer(
                    g,
                    &graph_edit::tensor_message(&bias, &dims, ty, &ty.encode(values)),
                ));
            }
        }
    }
    node_edits.extend(graph_edits);
    Ok((changed, node_edits))
}

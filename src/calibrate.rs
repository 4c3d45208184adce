//! `--renorm stats` (design.md §4): on calibration samples, match the mean and standard deviation of each
//! pruned unit's output to the original's, target by target in graph order, each measured with the
//! earlier targets already corrected. The factor is folded into the kept weights, the shift into the bias
//! (created, or an Add after a MatMul inserted, where there is none).

use std::collections::HashMap;

use crate::error::Result;
use crate::onnx::graph_edit::{self, NewNode};
use crate::onnx::model::{Model, Node, Tensor};
use crate::onnx::payload;
use crate::onnx::tensor::{decode_raw, FloatType};
use crate::onnx::write::Edit;
use crate::prune::targets::{self, Source};
use crate::prune_job::{self, Loaded};
use crate::runtime::Array;
use crate::validate::{self, Prepared};

/// Factors are kept within [1/MAX_FACTOR, MAX_FACTOR], a guard against amplifying a nearly collapsed
/// unit into noise. Measured on the MNIST MLP at 95 % global sparsity (1 000 calibration images, test
/// accuracy on 1 000 others): clamping at 1.5 / 2 / 4 / 8 / 100 gave 74.3 / 82.3 / 88.7 / 88.8 / 89.2 %,
/// so shrinking factors toward 1 costs accuracy here and the clamp only catches outliers.
pub const MAX_FACTOR: f64 = 100.0;

/// What calibration did to one target.
#[derive(Debug, Clone, Default)]
pub struct Correction {
    /// Per unit: (factor a, shift t); None where the unit was left plain-pruned (signal collapsed).
    pub units: Vec<Option<(f64, f64)>>,
    /// Why the target was renormalized with l2 instead (no calibration possible), if so.
    pub fallback: Option<String>,
    pub bias_added: bool,
}

/// Where a target's shift goes.
#[derive(Debug, Clone)]
enum Bias {
    /// An existing constant bias: new = a·b·(scaled) + t/beta.
    Existing { source: Source, scaled: bool, beta: f64 },
    /// No bias: append one as the node's input 2.
    NewInput { beta: f64 },
    /// MatMul without a bias Add: insert one.
    NewAdd,
}

/// How to measure and correct one target.
#[derive(Debug, Clone)]
struct Site {
    node: usize,
    /// The value whose units are matched (the target node's output).
    value: String,
    /// The unit axis of that value: 1 (Gemm, Conv, ConvTranspose) or the last (MatMul).
    last_axis: bool,
    bias: Bias,
}

/// A tensor whose payload changes: the tensor, its type, its new raw bytes.
pub type Changed<'m> = (&'m Tensor, FloatType, Vec<u8>);

/// Calibrates every target in `loaded` (already masked, unscaled). Returns the per-target corrections,
/// the changed bias tensors, and the edits that add biases.
pub fn calibrate<'m>(
    model: &'m Model,
    loaded: &mut [Loaded<'m>],
    keeps: &[Vec<bool>],
    calib: &Prepared,
) -> Result<(Vec<Correction>, Vec<Changed<'m>>, Vec<Edit>)> {
    let sites: Vec<std::result::Result<Site, String>> = loaded.iter().map(|l| site(model, l)).collect();
    let mut corrections: Vec<Correction> = vec![Correction::default(); loaded.len()];
    for (k, s) in sites.iter().enumerate() {
        if let Err(why) = s {
            // Without a place to measure or fold into, fall back to l2.
            corrections[k].fallback = Some(why.clone());
            let values = loaded[k].values.clone();
            let scales =
                crate::prune::renorm::scales(&values, &keeps[k], &loaded[k].target.layout, crate::Renorm::L2);
            rescale_units(
                &mut loaded[k],
                &keeps[k],
                &scales.iter().map(|s| s.unwrap_or(1.0)).collect::<Vec<_>>(),
            );
            corrections[k].units = scales.iter().map(|s| s.map(|a| (a, 0.0))).collect();
        }
    }
    let measured: Vec<(usize, String)> =
        sites.iter().enumerate().filter_map(|(k, s)| s.as_ref().ok().map(|s| (k, s.value.clone()))).collect();
    let names: Vec<String> = measured.iter().map(|(_, v)| v.clone()).collect();
    let original = validate::run_model(&model.path, calib, &names)?;
    let n_out = original.len() - names.len();
    let work = tempfile::tempdir().map_err(|e| crate::Error::io(&std::env::temp_dir(), e))?;
    let candidate = work.path().join("candidate.onnx");
    let mut biases: HashMap<usize, Vec<f64>> = HashMap::new();
    for (m, (k, value)) in measured.iter().enumerate() {
        let site = sites[*k].as_ref().expect("measured");
        let (changed, edits) = bias_changes(model, loaded, &sites, &biases)?;
        let weights = loaded.iter().map(|l| (l.tensor, l.target.dtype, l.raw.clone()));
        prune_job::write_output(model, &candidate, weights.chain(changed).collect(), edits, "{}")?;
        let now = validate::run_model(&candidate, calib, std::slice::from_ref(value))?;
        let units = loaded[*k].target.layout.units;
        let before = unit_stats(&original[n_out + m], site.last_axis, units)?;
        let after = unit_stats(now.last().expect("the measured value"), site.last_axis, units)?;
        let fixes: Vec<Option<(f64, f64)>> = before.iter().zip(&after).map(|(o, p)| fix(*o, *p)).collect();
        let factors: Vec<f64> = fixes.iter().map(|f| f.map_or(1.0, |f| f.0)).collect();
        rescale_units(&mut loaded[*k], &keeps[*k], &factors);
        let old = current_bias(model, &loaded[*k], site)?;
        let new = old
            .iter()
            .zip(&fixes)
            .map(|(b, f)| match (f, &site.bias) {
                (None, _) => *b,
                (Some((a, t)), Bias::Existing { scaled: true, beta, .. }) => a * b + t / beta,
                (Some((_, t)), Bias::Existing { beta, .. }) => b + t / beta,
                (Some((_, t)), Bias::NewInput { beta }) => t / beta,
                (Some((_, t)), Bias::NewAdd) => *t,
            })
            .collect();
        biases.insert(*k, new);
        corrections[*k].units = fixes;
        corrections[*k].bias_added = !matches!(site.bias, Bias::Existing { .. });
    }
    let (changed, edits) = bias_changes(model, loaded, &sites, &biases)?;
    Ok((corrections, changed, edits))
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
    let collapsed = c.units.iter().filter(|u| u.is_none()).count();
    if collapsed > 0 {
        parts.push(format!("{collapsed} units left plain-pruned (output collapsed)"));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// a = σ_orig / σ_pruned (clamped), t = μ_orig − a·μ_pruned; None when the pruned signal collapsed.
fn fix(orig: (f64, f64), pruned: (f64, f64)) -> Option<(f64, f64)> {
    let ((mu_o, sd_o), (mu_p, sd_p)) = (orig, pruned);
    // NaN counts as collapsed too.
    if sd_p.is_nan() || sd_p <= 1e-6 * sd_o.max(1e-12) {
        return None;
    }
    let a = (sd_o / sd_p).clamp(1.0 / MAX_FACTOR, MAX_FACTOR);
    Some((a, mu_o - a * mu_p))
}

fn rescale_units(l: &mut Loaded, keep: &[bool], factors: &[f64]) {
    let size = l.target.dtype.size();
    for (u, &a) in factors.iter().enumerate() {
        for i in l.target.layout.unit_indices(u) {
            l.target.dtype.rescale(&mut l.raw[i * size..(i + 1) * size], keep[i], a);
        }
    }
}

/// Mean and standard deviation of each unit over all samples and positions.
fn unit_stats(a: &Array, last_axis: bool, units: usize) -> Result<Vec<(f64, f64)>> {
    let axis = if last_axis { a.shape.len().saturating_sub(1) } else { 1 };
    if a.shape.get(axis) != Some(&units) {
        return Err(crate::Error::Usage(format!(
            "calibration: a target's output has shape {:?}, expected {units} units on axis {axis}",
            a.shape
        )));
    }
    let inner: usize = a.shape[axis + 1..].iter().product();
    let mut acc = vec![(0f64, 0f64, 0usize); units];
    for (i, v) in a.data.iter().enumerate() {
        let e = &mut acc[(i / inner) % units];
        let v = f64::from(*v);
        e.0 += v;
        e.1 += v * v;
        e.2 += 1;
    }
    Ok(acc
        .into_iter()
        .map(|(s, s2, n)| {
            let n = n.max(1) as f64;
            let mean = s / n;
            (mean, (s2 / n - mean * mean).max(0.0).sqrt())
        })
        .collect())
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
        _ => return Err(format!("stats supports 2-D MatMul weights only, this one is {:?}", l.target.shape)),
    };
    Ok(Site { node: n, value, last_axis: node.op_type == "MatMul", bias })
}

/// The bias values of `site` now (zeros for a bias yet to be created).
fn current_bias(model: &Model, l: &Loaded, site: &Site) -> Result<Vec<f64>> {
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

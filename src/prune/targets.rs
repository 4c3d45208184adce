//! Which nodes are targets, and the (output unit x fan-in) view of each weight (design.md §2).

use std::collections::HashMap;

use regex::Regex;
use serde::Serialize;

use crate::onnx::model::{Graph, Payload, Tensor};
use crate::onnx::tensor::{type_name, FloatType};

/// Where a weight's tensor lives in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `graph.initializer[i]`
    Initializer(usize),
    /// The `value` attribute of Constant node `graph.node[i]`.
    Constant(usize),
}

/// How the flat elements of a weight map onto output units and their fan-in.
///
/// Unit `u` starts at `(u / inner_units) * outer_stride + (u % inner_units) * inner_stride`; its fan-in is
/// `rows x cols`, element `(r, c)` at `start + r * row_stride + c`. `rows` is the input-channel axis: N:M
/// runs go along it, at each kernel position `c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub units: usize,
    pub inner_units: usize,
    pub inner_stride: usize,
    pub outer_stride: usize,
    pub rows: usize,
    pub row_stride: usize,
    pub cols: usize,
}

impl Layout {
    pub fn fan_in(&self) -> usize {
        self.rows * self.cols
    }

    pub fn unit_start(&self, u: usize) -> usize {
        (u / self.inner_units) * self.outer_stride + (u % self.inner_units) * self.inner_stride
    }

    /// The flat indices of unit `u`'s fan-in, rows outer, kernel positions inner.
    pub fn unit_indices(&self, u: usize) -> impl Iterator<Item = usize> + '_ {
        let start = self.unit_start(u);
        (0..self.rows).flat_map(move |r| (0..self.cols).map(move |c| start + r * self.row_stride + c))
    }

    /// For each flat index, the unit it feeds (inverse of `unit_indices`).
    pub fn unit_of_each(&self) -> Vec<u32> {
        let mut out = vec![0u32; self.units * self.fan_in()];
        for u in 0..self.units {
            for i in self.unit_indices(u) {
                out[i] = u as u32;
            }
        }
        out
    }
}

/// A prunable weight and the node(s) that use it.
#[derive(Debug, Clone)]
pub struct Target {
    /// Node labels using this weight (more than one when a weight is shared with the same mapping).
    pub nodes: Vec<String>,
    pub op: String,
    pub weight: String,
    pub source: Source,
    pub dtype: FloatType,
    pub shape: Vec<usize>,
    pub layout: Layout,
    /// The graph index of the first node using this weight (topological position).
    pub first_node: usize,
}

impl Target {
    pub fn params(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn node_label(&self) -> String {
        self.nodes.join(", ")
    }
}

/// A float (or quantized) weight of a target-like op that is not pruned, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Skipped {
    pub node: String,
    pub weight: String,
    pub reason: String,
}

/// Which targets the user asked for (`--include` / `--exclude`, matched against node and weight names).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub include: Vec<Regex>,
    pub exclude: Vec<Regex>,
}

impl Filter {
    /// None when selected, or the reason it is not.
    fn rejects(&self, nodes: &[String], weight: &str) -> Option<String> {
        let hits = |re: &Regex| re.is_match(weight) || nodes.iter().any(|n| re.is_match(n));
        if let Some(re) = self.exclude.iter().find(|re| hits(re)) {
            return Some(format!("excluded by --exclude '{}'", re.as_str()));
        }
        if !self.include.is_empty() && !self.include.iter().any(hits) {
            return Some("matched by no --include pattern".to_string());
        }
        None
    }
}

/// The targets of a graph and the weights skipped, in graph order.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub targets: Vec<Target>,
    pub skipped: Vec<Skipped>,
}

/// Ops whose weight input is integer-quantized; their constant weights are listed as skipped.
const QUANTIZED: [(&str, usize); 4] =
    [("ConvInteger", 1), ("MatMulInteger", 1), ("QLinearConv", 3), ("QLinearMatMul", 3)];

/// The weight input slot of a target op.
fn weight_slot(op: &str) -> Option<usize> {
    matches!(op, "Gemm" | "Conv" | "ConvTranspose" | "MatMul").then_some(1)
}

/// Finds every target of `graph` (design.md §2) and every weight it skips.
pub fn plan(graph: &Graph, filter: &Filter) -> Plan {
    let constants = constants(graph);
    let mut consumers: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
    let mut producers: HashMap<&str, usize> = HashMap::new();
    for (n, node) in graph.nodes.iter().enumerate() {
        for (slot, input) in node.inputs.iter().enumerate() {
            consumers.entry(input.as_str()).or_default().push((n, slot));
        }
        for output in &node.outputs {
            producers.insert(output.as_str(), n);
        }
    }
    let mut plan = Plan::default();
    let mut seen: HashMap<String, ()> = HashMap::new();
    for (n, node) in graph.nodes.iter().enumerate() {
        if !node.is_onnx_domain() {
            continue;
        }
        if let Some((_, slot)) = QUANTIZED.iter().find(|(op, _)| *op == node.op_type) {
            if let Some(w) = node.inputs.get(*slot).filter(|w| constants.contains_key(w.as_str())) {
                plan.skipped.push(Skipped {
                    node: node.label(),
                    weight: w.clone(),
                    reason: format!("integer (quantized) weight of {}", node.op_type),
                });
            }
            continue;
        }
        let Some(slot) = weight_slot(&node.op_type) else { continue };
        let Some(input) = node.inputs.get(slot).filter(|w| !w.is_empty()) else { continue };
        // The weight is the constant itself or, for MatMul, a 2-D constant behind a Transpose (older
        // PyTorch exports of Linear without bias).
        let (weight, through) = if constants.contains_key(input.as_str()) {
            (input, false)
        } else {
            match transposed_constant(graph, &producers, &constants, node, input) {
                Some(w) => (w, true),
                None => continue,
            }
        };
        let (source, tensor) = constants[weight.as_str()];
        if seen.insert(weight.clone(), ()).is_some() {
            continue;
        }
        let skip = |reason: String| Skipped { node: node.label(), weight: weight.clone(), reason };
        let Some(dtype) = FloatType::from_code(tensor.data_type) else {
            let kind = if (17..=20).contains(&tensor.data_type) { "float8" } else { "integer (quantized)" };
            plan.skipped.push(skip(format!("{kind} weight ({}) is not pruned", type_name(tensor.data_type))));
            continue;
        };
        // Nothing to prune, and its other dims could announce any number of output units to loop over.
        if tensor.element_count() == Some(0) {
            plan.skipped.push(skip(format!("it has no elements (dims {:?})", tensor.dims)));
            continue;
        }
        let shape: Vec<usize> = tensor.dims.iter().map(|d| usize::try_from(*d).unwrap_or(0)).collect();
        let found = if through { Ok(transposed_layout(&shape)) } else { layout(node, &shape) };
        let layout = match found {
            Ok(layout) => layout,
            Err(why) => {
                plan.skipped.push(skip(why));
                continue;
            }
        };
        let nodes = match uses(graph, &consumers, weight, &shape, &layout) {
            Ok(nodes) => nodes,
            Err(reason) => {
                plan.skipped.push(skip(reason));
                continue;
            }
        };
        if let Some(reason) = filter.rejects(&nodes, weight) {
            plan.skipped.push(skip(reason));
            continue;
        }
        plan.targets.push(Target {
            nodes,
            op: node.op_type.clone(),
            weight: weight.clone(),
            source,
            dtype,
            shape,
            layout,
            first_node: n,
        });
    }
    plan
}

type Consumers<'g> = HashMap<&'g str, Vec<(usize, usize)>>;

/// The labels of the nodes using `weight` (of `shape`), when every use is a target with `layout`: directly,
/// or through a 2-D Transpose feeding only MatMul weights. Otherwise the reason it must be skipped.
fn uses(
    graph: &Graph,
    consumers: &Consumers,
    weight: &str,
    shape: &[usize],
    layout: &Layout,
) -> Result<Vec<String>, String> {
    let foreign = |user: &crate::onnx::model::Node, slot: usize| {
        format!(
            "also used by {} node '{}' (input {slot}), which does not share its mapping",
            user.op_type,
            user.label()
        )
    };
    let mut nodes = Vec::new();
    for &(c, slot) in consumers.get(weight).map(Vec::as_slice).unwrap_or(&[]) {
        let user = &graph.nodes[c];
        if is_matrix_transpose(user, shape) && slot == 0 {
            if transposed_layout(shape) != *layout || exposed(graph, &user.outputs[0]) {
                return Err(foreign(user, slot));
            }
            for &(m, mslot) in consumers.get(user.outputs[0].as_str()).map(Vec::as_slice).unwrap_or(&[]) {
                let matmul = &graph.nodes[m];
                if !(matmul.is_onnx_domain() && matmul.op_type == "MatMul" && mslot == 1) {
                    return Err(foreign(matmul, mslot));
                }
                nodes.push(matmul.label());
            }
            continue;
        }
        let same = user.is_onnx_domain()
            && weight_slot(&user.op_type) == Some(slot)
            && self::layout(user, shape).as_ref() == Ok(layout);
        if !same {
            return Err(foreign(user, slot));
        }
        nodes.push(user.label());
    }
    if let Some(user) = graph.nodes.iter().find(|g| g.subgraph_inputs.iter().any(|i| i == weight)) {
        return Err(format!("also used inside the subgraph of {} node '{}'", user.op_type, user.label()));
    }
    if graph.outputs.iter().any(|o| o == weight) {
        return Err("it is also a graph output".to_string());
    }
    Ok(nodes)
}

/// Whether `name` is a graph output or read inside a subgraph.
fn exposed(graph: &Graph, name: &str) -> bool {
    graph.outputs.iter().any(|o| o == name)
        || graph.nodes.iter().any(|g| g.subgraph_inputs.iter().any(|i| i == name))
}

/// A Transpose swapping the two axes of a 2-D tensor of `shape`.
fn is_matrix_transpose(node: &crate::onnx::model::Node, shape: &[usize]) -> bool {
    let perm = node.attribute("perm").map(|a| a.ints.as_slice());
    node.is_onnx_domain()
        && node.op_type == "Transpose"
        && shape.len() == 2
        && node.outputs.len() == 1
        && matches!(perm, None | Some([1, 0]))
}

/// For MatMul `node` whose weight `input` is a Transpose of a 2-D constant: that constant's name.
fn transposed_constant<'g>(
    graph: &'g Graph,
    producers: &HashMap<&str, usize>,
    constants: &HashMap<&str, (Source, &Tensor)>,
    node: &crate::onnx::model::Node,
    input: &str,
) -> Option<&'g String> {
    if node.op_type != "MatMul" {
        return None;
    }
    let t = *producers.get(input)?;
    let transpose = &graph.nodes[t];
    let weight = transpose.inputs.first()?;
    let (_, tensor) = constants.get(weight.as_str())?;
    let shape: Vec<usize> = tensor.dims.iter().map(|d| usize::try_from(*d).unwrap_or(0)).collect();
    is_matrix_transpose(transpose, &shape).then_some(weight)
}

/// The layout of a 2-D weight (N, K) whose row j is unit j: Gemm with transB=1, or a weight that a
/// Transpose feeds to MatMul as (K, N).
fn transposed_layout(shape: &[usize]) -> Layout {
    let (n, k) = (shape[0], shape[1]);
    Layout {
        units: n,
        inner_units: n.max(1),
        inner_stride: k,
        outer_stride: 0,
        rows: k,
        row_stride: 1,
        cols: 1,
    }
}

/// Graph constants by name: initializers and Constant nodes with a `value` tensor. A Constant node's
/// value takes its node's output name.
pub fn constants(graph: &Graph) -> HashMap<&str, (Source, &Tensor)> {
    let mut map = HashMap::new();
    for (i, t) in graph.initializers.iter().enumerate() {
        map.insert(t.name.as_str(), (Source::Initializer(i), t));
    }
    for (i, node) in graph.nodes.iter().enumerate() {
        if node.op_type == "Constant" && node.is_onnx_domain() {
            if let (Some(out), Some(t)) =
                (node.outputs.first(), node.attribute("value").and_then(|a| a.tensor.as_ref()))
            {
                map.insert(out.as_str(), (Source::Constant(i), t));
            }
        }
    }
    map
}

/// Storage form of a weight, for reports.
pub fn storage(source: Source, tensor: &Tensor) -> &'static str {
    match (&tensor.payload, source) {
        (Payload::External(_), _) => "external",
        (_, Source::Constant(_)) => "constant",
        _ => "initializer",
    }
}

/// The (unit x fan-in) layout of `node`'s weight of `shape` (design.md §2), or why it has none.
///
/// Products saturate: dims whose element count overflows (as a hostile file's may) give a layout that
/// is never used, because reading the payload refuses those dims (`payload::read`).
pub fn layout(node: &crate::onnx::model::Node, shape: &[usize]) -> Result<Layout, String> {
    let kernel = |s: &[usize]| s.iter().fold(1usize, |a, d| a.saturating_mul(*d));
    match node.op_type.as_str() {
        "Gemm" => {
            let &[a, b] = shape else {
                return Err(format!("Gemm weight has rank {}, expected 2", shape.len()));
            };
            if node.int_attribute("transB", 0) != 0 {
                Ok(transposed_layout(shape))
            } else {
                Ok(Layout {
                    units: b,
                    inner_units: b.max(1),
                    inner_stride: 1,
                    outer_stride: 0,
                    rows: a,
                    row_stride: b,
                    cols: 1,
                })
            }
        }
        "MatMul" => match shape {
            [] => Err("MatMul weight is a scalar".to_string()),
            [k] => Ok(Layout {
                units: 1,
                inner_units: 1,
                inner_stride: 0,
                outer_stride: 0,
                rows: *k,
                row_stride: 1,
                cols: 1,
            }),
            [batch @ .., k, n] => Ok(Layout {
                units: kernel(batch).saturating_mul(*n),
                inner_units: (*n).max(1),
                inner_stride: 1,
                outer_stride: k.saturating_mul(*n),
                rows: *k,
                row_stride: *n,
                cols: 1,
            }),
        },
        "Conv" | "ConvTranspose" => {
            if shape.len() < 3 {
                return Err(format!("{} weight has rank {}, expected 3 or more", node.op_type, shape.len()));
            }
            let group = node.int_attribute("group", 1);
            let g =
                usize::try_from(group).ok().filter(|g| *g > 0 && shape[0].is_multiple_of(*g)).ok_or_else(
                    || format!("group {group} does not divide the weight's first dim {}", shape[0]),
                )?;
            let kk = kernel(&shape[2..]);
            if node.op_type == "Conv" {
                let m = shape[0];
                Ok(Layout {
                    units: m,
                    inner_units: m.max(1),
                    inner_stride: shape[1].saturating_mul(kk),
                    outer_stride: 0,
                    rows: shape[1],
                    row_stride: kk,
                    cols: kk,
                })
            } else {
                let (cg, mg) = (shape[0] / g, shape[1]);
                Ok(Layout {
                    units: g.saturating_mul(mg),
                    inner_units: mg.max(1),
                    inner_stride: kk,
                    outer_stride: kernel(&[cg, mg, kk]),
                    rows: cg,
                    row_stride: mg.saturating_mul(kk),
                    cols: kk,
                })
            }
        }
        op => Err(format!("{op} is not a target op")),
    }
}

//! What no runtime loads, refused before anything is done: a model without an operator set, dangling
//! inputs, cycles, and external data that leaves the model's folder or does not hold what its tensor
//! claims (targets or not: the output gets a copy of every data file).

use std::collections::{HashMap, HashSet};

use crate::error::{Error, FormatError, Result};
use crate::onnx::external;
use crate::onnx::model::{Model, Payload, Tensor};
use crate::onnx::wire;

/// Refuses what no runtime loads: a model importing no operator set (also what a file cut right after
/// its graph looks like: protobuf has no end marker), a node reading a value that nothing defines, and
/// nodes that depend on one another in a cycle. A graph that declares no inputs at all is taken as a
/// fragment whose undeclared names are its inputs.
pub fn check_graph(model: &Model) -> Result<()> {
    let has_opset = wire::fields(&model.bytes, 0..model.bytes.len()).any(|f| f.is_ok_and(|f| f.number == 8));
    if !has_opset {
        return Err(Error::Format {
            path: model.path.clone(),
            source: FormatError::at(
                model.bytes.len(),
                "it imports no operator set (opset_import), so the file may be cut short",
            ),
        });
    }
    let g = &model.graph;
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (n, node) in g.nodes.iter().enumerate() {
        for out in node.outputs.iter().filter(|o| !o.is_empty()) {
            producer.insert(out.as_str(), n);
        }
    }
    if !g.inputs.is_empty() {
        let outer: HashSet<&str> = g
            .inputs
            .iter()
            .map(String::as_str)
            .chain(g.initializers.iter().map(|t| t.name.as_str()))
            .collect();
        for node in &g.nodes {
            if let Some(input) = node
                .inputs
                .iter()
                .find(|i| !i.is_empty() && !outer.contains(i.as_str()) && !producer.contains_key(i.as_str()))
            {
                return Err(Error::model(
                    &model.path,
                    format!(
                        "{} node '{}' reads '{input}', which no node, initializer or graph input defines",
                        node.op_type,
                        node.label()
                    ),
                ));
            }
        }
    }
    // Kahn's algorithm; what it cannot order depends on a cycle.
    let preds = |n: usize| g.nodes[n].inputs.iter().filter_map(|i| producer.get(i.as_str()).copied());
    let mut waiting: Vec<usize> = (0..g.nodes.len()).map(|n| preds(n).count()).collect();
    let mut next: Vec<Vec<usize>> = vec![Vec::new(); g.nodes.len()];
    for n in 0..g.nodes.len() {
        for p in preds(n) {
            next[p].push(n);
        }
    }
    let mut ready: Vec<usize> = (0..g.nodes.len()).filter(|&n| waiting[n] == 0).collect();
    while let Some(n) = ready.pop() {
        for &m in &next[n] {
            waiting[m] -= 1;
            if waiting[m] == 0 {
                ready.push(m);
            }
        }
    }
    let Some(start) = (0..g.nodes.len()).find(|&n| waiting[n] > 0) else { return Ok(()) };
    // Every node left waits on another one left: walk back until a node repeats, and name that loop.
    let mut path = vec![start];
    let cycle_start = loop {
        let last = *path.last().expect("non-empty");
        let p = preds(last).find(|&p| waiting[p] > 0).expect("a node left waits on a node left");
        if let Some(i) = path.iter().position(|&q| q == p) {
            break i;
        }
        path.push(p);
    };
    // In the order values flow, from the cycle's first node in the graph.
    let mut cycle: Vec<usize> = path[cycle_start..].iter().rev().copied().collect();
    let first = cycle.iter().enumerate().min_by_key(|(_, &n)| n).map_or(0, |(i, _)| i);
    cycle.rotate_left(first);
    cycle.push(cycle[0]);
    let names: Vec<String> = cycle.iter().map(|&n| format!("'{}'", g.nodes[n].label())).collect();
    Err(Error::model(
        &model.path,
        format!(
            "its nodes depend on one another in a cycle ({}); a graph must be acyclic",
            names.join(" -> ")
        ),
    ))
}

/// Every external tensor, targets or not, before anything is done: its location must stay in the
/// model's folder (named in the message), and its file must hold what the tensor claims. The output gets
/// a copy of every data file, so a broken one would otherwise be passed on.
pub fn check_external(model: &Model) -> Result<()> {
    for (t, ext) in named_external_tensors(model) {
        let path = external::resolve(&model.path, &model.folder(), &t.name, &ext.location)?;
        let size = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
        let expected = element_size(t.data_type)
            .and_then(|s| t.element_count().and_then(|n| n.checked_mul(s)))
            .map(|b| b as u64);
        let problem = match (ext.length, expected) {
            (Some(l), Some(e)) if l != e => Some(format!("holds {l} bytes but its dims need {e}")),
            _ => {
                let need = ext.length.or(expected).unwrap_or(0);
                ext.offset.checked_add(need).is_none_or(|end| end > size).then(|| {
                    format!(
                        "'{}' is {size} bytes, too short for offset {} + length {need}",
                        ext.location, ext.offset
                    )
                })
            }
        };
        if let Some(p) = problem {
            return Err(Error::model(&model.path, format!("tensor '{}': external data {p}", t.name)));
        }
    }
    Ok(())
}

/// Bytes per element of a fixed-size ONNX data type (None for strings and sub-byte types).
fn element_size(code: i32) -> Option<usize> {
    match code {
        2 | 3 | 9 | 17..=20 => Some(1),
        4 | 5 | 10 | 16 => Some(2),
        1 | 6 | 12 => Some(4),
        7 | 11 | 13 | 14 => Some(8),
        15 => Some(16),
        _ => None,
    }
}

/// Every tensor of the main graph stored as external data, with its tensor.
pub fn named_external_tensors(model: &Model) -> Vec<(&Tensor, &crate::onnx::model::External)> {
    let constants =
        model.graph.nodes.iter().flat_map(|n| n.attributes.iter().filter_map(|a| a.tensor.as_ref()));
    model
        .graph
        .initializers
        .iter()
        .chain(constants)
        .filter_map(|t| match &t.payload {
            Payload::External(e) => Some((t, e)),
            _ => None,
        })
        .collect()
}

//! Edits that add to a graph (for `--renorm stats` biases): a new initializer, a new node input, a new
//! node after another, a renamed node output. Like every edit, they splice bytes and leave the rest of the
//! file as it was. Insertions at one position are written in the order the edits are made.

use crate::onnx::model::{Graph, Node};
use crate::onnx::tensor::FloatType;
use crate::onnx::wire;
use crate::onnx::write::Edit;

/// The serialized TensorProto `name` of `dims` holding `raw` little-endian elements of `ty`.
pub fn tensor_message(name: &str, dims: &[usize], ty: FloatType, raw: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(raw.len() + name.len() + 16);
    for d in dims {
        wire::write_varint(&mut t, 1 << 3); // dims, field 1, varint
        wire::write_varint(&mut t, *d as u64);
    }
    wire::write_varint(&mut t, 2 << 3); // data_type
    wire::write_varint(&mut t, ty.code() as u64);
    wire::write_bytes_field(&mut t, 8, name.as_bytes());
    wire::write_bytes_field(&mut t, 9, raw);
    t
}

/// Appends an initializer to `graph`.
pub fn add_initializer(graph: &Graph, tensor: &[u8]) -> Edit {
    let end = graph.nests.last().expect("a graph has its nest").body.end;
    let mut bytes = Vec::new();
    wire::write_bytes_field(&mut bytes, 5, tensor);
    Edit { range: end..end, bytes, nests: graph.nests.clone() }
}

/// Appends input `name` to `node` (it becomes its last input).
pub fn add_input(node: &Node, name: &str) -> Edit {
    let end = node.field.end;
    let mut bytes = Vec::new();
    wire::write_bytes_field(&mut bytes, 1, name.as_bytes());
    Edit { range: end..end, bytes, nests: node.nests.clone() }
}

/// Inserts a node right after `after` (keeping the node list topologically sorted).
pub fn add_node_after(graph: &Graph, after: &Node, node: &NewNode) -> Edit {
    let mut msg = Vec::new();
    for i in &node.inputs {
        wire::write_bytes_field(&mut msg, 1, i.as_bytes());
    }
    for o in &node.outputs {
        wire::write_bytes_field(&mut msg, 2, o.as_bytes());
    }
    wire::write_bytes_field(&mut msg, 3, node.name.as_bytes());
    wire::write_bytes_field(&mut msg, 4, node.op_type.as_bytes());
    let mut bytes = Vec::new();
    wire::write_bytes_field(&mut bytes, 1, &msg);
    let end = after.field.end;
    Edit { range: end..end, bytes, nests: graph.nests.clone() }
}

/// Renames output `k` of `node`.
pub fn rename_output(node: &Node, k: usize, name: &str) -> Edit {
    let mut bytes = Vec::new();
    wire::write_bytes_field(&mut bytes, 2, name.as_bytes());
    Edit { range: node.output_fields[k].clone(), bytes, nests: node.nests.clone() }
}

/// A node to add (standard domain, no attributes).
#[derive(Debug, Clone)]
pub struct NewNode {
    pub name: String,
    pub op_type: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

/// `base`, or `base_2`, `base_3`, … : the first that no value or node of `graph` uses.
pub fn fresh_name(graph: &Graph, base: &str, taken: &[String]) -> String {
    let used = |n: &str| {
        taken.iter().any(|t| t == n)
            || graph.initializers.iter().any(|t| t.name == n)
            || graph.inputs.iter().any(|i| i == n)
            || graph.nodes.iter().any(|node| {
                node.name == n || node.outputs.iter().any(|o| o == n) || node.inputs.iter().any(|i| i == n)
            })
    };
    let mut name = base.to_string();
    let mut k = 2;
    while used(&name) {
        name = format!("{base}_{k}");
        k += 1;
    }
    name
}

//! Decoding the view of `model` from the wire: the graph, its nodes, attributes, tensors (and where
//! each payload lies), value infos and metadata. Every length and nesting is checked; nothing is
//! copied out of the payloads.

use crate::error::FormatError;
use crate::onnx::model::{Attribute, External, Graph, MetadataEntry, Nest, Node, Payload, Tensor, ValueInfo};
use crate::onnx::wire::{self, fields, Field, Value};

/// Nested messages deeper than this are refused (a hostile file could otherwise recurse without end).
const MAX_DEPTH: usize = 64;

pub(super) fn read_metadata(buf: &[u8], field: &Field) -> Result<MetadataEntry, FormatError> {
    let body = field.body("metadata_props")?;
    let (mut key, mut value) = (String::new(), String::new());
    for f in fields(buf, body.clone()) {
        let f = f?;
        match f.number {
            1 => key = wire::string(buf, f.body("metadata key")?)?,
            2 => value = wire::string(buf, f.body("metadata value")?)?,
            _ => {}
        }
    }
    Ok(MetadataEntry { key, value, field: field.start..body.end })
}

pub(super) fn read_graph(
    buf: &[u8],
    graph: &Nest,
    nests: &[Nest],
    depth: usize,
) -> Result<Graph, FormatError> {
    if depth > MAX_DEPTH {
        return Err(FormatError::at(graph.body.start, "graphs nested too deeply"));
    }
    let mut out = Graph { nests: nests.to_vec(), ..Graph::default() };
    for field in fields(buf, graph.body.clone()) {
        let field = field?;
        match field.number {
            1 => out.nodes.push(read_node(buf, &field, nests, depth)?),
            5 => {
                let nest = Nest::of(&field)
                    .ok_or_else(|| FormatError::at(field.start, "initializer is not a message"))?;
                out.initializers.push(read_tensor(buf, &with(nests, nest))?);
            }
            11 => {
                let info = value_info(buf, &field)?;
                out.inputs.push(info.name.clone());
                out.input_infos.push(info);
            }
            12 => out.outputs.push(value_info(buf, &field)?.name),
            _ => {}
        }
    }
    Ok(out)
}

fn with(nests: &[Nest], nest: Nest) -> Vec<Nest> {
    let mut v = nests.to_vec();
    v.push(nest);
    v
}

/// A graph input or output: its name and, when declared, its tensor element type and dims.
fn value_info(buf: &[u8], field: &Field) -> Result<ValueInfo, FormatError> {
    let mut info = ValueInfo::default();
    for f in fields(buf, field.body("graph input/output")?) {
        let f = f?;
        match f.number {
            1 => info.name = wire::string(buf, f.body("value name")?)?,
            2 => {
                // TypeProto.tensor_type (1) → elem_type (1), shape (2) → dim (1) → dim_value (1).
                for t in fields(buf, f.body("value type")?) {
                    let t = t?;
                    if t.number != 1 {
                        continue;
                    }
                    for g in fields(buf, t.body("tensor type")?) {
                        let g = g?;
                        match g.number {
                            1 => info.elem_type = g.varint("element type")? as i32,
                            2 => info.dims = Some(shape_dims(buf, &g)?),
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

fn shape_dims(buf: &[u8], shape: &Field) -> Result<Vec<Option<u64>>, FormatError> {
    let mut dims = Vec::new();
    for d in fields(buf, shape.body("tensor shape")?) {
        let d = d?;
        if d.number != 1 {
            continue;
        }
        let mut value = None;
        for v in fields(buf, d.body("dimension")?) {
            let v = v?;
            if v.number == 1 {
                value = Some(v.varint("dim_value")?);
            }
        }
        dims.push(value);
    }
    Ok(dims)
}

fn read_node(buf: &[u8], field: &Field, nests: &[Nest], depth: usize) -> Result<Node, FormatError> {
    let nest = Nest::of(field).ok_or_else(|| FormatError::at(field.start, "node is not a message"))?;
    let nests = with(nests, nest.clone());
    let mut node = Node { field: field.start..nest.body.end, nests: nests.clone(), ..Node::default() };
    for f in fields(buf, nest.body.clone()) {
        let f = f?;
        match f.number {
            1 => node.inputs.push(wire::string(buf, f.body("node input")?)?),
            2 => {
                let body = f.body("node output")?;
                node.output_fields.push(f.start..body.end);
                node.outputs.push(wire::string(buf, body)?);
            }
            3 => node.name = wire::string(buf, f.body("node name")?)?,
            4 => node.op_type = wire::string(buf, f.body("op_type")?)?,
            7 => node.domain = wire::string(buf, f.body("domain")?)?,
            5 => {
                let attr = read_attribute(buf, &f, &nests, depth, &mut node.subgraph_inputs)?;
                node.attributes.push(attr);
            }
            _ => {}
        }
    }
    Ok(node)
}

fn read_attribute(
    buf: &[u8],
    field: &Field,
    nests: &[Nest],
    depth: usize,
    subgraph_inputs: &mut Vec<String>,
) -> Result<Attribute, FormatError> {
    let nest = Nest::of(field).ok_or_else(|| FormatError::at(field.start, "attribute is not a message"))?;
    let nests = with(nests, nest.clone());
    let mut attr = Attribute::default();
    let mut ints = Vec::new();
    for f in fields(buf, nest.body.clone()) {
        let f = f?;
        match f.number {
            1 => attr.name = wire::string(buf, f.body("attribute name")?)?,
            3 => attr.int = Some(f.varint("integer attribute")? as i64),
            2 => {
                if let Value::Fixed32(v) = f.value {
                    attr.float = Some(f32::from_bits(v));
                }
            }
            8 => wire::packed_varints(buf, &f, &mut ints)?,
            4 => attr.string = Some(String::from_utf8_lossy(&buf[f.body("string attribute")?]).into_owned()),
            5 => {
                let t = Nest::of(&f)
                    .ok_or_else(|| FormatError::at(f.start, "tensor attribute is not a message"))?;
                attr.tensor = Some(read_tensor(buf, &with(&nests, t))?);
            }
            6 | 11 => {
                let g = Nest::of(&f)
                    .ok_or_else(|| FormatError::at(f.start, "graph attribute is not a message"))?;
                let sub = read_graph(buf, &g, &with(&nests, g.clone()), depth + 1)?;
                for n in sub.nodes {
                    subgraph_inputs.extend(n.inputs);
                    subgraph_inputs.extend(n.subgraph_inputs);
                }
            }
            _ => {}
        }
    }
    attr.ints = ints.into_iter().map(|v| v as i64).collect();
    Ok(attr)
}

fn read_tensor(buf: &[u8], nests: &[Nest]) -> Result<Tensor, FormatError> {
    let own = nests.last().expect("a tensor's own nest").body.clone();
    let mut dims = Vec::new();
    let mut data_type = 0;
    let mut name = String::new();
    let mut raw = None;
    let mut typed: Vec<Field> = Vec::new();
    let mut external_entries = Vec::new();
    let mut data_location = 0;
    for f in fields(buf, own.clone()) {
        let f = f?;
        match f.number {
            1 => wire::packed_varints(buf, &f, &mut dims)?,
            2 => data_type = f.varint("data_type")? as i32,
            8 => name = wire::string(buf, f.body("tensor name")?)?,
            9 => raw = Some(f.body("raw_data")?),
            13 => external_entries.push(f),
            14 => data_location = f.varint("data_location")?,
            4 | 5 | 7 | 10 | 11 => typed.push(f),
            _ => {}
        }
    }
    let dims: Vec<i64> = dims.into_iter().map(|d| d as i64).collect();
    let payload = if data_location == 1 {
        Payload::External(read_external(buf, &external_entries, nests, &name)?)
    } else if let Some(raw) = raw {
        Payload::Raw(raw)
    } else {
        let number = match data_type {
            1 | 14 => 4,
            11 | 15 => 10,
            7 => 7,
            12 | 13 => 11,
            _ => 5,
        };
        let occurrences: Vec<Field> = typed.into_iter().filter(|f| f.number == number).collect();
        if occurrences.is_empty() {
            Payload::Missing
        } else {
            Payload::Typed { number, occurrences }
        }
    };
    Ok(Tensor { name, dims, data_type, payload, nests: nests.to_vec() })
}

fn read_external(buf: &[u8], entries: &[Field], nests: &[Nest], name: &str) -> Result<External, FormatError> {
    let mut ext = External {
        location: String::new(),
        offset: 0,
        length: None,
        location_value: 0..0,
        location_nests: Vec::new(),
    };
    let mut found_location = false;
    for entry in entries {
        let nest =
            Nest::of(entry).ok_or_else(|| FormatError::at(entry.start, "external_data is not a message"))?;
        let (mut key, mut value, mut value_range, mut value_nest) =
            (String::new(), String::new(), 0..0, None);
        for f in fields(buf, nest.body.clone()) {
            let f = f?;
            match f.number {
                1 => key = wire::string(buf, f.body("external_data key")?)?,
                2 => {
                    value_range = f.body("external_data value")?;
                    value = wire::string(buf, value_range.clone())?;
                    value_nest = Nest::of(&f);
                }
                _ => {}
            }
        }
        let number = |v: &str| {
            v.parse::<u64>().map_err(|_| {
                FormatError::at(
                    entry.start,
                    format!("tensor '{name}': external_data {key} '{v}' is not a number"),
                )
            })
        };
        match key.as_str() {
            "location" => {
                ext.location = value;
                ext.location_value = value_range;
                ext.location_nests = with(nests, nest);
                ext.location_nests.extend(value_nest.clone());
                found_location = true;
            }
            "offset" => ext.offset = number(&value)?,
            "length" => ext.length = Some(number(&value)?),
            _ => {}
        }
    }
    if !found_location {
        let start = nests.last().map(|n| n.body.start).unwrap_or(0);
        return Err(FormatError::at(start, format!("tensor '{name}' is external but names no location")));
    }
    Ok(ext)
}

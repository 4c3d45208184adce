//! The decoded view of an ONNX file: graph, nodes, constants, and where every tensor's payload lives
//! in the file's bytes. Nothing is copied out of the payloads here; the view only records offsets.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::{Error, FormatError, Result};
use crate::onnx::file_bytes::FileBytes;
use crate::onnx::wire::{self, fields, Field, Value};

/// Nested messages deeper than this are refused (a hostile file could otherwise recurse without end).
const MAX_DEPTH: usize = 64;

/// A length-delimited field that encloses a payload: when the payload changes size, its length
/// varint (`header`) is rewritten.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nest {
    pub header: Range<usize>,
    pub body: Range<usize>,
}

impl Nest {
    fn of(field: &Field) -> Option<Nest> {
        match &field.value {
            Value::Bytes { header, body } => Some(Nest { header: header.clone(), body: body.clone() }),
            _ => None,
        }
    }
}

/// Where a tensor's elements are stored.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// `raw_data`: little-endian bytes in the model file.
    Raw(Range<usize>),
    /// A typed repeated field (`float_data`, `int32_data`, `double_data`, ...): every occurrence of it.
    Typed { number: u32, occurrences: Vec<Field> },
    /// External data: a file beside the model.
    External(External),
    /// No data field at all (an empty tensor, or data in a field renorm does not read).
    Missing,
}

/// The `external_data` entries of a tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct External {
    pub location: String,
    pub offset: u64,
    pub length: Option<u64>,
    /// The bytes of the `location` value string, and the length-delimited fields enclosing it (its
    /// own string field last).
    pub location_value: Range<usize>,
    pub location_nests: Vec<Nest>,
}

/// A TensorProto, as a view.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub dims: Vec<i64>,
    pub data_type: i32,
    pub payload: Payload,
    /// The enclosing length-delimited fields, outermost first, ending with the tensor itself.
    pub nests: Vec<Nest>,
}

impl Tensor {
    /// The element count from the dims, or None when a dim is negative or the product overflows.
    pub fn element_count(&self) -> Option<usize> {
        self.dims.iter().try_fold(1usize, |acc, d| usize::try_from(*d).ok().and_then(|d| acc.checked_mul(d)))
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attribute {
    pub name: String,
    pub int: Option<i64>,
    pub float: Option<f32>,
    pub ints: Vec<i64>,
    /// A string attribute (lossy UTF-8: only compared against known values such as `auto_pad`).
    pub string: Option<String>,
    pub tensor: Option<Tensor>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    pub name: String,
    pub op_type: String,
    pub domain: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attributes: Vec<Attribute>,
    /// Names that nodes inside this node's subgraphs (If/Loop/Scan bodies) read from outer scopes.
    pub subgraph_inputs: Vec<String>,
    /// The whole `node` field (tag to end), its own message and those enclosing it (innermost last),
    /// and each output field (tag to end): where edits that add to or rename in a node go.
    pub field: Range<usize>,
    pub nests: Vec<Nest>,
    pub output_fields: Vec<Range<usize>>,
}

impl Node {
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    pub fn int_attribute(&self, name: &str, default: i64) -> i64 {
        self.attribute(name).and_then(|a| a.int).unwrap_or(default)
    }

    /// An `ints` attribute, or `default` when absent.
    pub fn ints_attribute(&self, name: &str, default: Vec<i64>) -> Vec<i64> {
        self.attribute(name).map_or(default, |a| a.ints.clone())
    }

    pub fn string_attribute(&self, name: &str) -> Option<&str> {
        self.attribute(name).and_then(|a| a.string.as_deref())
    }

    pub fn float_attribute(&self, name: &str, default: f64) -> f64 {
        self.attribute(name).and_then(|a| a.float).map_or(default, f64::from)
    }

    /// True for the default ONNX operator domain.
    pub fn is_onnx_domain(&self) -> bool {
        self.domain.is_empty() || self.domain == "ai.onnx"
    }

    /// A name for messages: the node's name, or its op and first output when it has none.
    pub fn label(&self) -> String {
        if self.name.is_empty() {
            format!("{}:{}", self.op_type, self.outputs.first().map(String::as_str).unwrap_or("?"))
        } else {
            self.name.clone()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub initializers: Vec<Tensor>,
    pub inputs: Vec<String>,
    /// The declared type of each of `inputs` (initializers included when listed as inputs).
    pub input_infos: Vec<ValueInfo>,
    /// The graph's own message and those enclosing it, innermost last (for appending fields).
    pub nests: Vec<Nest>,
    pub outputs: Vec<String>,
}

/// A graph input's name, element type (0 when undeclared) and dims (None: no shape; a None dim is
/// symbolic or unknown).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValueInfo {
    pub name: String,
    pub elem_type: i32,
    pub dims: Option<Vec<Option<u64>>>,
}

/// One `metadata_props` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataEntry {
    pub key: String,
    pub value: String,
    /// The whole field (tag to end), so a writer can replace the entry.
    pub field: Range<usize>,
}

/// An ONNX file (mapped, or in memory) with its decoded view.
#[derive(Debug)]
pub struct Model {
    pub path: PathBuf,
    pub bytes: FileBytes,
    pub ir_version: Option<i64>,
    pub graph: Graph,
    pub metadata: Vec<MetadataEntry>,
}

impl Model {
    /// Reads and decodes the model at `path`.
    pub fn open(path: &Path) -> Result<Model> {
        Model::from_file_bytes(path, FileBytes::map(path)?)
    }

    /// Decodes `bytes`; `path` names the model in messages and anchors external data.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Model> {
        Model::from_file_bytes(path, FileBytes::Owned(bytes))
    }

    fn from_file_bytes(path: &Path, bytes: FileBytes) -> Result<Model> {
        let format = |source: FormatError| Error::Format { path: path.to_path_buf(), source };
        if bytes.is_empty() {
            return Err(format(FormatError::at(0, "the file is empty")));
        }
        let mut ir_version = None;
        let mut graph = None;
        let mut metadata = Vec::new();
        for field in fields(&bytes, 0..bytes.len()) {
            let field = field.map_err(format)?;
            match field.number {
                1 => ir_version = Some(field.varint("ir_version").map_err(format)? as i64),
                7 => {
                    if graph.is_some() {
                        return Err(format(FormatError::at(field.start, "more than one graph")));
                    }
                    let nest = Nest::of(&field)
                        .ok_or_else(|| format(FormatError::at(field.start, "graph is not a message")))?;
                    graph = Some(read_graph(&bytes, &nest, std::slice::from_ref(&nest), 0).map_err(format)?);
                }
                14 => metadata.push(read_metadata(&bytes, &field).map_err(format)?),
                // producer_name, producer_version, domain, doc_string: must at least be strings.
                2 | 3 | 4 | 6 => {
                    field.body("a model string field").map_err(format)?;
                }
                _ => {}
            }
        }
        let graph = graph.ok_or_else(|| format(FormatError::at(0, "it has no graph")))?;
        if ir_version.is_none() {
            return Err(format(FormatError::at(0, "it has no ir_version")));
        }
        Ok(Model { path: path.to_path_buf(), bytes, ir_version, graph, metadata })
    }

    /// The folder external data is resolved against.
    pub fn folder(&self) -> PathBuf {
        self.path.parent().map(Path::to_path_buf).unwrap_or_default()
    }
}

fn read_metadata(buf: &[u8], field: &Field) -> Result<MetadataEntry, FormatError> {
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

fn read_graph(buf: &[u8], graph: &Nest, nests: &[Nest], depth: usize) -> Result<Graph, FormatError> {
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

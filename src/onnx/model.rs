//! The decoded view of an ONNX file: graph, nodes, constants, and where every tensor's payload lives
//! in the file's bytes. Nothing is copied out of the payloads here; the view only records offsets. The
//! decoding itself is `decode`'s.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::{Error, FormatError, Result};
use crate::onnx::decode::{read_graph, read_metadata};
use crate::onnx::file_bytes::FileBytes;
use crate::onnx::wire::{fields, Field, Value};

/// A length-delimited field that encloses a payload: when the payload changes size, its length
/// varint (`header`) is rewritten.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nest {
    pub header: Range<usize>,
    pub body: Range<usize>,
}

impl Nest {
    /// The nest a length-delimited field makes; None for a field of any other wire type.
    pub(super) fn of(field: &Field) -> Option<Nest> {
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

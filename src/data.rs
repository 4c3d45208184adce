//! Readers for sample data and labels (design.md §6): `.npy`, `.npz`, MNIST-style IDX (plain or gzip) and
//! ONNX `TensorProto` files, every numeric element type converted to f32.
//!
//! These files are untrusted: every reader streams its header first, works out from it how many data bytes
//! must follow (with checked arithmetic), then reads at most one byte more than that, so a lying header
//! costs an error, never a panic or an allocation beyond what the file really holds. That is also why
//! `.npy` headers are parsed here rather than by ndarray-npy: its readers need the element type at compile
//! time and allocate whatever the header announces before reading.

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::path::Path;

use crate::error::{Error, Result};

/// An array read from a data file: its shape, its elements converted to f32 (integers by value), and the
/// element type it had on disk ("float32", "float64", "float16", "bfloat16", "uint8", "int8", "uint16",
/// "int16", "uint32", "int32", "uint64", "int64" or "bool").
#[derive(Debug, Clone, PartialEq)]
pub struct RawArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    pub dtype: String,
}

impl RawArray {
    /// Whether the on-disk type was an integer type.
    pub fn is_integer(&self) -> bool {
        self.dtype.contains("int")
    }
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const NPY_MAGIC: &[u8] = b"\x93NUMPY";

/// An element type on disk: its name, its size in bytes, and the decoder of one element (big-endian or not).
struct Dtype {
    name: &'static str,
    size: usize,
    decode: fn(&[u8], bool) -> f32,
}

/// The element type called `name` (the names of [`RawArray::dtype`]).
fn dtype(name: &str) -> Option<Dtype> {
    macro_rules! d {
        ($name:literal, $t:ty, $to_f32:expr) => {
            Dtype {
                name: $name,
                size: std::mem::size_of::<$t>(),
                decode: |b, big| {
                    let bytes = b.try_into().unwrap_or_default();
                    let v = if big { <$t>::from_be_bytes(bytes) } else { <$t>::from_le_bytes(bytes) };
                    ($to_f32)(v)
                },
            }
        };
    }
    Some(match name {
        "float32" => d!("float32", f32, |v| v),
        "float64" => d!("float64", f64, |v| v as f32),
        "float16" => d!("float16", u16, |v| half::f16::from_bits(v).to_f32()),
        "bfloat16" => d!("bfloat16", u16, |v| half::bf16::from_bits(v).to_f32()),
        "bool" => d!("bool", u8, |v| v as f32),
        "uint8" => d!("uint8", u8, |v| v as f32),
        "int8" => d!("int8", i8, |v| v as f32),
        "uint16" => d!("uint16", u16, |v| v as f32),
        "int16" => d!("int16", i16, |v| v as f32),
        "uint32" => d!("uint32", u32, |v| v as f32),
        "int32" => d!("int32", i32, |v| v as f32),
        "uint64" => d!("uint64", u64, |v| v as f32),
        "int64" => d!("int64", i64, |v| v as f32),
        _ => return None,
    })
}

/// A shape as "60000×28×28" ("()" for a scalar).
fn dims(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_string(),
        _ => shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×"),
    }
}

/// The error "<path>: <message>" for malformed content.
fn err<T>(path: &Path, message: impl Into<String>) -> Result<T> {
    Err(Error::model(path, message))
}

fn open(path: &Path) -> Result<BufReader<File>> {
    File::open(path).map(BufReader::new).map_err(|e| Error::io(path, e))
}

/// Whether the file starts with `magic` (without consuming anything).
fn starts_with(path: &Path, file: &mut BufReader<File>, magic: &[u8]) -> Result<bool> {
    Ok(file.fill_buf().map_err(|e| Error::io(path, e))?.starts_with(magic))
}

/// The next `limit` bytes of `r`, or all it has left if fewer; never allocates more than it reads.
fn read_up_to(path: &Path, r: &mut impl Read, limit: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    r.take(limit).read_to_end(&mut out).map_err(|e| match e.kind() {
        ErrorKind::InvalidData | ErrorKind::InvalidInput | ErrorKind::UnexpectedEof => {
            Error::model(path, format!("corrupt compressed data: {e}"))
        }
        _ => Error::io(path, e),
    })?;
    Ok(out)
}

/// How an array's elements are stored: their type, byte order, and the kind of file (for messages).
struct Layout {
    what: &'static str,
    ty: Dtype,
    big: bool,
}

/// Reads the rest of `r`, which must be exactly the elements of `shape`, and decodes them.
fn read_data(path: &Path, at: &Layout, shape: Vec<usize>, r: &mut impl Read) -> Result<RawArray> {
    let need = shape.iter().try_fold(at.ty.size as u64, |a, d| a.checked_mul(*d as u64));
    let bytes = read_up_to(path, r, need.map_or(0, |n| n.saturating_add(1)))?;
    decode(path, at, shape, &bytes)
}

/// Decodes `bytes`, which must hold exactly the elements of `shape`.
fn decode(path: &Path, at: &Layout, shape: Vec<usize>, bytes: &[u8]) -> Result<RawArray> {
    let (what, ty) = (at.what, &at.ty);
    let need = shape.iter().try_fold(ty.size, |a, d| a.checked_mul(*d));
    if need != Some(bytes.len()) {
        let (shape, ty, has) = (dims(&shape), ty.name, bytes.len());
        let says = |n| format!("header says {shape} = {n} bytes of {ty} data");
        let message = match need {
            None => format!("{what}: header says {shape} elements of {ty}, more bytes than can exist"),
            Some(n) if n < has => format!("{what} has more data than its header says: {}", says(n)),
            Some(n) => format!("truncated {what}: {}, file has {has}", says(n)),
        };
        return err(path, message);
    }
    let data = bytes.chunks_exact(ty.size).map(|b| (ty.decode)(b, at.big)).collect();
    Ok(RawArray { shape, data, dtype: ty.name.to_string() })
}

/// A `.npy` file (C order; Fortran order is refused).
pub fn read_npy(path: &Path) -> Result<RawArray> {
    npy_from(path, &mut open(path)?)
}

/// Parses one `.npy` stream: magic, version, header dictionary, then exactly the data it announces.
fn npy_from(path: &Path, r: &mut impl Read) -> Result<RawArray> {
    let bad = |m: String| Error::model(path, format!("not a valid .npy file: {m}"));
    // Magic, version, then the header length: 2 bytes little-endian in version 1, 4 in versions 2 and 3.
    let mut pre = read_up_to(path, r, 10)?;
    if pre.len() < 10 || !pre.starts_with(NPY_MAGIC) {
        return Err(bad("it does not start with the magic \\x93NUMPY, a version and a header length".into()));
    }
    match pre[6] {
        1 => {}
        2 | 3 => pre.extend(read_up_to(path, r, 2)?),
        v => return Err(bad(format!("unknown format version {v}"))),
    }
    let len = pre[8..].iter().rev().fold(0u64, |a, b| a << 8 | u64::from(*b));
    let header = read_up_to(path, r, len)?;
    if (header.len() as u64) < len {
        return Err(bad(format!("truncated header: {len} bytes announced, {} present", header.len())));
    }
    let header = String::from_utf8_lossy(&header);
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        let end = match rest.chars().next()? {
            '(' => rest.find(')')? + 1,
            '[' => rest.find(']')? + 1,
            _ => rest.find([',', '}'])?,
        };
        Some(rest[..end].trim())
    };
    let descr = field("descr").ok_or_else(|| bad("header has no 'descr'".to_string()))?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let shape_text = field("shape").ok_or_else(|| bad("header has no 'shape'".to_string()))?;
    let shape = shape_text
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| bad(format!("shape {shape_text} is not a tuple of sizes")))?;
    if field("fortran_order") == Some("True") {
        return err(path, "Fortran-order .npy arrays are not supported; save the array in C order");
    }
    let mut chars = descr.chars();
    let (order, kind) = (chars.next().unwrap_or('?'), chars.next().unwrap_or('?'));
    let bits = chars.as_str().parse::<usize>().map_or(0, |b| b.saturating_mul(8));
    let name = match (kind, bits) {
        ('f', _) => format!("float{bits}"),
        ('i', _) => format!("int{bits}"),
        ('u', _) => format!("uint{bits}"),
        ('b', 8) => "bool".to_string(),
        _ => String::new(),
    };
    let ty = dtype(&name).filter(|_| matches!(order, '<' | '>' | '|' | '=')).ok_or_else(|| {
        let kind = match kind {
            'c' => " (complex)",
            'U' | 'S' | 'a' => " (string)",
            'O' => " (Python objects)",
            _ => "",
        };
        Error::model(path, format!("npy dtype '{descr}'{kind} is not supported"))
    })?;
    read_data(path, &Layout { what: ".npy file", ty, big: order == '>' }, shape, r)
}

/// A `.npz` archive: every array, named by its entry name without the ".npy" suffix, in archive order.
pub fn read_npz(path: &Path) -> Result<Vec<(String, RawArray)>> {
    let bad = |e: zip::result::ZipError| Error::model(path, format!("not a valid .npz (zip) archive: {e}"));
    let mut zip = zip::ZipArchive::new(open(path)?).map_err(bad)?;
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(bad)?;
        if entry.is_dir() {
            continue;
        }
        let full = entry.name().to_string();
        let array = match npy_from(path, &mut entry) {
            Err(Error::Model { message, .. }) => return err(path, format!("npz entry '{full}': {message}")),
            other => other?,
        };
        out.push((full.strip_suffix(".npy").unwrap_or(&full).to_string(), array));
    }
    Ok(out)
}

/// An MNIST-style IDX file (magic 00 00 type-code rank, big-endian dims and data), plain or gzip-compressed
/// (recognized by its magic bytes 1f 8b, not by the name).
pub fn read_idx(path: &Path) -> Result<RawArray> {
    let mut file = open(path)?;
    if starts_with(path, &mut file, GZIP_MAGIC)? {
        idx_from(path, &mut flate2::read::MultiGzDecoder::new(file))
    } else {
        idx_from(path, &mut file)
    }
}

/// Element type names by IDX type code, from 0x08.
const IDX_TYPES: [&str; 7] = ["uint8", "int8", "", "int16", "int32", "float32", "float64"];

fn idx_from(path: &Path, r: &mut impl Read) -> Result<RawArray> {
    let bad = |m: String| Error::model(path, format!("not a valid IDX file: {m}"));
    let head = read_up_to(path, r, 4)?;
    if head.len() < 4 || head[..2] != [0, 0] {
        return Err(bad("it does not start with the IDX magic 00 00 <type> <rank>".to_string()));
    }
    let ty = head[2].checked_sub(8).and_then(|i| IDX_TYPES.get(usize::from(i))).and_then(|name| dtype(name));
    let ty = ty.ok_or_else(|| bad(format!("unknown element type code 0x{:02x}", head[2])))?;
    let rank = usize::from(head[3]);
    let raw_dims = read_up_to(path, r, 4 * rank as u64)?;
    if raw_dims.len() < 4 * rank {
        return Err(bad(format!(
            "truncated header of rank {rank}: {} of {} bytes",
            raw_dims.len(),
            4 * rank
        )));
    }
    let shape =
        raw_dims.chunks_exact(4).map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize).collect();
    read_data(path, &Layout { what: "IDX file", ty, big: true }, shape, r)
}

/// Element type names by ONNX `TensorProto.DataType` code ("" for those not read).
const PB_TYPES: [&str; 17] = [
    "", "float32", "uint8", "int8", "uint16", "int16", "int32", "int64", "", "bool", "float16", "float64",
    "uint32", "uint64", "", "", "bfloat16",
];

/// One ONNX `TensorProto` file (the `test_data_set_*/input_*.pb` layout): its name (may be empty) and
/// values. Float, double, float16, bfloat16, bool and integer tensors; raw_data or the typed fields.
pub fn read_tensor_pb(path: &Path) -> Result<(String, RawArray)> {
    use onnx_protobuf::tensor_proto::{DataLocation, DataType};
    use protobuf::{Enum, Message};
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut t = onnx_protobuf::TensorProto::parse_from_bytes(&bytes)
        .map_err(|e| Error::model(path, format!("not a valid TensorProto: {e}")))?;
    let Ok(shape) = t.dims.iter().map(|d| usize::try_from(*d)).collect::<std::result::Result<Vec<_>, _>>()
    else {
        return err(path, format!("TensorProto dims {:?} include a negative size", t.dims));
    };
    if t.data_location.enum_value() == Ok(DataLocation::EXTERNAL) || !t.external_data.is_empty() {
        return err(path, "TensorProto data in an external file is not supported");
    }
    let code = t.data_type;
    let Some(ty) = usize::try_from(code).ok().and_then(|c| PB_TYPES.get(c)).and_then(|name| dtype(name))
    else {
        let name = DataType::from_i32(code).map_or("unknown".to_string(), |d| format!("{d:?}"));
        return err(path, format!("TensorProto data type {code} ({name}) is not supported"));
    };
    let name = ty.name;
    if !t.raw_data.is_empty() {
        let at = Layout { what: "TensorProto", ty, big: false };
        return Ok((t.name, decode(path, &at, shape, &t.raw_data)?));
    }
    // The typed field that holds each type (onnx.proto): fp16/bf16 as bit patterns in int32_data.
    let (field, data): (&str, Vec<f32>) = match name {
        "float32" => ("float_data", std::mem::take(&mut t.float_data)),
        "float64" => ("double_data", t.double_data.iter().map(|v| *v as f32).collect()),
        "int64" => ("int64_data", t.int64_data.iter().map(|v| *v as f32).collect()),
        "uint32" | "uint64" => ("uint64_data", t.uint64_data.iter().map(|v| *v as f32).collect()),
        "float16" | "bfloat16" => (
            "int32_data",
            t.int32_data.iter().map(|v| (ty.decode)(&(*v as u16).to_le_bytes(), false)).collect(),
        ),
        _ => ("int32_data", t.int32_data.iter().map(|v| *v as f32).collect()),
    };
    let count = shape.iter().try_fold(1usize, |a, d| a.checked_mul(*d));
    if count != Some(data.len()) {
        let (shape, count) = (dims(&shape), count.map_or("more than 2^64".to_string(), |c| c.to_string()));
        return err(
            path,
            format!("TensorProto dims {shape} = {count} elements, {field} holds {}", data.len()),
        );
    }
    Ok((t.name, RawArray { shape, data, dtype: name.to_string() }))
}

/// Class labels: a 1-D integer `.npy` (any integer dtype; also float arrays holding whole numbers) or a 1-D
/// IDX file, chosen by content (npy magic, else IDX, plain or gzip).
pub fn read_labels(path: &Path) -> Result<Vec<i64>> {
    let mut file = open(path)?;
    let a =
        if starts_with(path, &mut file, NPY_MAGIC)? { npy_from(path, &mut file)? } else { read_idx(path)? };
    if a.shape.len() != 1 {
        return err(path, format!("labels must be 1-D, this array has shape {}", dims(&a.shape)));
    }
    a.data
        .iter()
        .enumerate()
        .map(|(i, v)| match *v {
            v if v >= 0.0 && v.fract() == 0.0 => Ok(v as i64),
            v => err(path, format!("label {i} is {v}, not a class index (a whole number ≥ 0)")),
        })
        .collect()
}

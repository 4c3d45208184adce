//! Readers for sample data and labels (design.md §6): `.npy`, `.npz`, MNIST-style IDX (plain or gzip),
//! and ONNX `TensorProto` files. Every size is checked against the bytes present before allocating.
//!
//! The npy header is parsed here rather than with ndarray-npy, whose readers need the element type at
//! compile time; this reads whatever numeric dtype the file holds and converts it to f32.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// An array read from a data file: its shape, its elements as f32 (integers by value), and the element
/// type it had on disk ("float32", "uint8", …).
#[derive(Debug, Clone, PartialEq)]
pub struct RawArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    pub dtype: String,
}

impl RawArray {
    pub fn is_integer(&self) -> bool {
        self.dtype.contains("int")
    }
}

/// A numeric element type: name, size, and decoder of one element.
struct Dtype {
    name: &'static str,
    size: usize,
    decode: fn(&[u8], bool) -> f32,
}

fn dtype(kind: char, size: usize) -> Option<Dtype> {
    macro_rules! d {
        ($name:literal, $t:ty) => {
            Dtype {
                name: $name,
                size: std::mem::size_of::<$t>(),
                decode: |b, big| {
                    let a = b.try_into().expect("element size");
                    (if big { <$t>::from_be_bytes(a) } else { <$t>::from_le_bytes(a) }) as f32
                },
            }
        };
    }
    Some(match (kind, size) {
        ('f', 4) => d!("float32", f32),
        ('f', 8) => d!("float64", f64),
        ('f', 2) => Dtype {
            name: "float16",
            size: 2,
            decode: |b, big| {
                let bits =
                    if big { u16::from_be_bytes([b[0], b[1]]) } else { u16::from_le_bytes([b[0], b[1]]) };
                half::f16::from_bits(bits).to_f32()
            },
        },
        ('u', 1) | ('b', 1) => d!("uint8", u8),
        ('i', 1) => d!("int8", i8),
        ('u', 2) => d!("uint16", u16),
        ('i', 2) => d!("int16", i16),
        ('u', 4) => d!("uint32", u32),
        ('i', 4) => d!("int32", i32),
        ('u', 8) => d!("uint64", u64),
        ('i', 8) => d!("int64", i64),
        _ => return None,
    })
}

/// Elements of `shape` in `bytes` (exactly), or an error naming both counts.
fn decode(path: &Path, shape: Vec<usize>, ty: &Dtype, big: bool, bytes: &[u8]) -> Result<RawArray> {
    let count = shape.iter().try_fold(1usize, |a, d| a.checked_mul(*d));
    let need = count.and_then(|c| c.checked_mul(ty.size));
    if need != Some(bytes.len()) {
        return Err(Error::model(
            path,
            format!(
                "shape {shape:?} of {} needs {} bytes of data, the file has {}",
                ty.name,
                need.map_or("more than 2^64".to_string(), |n| n.to_string()),
                bytes.len()
            ),
        ));
    }
    let data = bytes.chunks_exact(ty.size).map(|b| (ty.decode)(b, big)).collect();
    Ok(RawArray { shape, data, dtype: ty.name.to_string() })
}

fn read_all(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// A `.npy` file (C order).
pub fn read_npy(path: &Path) -> Result<RawArray> {
    parse_npy(path, &read_all(path)?)
}

fn parse_npy(path: &Path, b: &[u8]) -> Result<RawArray> {
    let bad = |m: &str| Error::model(path, format!("not a valid .npy file: {m}"));
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err(bad("no \\x93NUMPY magic"));
    }
    let (len, start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10usize),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(bad(&format!("unknown version {v}"))),
    };
    let header = b.get(start..start.saturating_add(len)).ok_or_else(|| bad("truncated header"))?;
    let header = String::from_utf8_lossy(header);
    let field = |key: &str| -> Option<String> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        let end = if rest.starts_with('(') { rest.find(')')? + 1 } else { rest.find([',', '}'])? };
        Some(rest[..end].trim().to_string())
    };
    let descr = field("descr").ok_or_else(|| bad("header has no 'descr'"))?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    if field("fortran_order").as_deref() == Some("True") {
        return Err(Error::model(path, "Fortran-order .npy is not supported; save it in C order"));
    }
    let shape_text = field("shape").ok_or_else(|| bad("header has no 'shape'"))?;
    let shape = shape_text
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| bad(&format!("shape {shape_text} is not a tuple of sizes")))?;
    let mut chars = descr.chars();
    let (order, kind) = (chars.next().unwrap_or('?'), chars.next().unwrap_or('?'));
    let size: usize = chars.as_str().parse().unwrap_or(0);
    let ty = dtype(kind, size)
        .filter(|_| matches!(order, '<' | '>' | '|' | '='))
        .ok_or_else(|| Error::model(path, format!("npy dtype '{descr}' is not supported (numbers only)")))?;
    decode(path, shape, &ty, order == '>', &b[start + len..])
}

/// A `.npz` archive: every array, named by its entry name without ".npy", in archive order.
pub fn read_npz(path: &Path) -> Result<Vec<(String, RawArray)>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let bad = |e: zip::result::ZipError| Error::model(path, format!("not a valid .npz archive: {e}"));
    let mut zip = zip::ZipArchive::new(file).map_err(bad)?;
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(bad)?;
        let name = entry.name().trim_end_matches(".npy").to_string();
        // A claimed size beyond 1024× the archive is a zip bomb or a lie.
        if entry.size() > size.saturating_mul(1024).max(1 << 20) {
            return Err(Error::model(path, format!("npz entry '{name}' claims {} bytes", entry.size())));
        }
        let mut bytes = Vec::new();
        let claimed = entry.size();
        entry.by_ref().take(claimed).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
        let array = parse_npy(path, &bytes)
            .map_err(|e| Error::model(path, format!("npz entry '{name}': {}", strip(&e, path))))?;
        out.push((name, array));
    }
    Ok(out)
}

fn strip(e: &Error, path: &Path) -> String {
    let text = e.to_string();
    text.strip_prefix(&format!("{}: ", path.display())).unwrap_or(&text).to_string()
}

/// Reads `path`, gunzipping it when it starts with the gzip magic (at most `limit` bytes out).
fn maybe_gunzip(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let bytes = read_all(path)?;
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| Error::model(path, format!("gzip data is corrupt: {e}")))?;
    Ok(out)
}

/// An MNIST-style IDX file, plain or gzip-compressed.
pub fn read_idx(path: &Path) -> Result<RawArray> {
    // Header first (at most 4 + 4·255 bytes), then the data it announces, plus one byte to see excess.
    let head = maybe_gunzip(path, 4 + 4 * 255)?;
    let bad = |m: String| Error::model(path, format!("not a valid IDX file: {m}"));
    if head.len() < 4 || head[0] != 0 || head[1] != 0 {
        return Err(bad("it does not start with the IDX magic 00 00".to_string()));
    }
    let ty = match head[2] {
        0x08 => dtype('u', 1),
        0x09 => dtype('i', 1),
        0x0B => dtype('i', 2),
        0x0C => dtype('i', 4),
        0x0D => dtype('f', 4),
        0x0E => dtype('f', 8),
        t => return Err(bad(format!("unknown type code 0x{t:02x}"))),
    }
    .expect("known IDX types");
    let rank = head[3] as usize;
    let start = 4 + 4 * rank;
    let dims = head.get(4..start).ok_or_else(|| bad(format!("truncated header of rank {rank}")))?;
    let shape: Vec<usize> =
        dims.chunks(4).map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize).collect();
    let need = shape.iter().try_fold(ty.size, |a, d| a.checked_mul(*d)).unwrap_or(usize::MAX);
    let all = maybe_gunzip(path, (start as u64).saturating_add(need as u64).saturating_add(1))?;
    decode(path, shape, &ty, true, &all[start.min(all.len())..])
}

/// One ONNX `TensorProto` file: its name and values.
pub fn read_tensor_pb(path: &Path) -> Result<(String, RawArray)> {
    use protobuf::Message;
    let bytes = read_all(path)?;
    let t = onnx_protobuf::TensorProto::parse_from_bytes(&bytes)
        .map_err(|e| Error::model(path, format!("not a valid TensorProto: {e}")))?;
    let shape: Vec<usize> = t
        .dims
        .iter()
        .map(|d| usize::try_from(*d))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::model(path, format!("negative dims {:?}", t.dims)))?;
    let code = t.data_type;
    let ty = match code {
        1 => dtype('f', 4),
        2 => dtype('u', 1),
        3 => dtype('i', 1),
        4 => dtype('u', 2),
        5 => dtype('i', 2),
        6 => dtype('i', 4),
        7 => dtype('i', 8),
        10 => dtype('f', 2),
        11 => dtype('f', 8),
        12 => dtype('u', 4),
        13 => dtype('u', 8),
        _ => None,
    }
    .ok_or_else(|| Error::model(path, format!("tensor type {code} is not supported")))?;
    if !t.raw_data.is_empty() {
        return Ok((t.name.clone(), decode(path, shape, &ty, false, &t.raw_data)?));
    }
    let values: Vec<f32> = match code {
        1 => t.float_data.clone(),
        11 => t.double_data.iter().map(|v| *v as f32).collect(),
        7 => t.int64_data.iter().map(|v| *v as f32).collect(),
        12 | 13 => t.uint64_data.iter().map(|v| *v as f32).collect(),
        10 => t.int32_data.iter().map(|v| half::f16::from_bits(*v as u16).to_f32()).collect(),
        _ => t.int32_data.iter().map(|v| *v as f32).collect(),
    };
    let count = shape.iter().try_fold(1usize, |a, d| a.checked_mul(*d));
    if count != Some(values.len()) {
        return Err(Error::model(
            path,
            format!("holds {} values, its dims {shape:?} say otherwise", values.len()),
        ));
    }
    Ok((t.name.clone(), RawArray { shape, data: values, dtype: ty.name.to_string() }))
}

/// Class labels: a 1-D `.npy` of whole numbers, or a 1-D IDX file (chosen by content).
pub fn read_labels(path: &Path) -> Result<Vec<i64>> {
    let mut head = [0u8; 6];
    let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).map_err(|e| Error::io(path, e))?;
    let a = if n == 6 && &head == b"\x93NUMPY" { read_npy(path)? } else { read_idx(path)? };
    if a.shape.len() != 1 {
        return Err(Error::model(path, format!("labels must be 1-D, this array has shape {:?}", a.shape)));
    }
    a.data
        .iter()
        .enumerate()
        .map(|(i, v)| {
            if *v >= 0.0 && v.fract() == 0.0 {
                Ok(*v as i64)
            } else {
                Err(Error::model(path, format!("label {i} is {v}, not a class index")))
            }
        })
        .collect()
}

//! Tensor element types and their payloads: bytes (raw_data or typed fields) <-> f32 values.

use half::{bf16, f16};

/// The float types renorm prunes, by their ONNX `TensorProto.DataType` code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatType {
    F32,
    F16,
    Bf16,
    F64,
}

impl FloatType {
    pub fn from_code(code: i32) -> Option<Self> {
        match code {
            1 => Some(FloatType::F32),
            10 => Some(FloatType::F16),
            16 => Some(FloatType::Bf16),
            11 => Some(FloatType::F64),
            _ => None,
        }
    }

    /// The ONNX `TensorProto.DataType` code.
    pub fn code(self) -> i32 {
        match self {
            FloatType::F32 => 1,
            FloatType::F16 => 10,
            FloatType::Bf16 => 16,
            FloatType::F64 => 11,
        }
    }

    /// Little-endian raw bytes of `values`, each rounded once to this type.
    pub fn encode(self, values: &[f64]) -> Vec<u8> {
        values
            .iter()
            .flat_map(|&v| match self {
                FloatType::F32 => (v as f32).to_le_bytes().to_vec(),
                FloatType::F16 => f16::from_f64(v).to_le_bytes().to_vec(),
                FloatType::Bf16 => bf16::from_f64(v).to_le_bytes().to_vec(),
                FloatType::F64 => v.to_le_bytes().to_vec(),
            })
            .collect()
    }

    /// Bytes per element in raw_data (little-endian).
    pub fn size(self) -> usize {
        match self {
            FloatType::F32 => 4,
            FloatType::F16 | FloatType::Bf16 => 2,
            FloatType::F64 => 8,
        }
    }

    /// The typed field that holds this type when raw_data is not used
    /// (float_data = 4, int32_data = 5 for the 16-bit types, double_data = 10).
    pub fn typed_field(self) -> u32 {
        match self {
            FloatType::F32 => 4,
            FloatType::F16 | FloatType::Bf16 => 5,
            FloatType::F64 => 10,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FloatType::F32 => "float32",
            FloatType::F16 => "float16",
            FloatType::Bf16 => "bfloat16",
            FloatType::F64 => "float64",
        }
    }

    /// One element as the f32 that selection and scales see (`decode_raw`).
    #[inline]
    pub fn value(self, b: &[u8]) -> f32 {
        self.decode(b) as f32
    }

    /// Decodes one element from its raw little-endian bytes.
    #[inline]
    fn decode(self, b: &[u8]) -> f64 {
        match self {
            FloatType::F32 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            FloatType::F16 => f64::from(f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()),
            FloatType::Bf16 => f64::from(bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()),
            FloatType::F64 => f64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
        }
    }

    /// Multiplies one raw element by `scale` (zero when `keep` is false) and writes it back in place.
    /// A scale of exactly 1 leaves the bytes untouched. Computed in f32 (f64 for f64 weights), rounded
    /// once to the stored type.
    pub fn rescale(self, b: &mut [u8], keep: bool, scale: f64) {
        if keep && scale == 1.0 {
            return;
        }
        let s = if keep { scale } else { 0.0 };
        match self {
            FloatType::F32 => {
                let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * s as f32;
                b.copy_from_slice(&zero_sign(v, keep).to_le_bytes());
            }
            FloatType::F16 => {
                let v = f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32() * s as f32;
                b.copy_from_slice(&f16::from_f32(zero_sign(v, keep)).to_bits().to_le_bytes());
            }
            FloatType::Bf16 => {
                let v = bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32() * s as f32;
                b.copy_from_slice(&bf16::from_f32(zero_sign(v, keep)).to_bits().to_le_bytes());
            }
            FloatType::F64 => {
                let v = f64::from_le_bytes(b[..8].try_into().expect("8 bytes")) * s;
                let v = if keep { v } else { 0.0 };
                b.copy_from_slice(&v.to_le_bytes());
            }
        }
    }
}

/// Pruned weights are written as +0.0, whatever the sign of the original.
fn zero_sign(v: f32, keep: bool) -> f32 {
    if keep {
        v
    } else {
        0.0
    }
}

/// Decodes a little-endian raw payload into f32 values (f64 is narrowed: selection and scales are
/// computed in f32/f64 as design.md §4 says; the stored values are rescaled in their own precision).
pub fn decode_raw(ty: FloatType, raw: &[u8]) -> Vec<f32> {
    raw.chunks_exact(ty.size()).map(|b| ty.value(b)).collect()
}

/// Converts a typed-field payload (float_data / int32_data / double_data) to the raw little-endian
/// layout, so that one code path prunes both storage forms.
pub fn typed_to_raw(ty: FloatType, fixed32: &[u32], varints: &[u64], fixed64: &[u64]) -> Vec<u8> {
    match ty {
        FloatType::F32 => fixed32.iter().flat_map(|v| v.to_le_bytes()).collect(),
        FloatType::F16 | FloatType::Bf16 => varints.iter().flat_map(|v| (*v as u16).to_le_bytes()).collect(),
        FloatType::F64 => fixed64.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// The packed body of the typed field for a raw little-endian payload (the inverse of `typed_to_raw`).
pub fn raw_to_typed_body(ty: FloatType, raw: &[u8]) -> Vec<u8> {
    match ty {
        FloatType::F32 | FloatType::F64 => raw.to_vec(),
        FloatType::F16 | FloatType::Bf16 => {
            let mut out = Vec::with_capacity(raw.len() * 2);
            for b in raw.chunks_exact(2) {
                crate::onnx::wire::write_varint(&mut out, u64::from(u16::from_le_bytes([b[0], b[1]])));
            }
            out
        }
    }
}

/// A short name for any ONNX data type code, for messages and reports.
pub fn type_name(code: i32) -> String {
    let name = match code {
        1 => "float32",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "float64",
        12 => "uint32",
        13 => "uint64",
        14 => "complex64",
        15 => "complex128",
        16 => "bfloat16",
        17..=20 => "float8",
        21 => "uint4",
        22 => "int4",
        23 => "float4",
        _ => return format!("type {code}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_scale_keeps_bytes_and_pruning_writes_positive_zero() {
        let mut b = (-0.0f32).to_le_bytes();
        FloatType::F32.rescale(&mut b, true, 1.0);
        assert_eq!(b, (-0.0f32).to_le_bytes());
        let mut b = (-3.5f32).to_le_bytes();
        FloatType::F32.rescale(&mut b, false, 2.0);
        assert_eq!(b, 0.0f32.to_le_bytes());
    }

    #[test]
    fn half_types_round_trip_through_typed_fields() {
        let raw: Vec<u8> =
            [1.5f32, -2.0, 0.0].iter().flat_map(|v| f16::from_f32(*v).to_bits().to_le_bytes()).collect();
        let body = raw_to_typed_body(FloatType::F16, &raw);
        let mut varints = Vec::new();
        let mut pos = 0;
        while pos < body.len() {
            let (v, next) = crate::onnx::wire::read_varint(&body, pos, body.len()).unwrap();
            varints.push(v);
            pos = next;
        }
        assert_eq!(typed_to_raw(FloatType::F16, &[], &varints, &[]), raw);
        assert_eq!(decode_raw(FloatType::F16, &raw), vec![1.5, -2.0, 0.0]);
    }
}

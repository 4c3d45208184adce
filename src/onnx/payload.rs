//! A float tensor's elements as little-endian bytes, wherever they are stored (raw_data, typed field,
//! external file), checked against what the dims say.

use crate::error::{Error, Result};
use crate::onnx::file_bytes::FileBytes;
use crate::onnx::model::{Model, Payload, Tensor};
use crate::onnx::tensor::{self, FloatType};
use crate::onnx::wire::{self, Value};

/// A payload's raw little-endian bytes: borrowed from the model file, or mapped from its external data
/// file, or decoded from a typed field.
pub enum View<'m> {
    InFile(&'m [u8]),
    Loaded(FileBytes),
}

impl std::ops::Deref for View<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            View::InFile(b) => b,
            View::Loaded(b) => b,
        }
    }
}

/// Reads the elements of `t` (of float type `ty`) as raw little-endian bytes.
pub fn read(model: &Model, t: &Tensor, ty: FloatType) -> Result<Vec<u8>> {
    Ok(match view(model, t, ty)? {
        View::InFile(b) => b.to_vec(),
        View::Loaded(FileBytes::Owned(v)) => v,
        View::Loaded(b) => b.to_vec(),
    })
}

/// The elements of `t` (of float type `ty`) as raw little-endian bytes, copied only when they are in a
/// typed field; checked against the dims as `read` does.
pub fn view<'m>(model: &'m Model, t: &Tensor, ty: FloatType) -> Result<View<'m>> {
    let name = &t.name;
    let count = t.element_count().ok_or_else(|| {
        Error::model(&model.path, format!("tensor '{name}': dims {:?} are negative or overflow", t.dims))
    })?;
    let expected = count
        .checked_mul(ty.size())
        .ok_or_else(|| Error::model(&model.path, format!("tensor '{name}': dims {:?} overflow", t.dims)))?;
    let mismatch = |have: usize| {
        Error::model(
            &model.path,
            format!("tensor '{name}': its data holds {have} elements but its dims {:?} say {count}", t.dims),
        )
    };
    match &t.payload {
        Payload::Raw(range) => {
            if range.len() != expected {
                return Err(mismatch(range.len() / ty.size()));
            }
            Ok(View::InFile(&model.bytes[range.clone()]))
        }
        Payload::External(ext) => {
            crate::onnx::external::map(&model.path, &model.folder(), name, ext, expected).map(View::Loaded)
        }
        Payload::Missing => {
            if count == 0 {
                Ok(View::Loaded(FileBytes::Owned(Vec::new())))
            } else {
                Err(mismatch(0))
            }
        }
        Payload::Typed { occurrences, .. } => {
            let (mut f32s, mut varints, mut f64s) = (Vec::new(), Vec::new(), Vec::new());
            let format = |e| Error::Format { path: model.path.clone(), source: e };
            for f in occurrences {
                match (&f.value, ty) {
                    (Value::Bytes { body, .. }, FloatType::F32) if body.len() % 4 == 0 => f32s.extend(
                        model.bytes[body.clone()]
                            .chunks_exact(4)
                            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    ),
                    (Value::Bytes { body, .. }, FloatType::F64) if body.len() % 8 == 0 => f64s.extend(
                        model.bytes[body.clone()]
                            .chunks_exact(8)
                            .map(|b| u64::from_le_bytes(b.try_into().unwrap())),
                    ),
                    (Value::Fixed32(v), FloatType::F32) => f32s.push(*v),
                    (Value::Fixed64(v), FloatType::F64) => f64s.push(*v),
                    (_, FloatType::F16 | FloatType::Bf16) => {
                        wire::packed_varints(&model.bytes, f, &mut varints).map_err(format)?
                    }
                    _ => {
                        return Err(Error::model(
                            &model.path,
                            format!("tensor '{name}': its {} data field is malformed", ty.name()),
                        ))
                    }
                }
            }
            let have = f32s.len() + varints.len() + f64s.len();
            if have != count {
                return Err(mismatch(have));
            }
            Ok(View::Loaded(FileBytes::Owned(tensor::typed_to_raw(ty, &f32s, &varints, &f64s))))
        }
    }
}

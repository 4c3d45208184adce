//! The protobuf wire format, read in place: every field comes back with the byte offsets it occupies in
//! the file, so the writer can replace payloads without decoding and re-encoding the rest of the model.
//!
//! Only what ONNX needs: varint, fixed32, fixed64 and length-delimited fields (ONNX uses no groups).

use std::ops::Range;

use crate::error::FormatError;

/// The value part of one field, as it sits in the buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    /// A length-delimited field: `header` is the range of its length varint, `body` what follows it.
    Bytes {
        header: Range<usize>,
        body: Range<usize>,
    },
}

/// One field of a message: its number, where its tag starts, and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub number: u32,
    pub start: usize,
    pub value: Value,
}

impl Field {
    /// The body of a length-delimited field, or an error naming `what` was expected there.
    pub fn body(&self, what: &str) -> Result<Range<usize>, FormatError> {
        match &self.value {
            Value::Bytes { body, .. } => Ok(body.clone()),
            _ => Err(FormatError::at(self.start, format!("{what} is not length-delimited"))),
        }
    }

    /// A varint field's value, or an error naming `what` was expected there.
    pub fn varint(&self, what: &str) -> Result<u64, FormatError> {
        match self.value {
            Value::Varint(v) => Ok(v),
            _ => Err(FormatError::at(self.start, format!("{what} is not a varint"))),
        }
    }
}

/// Reads a varint at `pos`, returning the value and the position after it.
pub fn read_varint(buf: &[u8], mut pos: usize, end: usize) -> Result<(u64, usize), FormatError> {
    let start = pos;
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        if pos >= end {
            return Err(FormatError::at(start, "the file ends inside a number (truncated?)"));
        }
        let byte = buf[pos];
        pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((value, pos));
        }
    }
    Err(FormatError::at(start, "a number is longer than 10 bytes (not protobuf?)"))
}

/// Appends `value` as a varint.
pub fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The number of bytes `value` takes as a varint.
pub fn varint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends a length-delimited field (tag, length, body).
pub fn write_bytes_field(out: &mut Vec<u8>, number: u32, body: &[u8]) {
    write_varint(out, (u64::from(number) << 3) | 2);
    write_varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

/// Iterates over the fields of the message occupying `buf[range]`.
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

/// The fields of the message in `buf[range]`.
pub fn fields(buf: &[u8], range: Range<usize>) -> Fields<'_> {
    Fields { buf, pos: range.start, end: range.end }
}

impl Fields<'_> {
    fn next_field(&mut self) -> Result<Field, FormatError> {
        let start = self.pos;
        let (tag, pos) = read_varint(self.buf, self.pos, self.end)?;
        let number = u32::try_from(tag >> 3)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| FormatError::at(start, "invalid field number (not protobuf?)"))?;
        let fixed = |len: usize| -> Result<usize, FormatError> {
            if self.end - pos < len {
                Err(FormatError::at(start, "the file ends inside a field (truncated?)"))
            } else {
                Ok(pos + len)
            }
        };
        let (value, next) = match tag & 7 {
            0 => {
                let (v, next) = read_varint(self.buf, pos, self.end)?;
                (Value::Varint(v), next)
            }
            1 => {
                let next = fixed(8)?;
                let v = u64::from_le_bytes(self.buf[pos..next].try_into().expect("8 bytes"));
                (Value::Fixed64(v), next)
            }
            5 => {
                let next = fixed(4)?;
                let v = u32::from_le_bytes(self.buf[pos..next].try_into().expect("4 bytes"));
                (Value::Fixed32(v), next)
            }
            2 => {
                let (len, body_start) = read_varint(self.buf, pos, self.end)?;
                let available = (self.end - body_start) as u64;
                if len > available {
                    return Err(FormatError::at(
                        start,
                        format!("field {number} says it holds {len} bytes but only {available} follow (truncated?)"),
                    ));
                }
                let body = body_start..body_start + len as usize;
                let next = body.end;
                (Value::Bytes { header: pos..body_start, body }, next)
            }
            other => {
                return Err(FormatError::at(start, format!("unsupported wire type {other} (not protobuf?)")));
            }
        };
        self.pos = next;
        Ok(Field { number, start, value })
    }
}

impl Iterator for Fields<'_> {
    type Item = Result<Field, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.end {
            return None;
        }
        let item = self.next_field();
        if item.is_err() {
            self.pos = self.end;
        }
        Some(item)
    }
}

/// The string in `buf[range]`, or an error if it is not UTF-8.
pub fn string(buf: &[u8], range: Range<usize>) -> Result<String, FormatError> {
    let start = range.start;
    String::from_utf8(buf[range].to_vec()).map_err(|_| FormatError::at(start, "a name is not valid UTF-8"))
}

/// Decodes a packed run of varints (or a single unpacked one) into `out`.
pub fn packed_varints(buf: &[u8], field: &Field, out: &mut Vec<u64>) -> Result<(), FormatError> {
    match &field.value {
        Value::Varint(v) => out.push(*v),
        Value::Bytes { body, .. } => {
            let mut pos = body.start;
            while pos < body.end {
                let (v, next) = read_varint(buf, pos, body.end)?;
                out.push(v);
                pos = next;
            }
        }
        _ => return Err(FormatError::at(field.start, "expected integers")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_measure() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            assert_eq!(read_varint(&out, 0, out.len()).unwrap(), (v, out.len()));
        }
    }

    #[test]
    fn lying_length_is_an_error() {
        // field 1, length-delimited, says 5 bytes, has 2.
        let buf = [0x0a, 5, 1, 2];
        let err = fields(&buf, 0..buf.len()).next().unwrap().unwrap_err();
        assert!(err.to_string().contains("5 bytes"), "{err}");
    }
}

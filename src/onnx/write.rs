//! Writing: the output is the input's bytes with some ranges replaced. Length prefixes of the messages
//! enclosing a replacement are rewritten when its size changes; nothing else is re-encoded, so every
//! field renorm does not touch (unknown ones included) is copied byte for byte. Writes are atomic
//! (`atomic_file`).

use std::collections::BTreeMap;
use std::io::Write;
use std::ops::Range;

use crate::onnx::model::{Model, Nest, Payload, Tensor};
use crate::onnx::tensor::{self, FloatType};
use crate::onnx::wire::{self, Value};

/// Replace `range` of the file with `bytes`; `nests` are the messages enclosing `range`.
#[derive(Debug, Clone)]
pub struct Edit {
    pub range: Range<usize>,
    pub bytes: Vec<u8>,
    pub nests: Vec<Nest>,
}

/// The edit that stores `raw` (little-endian elements) as the payload of `t`, in `t`'s own storage
/// form. External payloads are not in the model file: see `crate::onnx::external_out`.
pub fn payload_edit(model: &Model, t: &Tensor, ty: FloatType, raw: Vec<u8>) -> Vec<Edit> {
    match &t.payload {
        Payload::Raw(range) => vec![Edit { range: range.clone(), bytes: raw, nests: t.nests.clone() }],
        Payload::Typed { number, occurrences } => {
            // One packed field where the first occurrence was; later occurrences (rare) are removed.
            let body = tensor::raw_to_typed_body(ty, &raw);
            let mut field = Vec::with_capacity(body.len() + 12);
            wire::write_bytes_field(&mut field, *number, &body);
            let mut edits = Vec::new();
            for (i, f) in occurrences.iter().enumerate() {
                let end = match &f.value {
                    Value::Bytes { body, .. } => body.end,
                    Value::Fixed32(_) => varint_end(model, f.start) + 4,
                    Value::Fixed64(_) => varint_end(model, f.start) + 8,
                    Value::Varint(_) => {
                        let after_tag = varint_end(model, f.start);
                        wire::read_varint(&model.bytes, after_tag, model.bytes.len())
                            .map(|(_, e)| e)
                            .unwrap_or(after_tag)
                    }
                };
                let bytes = if i == 0 { std::mem::take(&mut field) } else { Vec::new() };
                edits.push(Edit { range: f.start..end, bytes, nests: t.nests.clone() });
            }
            edits
        }
        Payload::External(_) | Payload::Missing => Vec::new(),
    }
}

fn varint_end(model: &Model, pos: usize) -> usize {
    wire::read_varint(&model.bytes, pos, model.bytes.len()).map(|(_, e)| e).unwrap_or(pos)
}

/// The edit that records `value` under `key` in `metadata_props`: it replaces an entry with that key,
/// or appends one (a top-level field may come anywhere in a protobuf message).
pub fn metadata_edit(model: &Model, key: &str, value: &str) -> Edit {
    let mut entry = Vec::new();
    wire::write_bytes_field(&mut entry, 1, key.as_bytes());
    wire::write_bytes_field(&mut entry, 2, value.as_bytes());
    let mut field = Vec::new();
    wire::write_bytes_field(&mut field, 14, &entry);
    let range = match model.metadata.iter().find(|m| m.key == key) {
        Some(m) => m.field.clone(),
        None => model.bytes.len()..model.bytes.len(),
    };
    Edit { range, bytes: field, nests: Vec::new() }
}

/// Turns edits into non-overlapping byte replacements, sorted, adding the rewritten length prefix of
/// every enclosing message whose size changed.
pub fn resolve(mut edits: Vec<Edit>) -> Vec<(Range<usize>, Vec<u8>)> {
    // Every enclosing message, innermost (shortest) first.
    let mut nests: Vec<Nest> = edits.iter().flat_map(|e| e.nests.iter().cloned()).collect();
    nests.sort_by_key(|n| (n.body.len(), n.body.start));
    nests.dedup();
    let delta = |r: &Range<usize>, new: usize| new as i64 - r.len() as i64;
    let mut headers: BTreeMap<usize, (Range<usize>, Vec<u8>)> = BTreeMap::new();
    for nest in &nests {
        // Edits name their enclosing messages (an insertion at a body's end is not inside it by
        // position alone); rewritten headers are inside by position.
        let inside = |r: &Range<usize>| r.start >= nest.body.start && r.end <= nest.body.end;
        let mut change: i64 =
            edits.iter().filter(|e| e.nests.contains(nest)).map(|e| delta(&e.range, e.bytes.len())).sum();
        change += headers.values().filter(|(r, _)| inside(r)).map(|(r, b)| delta(r, b.len())).sum::<i64>();
        if change != 0 {
            let mut bytes = Vec::new();
            wire::write_varint(&mut bytes, (nest.body.len() as i64 + change) as u64);
            headers.insert(nest.header.start, (nest.header.clone(), bytes));
        }
    }
    let mut out: Vec<(Range<usize>, Vec<u8>)> = edits.drain(..).map(|e| (e.range, e.bytes)).collect();
    out.extend(headers.into_values());
    out.sort_by_key(|(r, _)| (r.start, r.end));
    out
}

/// New bytes for a range of a file: given, or produced when the writer reaches the range (a pruned
/// payload of the same length, made and written piece by piece so that only a piece is in memory).
#[derive(Debug, Clone, PartialEq)]
pub enum Patch {
    Bytes(Vec<u8>),
    Deferred(usize),
}

/// Makes the bytes of `Patch::Deferred(i)` and writes them to the writer given.
pub type Produce<'a> = &'a (dyn Fn(usize, &mut (dyn Write + Send)) -> std::io::Result<()> + Sync);

/// Streams `source` with `replacements` (sorted, non-overlapping) applied to `w`.
pub fn write_patched(
    w: &mut (dyn Write + Send),
    source: &[u8],
    replacements: &[(Range<usize>, Patch)],
    produce: Produce,
) -> std::io::Result<()> {
    let mut pos = 0;
    for (range, patch) in replacements {
        w.write_all(&source[pos..range.start])?;
        write_patch(w, patch, range.len() as u64, produce)?;
        pos = range.end;
    }
    w.write_all(&source[pos..])
}

/// The length of what `write_patched` writes: a deferred patch is as long as its range.
pub fn patched_len(source_len: usize, replacements: &[(Range<usize>, Patch)]) -> u64 {
    let change = |(range, patch): &(Range<usize>, Patch)| match patch {
        Patch::Bytes(b) => b.len() as i64 - range.len() as i64,
        Patch::Deferred(_) => 0,
    };
    (source_len as i64 + replacements.iter().map(change).sum::<i64>()) as u64
}

/// Writes `patch`, replacing `len` bytes: a deferred one must produce exactly that many.
pub fn write_patch(
    w: &mut (dyn Write + Send),
    patch: &Patch,
    len: u64,
    produce: Produce,
) -> std::io::Result<()> {
    match patch {
        Patch::Bytes(bytes) => w.write_all(bytes),
        Patch::Deferred(i) => {
            let mut counted = Counted { inner: w, written: 0 };
            produce(*i, &mut counted)?;
            if counted.written != len {
                return Err(std::io::Error::other(format!(
                    "internal: payload {i} made {} bytes for {len}",
                    counted.written
                )));
            }
            Ok(())
        }
    }
}

/// A writer that counts what passes.
struct Counted<'a> {
    inner: &'a mut (dyn Write + Send),
    written: u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Bytes a payload is made in at a time: the piece being made and the one being written stay in the
/// cores' caches.
const PIECE: usize = 1 << 20;

/// `0..len` cut into pieces of about `PIECE` bytes, each starting at a multiple of `align`.
pub fn pieces(len: usize, align: usize) -> Vec<Range<usize>> {
    let step = (PIECE / align.max(1)).max(1) * align.max(1);
    (0..len).step_by(step).map(|start| start..(start + step).min(len)).collect()
}

/// Writes `pieces` (consecutive byte ranges) of a payload that `make(range, buf)` makes into a
/// buffer: while one piece is written, the next is made (on the other threads). Two buffers, reused;
/// returns what `make` returned for each piece, in order.
pub fn pipelined<T: Send>(
    w: &mut (dyn Write + Send),
    pieces: &[Range<usize>],
    make: impl Fn(Range<usize>, &mut [u8]) -> T + Sync,
) -> std::io::Result<Vec<T>> {
    let cap = pieces.iter().map(|r| r.len()).max().unwrap_or(0);
    let (mut current, mut next) = (vec![0u8; cap], vec![0u8; cap]);
    let mut made = Vec::with_capacity(pieces.len());
    let Some(first) = pieces.first() else { return Ok(made) };
    made.push(make(first.clone(), &mut current[..first.len()]));
    for pair in pieces.windows(2) {
        let (this, following) = (&pair[0], &pair[1]);
        let (written, m) = rayon::join(
            || w.write_all(&current[..this.len()]),
            || make(following.clone(), &mut next[..following.len()]),
        );
        written?;
        made.push(m);
        std::mem::swap(&mut current, &mut next);
    }
    w.write_all(&current[..pieces.last().expect("a piece").len()])?;
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_payload_in_order_at_multiples_of_align() {
        for (len, align) in [(0, 4), (10, 4), (PIECE, 1), (3 * PIECE + 5, 24), (PIECE / 2, PIECE * 2)] {
            let p = pieces(len, align);
            assert_eq!(p.iter().map(|r| r.len()).sum::<usize>(), len, "{len} {align}");
            assert!(p.windows(2).all(|w| w[0].end == w[1].start), "{len} {align}");
            assert!(p.iter().all(|r| r.start % align == 0 && !r.is_empty()), "{len} {align}");
            assert!(p.iter().all(|r| r.len() <= PIECE.max(align)), "{len} {align}");
        }
    }

    #[test]
    fn pipelined_writes_every_piece_in_order_and_returns_what_each_made() {
        let payload: Vec<u8> = (0..3 * PIECE + 77).map(|i| (i * 7 % 251) as u8).collect();
        let pieces = pieces(payload.len(), 12);
        assert!(pieces.len() > 3);
        let mut written = Vec::new();
        let made = pipelined(&mut written, &pieces, |r, buf| {
            buf.copy_from_slice(&payload[r.clone()]);
            r.start
        })
        .unwrap();
        assert!(written == payload);
        assert_eq!(made, pieces.iter().map(|r| r.start).collect::<Vec<_>>());
        assert!(pipelined(&mut written, &[], |_, _| ()).unwrap().is_empty());
    }

    #[test]
    fn a_deferred_patch_must_fill_its_range_exactly() {
        let source = b"head.PAYLOAD.tail".to_vec();
        let replacements = vec![(5..12, Patch::Deferred(0))];
        let write = |made: &'static [u8]| {
            let produce = move |_: usize, w: &mut (dyn Write + Send)| w.write_all(made);
            let mut out = Vec::new();
            write_patched(&mut out, &source, &replacements, &produce).map(|_| out)
        };
        assert_eq!(write(b"payload").unwrap(), b"head.payload.tail");
        for wrong in [&b"short"[..], b"too long!"] {
            let e = write(wrong).unwrap_err().to_string();
            assert!(e.contains(&format!("made {} bytes for 7", wrong.len())), "{e}");
        }
    }

    #[test]
    fn patched_len_is_what_write_patched_writes() {
        let source: Vec<u8> = (0..100u8).collect();
        let produce = |_: usize, w: &mut (dyn Write + Send)| w.write_all(&[7; 20]);
        let replacements = vec![
            (0..3, Patch::Bytes(vec![1; 9])),
            (10..30, Patch::Deferred(0)),
            (40..60, Patch::Bytes(vec![2; 4])),
            (60..60, Patch::Bytes(vec![3; 5])),
            (99..100, Patch::Bytes(Vec::new())),
        ];
        let mut out = Vec::new();
        write_patched(&mut out, &source, &replacements, &produce).unwrap();
        assert_eq!(patched_len(source.len(), &replacements), out.len() as u64);
        assert_eq!(out.len(), 100 + 6 - 16 + 5 - 1);
    }
}

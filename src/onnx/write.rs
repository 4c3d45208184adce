//! Writing: the output is the input's bytes with some ranges replaced. Length prefixes of the messages
//! enclosing a replacement are rewritten when its size changes; nothing else is re-encoded, so every
//! field renorm does not touch (unknown ones included) is copied byte for byte. Writes are atomic.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::Path;

use crate::error::{Error, Result};
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
/// payload of the same length, computed then so that only one is in memory at a time).
#[derive(Debug, Clone, PartialEq)]
pub enum Patch {
    Bytes(Vec<u8>),
    Deferred(usize),
}

/// Makes the bytes of `Patch::Deferred(i)` into the buffer (cleared first).
pub type Produce<'a> = &'a (dyn Fn(usize, &mut Vec<u8>) -> std::io::Result<()> + Sync);

/// Streams `source` with `replacements` (sorted, non-overlapping) applied to `w`.
pub fn write_patched(
    w: &mut (dyn Write + Send),
    source: &[u8],
    replacements: &[(Range<usize>, Patch)],
    produce: Produce,
) -> std::io::Result<()> {
    let mut patches = Patches::new(replacements.iter().map(|(_, p)| p), produce);
    let mut pos = 0;
    for (range, patch) in replacements {
        w.write_all(&source[pos..range.start])?;
        patches.write(w, patch)?;
        pos = range.end;
    }
    w.write_all(&source[pos..])
}

/// Writes patches in order; while one deferred patch is written, the next is made (on the other
/// threads), so computing and writing overlap. Two buffers, reused: memory is twice the largest patch.
pub struct Patches<'a> {
    deferred: std::collections::VecDeque<usize>,
    ready: Option<Vec<u8>>,
    spare: Vec<u8>,
    produce: Produce<'a>,
}

impl<'a> Patches<'a> {
    pub fn new<'p>(order: impl Iterator<Item = &'p Patch>, produce: Produce<'a>) -> Patches<'a> {
        let deferred =
            order.filter_map(|p| if let Patch::Deferred(i) = p { Some(*i) } else { None }).collect();
        Patches { deferred, ready: None, spare: Vec::new(), produce }
    }

    /// Writes `patch`, the next in the order given to `new`.
    pub fn write(&mut self, w: &mut (dyn Write + Send), patch: &Patch) -> std::io::Result<()> {
        let Patch::Deferred(i) = patch else {
            let Patch::Bytes(bytes) = patch else { unreachable!() };
            return w.write_all(bytes);
        };
        debug_assert_eq!(self.deferred.front(), Some(i));
        self.deferred.pop_front();
        let current = match self.ready.take() {
            Some(b) => b,
            None => {
                let mut b = std::mem::take(&mut self.spare);
                (self.produce)(*i, &mut b)?;
                b
            }
        };
        let produce = self.produce;
        match self.deferred.front().copied() {
            Some(next) => {
                let mut buf = std::mem::take(&mut self.spare);
                let (written, made) =
                    rayon::join(|| w.write_all(&current), || produce(next, &mut buf).map(|_| buf));
                written?;
                self.ready = Some(made?);
            }
            None => w.write_all(&current)?,
        }
        self.spare = current;
        Ok(())
    }
}

/// A file being written beside its destination; it appears there only on `commit`, and vanishes if
/// dropped before. While it is written it is `.renorm-<destination name>.<random>.tmp`, locked: a
/// process killed before its commit leaves that file, unlocked, and `remove_stale` deletes it.
pub struct AtomicFile {
    temp: tempfile::NamedTempFile,
    dest: std::path::PathBuf,
}

impl AtomicFile {
    pub fn new(dest: &Path) -> Result<AtomicFile> {
        let folder = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let name = dest.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned());
        let temp = tempfile::Builder::new()
            .prefix(&format!(".renorm-{name}."))
            .suffix(".tmp")
            .rand_bytes(TEMP_RAND)
            .tempfile_in(&folder)
            .map_err(|e| Error::io(&folder, e))?;
        // Held until the file is persisted or dropped, or the process dies: tells `remove_stale` that
        // the file is being written. Where locks are not supported, stale files are left alone.
        let _ = temp.as_file().try_lock();
        Ok(AtomicFile { temp, dest: dest.to_path_buf() })
    }

    /// Writes the whole content with `fill`.
    pub fn fill(&mut self, fill: impl FnOnce(&mut (dyn Write + Send)) -> std::io::Result<()>) -> Result<()> {
        let mut w = BufWriter::with_capacity(1 << 20, self.temp.as_file_mut());
        fill(&mut w).and_then(|_| w.flush()).map_err(|e| Error::io(&self.dest, e))
    }

    /// Renames the finished file into place, with the permissions of `like` (the file it derives
    /// from) rather than the private ones of a temporary file.
    pub fn commit(self, like: &Path) -> Result<()> {
        let dest = self.dest;
        if let Ok(meta) = std::fs::metadata(like) {
            self.temp.as_file().set_permissions(meta.permissions()).map_err(|e| Error::io(&dest, e))?;
        }
        self.temp.persist(&dest).map_err(|e| Error::io(&dest, e.error))?;
        Ok(())
    }
}

/// Random characters in an `AtomicFile`'s temporary name.
const TEMP_RAND: usize = 6;

/// Deletes the temporary files that killed runs writing `output` left beside it (its own and those of
/// its data files `<name>.data` and `<name>.<i>.data`), except any a live process still holds.
pub fn remove_stale(output: &Path) {
    let Some(name) = output.file_name().map(|n| n.to_string_lossy().into_owned()) else { return };
    let folder = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(folder) else { return };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(dest) = file
            .strip_prefix(".renorm-")
            .and_then(|f| f.strip_suffix(".tmp"))
            .and_then(|f| f.rsplit_once('.'))
            .filter(|(_, random)| {
                random.len() == TEMP_RAND && random.chars().all(|c| c.is_ascii_alphanumeric())
            })
            .map(|(dest, _)| dest)
        else {
            continue;
        };
        let data_file =
            dest.strip_prefix(name.as_str()).and_then(|rest| rest.strip_prefix('.')).is_some_and(|rest| {
                rest == "data"
                    || rest
                        .strip_suffix(".data")
                        .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
            });
        if dest != name && !data_file {
            continue;
        }
        let path = entry.path();
        let unlocked = std::fs::File::open(&path).is_ok_and(|f| f.try_lock().is_ok());
        if unlocked && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

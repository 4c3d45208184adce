//! Writing the output: the input's bytes with the changed payloads (and any added tensors and nodes),
//! every external data file copied beside the output with its patches, all atomically.

use std::collections::BTreeMap;
use std::io::Write;
use std::ops::Range;
use std::path::Path;
use std::sync::Mutex;

use super::{checks, METADATA_KEY};
use crate::error::{Error, Result};
use crate::onnx::atomic_file::AtomicFile;
use crate::onnx::external::{self, DataFileOut};
use crate::onnx::model::{Model, Payload, Tensor};
use crate::onnx::tensor::FloatType;
use crate::onnx::write::{self, Edit, Patch, Produce};

/// Why a deferred payload was not written: making it failed, or writing it.
#[derive(Debug)]
pub enum ProduceError {
    Make(Error),
    Write(std::io::Error),
}

impl From<Error> for ProduceError {
    fn from(e: Error) -> Self {
        ProduceError::Make(e)
    }
}

impl From<std::io::Error> for ProduceError {
    fn from(e: std::io::Error) -> Self {
        ProduceError::Write(e)
    }
}

/// Makes deferred payload `i` and writes it to the writer given.
pub type Producer<'a> = &'a (dyn Fn(usize, &mut (dyn Write + Send)) -> Result<(), ProduceError> + Sync);

/// Writes the output model (and new external-data files) with the changed payloads. A deferred payload
/// (same length as the original, in raw_data or external data) is made by `produce` when the writer
/// reaches it, and written as it is made, so payloads are never all in memory.
pub fn write_output(
    model: &Model,
    output: &Path,
    changed: Vec<(&Tensor, FloatType, Patch)>,
    extra: Vec<Edit>,
    meta: &str,
    produce: Producer,
) -> Result<()> {
    // The first error of making a payload; the writer sees only that writing stopped.
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let produce_io = |i: usize, w: &mut (dyn Write + Send)| {
        produce(i, w).map_err(|e| match e {
            ProduceError::Write(e) => e,
            ProduceError::Make(e) => {
                failure.lock().expect("not poisoned").get_or_insert(e);
                std::io::Error::other("a payload could not be made")
            }
        })
    };
    // On a worker of the thread pool: the joins that overlap making and writing pieces stay there.
    let written = rayon::scope(|_| write_all(model, output, changed, extra, meta, &produce_io));
    match failure.into_inner().expect("not poisoned") {
        Some(e) => Err(e),
        None => written,
    }
}

/// Nothing deferred: for callers that pass every payload as bytes.
pub fn nothing_deferred(_: usize, _: &mut (dyn Write + Send)) -> Result<(), ProduceError> {
    Err(ProduceError::Make(Error::Usage("internal: no deferred payloads here".to_string())))
}

fn write_all(
    model: &Model,
    output: &Path,
    changed: Vec<(&Tensor, FloatType, Patch)>,
    extra: Vec<Edit>,
    meta: &str,
    produce: Produce,
) -> Result<()> {
    let mut edits: Vec<Edit> = extra;
    let mut deferred: Vec<(Range<usize>, Patch)> = Vec::new();
    let mut external_payloads = Vec::new();
    for (tensor, ty, patch) in changed {
        let len = tensor.element_count().unwrap_or(0) * ty.size();
        match (&tensor.payload, patch) {
            (Payload::External(ext), patch) => external_payloads.push((ext, len, patch)),
            (Payload::Raw(range), Patch::Deferred(i)) => deferred.push((range.clone(), Patch::Deferred(i))),
            (_, Patch::Deferred(i)) => {
                let mut raw = Vec::new();
                write::write_patch(&mut raw, &Patch::Deferred(i), len as u64, produce)
                    .map_err(|e| Error::io(output, e))?;
                edits.extend(write::payload_edit(model, tensor, ty, raw))
            }
            (_, Patch::Bytes(raw)) => edits.extend(write::payload_edit(model, tensor, ty, raw)),
        }
    }
    // Every external tensor moves to the output's data file(s), targets or not.
    let all_external = external_tensors(model);
    let mut locations: Vec<String> = Vec::new();
    for ext in &all_external {
        if !locations.contains(&ext.location) {
            locations.push(ext.location.clone());
        }
    }
    let mut data_files: Vec<DataFileOut> = external::plan_outputs(model, output, &locations)?;
    for ext in &all_external {
        let i = locations.iter().position(|l| *l == ext.location).expect("listed");
        edits.push(Edit {
            range: ext.location_value.clone(),
            bytes: data_files[i].location.clone().into_bytes(),
            nests: ext.location_nests.clone(),
        });
    }
    for (ext, len, patch) in external_payloads {
        let i = locations.iter().position(|l| *l == ext.location).expect("listed");
        data_files[i].patches.push((ext.offset..ext.offset + len as u64, patch));
    }
    for f in &mut data_files {
        f.patches.sort_by_key(|(r, _)| r.start);
        if f.dest.exists() && f.dest.canonicalize().ok() == f.source.canonicalize().ok() {
            return Err(Error::Usage(format!(
                "output data file '{}' would overwrite the input's external data; choose another -o",
                f.dest.display()
            )));
        }
    }
    edits.push(write::metadata_edit(model, METADATA_KEY, meta));
    let mut replacements: Vec<(Range<usize>, Patch)> =
        write::resolve(edits).into_iter().map(|(r, b)| (r, Patch::Bytes(b))).collect();
    replacements.append(&mut deferred);
    replacements.sort_by_key(|(r, _)| (r.start, r.end));

    let mut pending: BTreeMap<usize, AtomicFile> = BTreeMap::new();
    for (i, f) in data_files.iter().enumerate() {
        let mut file = AtomicFile::new(&f.dest)?;
        let len = std::fs::metadata(&f.source).map_err(|e| Error::io(&f.source, e))?.len();
        file.fill(len, |w| external::copy_patched(f, w, produce))?;
        pending.insert(i, file);
    }
    let mut main = AtomicFile::new(output)?;
    let len = write::patched_len(model.bytes.len(), &replacements);
    main.fill(len, |w| write::write_patched(w, &model.bytes, &replacements, produce))?;
    if !pending.is_empty() {
        // An existing output (--force) goes before the new data files come: a kill between the renames
        // must not leave a model reading data files that are not its own.
        match std::fs::remove_file(output) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(output, e)),
            _ => {}
        }
    }
    for (i, file) in pending {
        file.commit(&data_files[i].source)?;
    }
    main.commit(&model.path)
}

/// Every tensor of the main graph stored as external data (initializers and Constant values).
fn external_tensors(model: &Model) -> Vec<&crate::onnx::model::External> {
    checks::named_external_tensors(model).into_iter().map(|(_, e)| e).collect()
}

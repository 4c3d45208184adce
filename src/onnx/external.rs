//! External data: resolving a tensor's `location` safely inside the model's folder, and reading its bytes.

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::onnx::file_bytes::FileBytes;
use crate::onnx::model::{External, Model};
use crate::onnx::write::{write_patch, Patch, Produce};

/// Resolves `location` against the model's folder. Absolute paths, `..`, and symlinks that lead out
/// of the folder are refused: a model must not make renorm read files elsewhere.
pub fn resolve(model_path: &Path, folder: &Path, tensor: &str, location: &str) -> Result<PathBuf> {
    let refuse = |why: &str| {
        Error::model(model_path, format!("tensor '{tensor}': external data location '{location}' {why}"))
    };
    let rel = Path::new(location);
    if location.is_empty() {
        return Err(refuse("is empty"));
    }
    for component in rel.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(refuse("leaves the model's folder ('..' is not allowed)")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(refuse("is absolute; it must be relative to the model's folder"))
            }
        }
    }
    let path = folder.join(rel);
    let real = path.canonicalize().map_err(|e| refuse(&format!("cannot be opened: {e}")))?;
    let real_folder = folder
        .canonicalize()
        .or_else(|_| std::env::current_dir().and_then(|d| d.canonicalize()))
        .map_err(|e| Error::io(folder, e))?;
    if !real.starts_with(&real_folder) {
        return Err(refuse("leads out of the model's folder through a symbolic link"));
    }
    Ok(path)
}

/// Maps exactly `expected` bytes of a tensor's external data read-only: only the pages read become
/// resident, and they are released when the map is dropped.
pub fn map(
    model_path: &Path,
    folder: &Path,
    tensor: &str,
    ext: &External,
    expected: usize,
) -> Result<FileBytes> {
    let (path, file) = open_checked(model_path, folder, tensor, ext, expected)?;
    FileBytes::map_range(&path, &file, ext.offset, expected)
}

/// Opens a tensor's external data file after checking that it holds `expected` bytes at its offset.
fn open_checked(
    model_path: &Path,
    folder: &Path,
    tensor: &str,
    ext: &External,
    expected: usize,
) -> Result<(PathBuf, File)> {
    let path = resolve(model_path, folder, tensor, &ext.location)?;
    let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(&path, e))?;
    let short = |what: String| Error::model(model_path, format!("tensor '{tensor}': {what}"));
    if !meta.is_file() {
        return Err(short(format!("external data location '{}' is not a regular file", ext.location)));
    }
    let size = meta.len();
    let length = ext.length.unwrap_or(size.saturating_sub(ext.offset));
    if length != expected as u64 {
        return Err(short(format!(
            "external data holds {length} bytes but its dims need {expected} (in '{}')",
            ext.location
        )));
    }
    if ext.offset.checked_add(length).is_none_or(|end| end > size) {
        return Err(short(format!(
            "external data '{}' is {size} bytes, too short for offset {} + length {length}",
            ext.location, ext.offset
        )));
    }
    Ok((path, file))
}

/// A new external-data file for the output: the source file copied with some byte ranges replaced.
#[derive(Debug)]
pub struct DataFileOut {
    pub source: PathBuf,
    pub dest: PathBuf,
    /// New location string written into the model (relative to the output's folder).
    pub location: String,
    pub patches: Vec<(std::ops::Range<u64>, Patch)>,
}

/// Names the output's data file(s): `<output file name>.data`, or `.<i>.data` when the input spreads
/// its external data over several files. Offsets stay as they were, so only `location` changes.
pub fn plan_outputs(model: &Model, output: &Path, locations: &[String]) -> Result<Vec<DataFileOut>> {
    let out_name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::Usage(format!("output '{}' has no file name", output.display())))?;
    let out_folder = output.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut files = Vec::new();
    for (i, loc) in locations.iter().enumerate() {
        let location =
            if locations.len() == 1 { format!("{out_name}.data") } else { format!("{out_name}.{i}.data") };
        let source = resolve(&model.path, &model.folder(), "", loc)?;
        files.push(DataFileOut { source, dest: out_folder.join(&location), location, patches: Vec::new() });
    }
    Ok(files)
}

/// Copies `file.source` to `w` with `file.patches` (sorted, non-overlapping) applied, in 1 MiB chunks.
pub fn copy_patched(
    file: &DataFileOut,
    w: &mut (dyn std::io::Write + Send),
    produce: Produce,
) -> std::io::Result<()> {
    let mut src = std::io::BufReader::with_capacity(1 << 20, File::open(&file.source)?);
    let mut pos = 0u64;
    for (range, patch) in &file.patches {
        std::io::copy(&mut (&mut src).take(range.start - pos), w)?;
        write_patch(w, patch, range.end - range.start, produce)?;
        src.seek_relative((range.end - range.start) as i64)?;
        pos = range.end;
    }
    std::io::copy(&mut src, w)?;
    Ok(())
}

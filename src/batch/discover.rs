//! Finding the models of a batch: every `*.onnx` under the input folder, the model-zoo layout, the
//! output folder's own tree left out, and the deterministic shard of each model.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// A model found under the input folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Relative to the input folder.
    pub model: PathBuf,
    /// Model-zoo layout: the folder (relative to the input folder, `.` for the folder itself) that holds
    /// `test_data_set_*` beside this model.
    pub zoo_data: Option<PathBuf>,
}

/// Every `*.onnx` file under `dir` (not following symlinked folders, skipping hidden entries and the
/// `test_data_set_*` folders), sorted by relative path. In a folder holding `test_data_set_*`, the zoo
/// model is `model.onnx`, or the folder's only `.onnx` file.
pub fn discover(dir: &Path) -> Result<Vec<Found>> {
    scan(dir, None)
}

/// Whether `model` (a path relative to the input folder) belongs to shard `k` of `n` (1-based): FNV-1a
/// (64 bit) of its components joined by `/`, modulo `n`, is `k - 1`. The same on every machine and OS.
pub fn in_shard(model: &Path, k: usize, n: usize) -> bool {
    n > 0 && (fnv1a(slash(model).as_bytes()) % n as u64) as usize + 1 == k
}

/// The models `run` prunes: those `discover` finds, minus `out`'s own tree when it lies inside `dir`,
/// minus those outside the shard. Refuses an `out` that is `dir` or holds it.
pub fn plan(dir: &Path, out: &Path, shard: Option<(usize, usize)>) -> Result<Vec<Found>> {
    check_shard(shard)?;
    let root = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    if !root.is_dir() {
        return Err(Error::model(dir, "is not a folder; batch takes a folder of models"));
    }
    let out_abs = absolute(out)?;
    if out_abs == root {
        return Err(Error::Usage(format!(
            "output folder '{}' is the input folder; choose another -o",
            out.display()
        )));
    }
    if root.starts_with(&out_abs) {
        return Err(Error::Usage(format!(
            "input folder '{}' lies inside the output folder '{}'; choose an -o outside it",
            dir.display(),
            out.display()
        )));
    }
    if out_abs.exists() && !out_abs.is_dir() {
        return Err(Error::model(out, "is not a folder; -o takes the output folder"));
    }
    let found = scan(dir, out_abs.starts_with(&root).then_some(out_abs.as_path()))?;
    if found.is_empty() {
        return Err(Error::model(dir, "holds no .onnx model"));
    }
    Ok(match shard {
        Some((k, n)) => found.into_iter().filter(|f| in_shard(&f.model, k, n)).collect(),
        None => found,
    })
}

pub(super) fn check_shard(shard: Option<(usize, usize)>) -> Result<()> {
    match shard {
        Some((k, n)) if n == 0 || k == 0 || k > n => {
            Err(Error::Usage(format!("--shard {k}/{n}: need 1 <= K <= N")))
        }
        _ => Ok(()),
    }
}

pub(super) fn scan(dir: &Path, skip: Option<&Path>) -> Result<Vec<Found>> {
    let root = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let folder = root.join(&rel);
        let io = |e: std::io::Error| Error::io(&dir.join(&rel), e);
        let mut models: Vec<std::ffi::OsString> = Vec::new();
        let mut has_sets = false;
        for entry in std::fs::read_dir(&folder).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let text = name.to_string_lossy();
            if text.starts_with('.') {
                continue;
            }
            // Not followed: the entry's own type, a symlink stays a symlink.
            let kind = entry.file_type().map_err(io)?;
            let path = entry.path();
            if kind.is_dir() {
                if text.starts_with("test_data_set_") {
                    has_sets = true;
                } else if skip != Some(path.as_path()) {
                    stack.push(rel.join(&name));
                }
            } else if is_onnx(&text) && (kind.is_file() || (kind.is_symlink() && path.is_file())) {
                models.push(name);
            }
        }
        models.sort();
        let zoo = match models.iter().find(|n| *n == "model.onnx") {
            Some(m) if has_sets => Some(m.clone()),
            None if has_sets && models.len() == 1 => Some(models[0].clone()),
            _ => None,
        };
        for name in models {
            let data = if rel.as_os_str().is_empty() { PathBuf::from(".") } else { rel.clone() };
            found.push(Found {
                model: rel.join(&name),
                zoo_data: (zoo.as_ref() == Some(&name)).then_some(data),
            });
        }
    }
    found.sort_by(|a, b| a.model.cmp(&b.model));
    Ok(found)
}

pub(super) fn is_onnx(name: &str) -> bool {
    name.len() > 5 && name.get(name.len() - 5..).is_some_and(|e| e.eq_ignore_ascii_case(".onnx"))
}

/// A relative path's components joined by `/` (the same text on every OS).
pub(super) fn slash(p: &Path) -> String {
    p.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// `p` made absolute with symlinks resolved as far as it exists, the rest appended lexically.
pub(super) fn absolute(p: &Path) -> Result<PathBuf> {
    let cwd = std::env::current_dir().map_err(|e| Error::io(Path::new("."), e))?;
    let full = cwd.join(p);
    let mut base = full.as_path();
    let mut rest: Vec<Component> = Vec::new();
    loop {
        if let Ok(c) = base.canonicalize() {
            let mut out = c;
            for comp in rest.into_iter().rev() {
                match comp {
                    Component::CurDir => {}
                    Component::ParentDir => {
                        out.pop();
                    }
                    other => out.push(other.as_os_str()),
                }
            }
            return Ok(out);
        }
        match (base.parent(), base.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last);
                base = parent;
            }
            _ => return Ok(full),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_hash_slash_joined_paths() {
        // FNV-1a 64 of "" is the offset basis; of "a" a published test vector.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let p = Path::new("zoo").join("resnet").join("model.onnx");
        assert_eq!(slash(&p), "zoo/resnet/model.onnx");
        let n = 5;
        assert_eq!((1..=n).filter(|&k| in_shard(&p, k, n)).count(), 1);
        assert!(!in_shard(&p, 1, 0));
    }

    #[test]
    fn onnx_names() {
        assert!(is_onnx("a.onnx") && is_onnx("B.ONNX") && !is_onnx(".onnx") && !is_onnx("a.onnx.data"));
    }
}

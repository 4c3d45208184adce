//! Helpers shared by the fuzz targets: the readers take paths, so each input is written to a file in a
//! scratch folder that lives as long as the fuzzing process.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use renorm::Error;

/// A folder of this process's own that holds nothing but what the current input writes there.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::Builder::new().prefix("renorm-fuzz").tempdir().expect("a scratch folder"))
        .path()
}

/// Writes `bytes` to `name` in the scratch folder and returns its path.
pub fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    std::fs::write(&path, bytes).expect("write the fuzz input");
    path
}

/// What a reader's error must be: a message that names the input file.
pub fn check_error(path: &Path, e: &Error) {
    let message = e.to_string();
    assert!(!message.is_empty());
    assert!(message.contains(&path.display().to_string()), "error does not name the input: {message}");
}

/// What every array a reader returns must satisfy: as many elements as its shape says.
pub fn check_array(a: &renorm::data::RawArray) {
    let count = a.shape.iter().try_fold(1usize, |n, d| n.checked_mul(*d));
    assert_eq!(count, Some(a.data.len()), "shape {:?}", a.shape);
}

//! A model file's bytes: mapped read-only from disk (nothing is copied, and only the pages renorm reads
//! become resident), or owned when the model was built in memory.

use std::fs::File;
use std::ops::Deref;
use std::path::Path;

use crate::error::{Error, Result};

pub enum FileBytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl FileBytes {
    /// Maps `path` read-only. The file must not change while renorm reads it (renorm never writes to
    /// its inputs; another program truncating one under it would make the process fail).
    pub fn map(path: &Path) -> Result<FileBytes> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len == 0 || !file.metadata().is_ok_and(|m| m.is_file()) {
            // Nothing to map (an empty file, a pipe): read it.
            return std::fs::read(path).map(FileBytes::Owned).map_err(|e| Error::io(path, e));
        }
        // SAFETY: the mapping is read-only and private to this process; see the note above on files
        // changed by others while they are read.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Ok(FileBytes::Mapped(map))
    }

    /// `len` bytes of `file` from `offset`, mapped read-only.
    pub fn map_range(path: &Path, file: &File, offset: u64, len: usize) -> Result<FileBytes> {
        if len == 0 {
            return Ok(FileBytes::Owned(Vec::new()));
        }
        // SAFETY: as in `map`.
        let map = unsafe { memmap2::MmapOptions::new().offset(offset).len(len).map(file) }
            .map_err(|e| Error::io(path, e))?;
        Ok(FileBytes::Mapped(map))
    }
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Owned(v) => v,
        }
    }
}

impl std::fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileBytes({} bytes)", self.len())
    }
}

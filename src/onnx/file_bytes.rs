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

    /// Tells the kernel that `range` will not be read again: its pages leave this process's memory
    /// now, on the thread that is done with them, rather than all at once when the mapping is dropped
    /// (tearing down a 400 MB mapping takes longer than 10 ms, all of it after the last write). A hint:
    /// a later read of those bytes finds them again, and errors are ignored.
    pub fn release(&self, range: std::ops::Range<usize>) {
        if let FileBytes::Mapped(m) = self {
            if range.start < range.end && range.end <= m.len() {
                // SAFETY: the mapping is of a file, read-only, and never written: without its pages a
                // read faults the file's same bytes back in (the page cache keeps them), so every
                // slice of it still reads what it read before.
                let _ = unsafe {
                    m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, range.start, range.len())
                };
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_bytes_read_the_same_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bin");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let bytes = FileBytes::map(&path).unwrap();
        assert!(matches!(bytes, FileBytes::Mapped(_)));
        assert_eq!(&bytes[..], &data[..]);
        // Unaligned ranges, the whole file, an empty range and one past the end (ignored).
        for r in [5000..70_001, 0..data.len(), 10..10, 299_000..400_000] {
            bytes.release(r);
            assert_eq!(&bytes[..], &data[..]);
        }
    }
}

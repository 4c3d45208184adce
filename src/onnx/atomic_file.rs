//! Output files written beside their destination and renamed into place: a reader never sees half a
//! file, a failed run leaves nothing behind, and a killed one leaves a temporary file the next run
//! deletes. On ext4 and XFS the content's blocks are reserved in one call before it is written.

use std::io::{BufWriter, Seek, Write};
use std::path::Path;

use crate::error::{Error, Result};

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

    /// Writes the whole content, `len` bytes, with `fill` (more or fewer is an internal error: the
    /// blocks reserved for `len` would not match the file).
    pub fn fill(
        &mut self,
        len: u64,
        fill: impl FnOnce(&mut (dyn Write + Send)) -> std::io::Result<()>,
    ) -> Result<()> {
        preallocate(self.temp.as_file(), len);
        let mut w = BufWriter::with_capacity(1 << 20, self.temp.as_file_mut());
        fill(&mut w).and_then(|_| w.flush()).map_err(|e| Error::io(&self.dest, e))?;
        drop(w);
        let written = self.temp.as_file_mut().stream_position().map_err(|e| Error::io(&self.dest, e))?;
        if written != len {
            return Err(Error::io(
                &self.dest,
                std::io::Error::other(format!("internal: wrote {written} bytes for {len}")),
            ));
        }
        Ok(())
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

/// Reserves `len` bytes of blocks for a file about to be written, where that is one cheap call (ext4,
/// XFS): each write then finds its blocks there instead of reserving them itself, which took about 7 %
/// of the CPU of pruning a large model. The file's size is left alone (it grows as it is written).
/// Elsewhere, or if the call fails, writes reserve their blocks as usual: tmpfs, for one, would zero
/// every page first.
#[cfg(target_os = "linux")]
fn preallocate(file: &std::fs::File, len: u64) {
    if len > 0 && matches!(filesystem(file), Some(EXT4 | XFS)) {
        let _ = rustix::fs::fallocate(file, rustix::fs::FallocateFlags::KEEP_SIZE, 0, len);
    }
}

#[cfg(not(target_os = "linux"))]
fn preallocate(_: &std::fs::File, _: u64) {}

/// `statfs`'s magic numbers of the filesystems `preallocate` reserves blocks on.
#[cfg(target_os = "linux")]
const EXT4: i64 = 0xef53;
#[cfg(target_os = "linux")]
const XFS: i64 = 0x5846_5342;

/// The magic number of the filesystem holding `file`.
#[cfg(target_os = "linux")]
fn filesystem(file: &std::fs::File) -> Option<i64> {
    // `f_type` is an i64 here, 32 bits wide on some targets.
    #[allow(clippy::useless_conversion)]
    rustix::fs::fstatfs(file).ok().map(|s| i64::from(s.f_type))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filled_file_is_exactly_its_content_and_no_more_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        let content: Vec<u8> = (0..3_000_017u32).map(|i| (i * 31 % 253) as u8).collect();
        let mut f = AtomicFile::new(&dest).unwrap();
        f.fill(content.len() as u64, |w| w.write_all(&content)).unwrap();
        f.commit(&dest).unwrap();
        assert!(std::fs::read(&dest).unwrap() == content);
        #[cfg(target_os = "linux")]
        {
            // Nothing reserved beyond the end (a block and an extent's slack at most) on ext4, where
            // blocks are reserved first and nothing else reserves them ahead (XFS may, for a while).
            use std::os::unix::fs::MetadataExt;
            let file = std::fs::File::open(&dest).unwrap();
            let allocated = file.metadata().unwrap().blocks() * 512;
            if filesystem(&file) == Some(EXT4) {
                assert!(allocated < content.len() as u64 + (64 << 10), "{allocated} bytes allocated");
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn blocks_are_reserved_before_writing_on_ext4() {
        use std::os::unix::fs::MetadataExt;
        let file = tempfile::tempfile().unwrap();
        preallocate(&file, 1 << 20);
        let meta = file.metadata().unwrap();
        assert_eq!(meta.len(), 0, "the size is left alone");
        if filesystem(&file) == Some(EXT4) {
            assert!(meta.blocks() * 512 >= 1 << 20, "{} bytes reserved", meta.blocks() * 512);
        }
    }

    #[test]
    fn filling_more_or_less_than_announced_fails_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        for len in [9, 11] {
            let mut f = AtomicFile::new(&dest).unwrap();
            let e = f.fill(len, |w| w.write_all(b"0123456789")).unwrap_err().to_string();
            assert!(e.contains(&format!("wrote 10 bytes for {len}")), "{e}");
            drop(f);
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        }
    }
}

//! A model's size on disk, raw and zstd-compressed (with its external data files): what unstructured
//! zeros buy on a dense runtime is a smaller download, not speed.
//!
//! Compressing a 400 MB model takes seconds, many times what pruning it takes, so the compressed size of
//! a file over `EXACT_LIMIT` is estimated: `SAMPLES` blocks of `BLOCK` bytes, evenly spaced, are
//! compressed one by one and their ratio applied to the whole file. Weight payloads are statistically
//! alike along a file, so the estimate is within 2 % of `zstd FILE` (see the tests).

use std::io::{Read, Write};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::onnx::model::{Model, Payload};

/// zstd's default level: what `zstd FILE` gives.
pub const ZSTD_LEVEL: i32 = 3;
/// Files up to this size are compressed whole.
pub const EXACT_LIMIT: u64 = 16 << 20;
/// Blocks compressed to estimate a larger file's compressed size, and their size.
const SAMPLES: u64 = 24;
const BLOCK: u64 = 64 << 10;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    /// Bytes of the model file and its external data files.
    pub raw: u64,
    /// The same bytes compressed with zstd (level 3), file by file.
    pub zstd: u64,
    /// `zstd` is estimated from samples (a file over `EXACT_LIMIT`).
    #[serde(default)]
    pub estimated: bool,
}

/// Sizes before and after pruning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeChange {
    pub before: Sizes,
    pub after: Sizes,
}

/// The sizes of the model at `path` and of the external data files it names.
pub fn measure(path: &Path) -> Result<Sizes> {
    let model = Model::open(path)?;
    let mut files: Vec<PathBuf> = vec![path.to_path_buf()];
    let folder = path.parent().unwrap_or(Path::new("."));
    let constants =
        model.graph.nodes.iter().flat_map(|n| n.attributes.iter().filter_map(|a| a.tensor.as_ref()));
    for t in model.graph.initializers.iter().chain(constants) {
        if let Payload::External(e) = &t.payload {
            let f = folder.join(&e.location);
            if !files.contains(&f) {
                files.push(f);
            }
        }
    }
    let mut sizes = Sizes::default();
    for f in files {
        let s = file_sizes(&f)?;
        sizes.raw += s.raw;
        sizes.zstd += s.zstd;
        sizes.estimated |= s.estimated;
    }
    Ok(sizes)
}

fn file_sizes(path: &Path) -> Result<Sizes> {
    let io = |e: std::io::Error| Error::io(path, e);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len > EXACT_LIMIT {
        return sampled(path, len);
    }
    let mut counter = Counter(0);
    let mut encoder = zstd::stream::Encoder::new(&mut counter, ZSTD_LEVEL).map_err(io)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut raw = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        raw += n as u64;
        encoder.write_all(&buf[..n]).map_err(io)?;
    }
    encoder.finish().map_err(io)?;
    Ok(Sizes { raw, zstd: counter.0, estimated: false })
}

/// The compressed size of a large file, estimated from `SAMPLES` evenly spaced blocks.
fn sampled(path: &Path, len: u64) -> Result<Sizes> {
    let compressed: Vec<u64> = (0..SAMPLES)
        .into_par_iter()
        .map(|i| {
            let mut file = std::fs::File::open(path)?;
            file.seek(SeekFrom::Start(i * (len - BLOCK) / (SAMPLES - 1)))?;
            let mut block = vec![0u8; BLOCK as usize];
            file.read_exact(&mut block)?;
            Ok(zstd::bulk::compress(&block, ZSTD_LEVEL)?.len() as u64)
        })
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io(path, e))?;
    let ratio = compressed.iter().sum::<u64>() as f64 / (SAMPLES * BLOCK) as f64;
    Ok(Sizes { raw: len, zstd: (ratio * len as f64).round() as u64, estimated: true })
}

/// A writer that only counts bytes.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bytes in human units (B, KB, MB, GB; powers of 1000, as file managers show them).
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..=999 => format!("{bytes} B"),
        1_000..=999_999 => format!("{:.1} KB", b / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} MB", b / 1e6),
        _ => format!("{:.2} GB", b / 1e9),
    }
}

impl SizeChange {
    /// One line: raw and compressed sizes before → after, and what compression saves now.
    pub fn summary(&self) -> String {
        let saved = if self.before.zstd > 0 {
            100.0 * (1.0 - self.after.zstd as f64 / self.before.zstd as f64)
        } else {
            0.0
        };
        let about = if self.before.estimated || self.after.estimated { "about " } else { "" };
        format!(
            "size {} -> {} raw, {about}{} -> {} zstd ({saved:.0}% smaller compressed)",
            human(self.before.raw),
            human(self.after.raw),
            human(self.before.zstd),
            human(self.after.zstd)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 20 MiB file of pruned-looking weights: layers of different sparsity, zeros, small floats.
    fn weights_file(path: &Path) {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut bytes = Vec::with_capacity(20 << 20);
        for layer in 0..5u64 {
            for _ in 0..(1 << 20) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let pruned = x % 10 < 3 + layer;
                let v = if pruned { 0.0 } else { ((x >> 11) as f32 / (1u64 << 53) as f32 - 0.5) * 0.1 };
                bytes.extend(v.to_le_bytes());
            }
        }
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn sampled_size_is_close_to_the_whole_file_compressed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.bin");
        weights_file(&path);
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len > EXACT_LIMIT);
        let estimate = file_sizes(&path).unwrap();
        assert!(estimate.estimated);
        assert_eq!(estimate.raw, len);
        let exact = zstd::stream::encode_all(std::fs::File::open(&path).unwrap(), ZSTD_LEVEL).unwrap().len();
        let error = estimate.zstd as f64 / exact as f64 - 1.0;
        assert!(error.abs() < 0.02, "estimate {} vs {exact}: {:.2}%", estimate.zstd, 100.0 * error);
    }
}

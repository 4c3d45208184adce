//! A model's size on disk, raw and zstd-compressed (with its external data files): what unstructured
//! zeros buy on a dense runtime is a smaller download, not speed.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::onnx::model::{Model, Payload};

/// zstd's default level: what `zstd FILE` gives.
pub const ZSTD_LEVEL: i32 = 3;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    /// Bytes of the model file and its external data files.
    pub raw: u64,
    /// The same bytes compressed with zstd (level 3), file by file.
    pub zstd: u64,
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
    }
    Ok(sizes)
}

fn file_sizes(path: &Path) -> Result<Sizes> {
    let io = |e: std::io::Error| Error::io(path, e);
    let mut file = std::fs::File::open(path).map_err(io)?;
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
    Ok(Sizes { raw, zstd: counter.0 })
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
        format!(
            "size {} -> {} raw, {} -> {} zstd ({saved:.0}% smaller compressed)",
            human(self.before.raw),
            human(self.after.raw),
            human(self.before.zstd),
            human(self.after.zstd)
        )
    }
}

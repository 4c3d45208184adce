//! Sample data fitted to a model's inputs (design.md §6): read by [`crate::data`], checked against the
//! declared input shapes, and converted only when the user asks (`--scale`, `--add-channel-axis`).

use std::path::{Path, PathBuf};

use crate::data::{self, RawArray};
use crate::error::{Error, Result};
use crate::onnx::model::{Model, ValueInfo};
use crate::runtime::Array;

/// How to read and convert the data.
#[derive(Debug, Clone, Default)]
pub struct SampleOptions {
    /// Use only the first N samples.
    pub limit: Option<usize>,
    /// Divide every value by this (the only way integer data such as uint8 images becomes float).
    pub scale: Option<f32>,
    /// Insert a size-1 axis after the samples axis when the model wants one more axis than the data has.
    pub add_channel_axis: bool,
}

/// One run's inputs (in model input order) and, from ONNX test-data folders, its reference outputs.
#[derive(Debug, Clone)]
pub struct Set {
    pub inputs: Vec<Array>,
    pub references: Vec<Array>,
}

/// The samples to run. With `batchable`, there is one set whose axis 0 counts samples and may be split
/// into batches; otherwise every set runs whole (ONNX `test_data_set_*` folders).
#[derive(Debug, Clone)]
pub struct Samples {
    pub sets: Vec<Set>,
    pub batchable: bool,
    pub count: usize,
    /// What was converted, for the report ("uint8 → float32, divided by 255", …).
    pub conversions: Vec<String>,
}

/// The inputs a caller feeds: graph inputs that are not initializers.
pub fn model_inputs(model: &Model) -> Vec<ValueInfo> {
    let inits: std::collections::HashSet<&str> =
        model.graph.initializers.iter().map(|t| t.name.as_str()).collect();
    model.graph.input_infos.iter().filter(|i| !inits.contains(i.name.as_str())).cloned().collect()
}

/// Reads `path` (.npy, .npz, IDX, or a folder of `test_data_set_*/input_*.pb`) for `inputs`.
pub fn load(path: &Path, inputs: &[ValueInfo], opts: &SampleOptions) -> Result<Samples> {
    for i in inputs {
        if i.elem_type != 0 && i.elem_type != 1 {
            return Err(Error::Usage(format!(
                "model input '{}' is {}; validation feeds float32 inputs only",
                i.name,
                crate::onnx::tensor::type_name(i.elem_type)
            )));
        }
    }
    let mut conversions = Vec::new();
    if path.is_dir() {
        let mut sets = Vec::new();
        for dir in test_data_sets(path)? {
            let arrays = read_pbs(&dir, "input")?;
            if arrays.len() != inputs.len() {
                return Err(Error::model(
                    &dir,
                    format!("holds {} input_*.pb files, the model has {} inputs", arrays.len(), inputs.len()),
                ));
            }
            let fitted = arrays
                .into_iter()
                .zip(inputs)
                .map(|((_, raw), info)| fit(&dir, raw, info, false, opts, &mut conversions))
                .collect::<Result<Vec<_>>>()?;
            let references = read_pbs(&dir, "output")?.into_iter().map(|(_, r)| as_array(r)).collect();
            sets.push(Set { inputs: fitted, references });
        }
        sets.truncate(opts.limit.unwrap_or(usize::MAX));
        conversions.dedup();
        return Ok(Samples { count: sets.len(), sets, batchable: false, conversions });
    }
    let named: Vec<(String, RawArray)> = if is_npz(path)? {
        data::read_npz(path)?
    } else if inputs.len() == 1 {
        let raw = if is_npy(path)? { data::read_npy(path)? } else { data::read_idx(path)? };
        vec![(inputs[0].name.clone(), raw)]
    } else {
        return Err(Error::model(
            path,
            format!(
                "holds one array, the model has {} inputs; give an .npz with one array per input name",
                inputs.len()
            ),
        ));
    };
    let mut fitted = Vec::new();
    for info in inputs {
        let Some((_, raw)) = named.iter().find(|(n, _)| *n == info.name) else {
            let have: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
            return Err(Error::model(
                path,
                format!("has no array for model input '{}' (it has: {})", info.name, have.join(", ")),
            ));
        };
        fitted.push(fit(path, raw.clone(), info, true, opts, &mut conversions)?);
    }
    let count = fitted[0].shape[0];
    if let Some(a) = fitted.iter().zip(inputs).find(|(a, _)| a.shape[0] != count) {
        return Err(Error::model(
            path,
            format!("input '{}' has {} samples, '{}' has {count}", a.1.name, a.0.shape[0], inputs[0].name),
        ));
    }
    let count = count.min(opts.limit.unwrap_or(usize::MAX));
    for a in &mut fitted {
        let per: usize = a.shape[1..].iter().product();
        a.shape[0] = count;
        a.data.truncate(count * per);
    }
    conversions.dedup();
    Ok(Samples {
        sets: vec![Set { inputs: fitted, references: Vec::new() }],
        batchable: true,
        count,
        conversions,
    })
}

/// Checks (and, when asked, converts) one array for model input `info`. With `batched`, axis 0 of the
/// data counts samples; the declared axis 0 (usually a symbolic batch) is not compared.
fn fit(
    path: &Path,
    raw: RawArray,
    info: &ValueInfo,
    batched: bool,
    opts: &SampleOptions,
    conversions: &mut Vec<String>,
) -> Result<Array> {
    let integer = raw.is_integer();
    let mut array = Array { shape: raw.shape, data: raw.data };
    if batched && array.shape.is_empty() {
        return Err(Error::model(path, "holds a scalar; the first axis must count samples"));
    }
    match opts.scale {
        Some(s) => {
            array.data.iter_mut().for_each(|v| *v /= s);
            conversions.push(format!("{} → float32, divided by {s}", raw.dtype));
        }
        None if integer => {
            return Err(Error::model(
                path,
                format!(
                    "holds {} data but model input '{}' is float; pass --scale 255 (or another divisor) to convert it",
                    raw.dtype, info.name
                ),
            ));
        }
        None => {}
    }
    let Some(dims) = &info.dims else { return Ok(array) };
    let wants = |shape: &[usize]| {
        shape.len() == dims.len()
            && shape
                .iter()
                .zip(dims)
                .enumerate()
                .all(|(k, (s, d))| (batched && k == 0) || d.is_none_or(|d| d == *s as u64))
    };
    if !wants(&array.shape) {
        let mut with_axis = array.shape.clone();
        with_axis.insert(1.min(with_axis.len()), 1);
        if wants(&with_axis) && opts.add_channel_axis {
            conversions.push("added a size-1 channel axis".to_string());
            array.shape = with_axis;
        } else {
            let hint =
                if wants(&with_axis) { "; pass --add-channel-axis to insert the size-1 axis" } else { "" };
            return Err(Error::model(
                path,
                format!(
                    "data shape {:?} does not fit model input '{}' of shape {}{hint}",
                    array.shape,
                    info.name,
                    show_dims(dims)
                ),
            ));
        }
    }
    Ok(array)
}

fn as_array(raw: RawArray) -> Array {
    Array { shape: raw.shape, data: raw.data }
}

/// "[batch, 1, 28, 28]" style, with "?" for symbolic dims.
pub fn show_dims(dims: &[Option<u64>]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| d.map_or("?".to_string(), |d| d.to_string())).collect();
    format!("[{}]", parts.join(", "))
}

/// `test_data_set_*` folders of `path` in name order, or `path` itself when it holds `input_0.pb`.
fn test_data_sets(path: &Path) -> Result<Vec<PathBuf>> {
    if path.join("input_0.pb").is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut sets: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::io(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("test_data_set_"))
        })
        .collect();
    sets.sort();
    if sets.is_empty() {
        return Err(Error::model(path, "is a folder without test_data_set_*/input_*.pb files"));
    }
    Ok(sets)
}

/// `<prefix>_0.pb`, `<prefix>_1.pb`, … while they exist.
fn read_pbs(dir: &Path, prefix: &str) -> Result<Vec<(String, RawArray)>> {
    let mut out = Vec::new();
    loop {
        let path = dir.join(format!("{prefix}_{}.pb", out.len()));
        if !path.is_file() {
            return Ok(out);
        }
        out.push(data::read_tensor_pb(&path)?);
    }
}

fn magic(path: &Path, want: &[u8]) -> Result<bool> {
    use std::io::Read;
    let mut head = vec![0u8; want.len()];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let n = f.read(&mut head).map_err(|e| Error::io(path, e))?;
    Ok(n == want.len() && head == want)
}

fn is_npy(path: &Path) -> Result<bool> {
    magic(path, b"\x93NUMPY")
}

fn is_npz(path: &Path) -> Result<bool> {
    magic(path, b"PK\x03\x04")
}

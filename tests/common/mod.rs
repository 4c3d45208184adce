//! Shared test helpers: build ONNX models with onnx-protobuf (a decoder independent of renorm's own
//! wire-level reader), read them back, and compute masks and scales the plain way.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use half::{bf16, f16};
pub use onnx_protobuf as pb;
use pb::Message;

pub const FLOAT: i32 = 1;
pub const FLOAT16: i32 = 10;
pub const DOUBLE: i32 = 11;
pub const BFLOAT16: i32 = 16;

/// How a test tensor stores its elements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Form {
    Raw,
    Typed,
}

/// A tensor of `data_type` (FLOAT, FLOAT16, DOUBLE or BFLOAT16) holding `values`.
pub fn tensor(name: &str, dims: &[usize], values: &[f32], data_type: i32, form: Form) -> pb::TensorProto {
    assert_eq!(dims.iter().product::<usize>(), values.len(), "test tensor {name}");
    let mut t = pb::TensorProto::new();
    t.name = name.to_string();
    t.dims = dims.iter().map(|d| *d as i64).collect();
    t.data_type = data_type;
    match (data_type, form) {
        (FLOAT, Form::Raw) => t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        (FLOAT, Form::Typed) => t.float_data = values.to_vec(),
        (DOUBLE, Form::Raw) => t.raw_data = values.iter().flat_map(|v| f64::from(*v).to_le_bytes()).collect(),
        (DOUBLE, Form::Typed) => t.double_data = values.iter().map(|v| f64::from(*v)).collect(),
        (FLOAT16, Form::Raw) => {
            t.raw_data = values.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect()
        }
        (FLOAT16, Form::Typed) => {
            t.int32_data = values.iter().map(|v| f16::from_f32(*v).to_bits() as i32).collect()
        }
        (BFLOAT16, Form::Raw) => {
            t.raw_data = values.iter().flat_map(|v| bf16::from_f32(*v).to_le_bytes()).collect()
        }
        (BFLOAT16, Form::Typed) => {
            t.int32_data = values.iter().map(|v| bf16::from_f32(*v).to_bits() as i32).collect()
        }
        _ => panic!("unsupported test tensor type {data_type}"),
    }
    t
}

pub fn f32_tensor(name: &str, dims: &[usize], values: &[f32]) -> pb::TensorProto {
    tensor(name, dims, values, FLOAT, Form::Raw)
}

/// Decodes a tensor's elements to f64, whatever its type and storage (external data resolved in `folder`).
pub fn values(t: &pb::TensorProto, folder: &Path) -> Vec<f64> {
    let raw: Vec<u8> = if !t.external_data.is_empty() {
        let get = |k: &str| t.external_data.iter().find(|e| e.key == k).map(|e| e.value.clone());
        let data = std::fs::read(folder.join(get("location").unwrap())).unwrap();
        let off: usize = get("offset").map(|v| v.parse().unwrap()).unwrap_or(0);
        let len: usize = get("length").map(|v| v.parse().unwrap()).unwrap_or(data.len() - off);
        data[off..off + len].to_vec()
    } else {
        t.raw_data.clone()
    };
    let typed = raw.is_empty();
    match t.data_type {
        FLOAT if typed => t.float_data.iter().map(|v| f64::from(*v)).collect(),
        FLOAT => raw.chunks(4).map(|b| f64::from(f32::from_le_bytes(b.try_into().unwrap()))).collect(),
        DOUBLE if typed => t.double_data.clone(),
        DOUBLE => raw.chunks(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect(),
        FLOAT16 if typed => {
            t.int32_data.iter().map(|v| f64::from(f16::from_bits(*v as u16).to_f32())).collect()
        }
        FLOAT16 => raw.chunks(2).map(|b| f64::from(f16::from_le_bytes([b[0], b[1]]).to_f32())).collect(),
        BFLOAT16 if typed => {
            t.int32_data.iter().map(|v| f64::from(bf16::from_bits(*v as u16).to_f32())).collect()
        }
        BFLOAT16 => raw.chunks(2).map(|b| f64::from(bf16::from_le_bytes([b[0], b[1]]).to_f32())).collect(),
        other => panic!("values of type {other}"),
    }
}

pub fn attr_int(name: &str, v: i64) -> pb::AttributeProto {
    let mut a = pb::AttributeProto::new();
    a.name = name.into();
    a.type_ = pb::attribute_proto::AttributeType::INT.into();
    a.i = v;
    a
}

pub fn attr_ints(name: &str, v: &[i64]) -> pb::AttributeProto {
    let mut a = pb::AttributeProto::new();
    a.name = name.into();
    a.type_ = pb::attribute_proto::AttributeType::INTS.into();
    a.ints = v.to_vec();
    a
}

pub fn attr_float(name: &str, v: f32) -> pb::AttributeProto {
    let mut a = pb::AttributeProto::new();
    a.name = name.into();
    a.type_ = pb::attribute_proto::AttributeType::FLOAT.into();
    a.f = v;
    a
}

pub fn attr_tensor(name: &str, t: pb::TensorProto) -> pb::AttributeProto {
    let mut a = pb::AttributeProto::new();
    a.name = name.into();
    a.type_ = pb::attribute_proto::AttributeType::TENSOR.into();
    a.t = Some(t).into();
    a
}

pub fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    let mut n = pb::NodeProto::new();
    n.op_type = op.into();
    n.name = name.into();
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = outputs.iter().map(|s| s.to_string()).collect();
    n.attribute = attrs;
    n
}

/// A Constant node producing `output` from tensor `t`.
pub fn constant(output: &str, t: pb::TensorProto) -> pb::NodeProto {
    node("Constant", &format!("const_{output}"), &[], &[output], vec![attr_tensor("value", t)])
}

/// A float value_info; `None` dims are symbolic (`batch`).
pub fn value_info(name: &str, dims: &[Option<usize>], elem_type: i32) -> pb::ValueInfoProto {
    let mut shape = pb::TensorShapeProto::new();
    for d in dims {
        let mut dim = pb::tensor_shape_proto::Dimension::new();
        match d {
            Some(v) => dim.set_dim_value(*v as i64),
            None => dim.set_dim_param("batch".into()),
        }
        shape.dim.push(dim);
    }
    let mut tt = pb::type_proto::Tensor::new();
    tt.elem_type = elem_type;
    tt.shape = Some(shape).into();
    let mut ty = pb::TypeProto::new();
    ty.set_tensor_type(tt);
    let mut v = pb::ValueInfoProto::new();
    v.name = name.into();
    v.type_ = Some(ty).into();
    v
}

pub fn model(
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
) -> pb::ModelProto {
    let mut g = pb::GraphProto::new();
    g.name = "test".into();
    g.node = nodes;
    g.initializer = initializers;
    g.input = inputs;
    g.output = outputs;
    let mut opset = pb::OperatorSetIdProto::new();
    opset.version = 17;
    let mut m = pb::ModelProto::new();
    m.ir_version = 8;
    m.producer_name = "renorm-tests".into();
    m.opset_import = vec![opset];
    m.graph = Some(g).into();
    m
}

pub fn save(m: &pb::ModelProto, path: &Path) {
    std::fs::write(path, m.write_to_bytes().unwrap()).unwrap();
}

pub fn load(path: &Path) -> pb::ModelProto {
    pb::ModelProto::parse_from_bytes(&std::fs::read(path).unwrap()).unwrap()
}

/// Deterministic pseudo-random values in (-1, 1), with some exact ties and zeros mixed in.
pub fn weights(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|i| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let v = ((state >> 33) as f64 / (1u64 << 31) as f64 * 2.0 - 1.0) as f32;
            match i % 17 {
                3 => 0.0,
                7 => 0.25, // ties across the tensor
                11 => -0.25,
                _ => (v * 64.0).round() / 64.0, // few distinct magnitudes: more ties
            }
        })
        .collect()
}

/// Independent reference: indices pruned when the `k` smallest |w| of `vals` go, ties pruning the
/// higher index first. A plain sort, not the selection the library uses.
pub fn reference_pruned(vals: &[f64], k: usize) -> Vec<bool> {
    let mut order: Vec<usize> = (0..vals.len()).collect();
    order.sort_by(|&a, &b| vals[a].abs().partial_cmp(&vals[b].abs()).unwrap().then(b.cmp(&a)));
    let mut pruned = vec![false; vals.len()];
    for &i in order.iter().take(k) {
        pruned[i] = true;
    }
    pruned
}

/// round(s·n), ties to even (Python's round, as torch.nn.utils.prune uses).
pub fn torch_count(s: f64, n: usize) -> usize {
    let x = s * n as f64;
    let r = x.round();
    let r = if (x - x.trunc()).abs() == 0.5 && (r as i64) % 2 != 0 { r - 1.0 } else { r };
    r as usize
}

pub fn renorm_bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_renorm"))
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The 1 000 bundled MNIST test images, (1000, 1, 28, 28) in [0, 1].
pub fn mnist_images() -> renorm::runtime::Array {
    let x: ndarray::Array4<f32> = ndarray_npy::read_npy(fixtures().join("mnist_test_1000.npy")).unwrap();
    renorm::runtime::Array { shape: x.shape().to_vec(), data: x.iter().copied().collect() }
}

/// Their labels.
pub fn mnist_labels() -> Vec<i64> {
    let y: ndarray::Array1<i64> =
        ndarray_npy::read_npy(fixtures().join("mnist_test_1000_labels.npy")).unwrap();
    y.to_vec()
}

/// Independent reference of design.md §2: for each output unit, the flat indices of its fan-in, written
/// straight from the table (not from the library's layout arithmetic).
pub fn reference_units(op: &str, shape: &[usize], trans_b: bool, group: usize) -> Vec<Vec<usize>> {
    match op {
        "Gemm" if trans_b => {
            let (n, k) = (shape[0], shape[1]);
            (0..n).map(|j| (0..k).map(|kk| j * k + kk).collect()).collect()
        }
        "Gemm" => {
            let (k, n) = (shape[0], shape[1]);
            (0..n).map(|j| (0..k).map(|kk| kk * n + j).collect()).collect()
        }
        "MatMul" if shape.len() == 1 => vec![(0..shape[0]).collect()],
        "MatMul" => {
            let (k, n) = (shape[shape.len() - 2], shape[shape.len() - 1]);
            let batch: usize = shape[..shape.len() - 2].iter().product();
            let mut units = Vec::new();
            for b in 0..batch {
                for j in 0..n {
                    units.push((0..k).map(|kk| b * k * n + kk * n + j).collect());
                }
            }
            units
        }
        "Conv" => {
            let m = shape[0];
            let fan: usize = shape[1..].iter().product();
            (0..m).map(|j| (j * fan..(j + 1) * fan).collect()).collect()
        }
        "ConvTranspose" => {
            let (c, mg) = (shape[0], shape[1]);
            let kk: usize = shape[2..].iter().product();
            let cg = c / group;
            let mut units = Vec::new();
            for j in 0..group * mg {
                let (grp, i) = (j / mg, j % mg);
                let mut idx = Vec::new();
                for ci in grp * cg..(grp + 1) * cg {
                    for p in 0..kk {
                        idx.push(ci * mg * kk + i * kk + p);
                    }
                }
                units.push(idx);
            }
            units
        }
        other => panic!("no reference for {other}"),
    }
}

/// Checks that `after` is `before` pruned per unit at sparsity `s` (round(s·fan-in) smallest of each
/// unit) and rescaled by the l2 (or l1, or no) ratio of each unit. `tol` is relative, for the stored type.
pub fn assert_unit_pruned(
    before: &[f64],
    after: &[f64],
    units: &[Vec<usize>],
    s: f64,
    renorm: &str,
    tol: f64,
) {
    for (u, idx) in units.iter().enumerate() {
        let w: Vec<f64> = idx.iter().map(|&i| before[i]).collect();
        let pruned = reference_pruned(&w, torch_count(s, w.len()));
        assert_rescaled(&w, &pruned, &idx.iter().map(|&i| after[i]).collect::<Vec<_>>(), renorm, tol, u);
    }
}

/// Checks one unit: pruned entries are exactly zero, kept ones equal w · scale(renorm).
pub fn assert_rescaled(w: &[f64], pruned: &[bool], after: &[f64], renorm: &str, tol: f64, unit: usize) {
    let norm = |p: f64, keep_only: bool| -> f64 {
        w.iter()
            .zip(pruned)
            .filter(|(_, pr)| !keep_only || !**pr)
            .map(|(v, _)| v.abs().powf(p))
            .sum::<f64>()
            .powf(1.0 / p)
    };
    let scale = match renorm {
        "none" => 1.0,
        "l1" => norm(1.0, false) / norm(1.0, true),
        "l2" => norm(2.0, false) / norm(2.0, true),
        other => panic!("renorm {other}"),
    };
    for (i, ((&b, &pr), &a)) in w.iter().zip(pruned).zip(after).enumerate() {
        if pr {
            assert_eq!(a, 0.0, "unit {unit}, element {i}: pruned weight {b} is {a}, not 0");
        } else if scale.is_finite() {
            let want = b * scale;
            assert!(
                (a - want).abs() <= tol * want.abs().max(1e-30),
                "unit {unit}, element {i}: kept weight {b} became {a}, want {want} (scale {scale})"
            );
        }
    }
}

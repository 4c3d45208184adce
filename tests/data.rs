//! Sample-data readers: .npy (any numeric dtype), .npz, IDX (plain and gzip), TensorProto files, labels,
//! and hostile files (truncated, lying sizes) that must give an error, never a panic or a huge allocation.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::*;
use ndarray::{arr1, Array2, Array3};
use ndarray_npy::{write_npy, NpzWriter};
use pb::Message;
use renorm::data::{read_idx, read_labels, read_npy, read_npz, read_tensor_pb};

fn idx(dims: &[u32], type_code: u8, data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, type_code, dims.len() as u8];
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.extend(data);
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn npy_of_every_common_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.npy");
    write_npy(&p, &Array2::from_shape_vec((2, 3), vec![0.5f32, -1.0, 2.0, 3.0, 4.0, 5.0]).unwrap()).unwrap();
    let a = read_npy(&p).unwrap();
    assert_eq!(
        (a.shape, a.data, a.dtype.as_str()),
        (vec![2, 3], vec![0.5, -1.0, 2.0, 3.0, 4.0, 5.0], "float32")
    );
    write_npy(&p, &arr1(&[1.25f64, -2.5])).unwrap();
    assert_eq!(read_npy(&p).unwrap().data, [1.25, -2.5]);
    write_npy(&p, &Array3::from_shape_vec((1, 2, 2), vec![0u8, 128, 255, 7]).unwrap()).unwrap();
    let a = read_npy(&p).unwrap();
    assert!(a.is_integer());
    assert_eq!((a.data, a.dtype.as_str()), (vec![0.0, 128.0, 255.0, 7.0], "uint8"));
    write_npy(&p, &arr1(&[3i64, -9])).unwrap();
    assert_eq!(read_npy(&p).unwrap().data, [3.0, -9.0]);
    // The bundled fixtures.
    let x = read_npy(&fixtures().join("mnist_test_1000.npy")).unwrap();
    assert_eq!((x.shape, x.dtype.as_str()), (vec![1000, 1, 28, 28], "float32"));
    assert!(x.data.iter().all(|v| (0.0..=1.0).contains(v)));
    let y = read_labels(&fixtures().join("mnist_test_1000_labels.npy")).unwrap();
    assert_eq!(y.len(), 1000);
    assert!(y.iter().all(|l| (0..10).contains(l)));
}

#[test]
fn npz_arrays_by_name_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.npz");
    let mut w = NpzWriter::new(std::fs::File::create(&p).unwrap());
    w.add_array("image", &Array2::<f32>::ones((2, 2))).unwrap();
    w.add_array("mask", &arr1(&[1u8, 0])).unwrap();
    w.finish().unwrap();
    let a = read_npz(&p).unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!((a[0].0.as_str(), a[0].1.data.as_slice()), ("image", &[1.0f32; 4][..]));
    assert_eq!((a[1].0.as_str(), a[1].1.dtype.as_str()), ("mask", "uint8"));
}

#[test]
fn idx_plain_and_gzipped_and_the_real_mnist_labels() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = idx(&[2, 2], 0x08, &[1, 2, 3, 250]);
    for (name, b) in [("plain", bytes.clone()), ("gz", gzip(&bytes))] {
        let a = read_idx(&file(dir.path(), name, &b)).unwrap();
        assert_eq!((a.shape, a.data, a.dtype.as_str()), (vec![2, 2], vec![1.0, 2.0, 3.0, 250.0], "uint8"));
    }
    let f = idx(&[2], 0x0D, &[0x3f, 0x80, 0, 0, 0xc0, 0, 0, 0]);
    assert_eq!(read_idx(&file(dir.path(), "f", &f)).unwrap().data, [1.0, -2.0]);
    let labels = read_labels(&file(dir.path(), "l", &gzip(&idx(&[3], 0x08, &[7, 0, 9])))).unwrap();
    assert_eq!(labels, [7, 0, 9]);
    let shared =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/mnist/t10k-labels-idx1-ubyte.gz");
    if shared.is_file() {
        assert_eq!(read_labels(&shared).unwrap().len(), 10000);
    }
}

#[test]
fn tensor_pb_in_raw_and_typed_forms() {
    let dir = tempfile::tempdir().unwrap();
    let save_pb = |name: &str, t: &pb::TensorProto| file(dir.path(), name, &t.write_to_bytes().unwrap());
    let raw = tensor("x", &[2, 2], &[1.0, -2.0, 0.5, 4.0], FLOAT, Form::Raw);
    let (name, a) = read_tensor_pb(&save_pb("raw.pb", &raw)).unwrap();
    assert_eq!((name.as_str(), a.shape, a.data), ("x", vec![2, 2], vec![1.0, -2.0, 0.5, 4.0]));
    let typed = tensor("y", &[3], &[1.0, 2.0, 3.0], FLOAT, Form::Typed);
    assert_eq!(read_tensor_pb(&save_pb("typed.pb", &typed)).unwrap().1.data, [1.0, 2.0, 3.0]);
    let half = tensor("h", &[2], &[0.5, -1.5], FLOAT16, Form::Raw);
    assert_eq!(read_tensor_pb(&save_pb("half.pb", &half)).unwrap().1.data, [0.5, -1.5]);
    let mut ints = pb::TensorProto::new();
    ints.dims = vec![2];
    ints.data_type = 7;
    ints.int64_data = vec![5, -6];
    let a = read_tensor_pb(&save_pb("i64.pb", &ints)).unwrap().1;
    assert_eq!((a.data, a.dtype.as_str()), (vec![5.0, -6.0], "int64"));
    // A conformance input, against onnx-protobuf's own decoding.
    let p = fixtures().join("onnx-conformance/node/test_gemm_default_no_bias/test_data_set_0/input_0.pb");
    let t = pb::TensorProto::parse_from_bytes(&std::fs::read(&p).unwrap()).unwrap();
    let a = read_tensor_pb(&p).unwrap().1;
    assert_eq!(a.data.iter().map(|v| f64::from(*v)).collect::<Vec<_>>(), values(&t, dir.path()));
}

#[test]
fn hostile_files_give_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let err = |r: renorm::Result<renorm::data::RawArray>| r.unwrap_err().to_string();
    // IDX: truncated data, a header claiming 2^31 × 2^31 items, bad magic, gzip garbage.
    assert!(err(read_idx(&file(d, "t", &idx(&[10], 0x08, &[1, 2])))).contains("needs 10 bytes"));
    let huge = idx(&[1 << 31, 1 << 31], 0x0D, &[0; 8]);
    assert!(err(read_idx(&file(d, "h", &huge))).contains("needs"));
    assert!(err(read_idx(&file(d, "hz", &gzip(&huge)))).contains("needs"));
    assert!(err(read_idx(&file(d, "m", b"PK\x03\x04 not idx"))).contains("IDX magic"));
    assert!(read_idx(&file(d, "g", &[0x1f, 0x8b, 8, 0, 1, 2, 3])).is_err());
    // npy: a lying shape, a huge shape, an unknown dtype, a cut header.
    let npy = |descr: &str, shape: &str, data: &[u8]| {
        let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n");
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((header.len() as u16).to_le_bytes());
        b.extend(header.as_bytes());
        b.extend(data);
        b
    };
    let two = [0u8, 0, 128, 63, 0, 0, 0, 64];
    assert_eq!(read_npy(&file(d, "ok.npy", &npy("<f4", "(2,)", &two))).unwrap().data, [1.0, 2.0]);
    assert!(err(read_npy(&file(d, "l.npy", &npy("<f4", "(9,)", &two)))).contains("needs 36 bytes"));
    assert!(err(read_npy(&file(d, "h.npy", &npy("<f4", "(1000000000000,)", &two)))).contains("needs"));
    let over = "(4294967296, 4294967296, 4294967296)";
    assert!(err(read_npy(&file(d, "o.npy", &npy("<f4", over, &two)))).contains("more than 2^64"));
    assert!(err(read_npy(&file(d, "c.npy", &npy("<c8", "(1,)", &two)))).contains("not supported"));
    assert!(err(read_npy(&file(d, "cut.npy", &npy("<f4", "(2,)", &two)[..12]))).contains("truncated header"));
    // pb: dims [2^40] with 4 bytes of data.
    let mut t = tensor("x", &[1], &[1.0], FLOAT, Form::Raw);
    t.dims = vec![1 << 40];
    let p = file(d, "big.pb", &t.write_to_bytes().unwrap());
    assert!(read_tensor_pb(&p).unwrap_err().to_string().contains("needs"));
    assert!(read_tensor_pb(&file(d, "junk.pb", &[0xff; 9])).is_err());
    // npz that is not a zip; labels that are not class indices.
    assert!(read_npz(&file(d, "bad.npz", b"PK\x03\x04garbage")).is_err());
    write_npy(d.join("neg.npy"), &arr1(&[1i64, -3])).unwrap();
    assert!(read_labels(&d.join("neg.npy")).unwrap_err().to_string().contains("label 1 is -3"));
    write_npy(d.join("2d.npy"), &Array2::<i64>::zeros((2, 2))).unwrap();
    assert!(read_labels(&d.join("2d.npy")).unwrap_err().to_string().contains("1-D"));
}

//! Sample-data readers (`renorm::data`): `.npy` of every common dtype, `.npz` (stored and deflated), IDX
//! (plain and gzip), ONNX `TensorProto` files, labels; the bundled fixtures; and hostile files (truncated,
//! lying headers, huge dims, corrupt compression) that must give a one-line error naming the problem,
//! never a panic or an allocation the file's size does not justify.

use std::fmt::Debug;
use std::io::Write;
use std::path::{Path, PathBuf};

use ndarray::{arr0, arr1, Array2, Array3};
use ndarray_npy::{write_npy, NpzWriter};
use onnx_protobuf::{Message, TensorProto};
use renorm::data::{read_idx, read_labels, read_npy, read_npz, read_tensor_pb, RawArray};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(rel)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// An IDX file: magic 00 00, type code, rank, big-endian u32 dims, then `data` as given.
fn idx(dims: &[u32], type_code: u8, data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, type_code, dims.len() as u8];
    dims.iter().for_each(|d| b.extend(d.to_be_bytes()));
    b.extend(data);
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A version-1 `.npy` file with the header numpy writes, whatever it claims, followed by `data`.
fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let fortran = if fortran { "True" } else { "False" };
    let header = format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}\n");
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((header.len() as u16).to_le_bytes());
    b.extend(header.as_bytes());
    b.extend(data);
    b
}

fn pb(name: &str, dims: &[i64], data_type: i32, fill: impl FnOnce(&mut TensorProto)) -> Vec<u8> {
    let mut t = TensorProto::new();
    (t.name, t.dims, t.data_type) = (name.to_string(), dims.to_vec(), data_type);
    fill(&mut t);
    t.write_to_bytes().unwrap()
}

fn le<T: Copy, const N: usize>(values: &[T], to: fn(T) -> [u8; N]) -> Vec<u8> {
    values.iter().flat_map(|v| to(*v)).collect()
}

fn check(a: &RawArray, shape: &[usize], dtype: &str, data: &[f32]) {
    assert_eq!((a.shape.as_slice(), a.dtype.as_str(), a.data.as_slice()), (shape, dtype, data));
}

/// The error of `r`, which must be one line starting with the file's path and containing `needle`.
#[track_caller]
fn fails<T: Debug>(r: renorm::Result<T>, path: &Path, needle: &str) {
    let message = match r {
        Ok(v) => panic!("expected an error containing {needle:?}, got {v:?}"),
        Err(e) => e.to_string(),
    };
    assert!(message.starts_with(&format!("{}: ", path.display())), "{message}");
    assert!(message.contains(needle), "{message:?} does not contain {needle:?}");
    assert!(!message.contains('\n'), "{message:?}");
}

const FLOAT: i32 = 1;
const INT8: i32 = 3;
const INT32: i32 = 6;
const INT64: i32 = 7;
const STRING: i32 = 8;
const FLOAT16: i32 = 10;
const DOUBLE: i32 = 11;
const UINT64: i32 = 13;
const BFLOAT16: i32 = 16;

#[test]
fn npy_written_by_ndarray_npy() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.npy");
    write_npy(&p, &Array2::from_shape_vec((2, 3), vec![0.5f32, -1.0, 2.0, 3.0, 4.0, 1e-7]).unwrap()).unwrap();
    let a = read_npy(&p).unwrap();
    check(&a, &[2, 3], "float32", &[0.5, -1.0, 2.0, 3.0, 4.0, 1e-7]);
    assert!(!a.is_integer());
    write_npy(&p, &arr1(&[1.25f64, -2.5, 1e300])).unwrap();
    check(&read_npy(&p).unwrap(), &[3], "float64", &[1.25, -2.5, f32::INFINITY]);
    write_npy(&p, &Array3::from_shape_vec((1, 2, 2), vec![0u8, 128, 255, 7]).unwrap()).unwrap();
    let a = read_npy(&p).unwrap();
    check(&a, &[1, 2, 2], "uint8", &[0.0, 128.0, 255.0, 7.0]);
    assert!(a.is_integer());
    write_npy(&p, &arr1(&[3i64, -9, 1 << 40])).unwrap();
    check(&read_npy(&p).unwrap(), &[3], "int64", &[3.0, -9.0, (1u64 << 40) as f32]);
    write_npy(&p, &arr0(2.5f32)).unwrap();
    check(&read_npy(&p).unwrap(), &[], "float32", &[2.5]);
    write_npy(&p, &Array2::<f32>::zeros((0, 4))).unwrap();
    check(&read_npy(&p).unwrap(), &[0, 4], "float32", &[]);
}

#[test]
fn npy_other_dtypes_big_endian_and_version_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let be_i16 = npy(">i2", false, "(2,)", &le(&[1i16, -2], i16::to_be_bytes));
    check(&read_npy(&write(d, "a.npy", &be_i16)).unwrap(), &[2], "int16", &[1.0, -2.0]);
    let be_f4 = npy(">f4", false, "(1, 2)", &le(&[1.5f32, -3.0], f32::to_be_bytes));
    check(&read_npy(&write(d, "a.npy", &be_f4)).unwrap(), &[1, 2], "float32", &[1.5, -3.0]);
    let halves: Vec<u16> =
        [0.5f32, -1.5, 65504.0].iter().map(|v| half::f16::from_f32(*v).to_bits()).collect();
    let f2 = npy("<f2", false, "(3,)", &le(&halves, u16::to_le_bytes));
    check(&read_npy(&write(d, "a.npy", &f2)).unwrap(), &[3], "float16", &[0.5, -1.5, 65504.0]);
    let b1 = npy("|b1", false, "(2,)", &[1, 0]);
    check(&read_npy(&write(d, "a.npy", &b1)).unwrap(), &[2], "bool", &[1.0, 0.0]);
    let u4 = npy("<u4", false, "(2L,)", &le(&[7u32, 4_000_000_000], u32::to_le_bytes));
    let a = read_npy(&write(d, "a.npy", &u4)).unwrap();
    check(&a, &[2], "uint32", &[7.0, 4e9]);
    assert!(a.is_integer());
    // Version 2: a 4-byte header length.
    let mut v2 = npy("<i4", false, "(2,)", &le(&[5i32, -6], i32::to_le_bytes));
    v2[6] = 2;
    v2.splice(8..10, [v2[8], v2[9], 0, 0]);
    check(&read_npy(&write(d, "a.npy", &v2)).unwrap(), &[2], "int32", &[5.0, -6.0]);
}

#[test]
fn bundled_mnist_fixtures() {
    let x = read_npy(&fixture("mnist_test_1000.npy")).unwrap();
    assert_eq!((x.shape.as_slice(), x.dtype.as_str()), (&[1000, 1, 28, 28][..], "float32"));
    assert_eq!(x.data.len(), 1000 * 28 * 28);
    assert!(x.data.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(x.data.iter().any(|v| *v > 0.5), "not all dark");
    let path = fixture("mnist_test_1000_labels.npy");
    let raw = read_npy(&path).unwrap();
    assert_eq!((raw.shape.as_slice(), raw.dtype.as_str()), (&[1000][..], "int64"));
    let y = read_labels(&path).unwrap();
    assert_eq!(y, raw.data.iter().map(|v| *v as i64).collect::<Vec<_>>());
    assert!(y.iter().all(|l| (0..=9).contains(l)));
    assert_eq!((0..=9).filter(|c| y.contains(c)).count(), 10, "every digit occurs");
}

#[test]
fn npz_two_named_arrays_stored_and_deflated() {
    let dir = tempfile::tempdir().unwrap();
    for compressed in [false, true] {
        let p = dir.path().join(format!("a{compressed}.npz"));
        let file = std::fs::File::create(&p).unwrap();
        let mut w = if compressed { NpzWriter::new_compressed(file) } else { NpzWriter::new(file) };
        w.add_array("image", &Array2::from_shape_vec((2, 2), vec![1.0f32, 2.0, 3.0, 0.25]).unwrap()).unwrap();
        w.add_array("label", &arr1(&[7i64, 0, 9])).unwrap();
        w.finish().unwrap();
        let arrays = read_npz(&p).unwrap();
        assert_eq!(arrays.len(), 2);
        assert_eq!((arrays[0].0.as_str(), arrays[1].0.as_str()), ("image", "label"));
        check(&arrays[0].1, &[2, 2], "float32", &[1.0, 2.0, 3.0, 0.25]);
        check(&arrays[1].1, &[3], "int64", &[7.0, 0.0, 9.0]);
    }
}

#[test]
fn idx_every_type_plain_and_gzipped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: [(u8, Vec<u8>, &str, [f32; 2]); 6] = [
        (0x08, vec![3, 250], "uint8", [3.0, 250.0]),
        (0x09, vec![3, 0xfe], "int8", [3.0, -2.0]),
        (0x0B, le(&[300i16, -300], i16::to_be_bytes), "int16", [300.0, -300.0]),
        (0x0C, le(&[70000i32, -1], i32::to_be_bytes), "int32", [70000.0, -1.0]),
        (0x0D, le(&[1.0f32, -2.5], f32::to_be_bytes), "float32", [1.0, -2.5]),
        (0x0E, le(&[0.125f64, 1e10], f64::to_be_bytes), "float64", [0.125, 1e10]),
    ];
    for (code, data, dtype, values) in cases {
        let bytes = idx(&[1, 2], code, &data);
        // The gzip is recognized by its magic, whatever the name says.
        for (name, b) in [("plain.gz", bytes.clone()), ("zipped", gzip(&bytes))] {
            let a = read_idx(&write(d, name, &b)).unwrap();
            check(&a, &[1, 2], dtype, &values);
            assert_eq!(a.is_integer(), dtype.contains("int"));
        }
    }
    let images = idx(&[2, 2, 3], 0x08, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 255]);
    let a = read_idx(&write(d, "images-idx3-ubyte.gz", &gzip(&images))).unwrap();
    check(&a, &[2, 2, 3], "uint8", &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 255.0]);
}

#[test]
fn tensor_pb_raw_and_typed_forms() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let read = |name: &str, bytes: Vec<u8>| read_tensor_pb(&write(d, name, &bytes)).unwrap();
    let raw = pb("x", &[2, 2], FLOAT, |t| t.raw_data = le(&[1.0f32, -2.0, 0.5, 4.0], f32::to_le_bytes));
    let (name, a) = read("raw.pb", raw);
    assert_eq!(name, "x");
    check(&a, &[2, 2], "float32", &[1.0, -2.0, 0.5, 4.0]);
    let (name, a) = read("typed.pb", pb("", &[3], FLOAT, |t| t.float_data = vec![1.0, 2.0, 3.5]));
    assert_eq!(name, "");
    check(&a, &[3], "float32", &[1.0, 2.0, 3.5]);
    let (_, a) = read("i64.pb", pb("i", &[2, 1], INT64, |t| t.int64_data = vec![5, -6]));
    check(&a, &[2, 1], "int64", &[5.0, -6.0]);
    assert!(a.is_integer());
    let (_, a) = read("i64raw.pb", pb("i", &[2], INT64, |t| t.raw_data = le(&[-1i64, 3], i64::to_le_bytes)));
    check(&a, &[2], "int64", &[-1.0, 3.0]);
    let f16 = |v: &[f32]| v.iter().map(|v| half::f16::from_f32(*v).to_bits()).collect::<Vec<_>>();
    let (_, a) =
        read("h.pb", pb("h", &[2], FLOAT16, |t| t.raw_data = le(&f16(&[0.5, -1.5]), u16::to_le_bytes)));
    check(&a, &[2], "float16", &[0.5, -1.5]);
    let (_, a) = read(
        "ht.pb",
        pb("h", &[2], FLOAT16, |t| t.int32_data = f16(&[2.0, -0.25]).iter().map(|b| *b as i32).collect()),
    );
    check(&a, &[2], "float16", &[2.0, -0.25]);
    let bf = [half::bf16::from_f32(1.5).to_bits(), half::bf16::from_f32(-3.0).to_bits()];
    let (_, a) = read("bf.pb", pb("b", &[2], BFLOAT16, |t| t.raw_data = le(&bf, u16::to_le_bytes)));
    check(&a, &[2], "bfloat16", &[1.5, -3.0]);
    let (_, a) =
        read("bft.pb", pb("b", &[2], BFLOAT16, |t| t.int32_data = bf.iter().map(|b| *b as i32).collect()));
    check(&a, &[2], "bfloat16", &[1.5, -3.0]);
    let (_, a) = read("d.pb", pb("d", &[1], DOUBLE, |t| t.double_data = vec![0.75]));
    check(&a, &[1], "float64", &[0.75]);
    let (_, a) = read("i8.pb", pb("c", &[3], INT8, |t| t.int32_data = vec![-128, 0, 127]));
    check(&a, &[3], "int8", &[-128.0, 0.0, 127.0]);
    let (_, a) = read("i32.pb", pb("c", &[2], INT32, |t| t.raw_data = le(&[9i32, -9], i32::to_le_bytes)));
    check(&a, &[2], "int32", &[9.0, -9.0]);
    let (_, a) = read("u64.pb", pb("u", &[1], UINT64, |t| t.uint64_data = vec![42]));
    check(&a, &[1], "uint64", &[42.0]);
    let (_, a) = read("scalar.pb", pb("s", &[], FLOAT, |t| t.float_data = vec![6.0]));
    check(&a, &[], "float32", &[6.0]);
}

#[test]
fn tensor_pb_conformance_input_matches_onnx_protobuf() {
    let path = fixture("onnx-conformance/node/test_gemm_default_no_bias/test_data_set_0/input_0.pb");
    let t = TensorProto::parse_from_bytes(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(t.data_type, FLOAT);
    let expected: Vec<f32> = if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
    };
    let (name, a) = read_tensor_pb(&path).unwrap();
    assert_eq!(name, t.name);
    let dims: Vec<usize> = t.dims.iter().map(|d| *d as usize).collect();
    check(&a, &dims, "float32", &expected);
    assert_eq!(expected.len(), dims.iter().product::<usize>());
    assert!(!expected.is_empty());
}

#[test]
fn labels_from_npy_and_idx() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = d.join("l.npy");
    write_npy(&p, &arr1(&[3i64, 0, 9])).unwrap();
    assert_eq!(read_labels(&p).unwrap(), [3, 0, 9]);
    write_npy(&p, &arr1(&[1u8, 2])).unwrap();
    assert_eq!(read_labels(&p).unwrap(), [1, 2]);
    write_npy(&p, &arr1(&[4i32, 5])).unwrap();
    assert_eq!(read_labels(&p).unwrap(), [4, 5]);
    write_npy(&p, &arr1(&[2.0f32, 0.0, 7.0])).unwrap();
    assert_eq!(read_labels(&p).unwrap(), [2, 0, 7]);
    write_npy(&p, &arr1(&[1.0f64])).unwrap();
    assert_eq!(read_labels(&p).unwrap(), [1]);
    let labels = idx(&[3], 0x08, &[7, 0, 9]);
    assert_eq!(read_labels(&write(d, "l-idx1-ubyte", &labels)).unwrap(), [7, 0, 9]);
    assert_eq!(read_labels(&write(d, "l-idx1-ubyte.gz", &gzip(&labels))).unwrap(), [7, 0, 9]);
    // The real MNIST test labels, when the shared datasets are there.
    let shared =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/mnist/t10k-labels-idx1-ubyte.gz");
    if shared.is_file() {
        let y = read_labels(&shared).unwrap();
        assert_eq!(y.len(), 10000);
        assert_eq!(y[..1000], read_labels(&fixture("mnist_test_1000_labels.npy")).unwrap()[..]);
    }
}

#[test]
fn hostile_idx() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Truncated data, plain and gzipped: the message says what the header promised and what is there.
    let cut = idx(&[60000, 28, 28], 0x08, &[0; 1000]);
    let want = "truncated IDX file: header says 60000×28×28 = 47040000 bytes of uint8 data, file has 1000";
    for (name, b) in [("t", cut.clone()), ("tz", gzip(&cut))] {
        let p = write(d, name, &b);
        fails(read_idx(&p), &p, want);
    }
    // 2^31 × 2^31 items: of uint8 a number of bytes that fits in 64 bits, of float32 one that does not.
    let huge = idx(&[1 << 31, 1 << 31], 0x08, &[0; 8]);
    for (name, b) in [("h", huge.clone()), ("hz", gzip(&huge))] {
        let p = write(d, name, &b);
        fails(
            read_idx(&p),
            &p,
            "header says 2147483648×2147483648 = 4611686018427387904 bytes of uint8 data, file has 8",
        );
    }
    let p = write(d, "hf", &idx(&[1 << 31, 1 << 31], 0x0D, &[0; 8]));
    fails(
        read_idx(&p),
        &p,
        "header says 2147483648×2147483648 elements of float32, more bytes than can exist",
    );
    // More data than the header says, also as a small gzip that inflates to 64 MiB: the read stops early.
    let p = write(d, "x", &idx(&[2], 0x08, &[1, 2, 3]));
    fails(
        read_idx(&p),
        &p,
        "IDX file has more data than its header says: header says 2 = 2 bytes of uint8 data",
    );
    let bomb = gzip(&idx(&[2], 0x08, &vec![0; 64 << 20]));
    assert!(bomb.len() < 200_000);
    let p = write(d, "bomb", &bomb);
    fails(read_idx(&p), &p, "more data than its header says");
    // Not IDX at all, an unknown type code, a header cut in its dims, gzip garbage, an empty file.
    let p = write(d, "m", b"PK\x03\x04 not idx");
    fails(read_idx(&p), &p, "not a valid IDX file: it does not start with the IDX magic");
    let p = write(d, "c", &idx(&[1], 0x0A, &[0]));
    fails(read_idx(&p), &p, "unknown element type code 0x0a");
    let p = write(d, "r", &idx(&[5, 5, 5], 0x08, &[])[..10]);
    fails(read_idx(&p), &p, "truncated header of rank 3: 6 of 12 bytes");
    let p = write(d, "g", &[0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    fails(read_idx(&p), &p, "corrupt compressed data");
    let mut z = gzip(&idx(&[4], 0x08, &[1, 2, 3, 4]));
    let n = z.len();
    z[n - 12] ^= 0x55;
    let p = write(d, "crc", &z);
    assert!(read_idx(&p).is_err());
    let p = write(d, "e", &[]);
    fails(read_idx(&p), &p, "IDX magic");
    fails(read_idx(&d.join("missing")), &d.join("missing"), "");
}

#[test]
fn hostile_npy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let two = le(&[1.0f32, 2.0], f32::to_le_bytes);
    let p = write(d, "ok.npy", &npy("<f4", false, "(2,)", &two));
    check(&read_npy(&p).unwrap(), &[2], "float32", &[1.0, 2.0]);
    let p = write(d, "l.npy", &npy("<f4", false, "(9,)", &two));
    fails(read_npy(&p), &p, "truncated .npy file: header says 9 = 36 bytes of float32 data, file has 8");
    let p = write(d, "h.npy", &npy("<f4", false, "(1000000000000,)", &two));
    fails(read_npy(&p), &p, "header says 1000000000000 = 4000000000000 bytes of float32 data, file has 8");
    let p = write(d, "o.npy", &npy("<f4", false, "(4294967296, 4294967296, 4294967296)", &two));
    fails(read_npy(&p), &p, "more bytes than can exist");
    let p = write(d, "x.npy", &npy("<f4", false, "(1,)", &two));
    fails(read_npy(&p), &p, ".npy file has more data than its header says: header says 1 = 4 bytes");
    let p = write(d, "c.npy", &npy("<c8", false, "(1,)", &two));
    fails(read_npy(&p), &p, "npy dtype '<c8' (complex) is not supported");
    let p = write(d, "u.npy", &npy("<U3", false, "(1,)", &[0; 12]));
    fails(read_npy(&p), &p, "npy dtype '<U3' (string) is not supported");
    let p = write(d, "f3.npy", &npy("<f3", false, "(1,)", &[0; 3]));
    fails(read_npy(&p), &p, "npy dtype '<f3' is not supported");
    let p = write(d, "f.npy", &npy("<f4", true, "(1, 2)", &two));
    fails(read_npy(&p), &p, "Fortran-order .npy arrays are not supported");
    let p = write(d, "s.npy", &npy("<f4", false, "(-2,)", &two));
    fails(read_npy(&p), &p, "shape (-2,) is not a tuple of sizes");
    let p = write(d, "cut.npy", &npy("<f4", false, "(2,)", &two)[..20]);
    fails(read_npy(&p), &p, "truncated header");
    // A version-2 header claiming 4 GiB of header text: read only as far as the file goes.
    let p = write(d, "v2.npy", b"\x93NUMPY\x02\x00\xff\xff\xff\xff{'descr'");
    fails(read_npy(&p), &p, "truncated header: 4294967295 bytes announced, 8 present");
    let p = write(d, "v9.npy", b"\x93NUMPY\x09\x00\x10\x00{}");
    fails(read_npy(&p), &p, "unknown format version 9");
    let p = write(d, "m.npy", b"NUMPY but not npy");
    fails(read_npy(&p), &p, "not a valid .npy file");
    let p = write(
        d,
        "nd.npy",
        &npy("<f4", false, "(2,)", &two)
            .iter()
            .map(|b| if *b == b'r' { b'x' } else { *b })
            .collect::<Vec<_>>(),
    );
    fails(read_npy(&p), &p, "header has no 'descr'");
}

#[test]
fn hostile_npz() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = write(d, "bad.npz", b"PK\x03\x04garbage");
    fails(read_npz(&p), &p, "not a valid .npz (zip) archive");
    let p = write(d, "empty.npz", &[]);
    fails(read_npz(&p), &p, "not a valid .npz (zip) archive");
    // Entries that are not valid .npy files, stored and deflated: the message names the entry.
    for method in [zip::CompressionMethod::Stored, zip::CompressionMethod::Deflated] {
        let p = d.join(format!("entries-{method:?}.npz"));
        let mut w = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        w.start_file("good.npy", options).unwrap();
        w.write_all(&npy("<i2", false, "(1,)", &[5, 0])).unwrap();
        w.start_file("huge.npy", options).unwrap();
        w.write_all(&npy("<f8", false, "(1000000000000,)", &[0; 16])).unwrap();
        w.finish().unwrap();
        fails(
            read_npz(&p),
            &p,
            "npz entry 'huge.npy': truncated .npy file: header says 1000000000000 = 8000000000000 bytes",
        );
        let mut w = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
        w.start_file("text.npy", options).unwrap();
        w.write_all(b"hello").unwrap();
        w.finish().unwrap();
        fails(read_npz(&p), &p, "npz entry 'text.npy': not a valid .npy file");
    }
}

#[test]
fn hostile_tensor_pb() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let four = le(&[1.0f32], f32::to_le_bytes);
    let p = write(d, "big.pb", &pb("x", &[1 << 40], FLOAT, |t| t.raw_data = four.clone()));
    fails(
        read_tensor_pb(&p),
        &p,
        "truncated TensorProto: header says 1099511627776 = 4398046511104 bytes of float32 data, file has 4",
    );
    let p = write(d, "over.pb", &pb("x", &[1 << 62, 1 << 62], FLOAT, |t| t.raw_data = four.clone()));
    fails(read_tensor_pb(&p), &p, "more bytes than can exist");
    let p = write(d, "long.pb", &pb("x", &[1], FLOAT, |t| t.raw_data = vec![0; 8]));
    fails(read_tensor_pb(&p), &p, "TensorProto has more data than its header says");
    let p = write(d, "typed.pb", &pb("x", &[2, 3], FLOAT, |t| t.float_data = vec![0.0; 5]));
    fails(read_tensor_pb(&p), &p, "TensorProto dims 2×3 = 6 elements, float_data holds 5");
    let p = write(d, "typedbig.pb", &pb("x", &[1 << 40], INT64, |t| t.int64_data = vec![1]));
    fails(
        read_tensor_pb(&p),
        &p,
        "TensorProto dims 1099511627776 = 1099511627776 elements, int64_data holds 1",
    );
    let p = write(d, "typedover.pb", &pb("x", &[1 << 62, 1 << 62], FLOAT, |t| t.float_data = vec![1.0]));
    fails(read_tensor_pb(&p), &p, "= more than 2^64 elements, float_data holds 1");
    let p = write(d, "neg.pb", &pb("x", &[2, -1], FLOAT, |t| t.float_data = vec![0.0; 2]));
    fails(read_tensor_pb(&p), &p, "TensorProto dims [2, -1] include a negative size");
    let p = write(d, "str.pb", &pb("x", &[1], STRING, |t| t.string_data = vec![b"a".to_vec()]));
    fails(read_tensor_pb(&p), &p, "TensorProto data type 8 (STRING) is not supported");
    let p = write(d, "unk.pb", &pb("x", &[1], 99, |t| t.raw_data = vec![0]));
    fails(read_tensor_pb(&p), &p, "TensorProto data type 99 (unknown) is not supported");
    let p = write(
        d,
        "ext.pb",
        &pb("x", &[1], FLOAT, |t| {
            t.data_location = onnx_protobuf::tensor_proto::DataLocation::EXTERNAL.into();
            let mut e = onnx_protobuf::StringStringEntryProto::new();
            (e.key, e.value) = ("location".into(), "x.bin".into());
            t.external_data.push(e);
        }),
    );
    fails(read_tensor_pb(&p), &p, "external file is not supported");
    let p = write(d, "junk.pb", &[0xff; 9]);
    fails(read_tensor_pb(&p), &p, "not a valid TensorProto");
    // dims [2], FLOAT, and a packed float_data whose length prefix claims 4 GiB but holds one value (the
    // protobuf decoder reads what is there): no huge allocation, and the count is checked.
    let p = write(d, "packed.pb", &[0x08, 0x02, 0x10, 0x01, 0x22, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0]);
    fails(read_tensor_pb(&p), &p, "TensorProto dims 2 = 2 elements, float_data holds 1");
}

#[test]
fn hostile_labels() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = d.join("neg.npy");
    write_npy(&p, &arr1(&[1i64, -3])).unwrap();
    fails(read_labels(&p), &p, "label 1 is -3, not a class index");
    let p = d.join("frac.npy");
    write_npy(&p, &arr1(&[0.0f32, 2.0, 1.5])).unwrap();
    fails(read_labels(&p), &p, "label 2 is 1.5, not a class index");
    let p = d.join("nan.npy");
    write_npy(&p, &arr1(&[f32::NAN])).unwrap();
    fails(read_labels(&p), &p, "label 0 is NaN");
    let p = d.join("2d.npy");
    write_npy(&p, &Array2::<i64>::zeros((2, 2))).unwrap();
    fails(read_labels(&p), &p, "labels must be 1-D, this array has shape 2×2");
    let p = write(d, "2d-idx", &idx(&[1, 2], 0x08, &[1, 2]));
    fails(read_labels(&p), &p, "labels must be 1-D, this array has shape 1×2");
    let p = write(d, "neg-idx", &idx(&[2], 0x09, &[1, 0xff]));
    fails(read_labels(&p), &p, "label 1 is -1");
    let p = write(d, "text", b"3\n1\n4\n");
    fails(read_labels(&p), &p, "IDX magic");
    let p = write(d, "cut-idx.gz", &gzip(&idx(&[10000], 0x08, &[1; 100])));
    fails(
        read_labels(&p),
        &p,
        "truncated IDX file: header says 10000 = 10000 bytes of uint8 data, file has 100",
    );
}

/// Every prefix of small valid files, and every single-byte corruption of them: each read returns Ok or
/// Err, never panics.
#[test]
fn every_truncation_and_corruption_is_survived() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let npz = d.join("a.npz");
    let mut w = NpzWriter::new_compressed(std::fs::File::create(&npz).unwrap());
    w.add_array("a", &arr1(&[1.0f32, 2.0])).unwrap();
    w.add_array("b", &arr1(&[3i64])).unwrap();
    w.finish().unwrap();
    let npz = std::fs::read(&npz).unwrap();
    let npy_f4 = npy("<f4", false, "(2, 1)", &le(&[1.0f32, 2.0], f32::to_le_bytes));
    let idx_u8 = idx(&[2, 2], 0x08, &[1, 2, 3, 4]);
    let tensor = pb("t", &[2], FLOAT, |t| t.raw_data = le(&[1.0f32, 2.0], f32::to_le_bytes));
    type Reader = fn(&Path) -> Result<(), String>;
    let readers: [(&str, Vec<u8>, Reader); 6] = [
        ("npy", npy_f4, |p| read_npy(p).map(drop).map_err(|e| e.to_string())),
        ("npz", npz, |p| read_npz(p).map(drop).map_err(|e| e.to_string())),
        ("idx", idx_u8.clone(), |p| read_idx(p).map(drop).map_err(|e| e.to_string())),
        ("idx.gz", gzip(&idx_u8), |p| read_idx(p).map(drop).map_err(|e| e.to_string())),
        ("pb", tensor, |p| read_tensor_pb(p).map(drop).map_err(|e| e.to_string())),
        ("labels", gzip(&idx(&[3], 0x08, &[1, 2, 3])), |p| {
            read_labels(p).map(drop).map_err(|e| e.to_string())
        }),
    ];
    for (kind, bytes, read) in readers {
        let p = d.join(kind);
        assert_eq!(read(&write(d, kind, &bytes)), Ok(()), "{kind} as written");
        for n in 0..bytes.len() {
            std::fs::write(&p, &bytes[..n]).unwrap();
            let _ = read(&p);
            for flip in [0xff, 0x01] {
                let mut corrupt = bytes.clone();
                corrupt[n] ^= flip;
                std::fs::write(&p, &corrupt).unwrap();
                if let Err(message) = read(&p) {
                    assert!(!message.contains('\n'), "{kind} byte {n}: {message}");
                }
            }
        }
    }
}

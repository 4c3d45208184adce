//! Bad input gets one clear line on stderr, exit 1 (2 for usage), no panic, nothing written, and the
//! input untouched.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use pb::Message;

struct Outcome {
    code: i32,
    stderr: String,
}

fn prune_cli(args: &[&str]) -> Outcome {
    let out = renorm_bin().arg("prune").args(args).output().unwrap();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `prune input -o dir/out.onnx extra…` and checks the refusal: exit `code`, one line naming
/// `needle`, no file created in the output folder, the input's bytes unchanged.
fn refused(input: &Path, extra: &[&str], code: i32, needle: &str) {
    let out_dir = tempfile::tempdir().unwrap();
    let output = out_dir.path().join("out.onnx");
    let before = std::fs::read(input).ok();
    let mut args = vec![input.to_str().unwrap(), "-o", output.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = prune_cli(&args);
    let label = format!("{} {extra:?}", input.display());
    assert_eq!(o.code, code, "{label}: {}", o.stderr);
    assert_eq!(o.stderr.trim_end().lines().count(), 1, "{label}: not one line: {}", o.stderr);
    assert!(o.stderr.starts_with("renorm: error: "), "{label}: {}", o.stderr);
    assert!(o.stderr.contains(needle), "{label}: '{needle}' not in: {}", o.stderr);
    assert!(!o.stderr.contains("panicked"), "{label}");
    let left: Vec<_> = std::fs::read_dir(out_dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{label}: left files behind: {left:?}");
    assert_eq!(std::fs::read(input).ok(), before, "{label}: input changed");
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn gemm_model(w: pb::TensorProto) -> pb::ModelProto {
    model(vec![node("Gemm", "fc", &["x", "W"], &["y"], vec![attr_int("transB", 1)])], vec![w], vec![], vec![])
}

#[test]
fn not_a_model() {
    let dir = tempfile::tempdir().unwrap();
    refused(&write(dir.path(), "empty.onnx", b""), &[], 1, "empty");
    refused(&write(dir.path(), "text.onnx", b"hello, I am not a model\n"), &[], 1, "not a valid ONNX model");
    let random: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    refused(&write(dir.path(), "random.onnx", &random), &[], 1, "not a valid ONNX model");
    // A valid protobuf that is a tensor, not a model.
    let t = f32_tensor("W", &[2, 2], &[1.0, 2.0, 3.0, 4.0]).write_to_bytes().unwrap();
    refused(&write(dir.path(), "tensor.pb", &t), &[], 1, "not a valid ONNX model");
    refused(&dir.path().join("missing.onnx"), &[], 1, "missing.onnx");
}

#[test]
fn truncated_fixture_at_many_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(fixtures().join("mnist_cnn.onnx")).unwrap();
    let step = full.len() / 37;
    for cut in (1..full.len()).step_by(step).chain([full.len() - 1]) {
        let p = write(dir.path(), &format!("cut{cut}.onnx"), &full[..cut]);
        refused(&p, &[], 1, "cut");
    }
}

#[test]
fn lying_payload_lengths() {
    let dir = tempfile::tempdir().unwrap();
    let mut short = f32_tensor("W", &[4, 6], &weights(24, 1));
    short.raw_data.truncate(40);
    refused(
        &write(dir.path(), "short.onnx", &gemm_model(short).write_to_bytes().unwrap()),
        &[],
        1,
        "dims [4, 6] say 24",
    );
    let mut long = f32_tensor("W", &[4, 6], &weights(24, 1));
    long.float_data = vec![1.0; 30];
    long.raw_data.clear();
    refused(
        &write(dir.path(), "long.onnx", &gemm_model(long).write_to_bytes().unwrap()),
        &[],
        1,
        "holds 30 elements",
    );
    let mut huge = f32_tensor("W", &[4, 6], &weights(24, 1));
    huge.dims = vec![1 << 40, 1 << 40];
    refused(&write(dir.path(), "huge.onnx", &gemm_model(huge).write_to_bytes().unwrap()), &[], 1, "overflow");
}

fn external(location: &str) -> pb::TensorProto {
    let mut t = pb::TensorProto::new();
    t.name = "W".into();
    t.dims = vec![2, 2];
    t.data_type = FLOAT;
    t.data_location = pb::tensor_proto::DataLocation::EXTERNAL.into();
    let mut e = pb::StringStringEntryProto::new();
    e.key = "location".into();
    e.value = location.into();
    t.external_data.push(e);
    t
}

#[test]
fn external_data_outside_the_folder_or_missing() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(root.path().join("secret.bin"), [0u8; 16]).unwrap();
    let save_with =
        |name: &str, loc: &str| write(&dir, name, &gemm_model(external(loc)).write_to_bytes().unwrap());
    let secret = root.path().join("secret.bin");
    refused(&save_with("abs.onnx", secret.to_str().unwrap()), &[], 1, "is absolute");
    refused(&save_with("up.onnx", "../secret.bin"), &[], 1, "leaves the model's folder");
    refused(&save_with("missing.onnx", "nothing.bin"), &[], 1, "cannot be opened");
    std::fs::write(dir.join("short.bin"), [0u8; 8]).unwrap();
    refused(&save_with("short.onnx", "short.bin"), &[], 1, "holds 8 bytes but its dims need 16");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&secret, dir.join("link.bin")).unwrap();
        refused(&save_with("link.onnx", "link.bin"), &[], 1, "symbolic link");
    }
}

#[test]
fn nothing_to_prune_and_non_finite_weights() {
    let dir = tempfile::tempdir().unwrap();
    let relu = model(vec![node("Relu", "r", &["x"], &["y"], vec![])], vec![], vec![], vec![]);
    refused(&write(dir.path(), "relu.onnx", &relu.write_to_bytes().unwrap()), &[], 1, "nothing to prune");
    let mut w = weights(24, 3);
    w[5] = f32::NAN;
    let nan = gemm_model(f32_tensor("W", &[4, 6], &w));
    refused(
        &write(dir.path(), "nan.onnx", &nan.write_to_bytes().unwrap()),
        &[],
        1,
        "'W' holds NaN at element 5",
    );
    let fine = write(
        dir.path(),
        "fine.onnx",
        &gemm_model(f32_tensor("W", &[4, 6], &weights(24, 3))).write_to_bytes().unwrap(),
    );
    refused(&fine, &["--exclude", "W"], 1, "excluded by --exclude 'W'");
}

#[test]
fn usage_errors_exit_2() {
    let input = fixtures().join("mnist_mlp.onnx");
    refused(&input, &["--sparsity", "1.5"], 2, "between 0 and 1");
    refused(&input, &["--pattern", "5:4"], 2, "N <= M");
    refused(&input, &["--pattern", "2:4", "--sparsity", "0.5"], 2, "cannot be used with");
    refused(&input, &["--include", "("], 2, "not a valid regex");
}

#[test]
fn existing_output_and_output_equal_to_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.onnx");
    std::fs::copy(fixtures().join("mnist_mlp.onnx"), &input).unwrap();
    let original = std::fs::read(&input).unwrap();
    // -o the input itself, even with --force: refused.
    for force in [false, true] {
        let mut args = vec![input.to_str().unwrap(), "-o", input.to_str().unwrap()];
        if force {
            args.push("--force");
        }
        let o = prune_cli(&args);
        assert_eq!(o.code, 2, "{}", o.stderr);
        assert!(o.stderr.contains("is the input"), "{}", o.stderr);
    }
    assert_eq!(std::fs::read(&input).unwrap(), original);
    // An existing output needs --force.
    let output = dir.path().join("out.onnx");
    std::fs::write(&output, b"keep me").unwrap();
    let o = prune_cli(&[input.to_str().unwrap(), "-o", output.to_str().unwrap()]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("already exists; pass --force"), "{}", o.stderr);
    assert_eq!(std::fs::read(&output).unwrap(), b"keep me");
    let o = prune_cli(&[input.to_str().unwrap(), "-o", output.to_str().unwrap(), "--force"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_ne!(std::fs::read(&output).unwrap(), b"keep me");
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "temporary files left: {names:?}");
}

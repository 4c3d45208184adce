//! ONNX's own backend test cases (fixtures/onnx-conformance/{node,pytorch-converted}): prune each one's
//! Gemm/Conv/ConvTranspose/MatMul weight and check it against design.md §2–§5 and against tract.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use common::pb;
use pb::Message;
use renorm::report::PruneReport;
use renorm::runtime::{Array, Runner};
use renorm::{PruneOptions, Renorm, Scope, Selector};

const TARGET_OPS: [&str; 4] = ["Gemm", "Conv", "ConvTranspose", "MatMul"];
const INTEGER_OPS: [&str; 2] = ["ConvInteger", "MatMulInteger"];

/// One conformance case, made prunable in its own temporary folder.
struct Case {
    /// The prunable copy: node cases get their weight turned from a graph input into an initializer.
    model: PathBuf,
    /// The remaining inputs (name, tensor), in graph order, and the reference outputs.
    inputs: Vec<pb::TensorProto>,
    outputs: Vec<pb::TensorProto>,
    integer: bool,
    tmp: tempfile::TempDir,
}

/// Every case folder under the two suites, sorted by name.
fn case_dirs() -> Vec<(String, PathBuf)> {
    let root = common::fixtures().join("onnx-conformance");
    let mut dirs = Vec::new();
    for suite in ["node", "pytorch-converted"] {
        let entries = std::fs::read_dir(root.join(suite)).unwrap_or_else(|e| panic!("{suite}: {e}"));
        for entry in entries {
            let path = entry.expect("a readable folder entry").path();
            if path.join("model.onnx").is_file() {
                dirs.push((format!("{suite}/{}", path.file_name().unwrap().to_string_lossy()), path));
            }
        }
    }
    dirs.sort();
    assert!(dirs.len() >= 60, "found only {} conformance cases under {}", dirs.len(), root.display());
    dirs
}

/// `test_data_set_0/<prefix>_<i>.pb`, for i = 0, 1, … while they exist.
fn read_pbs(dir: &Path, prefix: &str) -> Result<Vec<pb::TensorProto>, String> {
    let mut tensors = Vec::new();
    loop {
        let path = dir.join("test_data_set_0").join(format!("{prefix}_{}.pb", tensors.len()));
        let Ok(bytes) = std::fs::read(&path) else { return Ok(tensors) };
        tensors.push(pb::TensorProto::parse_from_bytes(&bytes).map_err(|e| format!("{path:?}: {e}"))?);
    }
}

fn prepare(name: &str, dir: &Path) -> Result<Case, String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let model = tmp.path().join("model.onnx");
    let mut inputs = read_pbs(dir, "input")?;
    let outputs = read_pbs(dir, "output")?;
    let mut proto = common::load(&dir.join("model.onnx"));
    let graph = proto.graph.mut_or_insert_default();
    let integer = graph.node.iter().any(|n| INTEGER_OPS.contains(&n.op_type.as_str()));
    if name.starts_with("node/") {
        let ops = [&TARGET_OPS[..], &INTEGER_OPS[..]].concat();
        let node = graph.node.iter().find(|n| ops.contains(&n.op_type.as_str())).ok_or("no target node")?;
        let weight = node.input.get(1).ok_or("target node has no input 1")?.clone();
        let pos = graph.input.iter().position(|v| v.name == weight).ok_or("weight is no graph input")?;
        let mut tensor = inputs.remove(pos);
        tensor.name = weight;
        graph.input.remove(pos);
        graph.initializer.push(tensor);
        common::save(&proto, &model);
    } else {
        std::fs::copy(dir.join("model.onnx"), &model).map_err(|e| e.to_string())?;
    }
    Ok(Case { model, inputs, outputs, integer, tmp })
}

fn array(t: &pb::TensorProto) -> Result<Array, String> {
    if t.data_type != common::FLOAT {
        return Err(format!("tensor '{}' has type {}, not float", t.name, t.data_type));
    }
    let data = common::values(t, Path::new(".")).into_iter().map(|v| v as f32).collect();
    Ok(Array { shape: t.dims.iter().map(|d| *d as usize).collect(), data })
}

/// Loads `model` in tract with the case's input shapes and runs it on the case's inputs.
fn run(case: &Case, model: &Path) -> Result<Vec<Array>, String> {
    let inputs = case.inputs.iter().map(array).collect::<Result<Vec<_>, _>>()?;
    let shapes: Vec<Vec<usize>> = inputs.iter().map(|a| a.shape.clone()).collect();
    let runner = Runner::load(model, &shapes).map_err(|e| e.to_string())?;
    runner.run(&inputs).map_err(|e| e.to_string())
}

fn prune(case: &Case, sparsity: f64, out: &str) -> Result<(PathBuf, PruneReport), String> {
    let output = case.tmp.path().join(out);
    let options = PruneOptions {
        selector: Selector::Sparsity { sparsity, scope: Scope::Unit },
        renorm: Renorm::L2,
        ..Default::default()
    };
    let report = renorm::prune_file(&case.model, &output, &options).map_err(|e| format!("prune: {e}"))?;
    Ok((output, report))
}

/// What one case's check found: nothing to say, or a known skip.
type Outcome = Result<Option<String>, String>;

/// Runs `check` on every case (integer ones only if `integer`), collecting failures with the case name;
/// panics (from the shared asserts) count as failures too. Returns the known skips.
fn each_case(integer: bool, check: impl Fn(&Case) -> Outcome) -> Vec<String> {
    let (mut failures, mut skips, mut ran) = (Vec::new(), Vec::new(), 0);
    for (name, dir) in case_dirs() {
        let result = prepare(&name, &dir).and_then(|case| {
            if case.integer != integer {
                return Ok(None);
            }
            ran += 1;
            catch_unwind(AssertUnwindSafe(|| check(&case))).unwrap_or_else(|p| {
                let msg =
                    p.downcast_ref::<String>().cloned().or(p.downcast_ref::<&str>().map(|s| s.to_string()));
                Err(format!("panicked: {}", msg.unwrap_or_default()))
            })
        });
        match result {
            Ok(None) => {}
            Ok(Some(skip)) => skips.push(format!("{name}: {skip}")),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    for s in &skips {
        eprintln!("known skip: {s}");
    }
    assert!(ran > 0, "no case ran");
    assert!(failures.is_empty(), "{} of {ran} cases failed:\n{}", failures.len(), failures.join("\n"));
    skips
}

/// |a − b| ≤ tol·(1 + |b|) for every element, with equal shapes.
fn close(got: &[Array], want: &[Array], tol: f32) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{} outputs, want {}", got.len(), want.len()));
    }
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        if g.shape != w.shape {
            return Err(format!("output {k}: shape {:?}, want {:?}", g.shape, w.shape));
        }
        // NaN anywhere fails too: `within` is false for it.
        let within = |i: usize| (g.data[i] - w.data[i]).abs() <= tol * (1.0 + w.data[i].abs());
        if let Some(i) = (0..g.data.len()).find(|&i| !within(i)) {
            return Err(format!("output {k}, element {i}: {} vs reference {}", g.data[i], w.data[i]));
        }
    }
    Ok(())
}

fn int_attr(node: &pb::NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

fn initializer<'m>(model: &'m pb::ModelProto, name: &str) -> Result<&'m pb::TensorProto, String> {
    model.graph.initializer.iter().find(|t| t.name == name).ok_or(format!("no initializer '{name}'"))
}

/// For a MatMul fed by `Transpose(perm [1, 0])` of a 2-D initializer (older PyTorch exports of Linear
/// without bias): that initializer's name.
fn transposed_initializer(model: &pb::ModelProto, matmul: &pb::NodeProto) -> Option<String> {
    let b = matmul.input.get(1).filter(|_| matmul.op_type == "MatMul")?;
    let t = model.graph.node.iter().find(|n| n.output.first() == Some(b) && n.op_type == "Transpose")?;
    let perm = t.attribute.iter().find(|a| a.name == "perm").map(|a| a.ints.clone());
    let w = initializer(model, t.input.first()?).ok()?;
    (w.dims.len() == 2 && matches!(perm.as_deref(), None | Some([1, 0]))).then(|| w.name.clone())
}

#[test]
fn sparsity0() {
    let skips = each_case(false, |case| {
        let original = match run(case, &case.model) {
            Ok(outputs) => outputs,
            Err(e) => return Ok(Some(format!("tract cannot run the original: {e}"))),
        };
        let reference = case.outputs.iter().map(array).collect::<Result<Vec<_>, _>>()?;
        close(&original, &reference, 1e-4).map_err(|e| format!("original vs output_*.pb: {e}"))?;
        let (pruned, report) = prune(case, 0.0, "pruned.onnx")?;
        if let Some(t) = report.targets.iter().find(|t| t.pruned != 0) {
            return Err(format!("sparsity 0 pruned {} weights of '{}'", t.pruned, t.weight));
        }
        let after = run(case, &pruned).map_err(|e| format!("pruned model (original runs): {e}"))?;
        if after != original {
            return Err("outputs of the sparsity-0 model differ from the original's".into());
        }
        Ok(None)
    });
    assert!(skips.len() <= 5, "too many known skips ({}):\n{}", skips.len(), skips.join("\n"));
}

#[test]
fn unit_masks() {
    each_case(false, |case| {
        let before = common::load(&case.model);
        let (path, report) = prune(case, 0.5, "pruned.onnx")?;
        let after = common::load(&path);
        // Every float target of the graph is pruned, and nothing is skipped.
        let targets: Vec<(&pb::NodeProto, String, bool)> = before
            .graph
            .node
            .iter()
            .filter(|n| TARGET_OPS.contains(&n.op_type.as_str()))
            .filter_map(|n| {
                let trans_b = int_attr(n, "transB").unwrap_or(0) != 0;
                match transposed_initializer(&before, n) {
                    Some(w) => Some((n, w, true)),
                    None => n
                        .input
                        .get(1)
                        .filter(|w| initializer(&before, w).is_ok())
                        .map(|w| (n, w.clone(), trans_b)),
                }
            })
            .collect();
        if report.targets.len() != targets.len() || !report.skipped.is_empty() {
            return Err(format!(
                "{} targets and {} skipped ({:?}), want {} targets",
                report.targets.len(),
                report.skipped.len(),
                report.skipped.iter().map(|s| &s.reason).collect::<Vec<_>>(),
                targets.len()
            ));
        }
        for (node, weight, trans_b) in targets {
            let weight = &weight;
            let target = report.targets.iter().find(|t| &t.weight == weight).ok_or("weight not a target")?;
            let w = initializer(&before, weight)?;
            let shape: Vec<usize> = w.dims.iter().map(|d| *d as usize).collect();
            // Unnamed nodes are reported as "op:first output".
            let label = match node.name.as_str() {
                "" => format!("{}:{}", node.op_type, node.output[0]),
                name => name.to_string(),
            };
            if target.op != node.op_type || target.shape != shape || target.node != label {
                return Err(format!(
                    "target {} {:?}, want {} {shape:?}",
                    target.op, target.shape, node.op_type
                ));
            }
            // A Transpose-fed MatMul weight (N, K) has the units of Gemm with transB=1.
            let op = if trans_b { "Gemm" } else { node.op_type.as_str() };
            let group = int_attr(node, "group").unwrap_or(1) as usize;
            let units = common::reference_units(op, &shape, trans_b, group);
            let folder = case.tmp.path();
            let (old, new) =
                (common::values(w, folder), common::values(initializer(&after, weight)?, folder));
            common::assert_unit_pruned(&old, &new, &units, 0.5, "l2", 1e-6);
            let want: usize = units.iter().map(|u| common::torch_count(0.5, u.len())).sum();
            if target.pruned != want || target.params != old.len() {
                return Err(format!(
                    "'{weight}': report says {} of {} pruned, want {want} of {}",
                    target.pruned,
                    target.params,
                    old.len()
                ));
            }
        }
        if run(case, &case.model).is_err() {
            return Ok(Some("tract cannot run the original".into()));
        }
        let outputs = run(case, &path).map_err(|e| format!("pruned model (original runs): {e}"))?;
        let reference = case.outputs.iter().map(array).collect::<Result<Vec<_>, _>>()?;
        let shapes = |a: &[Array]| a.iter().map(|a| a.shape.clone()).collect::<Vec<_>>();
        if shapes(&outputs) != shapes(&reference) {
            return Err(format!(
                "pruned output shapes {:?}, want {:?}",
                shapes(&outputs),
                shapes(&reference)
            ));
        }
        if outputs.iter().any(|a| a.data.iter().any(|v| !v.is_finite())) {
            return Err("pruned model outputs non-finite values".into());
        }
        Ok(None)
    });
}

#[test]
fn lossless() {
    each_case(false, |case| {
        let before = common::load(&case.model);
        let (path, report) = prune(case, 0.5, "pruned.onnx")?;
        let mut after = common::load(&path);
        let graph = after.graph.mut_or_insert_default();
        for target in &report.targets {
            let src = initializer(&before, &target.weight)?;
            let dst = graph.initializer.iter_mut().find(|t| t.name == target.weight).ok_or("weight gone")?;
            dst.raw_data = src.raw_data.clone();
            dst.float_data = src.float_data.clone();
            dst.double_data = src.double_data.clone();
            dst.int32_data = src.int32_data.clone();
        }
        let renorm_entries = after.metadata_props.iter().filter(|p| p.key == "renorm").count();
        if renorm_entries != 1 {
            return Err(format!("{renorm_entries} metadata_props entries with key 'renorm', want 1"));
        }
        after.metadata_props.retain(|p| p.key != "renorm");
        if after != before {
            return Err("output differs from the input beyond target payloads and metadata".into());
        }
        Ok(None)
    });
}

#[test]
fn integer_cases() {
    each_case(true, |case| {
        let inspect = renorm::inspect_file(&case.model).map_err(|e| format!("inspect: {e}"))?;
        if !inspect.targets.is_empty() || !inspect.skipped.iter().any(|s| s.reason.contains("integer")) {
            return Err(format!(
                "inspect: {} targets, skipped reasons {:?}; want the integer weight skipped",
                inspect.targets.len(),
                inspect.skipped.iter().map(|s| &s.reason).collect::<Vec<_>>()
            ));
        }
        let output = case.tmp.path().join("pruned.onnx");
        match prune(case, 0.5, "pruned.onnx") {
            Ok(_) => return Err("pruning an integer-only model succeeded".into()),
            Err(e) if !e.contains("nothing to prune") => return Err(format!("unexpected error: {e}")),
            Err(_) => {}
        }
        if output.exists() {
            return Err("a failed prune left an output file".into());
        }
        Ok(None)
    });
}

/// The case's remaining inputs and its outputs in the test_data_set layout; returns the data folder.
fn data_folder(case: &Case) -> Result<PathBuf, String> {
    let set = case.tmp.path().join("data/test_data_set_0");
    std::fs::create_dir_all(&set).map_err(|e| e.to_string())?;
    for (prefix, tensors) in [("input", &case.inputs), ("output", &case.outputs)] {
        for (i, t) in tensors.iter().enumerate() {
            let bytes = t.write_to_bytes().map_err(|e| e.to_string())?;
            std::fs::write(set.join(format!("{prefix}_{i}.pb")), bytes).map_err(|e| e.to_string())?;
        }
    }
    Ok(set.parent().unwrap().to_path_buf())
}

#[test]
fn validate_against_the_cases_own_outputs_at_sparsity_0() {
    let skips = each_case(false, |case| {
        let (pruned, _) = prune(case, 0.0, "pruned.onnx")?;
        let spec = renorm::validate::DataSpec { data: data_folder(case)?, batch: 1, ..Default::default() };
        let r = renorm::validate::validate_files(&case.model, &pruned, &spec).map_err(|e| e.to_string())?;
        if let Some(why) = r.skipped_reason {
            return Ok(Some(format!("validation skipped: {why}")));
        }
        for o in &r.outputs {
            let refs =
                o.reference_max_abs_error.ok_or(format!("output '{}' has no reference error", o.name))?;
            if refs.original > 1e-3
                || refs.pruned != refs.original
                || o.max_abs_error != 0.0
                || o.cosine < 1.0 - 1e-9
            {
                return Err(format!("output '{}': {o:?}", o.name));
            }
        }
        Ok(None)
    });
    assert!(skips.len() <= 5, "too many known skips ({}):\n{}", skips.len(), skips.join("\n"));
}

/// The case with its target's bias (input 2), when a graph input, turned into an initializer: node cases
/// feed it as data, and only a constant bias can be refitted.
fn with_constant_bias(case: &Case) -> Result<Case, String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let model = tmp.path().join("model.onnx");
    let mut proto = common::load(&case.model);
    let graph = proto.graph.mut_or_insert_default();
    let mut inputs = case.inputs.clone();
    let bias = graph
        .node
        .iter()
        .find(|n| TARGET_OPS.contains(&n.op_type.as_str()))
        .and_then(|n| n.input.get(2).cloned());
    let graph_inputs: Vec<String> = graph
        .input
        .iter()
        .map(|v| v.name.clone())
        .filter(|n| !graph.initializer.iter().any(|t| t.name == *n))
        .collect();
    if let Some(pos) = bias.and_then(|b| graph_inputs.iter().position(|n| *n == b)) {
        let mut tensor = inputs.remove(pos);
        tensor.name = graph_inputs[pos].clone();
        graph.input.retain(|v| v.name != tensor.name);
        graph.initializer.push(tensor);
    }
    common::save(&proto, &model);
    Ok(Case { model, inputs, outputs: case.outputs.clone(), integer: case.integer, tmp })
}

/// Reasons a target may legitimately not be refitted (it then gets l2 and says why).
const UNCALIBRATED: [&str; 3] = ["only 2-D MatMul weights", "per-unit constant", "Gemm beta is 0"];

#[test]
fn refit_on_every_case_uses_rows_that_reproduce_tract_and_lowers_the_error() {
    // The case's own input is the calibration data. Every Gemm/Conv/ConvTranspose/MatMul variant of the
    // suites (pads, auto_pad, strides, dilations, groups, output_shape, transA/transB, alpha/beta) must
    // form rows that reproduce tract's output of the target, or the target would fall back to l2.
    let (refitted, fell_back) = (std::cell::Cell::new(0), std::cell::RefCell::new(Vec::new()));
    let skips = each_case(false, |case| {
        let case = &with_constant_bias(case)?;
        let output = case.tmp.path().join("refit.onnx");
        let options = PruneOptions {
            selector: Selector::Sparsity { sparsity: 0.5, scope: Scope::Unit },
            renorm: Renorm::Refit,
            calib: Some(renorm::validate::DataSpec {
                data: data_folder(case)?,
                batch: 1,
                ..Default::default()
            }),
            refit: renorm::RefitOptions { steps: 1, ridge: 0.01 },
            ..Default::default()
        };
        let r = match renorm::prune_file(&case.model, &output, &options) {
            Err(e) if e.to_string().contains("tract cannot run") => return Ok(Some(format!("{e}"))),
            other => other.map_err(|e| format!("prune: {e}"))?,
        };
        for t in &r.targets {
            match (&t.output_error, &t.note) {
                (Some(e), _) if e.after <= e.before * (1.0 + 1e-6) + 1e-9 && e.after.is_finite() => {
                    refitted.set(refitted.get() + 1)
                }
                (None, Some(note)) if UNCALIBRATED.iter().any(|w| note.contains(w)) => {
                    fell_back.borrow_mut().push(format!("{}: {note}", t.node))
                }
                _ => {
                    return Err(format!(
                        "target {}: output_error {:?}, note {:?}",
                        t.node, t.output_error, t.note
                    ))
                }
            }
        }
        let got = run(case, &output)?;
        if got.iter().any(|a| a.data.iter().any(|v| !v.is_finite())) {
            return Err("the refitted model outputs non-finite values".to_string());
        }
        Ok(None)
    });
    assert!(skips.len() <= 5, "too many known skips ({}):\n{}", skips.len(), skips.join("\n"));
    let fell_back = fell_back.into_inner();
    eprintln!(
        "refitted {} targets; l2 instead for {}:\n{}",
        refitted.get(),
        fell_back.len(),
        fell_back.join("\n")
    );
    // Only batched MatMul weights and Gemm's non-per-unit (scalar, single-element, matrix) biases may fall back.
    assert!(
        refitted.get() >= 53 && fell_back.len() <= 5,
        "refitted {}, fell back {}",
        refitted.get(),
        fell_back.len()
    );
}

//! Every op/axis case of design.md §2, in every float type and storage form: the unit mapping that
//! `inspect` reports, the per-unit masks and l2 scales that `prune` writes (checked against the
//! reference in tests/common), and tract runs of the written models.

mod common;

use common::*;
use renorm::runtime::{Array, Runner};
use renorm::{PruneOptions, Renorm, Scope, Selector};

/// One §2 case: a single target node fed by input `x`.
struct Case {
    name: &'static str,
    op: &'static str,
    weight: Vec<usize>,
    attrs: fn() -> Vec<pb::AttributeProto>,
    input: Vec<usize>,
    trans_b: bool,
    group: usize,
    /// Bias length, when the op takes one (Gemm C, Conv/ConvTranspose B).
    bias: Option<usize>,
}

fn cases() -> Vec<Case> {
    let none: fn() -> Vec<pb::AttributeProto> = Vec::new;
    vec![
        Case {
            name: "gemm_transB1_alpha_beta",
            op: "Gemm",
            weight: vec![4, 6],
            attrs: || vec![attr_int("transB", 1), attr_float("alpha", 0.5), attr_float("beta", 2.0)],
            input: vec![2, 6],
            trans_b: true,
            group: 1,
            bias: Some(4),
        },
        Case {
            name: "gemm_transB0",
            op: "Gemm",
            weight: vec![6, 4],
            attrs: none,
            input: vec![2, 6],
            trans_b: false,
            group: 1,
            bias: Some(4),
        },
        Case {
            name: "gemm_transA1_transB1",
            op: "Gemm",
            weight: vec![5, 6],
            attrs: || vec![attr_int("transA", 1), attr_int("transB", 1)],
            input: vec![6, 2],
            trans_b: true,
            group: 1,
            bias: None,
        },
        Case {
            name: "conv1d",
            op: "Conv",
            weight: vec![4, 3, 3],
            attrs: none,
            input: vec![1, 3, 8],
            trans_b: false,
            group: 1,
            bias: Some(4),
        },
        Case {
            name: "conv2d_group2",
            op: "Conv",
            weight: vec![4, 3, 3, 3],
            attrs: || vec![attr_int("group", 2)],
            input: vec![1, 6, 5, 5],
            trans_b: false,
            group: 2,
            bias: Some(4),
        },
        Case {
            name: "conv2d_depthwise",
            op: "Conv",
            weight: vec![6, 1, 3, 3],
            attrs: || vec![attr_int("group", 6)],
            input: vec![1, 6, 5, 5],
            trans_b: false,
            group: 6,
            bias: None,
        },
        Case {
            name: "conv3d",
            op: "Conv",
            weight: vec![2, 3, 2, 2, 2],
            attrs: none,
            input: vec![1, 3, 4, 4, 4],
            trans_b: false,
            group: 1,
            bias: Some(2),
        },
        Case {
            name: "convtranspose2d_group2",
            op: "ConvTranspose",
            weight: vec![4, 3, 3, 3],
            attrs: || vec![attr_int("group", 2)],
            input: vec![1, 4, 4, 4],
            trans_b: false,
            group: 2,
            bias: Some(6),
        },
        Case {
            name: "convtranspose1d",
            op: "ConvTranspose",
            weight: vec![3, 2, 3],
            attrs: none,
            input: vec![1, 3, 5],
            trans_b: false,
            group: 1,
            bias: None,
        },
        Case {
            name: "matmul_2d",
            op: "MatMul",
            weight: vec![6, 4],
            attrs: none,
            input: vec![2, 6],
            trans_b: false,
            group: 1,
            bias: None,
        },
        Case {
            name: "matmul_batched",
            op: "MatMul",
            weight: vec![3, 6, 4],
            attrs: none,
            input: vec![3, 2, 6],
            trans_b: false,
            group: 1,
            bias: None,
        },
    ]
}

/// Where the weight lives in the test model.
#[derive(Clone, Copy, Debug)]
enum Home {
    Initializer,
    ConstantNode,
}

fn build(case: &Case, dtype: i32, form: Form, home: Home) -> (pb::ModelProto, Vec<f32>) {
    let n: usize = case.weight.iter().product();
    let w = weights(n, case.name.len() as u64 * 31 + dtype as u64);
    let wt = tensor("W", &case.weight, &w, dtype, form);
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let x = if dtype == FLOAT {
        "x"
    } else {
        nodes.push(node("Cast", "cast_in", &["x"], &["xc"], vec![attr_int("to", dtype as i64)]));
        "xc"
    };
    match home {
        Home::Initializer => inits.push(wt),
        Home::ConstantNode => nodes.push(constant("W", wt)),
    }
    let mut inputs = vec![x, "W"];
    if let Some(b) = case.bias {
        let bias: Vec<f32> = (0..b).map(|i| i as f32 / 8.0 - 0.25).collect();
        inits.push(tensor("B", &[b], &bias, dtype, Form::Raw));
        inputs.push("B");
    }
    nodes.push(node(case.op, "target", &inputs, &["y"], (case.attrs)()));
    let rank = case.input.len();
    let m = model(
        nodes,
        inits,
        vec![value_info("x", &case.input.iter().map(|d| Some(*d)).collect::<Vec<_>>(), FLOAT)],
        vec![value_info("y", &vec![None; rank], dtype)],
    );
    (m, w)
}

fn opts(sparsity: f64, scope: Scope, renorm: Renorm) -> PruneOptions {
    PruneOptions { selector: Selector::Sparsity { sparsity, scope }, renorm, ..Default::default() }
}

fn weight_of(m: &pb::ModelProto, folder: &std::path::Path) -> Vec<f64> {
    let g = m.graph.as_ref().unwrap();
    if let Some(t) = g.initializer.iter().find(|t| t.name == "W") {
        return values(t, folder);
    }
    let c = g.node.iter().find(|n| n.op_type == "Constant").expect("constant node");
    values(c.attribute[0].t.as_ref().unwrap(), folder)
}

fn tolerance(dtype: i32) -> f64 {
    match dtype {
        FLOAT16 => 1e-3,
        BFLOAT16 => 8e-3,
        _ => 1e-6,
    }
}

fn input_for(case: &Case) -> Array {
    let n: usize = case.input.iter().product();
    Array { shape: case.input.clone(), data: (0..n).map(|i| ((i * 7) % 11) as f32 / 11.0 - 0.4).collect() }
}

#[test]
fn inspect_reports_units_and_fan_in_of_every_case() {
    let dir = tempfile::tempdir().unwrap();
    for case in cases() {
        let (m, _) = build(&case, FLOAT, Form::Raw, Home::Initializer);
        let path = dir.path().join(format!("{}.onnx", case.name));
        save(&m, &path);
        let r = renorm::inspect_file(&path).unwrap();
        assert_eq!(r.targets.len(), 1, "{}", case.name);
        let t = &r.targets[0];
        let units = reference_units(case.op, &case.weight, case.trans_b, case.group);
        assert_eq!((t.units, t.fan_in), (units.len(), units[0].len()), "{}", case.name);
        assert_eq!((t.op.as_str(), t.weight.as_str(), &t.shape), (case.op, "W", &case.weight));
        assert_eq!(t.storage, "initializer");
        let zeros = weights(t.params, case.name.len() as u64 * 31 + 1).iter().filter(|v| **v == 0.0).count();
        assert_eq!(t.zero_fraction, zeros as f64 / t.params as f64, "{}", case.name);
    }
}

#[test]
fn unit_masks_and_l2_scales_in_every_type_and_storage() {
    let dir = tempfile::tempdir().unwrap();
    let variants = [
        (FLOAT, Form::Raw, Home::Initializer),
        (FLOAT, Form::Typed, Home::Initializer),
        (FLOAT, Form::Raw, Home::ConstantNode),
        (FLOAT16, Form::Raw, Home::Initializer),
        (FLOAT16, Form::Typed, Home::ConstantNode),
        (BFLOAT16, Form::Raw, Home::Initializer),
        (BFLOAT16, Form::Typed, Home::Initializer),
        (DOUBLE, Form::Raw, Home::Initializer),
        (DOUBLE, Form::Typed, Home::ConstantNode),
    ];
    for case in cases() {
        for (dtype, form, home) in variants {
            let label = format!("{} {dtype} {form:?} {home:?}", case.name);
            let (m, _) = build(&case, dtype, form, home);
            let input = dir.path().join(format!("{}-{dtype}-{form:?}-{home:?}.onnx", case.name));
            let output = input.with_extension("pruned.onnx");
            save(&m, &input);
            let r = renorm::prune_file(&input, &output, &opts(0.5, Scope::Unit, Renorm::L2)).expect(&label);
            let units = reference_units(case.op, &case.weight, case.trans_b, case.group);
            let expected: usize = units.iter().map(|u| torch_count(0.5, u.len())).sum();
            assert_eq!(r.targets[0].pruned, expected, "{label}");
            let storage = if matches!(home, Home::ConstantNode) { "constant" } else { "initializer" };
            assert_eq!(r.targets[0].storage, storage, "{label}");
            let before = weight_of(&m, dir.path());
            let out = load(&output);
            let after = weight_of(&out, dir.path());
            assert_unit_pruned(&before, &after, &units, 0.5, "l2", tolerance(dtype));
            // Storage form kept: the pruned tensor uses the same fields as the original.
            let (t_in, t_out) = (find_w(&m), find_w(&out));
            assert_eq!(t_in.raw_data.is_empty(), t_out.raw_data.is_empty(), "{label}");
            assert_eq!(
                (t_in.float_data.len(), t_in.int32_data.len(), t_in.double_data.len(), t_in.data_type),
                (t_out.float_data.len(), t_out.int32_data.len(), t_out.double_data.len(), t_out.data_type),
                "{label}"
            );
        }
    }
}

fn find_w(m: &pb::ModelProto) -> pb::TensorProto {
    let g = m.graph.as_ref().unwrap();
    g.initializer
        .iter()
        .find(|t| t.name == "W")
        .cloned()
        .or_else(|| {
            g.node.iter().find(|n| n.op_type == "Constant").map(|c| c.attribute[0].t.clone().unwrap())
        })
        .unwrap()
}

#[test]
fn tract_runs_written_models_and_sparsity_zero_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut untested = Vec::new();
    for case in cases() {
        for dtype in [FLOAT, FLOAT16, DOUBLE] {
            let label = format!("{} {dtype}", case.name);
            let (m, _) = build(&case, dtype, Form::Raw, Home::Initializer);
            let input = dir.path().join(format!("{}-{dtype}.onnx", case.name));
            save(&m, &input);
            let xs = vec![input_for(&case)];
            let shapes = vec![case.input.clone()];
            let original = match Runner::load(&input, &shapes) {
                Ok(r) => r.run(&xs).unwrap(),
                // tract's own limits on the *input* model (e.g. f16 Gemm with alpha): nothing to compare.
                Err(e) if dtype != FLOAT => {
                    untested.push(format!("{label}: {e}"));
                    continue;
                }
                Err(e) => panic!("{label}: {e}"),
            };

            let zero = input.with_extension("s0.onnx");
            renorm::prune_file(&input, &zero, &opts(0.0, Scope::Global, Renorm::L2)).expect(&label);
            let same = Runner::load(&zero, &shapes).expect(&label).run(&xs).unwrap();
            assert_eq!(same, original, "{label}: sparsity 0 changed the outputs");

            let half = input.with_extension("s5.onnx");
            renorm::prune_file(&input, &half, &opts(0.5, Scope::Layer, Renorm::L2)).expect(&label);
            let pruned = Runner::load(&half, &shapes).expect(&label).run(&xs).unwrap();
            assert_eq!(pruned[0].shape, original[0].shape, "{label}");
            assert!(pruned[0].data.iter().all(|v| v.is_finite()), "{label}");
            assert_ne!(pruned[0].data, original[0].data, "{label}: pruning half the weights changed nothing");
        }
    }
    eprintln!("original models tract cannot run: {untested:#?}");
    assert!(untested.len() <= 4, "tract ran too few of the non-f32 models: {untested:#?}");
}

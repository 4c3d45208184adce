//! `--renorm refit` (README "--renorm refit", design.md §4): every expected value is computed here, in f64,
//! from the contract's formulas — our own im2col / ConvTranspose gather, our own Gram matrices and our own
//! Cholesky solve — and compared with what the binary or the library wrote.
#![allow(clippy::needless_range_loop)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::write_npy;
use renorm::runtime::{Array, Runner};
use renorm::validate::DataSpec;
use renorm::{PruneOptions, RefitOptions, Renorm, Scope, Selector};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------------------
// Data

/// Deterministic values uniform in [-1, 1) (xorshift64*), continuous: no ties.
fn uniform(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let v = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
            (v >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

/// `samples` calibration samples of `per` values each: an offset, independent noise and a per-sample
/// common factor, so the features are correlated and not centred (the bias column matters), each value
/// of a sample on its own scale (0.25 to 2), so the Gram diagonal differs from feature to feature and
/// λ's mean over the kept fan-in is not the mean over all of it.
fn calib_values(samples: usize, per: usize, seed: u64) -> Vec<f32> {
    let u = uniform(samples * per, seed);
    let v = uniform(samples, seed ^ 0xABCD);
    let scale = |f: usize| 0.25 + 1.75 * ((f * 7919) % 13) as f64 / 12.0;
    (0..samples * per).map(|i| (scale(i % per) * (0.3 + u[i] + 0.5 * v[i / per])) as f32).collect()
}

fn write_data(path: &Path, dims: &[usize], data: &[f32]) {
    write_npy(path, &ArrayD::from_shape_vec(IxDyn(dims), data.to_vec()).unwrap()).unwrap();
}

/// Runs `path` in tract on `x` and returns its first output.
fn tract_run(path: &Path, dims: &[usize], x: &[f32]) -> Vec<f64> {
    let a = Array { shape: dims.to_vec(), data: x.to_vec() };
    let out =
        Runner::load(path, std::slice::from_ref(&a.shape)).unwrap().run(std::slice::from_ref(&a)).unwrap();
    out[0].data.iter().map(|v| f64::from(*v)).collect()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * scale, "{what}: element {i} is {g}, want {w} (max |want| {scale})");
    }
}

fn rel_l2(a: &[f64], z: &[f64]) -> f64 {
    let d: f64 = a.iter().zip(z).map(|(x, y)| (x - y).powi(2)).sum();
    (d / z.iter().map(|y| y * y).sum::<f64>()).sqrt()
}

// ---------------------------------------------------------------------------------------------------------
// The reference: rows, Gram matrices, ridge solves

/// Solves the symmetric positive definite system `a x = b` by Cholesky (a = L Lᵀ).
fn solve_spd(a: &[Vec<f64>], b: &[f64]) -> Vec<f64> {
    let n = b.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let s = a[i][j] - (0..j).map(|k| l[i][k] * l[j][k]).sum::<f64>();
            if i == j {
                assert!(s > 0.0, "reference system not positive definite");
                l[i][i] = s.sqrt();
            } else {
                l[i][j] = s / l[j][j];
            }
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        y[i] = (b[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (y[i] - (i + 1..n).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
    }
    x
}

/// The contract's solve for one unit: rows X (R x F), target column z, kept fan-in `keep`, original
/// effective weights `w0`. Returns (w over the whole fan-in, zero outside `keep`; b).
fn ridge_fit(rows: &[Vec<f64>], z: &[f64], keep: &[bool], w0: &[f64], ridge: f64) -> (Vec<f64>, f64) {
    ridge_fit_lambda(rows, z, keep, w0, ridge, false)
}

/// `ridge_fit`, with λ = ridge · mean(diag G) over the kept fan-in (the final solve) or, with
/// `over_all`, over the whole fan-in (the intermediate steps of `--refit-steps` K > 1, which share one λ
/// per group so that a shared inverse can serve every unit).
fn ridge_fit_lambda(
    rows: &[Vec<f64>],
    z: &[f64],
    keep: &[bool],
    w0: &[f64],
    ridge: f64,
    over_all: bool,
) -> (Vec<f64>, f64) {
    let kept: Vec<usize> = (0..keep.len()).filter(|&i| keep[i]).collect();
    let mut w = vec![0.0; keep.len()];
    if kept.is_empty() {
        return (w, z.iter().sum::<f64>() / z.len() as f64);
    }
    let m = kept.len() + 1;
    let mut g = vec![vec![0.0; m]; m];
    let mut c = vec![0.0; m];
    let mut a = vec![1.0; m];
    for (row, &zr) in rows.iter().zip(z) {
        for (p, &i) in kept.iter().enumerate() {
            a[p] = row[i];
        }
        for p in 0..m {
            c[p] += a[p] * zr;
            for q in 0..m {
                g[p][q] += a[p] * a[q];
            }
        }
    }
    let lambda = if over_all {
        let f = keep.len();
        ridge * rows.iter().map(|r| r.iter().map(|v| v * v).sum::<f64>()).sum::<f64>() / f as f64
    } else {
        ridge * (0..kept.len()).map(|p| g[p][p]).sum::<f64>() / kept.len() as f64
    };
    for (p, &i) in kept.iter().enumerate() {
        g[p][p] += lambda;
        c[p] += lambda * w0[i];
    }
    let s = solve_spd(&g, &c);
    for (p, &i) in kept.iter().enumerate() {
        w[i] = s[p];
    }
    (w, s[m - 1])
}

/// The contract's schedule for `steps` > 1: c0 = min(F, 4·max(n, 1)), c_t = round(c0·(n/c0)^(t/K)),
/// keep the c_t largest |w| of the previous solution (ties: lower index), refit (λ over the whole fan-in
/// before the last step, over the kept fan-in at the last). Also says whether a
/// selection after the first step was a near tie (|w| within 1e-4 relative at the cut), where f32 vs
/// f64 round-off may legitimately pick the other weight.
fn schedule_fit(
    rows: &[Vec<f64>],
    z: &[f64],
    w0: &[f64],
    n: usize,
    steps: usize,
    ridge: f64,
) -> (Vec<f64>, f64, bool) {
    let f = w0.len();
    let c0 = f.min(4 * n.max(1));
    let (mut prev, mut b, mut near_tie) = (w0.to_vec(), 0.0, false);
    for t in 1..=steps {
        let ct = (c0 as f64 * (n as f64 / c0 as f64).powf(t as f64 / steps as f64)).round() as usize;
        let mut order: Vec<usize> = (0..f).collect();
        order.sort_by(|&a, &c| prev[c].abs().partial_cmp(&prev[a].abs()).unwrap().then(a.cmp(&c)));
        if t > 1 && ct > 0 && ct < f {
            let (hi, lo) = (prev[order[ct - 1]].abs(), prev[order[ct]].abs());
            near_tie |= hi - lo <= 1e-4 * hi;
        }
        let mut keep = vec![false; f];
        for &i in &order[..ct] {
            keep[i] = true;
        }
        let (w, bb) = ridge_fit_lambda(rows, z, &keep, w0, ridge, t < steps);
        prev = w;
        b = bb;
    }
    assert_eq!(prev.iter().filter(|v| **v != 0.0).count(), n, "reference schedule ends at n");
    (prev, b, near_tie)
}

/// A linear target seen as rows: `rows[g]` are the X rows of group g (fan-in in the weight's unit
/// order), `units[j]` = (group, flat weight indices of unit j in fan-in order). Output element of row r
/// (= sample · positions + position) and unit j sits at sample·U·P + j·P + position.
struct Lin {
    rows: Vec<Vec<Vec<f64>>>,
    units: Vec<(usize, Vec<usize>)>,
    positions: usize,
    alpha: f64,
    beta: f64,
}

impl Lin {
    fn out_index(&self, r: usize, j: usize) -> usize {
        let (u, p) = (self.units.len(), self.positions);
        (r / p) * u * p + j * p + r % p
    }

    /// alpha · X·w + beta · b, laid out as the node's output, from stored weights `w` and bias `b`.
    fn forward(&self, w: &[f64], b: &[f64]) -> Vec<f64> {
        let mut out = vec![f64::NAN; self.rows[0].len() * self.units.len()];
        for (j, (g, idx)) in self.units.iter().enumerate() {
            for (r, row) in self.rows[*g].iter().enumerate() {
                let s: f64 = idx.iter().zip(row).map(|(&i, x)| w[i] * x).sum();
                out[self.out_index(r, j)] = self.alpha * s + self.beta * b[j];
            }
        }
        assert!(out.iter().all(|v| v.is_finite()), "every output element is some unit's row");
        out
    }

    fn column(&self, out: &[f64], j: usize) -> Vec<f64> {
        (0..self.rows[self.units[j].0].len()).map(|r| out[self.out_index(r, j)]).collect()
    }
}

fn dense_lin(x: &[f32], k: usize, units: Vec<Vec<usize>>, alpha: f64, beta: f64) -> Lin {
    let rows = x.chunks(k).map(|r| r.iter().map(|v| f64::from(*v)).collect()).collect();
    Lin { rows: vec![rows], units: units.into_iter().map(|u| (0, u)).collect(), positions: 1, alpha, beta }
}

/// 2-D convolution geometry: kernel, strides, dilations, pads [top, left, bottom, right].
#[derive(Clone, Copy)]
struct Geom {
    k: [usize; 2],
    s: [usize; 2],
    d: [usize; 2],
    pads: [usize; 4],
}

/// im2col of x (N, C, H, W) for a Conv with `group` groups: per group, one row per (sample, oy, ox), fan-in
/// (channel within the group, ky, kx), zero padding. Returns the rows and the output size.
fn conv_rows(x: &[f32], xd: [usize; 4], group: usize, g: Geom) -> (Vec<Vec<Vec<f64>>>, usize, usize) {
    let [n, c, h, w] = xd;
    let cg = c / group;
    let ho = (h + g.pads[0] + g.pads[2] - g.d[0] * (g.k[0] - 1) - 1) / g.s[0] + 1;
    let wo = (w + g.pads[1] + g.pads[3] - g.d[1] * (g.k[1] - 1) - 1) / g.s[1] + 1;
    let mut all = Vec::new();
    for grp in 0..group {
        let mut rows = Vec::new();
        for ni in 0..n {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut row = vec![0.0; cg * g.k[0] * g.k[1]];
                    for cl in 0..cg {
                        for ky in 0..g.k[0] {
                            for kx in 0..g.k[1] {
                                let iy = (oy * g.s[0] + ky * g.d[0]) as isize - g.pads[0] as isize;
                                let ix = (ox * g.s[1] + kx * g.d[1]) as isize - g.pads[1] as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    let ch = grp * cg + cl;
                                    row[(cl * g.k[0] + ky) * g.k[1] + kx] =
                                        f64::from(x[((ni * c + ch) * h + iy as usize) * w + ix as usize]);
                                }
                            }
                        }
                    }
                    rows.push(row);
                }
            }
        }
        all.push(rows);
    }
    (all, ho, wo)
}

/// The ConvTranspose gather of x (N, C, H, W): output position o collects x[n, c, i] for every (c in the
/// group, kernel offset k) with o = i·stride + k·dilation − pad_begin, zero where no such i exists.
fn conv_transpose_rows(
    x: &[f32],
    xd: [usize; 4],
    group: usize,
    g: Geom,
) -> (Vec<Vec<Vec<f64>>>, usize, usize) {
    let [n, c, h, w] = xd;
    let cg = c / group;
    let ho = g.s[0] * (h - 1) + g.d[0] * (g.k[0] - 1) + 1 - g.pads[0] - g.pads[2];
    let wo = g.s[1] * (w - 1) + g.d[1] * (g.k[1] - 1) + 1 - g.pads[1] - g.pads[3];
    let source = |o: usize, k: usize, axis: usize, size: usize| -> Option<usize> {
        let t = (o + g.pads[axis]) as isize - (k * g.d[axis]) as isize;
        (t >= 0 && (t as usize).is_multiple_of(g.s[axis]) && (t as usize / g.s[axis]) < size)
            .then(|| t as usize / g.s[axis])
    };
    let mut all = Vec::new();
    for grp in 0..group {
        let mut rows = Vec::new();
        for ni in 0..n {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut row = vec![0.0; cg * g.k[0] * g.k[1]];
                    for cl in 0..cg {
                        for ky in 0..g.k[0] {
                            for kx in 0..g.k[1] {
                                if let (Some(iy), Some(ix)) = (source(oy, ky, 0, h), source(ox, kx, 1, w)) {
                                    let ch = grp * cg + cl;
                                    row[(cl * g.k[0] + ky) * g.k[1] + kx] =
                                        f64::from(x[((ni * c + ch) * h + iy) * w + ix]);
                                }
                            }
                        }
                    }
                    rows.push(row);
                }
            }
        }
        all.push(rows);
    }
    (all, ho, wo)
}

// ---------------------------------------------------------------------------------------------------------
// Test models

/// One single-target model whose target reads the graph input `x`, with everything needed to compute the
/// refit independently.
struct Case {
    name: &'static str,
    model: pb::ModelProto,
    node: &'static str,
    x_dims: Vec<usize>,
    x: Vec<f32>,
    lin: Lin,
    /// Original stored weights (flat) and bias (None: the model has none).
    w0: Vec<f64>,
    b0: Option<Vec<f64>>,
    sparsity: f64,
    /// `--ridge`, when not the default 0.01.
    ridge: Option<f64>,
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|x| f64::from(*x)).collect()
}

fn io(x: &[Option<usize>], y: &[Option<usize>]) -> (Vec<pb::ValueInfoProto>, Vec<pb::ValueInfoProto>) {
    (vec![value_info("x", x, FLOAT)], vec![value_info("y", y, FLOAT)])
}

/// Gemm transB=1 with a bias C: x (60, 12), W (5, 12).
fn gemm_trans_b() -> Case {
    let (n, k, u) = (60, 12, 5);
    let (w, c) = (weights(u * k, 11), weights(u, 12));
    let (i, o) = io(&[None, Some(k)], &[None, Some(u)]);
    let m = model(
        vec![node("Gemm", "fc", &["x", "W", "C"], &["y"], vec![attr_int("transB", 1)])],
        vec![f32_tensor("W", &[u, k], &w), f32_tensor("C", &[u], &c)],
        i,
        o,
    );
    let x = calib_values(n, k, 1);
    let lin = dense_lin(&x, k, reference_units("Gemm", &[u, k], true, 1), 1.0, 1.0);
    Case {
        name: "gemm_tb",
        model: m,
        node: "fc",
        x_dims: vec![n, k],
        x,
        lin,
        w0: f64s(&w),
        b0: Some(f64s(&c)),
        sparsity: 0.6,
        ridge: None,
    }
}

/// Gemm transB=0, alpha=0.5, beta=2, C: x (80, 10), B (10, 4).
fn gemm_alpha_beta() -> Case {
    let (n, k, u) = (80, 10, 4);
    let (w, c) = (weights(k * u, 21), weights(u, 22));
    let (i, o) = io(&[None, Some(k)], &[None, Some(u)]);
    let m = model(
        vec![node(
            "Gemm",
            "fc",
            &["x", "B", "C"],
            &["y"],
            vec![attr_float("alpha", 0.5), attr_float("beta", 2.0)],
        )],
        vec![f32_tensor("B", &[k, u], &w), f32_tensor("C", &[u], &c)],
        i,
        o,
    );
    let x = calib_values(n, k, 2);
    let lin = dense_lin(&x, k, reference_units("Gemm", &[k, u], false, 1), 0.5, 2.0);
    Case {
        name: "gemm_ab",
        model: m,
        node: "fc",
        x_dims: vec![n, k],
        x,
        lin,
        w0: f64s(&w),
        b0: Some(f64s(&c)),
        sparsity: 0.5,
        ridge: None,
    }
}

/// Gemm transB=1 without C: x (40, 12), W (5, 12) whose unit 2 is tiny (so at 50 % it keeps nothing).
fn gemm_no_bias() -> Case {
    let (n, k, u) = (40, 12, 5);
    let mut w = weights(u * k, 31);
    for v in &mut w[2 * k..3 * k] {
        *v *= 1e-3;
    }
    let (i, o) = io(&[None, Some(k)], &[None, Some(u)]);
    let m = model(
        vec![node("Gemm", "fc", &["x", "W"], &["y"], vec![attr_int("transB", 1)])],
        vec![f32_tensor("W", &[u, k], &w)],
        i,
        o,
    );
    let x = calib_values(n, k, 3);
    let lin = dense_lin(&x, k, reference_units("Gemm", &[u, k], true, 1), 1.0, 1.0);
    Case {
        name: "gemm_nob",
        model: m,
        node: "fc",
        x_dims: vec![n, k],
        x,
        lin,
        w0: f64s(&w),
        b0: None,
        sparsity: 0.5,
        ridge: None,
    }
}

/// MatMul W (9, 4) then Add of a per-unit bias: x (50, 9), with --ridge 0.05.
fn matmul_add() -> Case {
    let (n, k, u) = (50, 9, 4);
    let (w, c) = (weights(k * u, 41), weights(u, 42));
    let (i, o) = io(&[None, Some(k)], &[None, Some(u)]);
    let m = model(
        vec![
            node("MatMul", "mm", &["x", "W"], &["h"], vec![]),
            node("Add", "add", &["h", "b"], &["y"], vec![]),
        ],
        vec![f32_tensor("W", &[k, u], &w), f32_tensor("b", &[u], &c)],
        i,
        o,
    );
    let x = calib_values(n, k, 4);
    let lin = dense_lin(&x, k, reference_units("MatMul", &[k, u], false, 1), 1.0, 1.0);
    Case {
        name: "matmul_add",
        model: m,
        node: "mm",
        x_dims: vec![n, k],
        x,
        lin,
        w0: f64s(&w),
        b0: Some(f64s(&c)),
        sparsity: 0.5,
        ridge: Some(0.05),
    }
}

/// MatMul W (8, 3), no Add: x (30, 8).
fn matmul_alone() -> Case {
    let (n, k, u) = (30, 8, 3);
    let w = weights(k * u, 51);
    let (i, o) = io(&[None, Some(k)], &[None, Some(u)]);
    let m = model(
        vec![node("MatMul", "mm", &["x", "W"], &["y"], vec![])],
        vec![f32_tensor("W", &[k, u], &w)],
        i,
        o,
    );
    let x = calib_values(n, k, 5);
    let lin = dense_lin(&x, k, reference_units("MatMul", &[k, u], false, 1), 1.0, 1.0);
    Case {
        name: "matmul",
        model: m,
        node: "mm",
        x_dims: vec![n, k],
        x,
        lin,
        w0: f64s(&w),
        b0: None,
        sparsity: 0.5,
        ridge: None,
    }
}

/// Conv group=2, kernel 3x2, strides 2, dilations (2, 1), asymmetric pads, bias: x (20, 6, 9, 10),
/// W (6, 3, 3, 2), with --ridge 0.1.
fn conv_grouped() -> Case {
    let (n, c, h, wd, m_out, group) = (20, 6, 9, 10, 6, 2);
    let geom = Geom { k: [3, 2], s: [2, 2], d: [2, 1], pads: [1, 0, 2, 1] };
    let wshape = [m_out, c / group, 3, 2];
    let (w, b) = (weights(wshape.iter().product(), 61), weights(m_out, 62));
    let (i, o) = io(&[None, Some(c), Some(h), Some(wd)], &[None, Some(m_out), None, None]);
    let m = model(
        vec![node(
            "Conv",
            "conv",
            &["x", "W", "B"],
            &["y"],
            vec![
                attr_ints("kernel_shape", &[3, 2]),
                attr_ints("strides", &[2, 2]),
                attr_ints("dilations", &[2, 1]),
                attr_ints("pads", &[1, 0, 2, 1]),
                attr_int("group", group as i64),
            ],
        )],
        vec![f32_tensor("W", &wshape, &w), f32_tensor("B", &[m_out], &b)],
        i,
        o,
    );
    let x = calib_values(n, c * h * wd, 6);
    let (rows, ho, wo) = conv_rows(&x, [n, c, h, wd], group, geom);
    let units = reference_units("Conv", &wshape, false, group)
        .into_iter()
        .enumerate()
        .map(|(j, idx)| (j / (m_out / group), idx))
        .collect();
    let lin = Lin { rows, units, positions: ho * wo, alpha: 1.0, beta: 1.0 };
    Case {
        name: "conv_grouped",
        model: m,
        node: "conv",
        x_dims: vec![n, c, h, wd],
        x,
        lin,
        w0: f64s(&w),
        b0: Some(f64s(&b)),
        sparsity: 0.5,
        ridge: Some(0.1),
    }
}

/// Depthwise Conv (group = channels = 3), kernel 3x3, strides 2, auto_pad SAME_UPPER, no bias:
/// x (30, 3, 7, 8). SAME_UPPER: out 4x4, pads total (2, 1) → begin (1, 0), end (1, 1).
fn conv_depthwise() -> Case {
    let (n, c, h, wd) = (30, 3, 7, 8);
    let geom = Geom { k: [3, 3], s: [2, 2], d: [1, 1], pads: [1, 0, 1, 1] };
    let wshape = [c, 1, 3, 3];
    let w = weights(c * 9, 71);
    let (i, o) = io(&[None, Some(c), Some(h), Some(wd)], &[None, Some(c), None, None]);
    let mut auto_pad = pb::AttributeProto::new();
    auto_pad.name = "auto_pad".into();
    auto_pad.type_ = pb::attribute_proto::AttributeType::STRING.into();
    auto_pad.s = b"SAME_UPPER".to_vec();
    let m = model(
        vec![node(
            "Conv",
            "dw",
            &["x", "W"],
            &["y"],
            vec![
                attr_ints("kernel_shape", &[3, 3]),
                attr_ints("strides", &[2, 2]),
                auto_pad,
                attr_int("group", 3),
            ],
        )],
        vec![f32_tensor("W", &wshape, &w)],
        i,
        o,
    );
    let x = calib_values(n, c * h * wd, 7);
    let (rows, ho, wo) = conv_rows(&x, [n, c, h, wd], c, geom);
    assert_eq!((ho, wo), (4, 4));
    let units = reference_units("Conv", &wshape, false, c).into_iter().enumerate().collect();
    let lin = Lin { rows, units, positions: ho * wo, alpha: 1.0, beta: 1.0 };
    Case {
        name: "conv_dw",
        model: m,
        node: "dw",
        x_dims: vec![n, c, h, wd],
        x,
        lin,
        w0: f64s(&w),
        b0: None,
        sparsity: 0.5,
        ridge: None,
    }
}

/// ConvTranspose strides 2, kernel 3x2, pads (1, 0, 0, 1), bias: x (25, 3, 4, 5), W (3, 4, 3, 2), with
/// --ridge 0.1.
fn conv_transpose() -> Case {
    let (n, c, h, wd, m_out) = (25, 3, 4, 5, 4);
    let geom = Geom { k: [3, 2], s: [2, 2], d: [1, 1], pads: [1, 0, 0, 1] };
    let wshape = [c, m_out, 3, 2];
    let (w, b) = (weights(wshape.iter().product(), 81), weights(m_out, 82));
    let (i, o) = io(&[None, Some(c), Some(h), Some(wd)], &[None, Some(m_out), None, None]);
    let m = model(
        vec![node(
            "ConvTranspose",
            "deconv",
            &["x", "W", "B"],
            &["y"],
            vec![
                attr_ints("kernel_shape", &[3, 2]),
                attr_ints("strides", &[2, 2]),
                attr_ints("pads", &[1, 0, 0, 1]),
            ],
        )],
        vec![f32_tensor("W", &wshape, &w), f32_tensor("B", &[m_out], &b)],
        i,
        o,
    );
    let x = calib_values(n, c * h * wd, 8);
    let (rows, ho, wo) = conv_transpose_rows(&x, [n, c, h, wd], 1, geom);
    assert_eq!((ho, wo), (8, 9));
    let units = reference_units("ConvTranspose", &wshape, false, 1).into_iter().map(|u| (0, u)).collect();
    let lin = Lin { rows, units, positions: ho * wo, alpha: 1.0, beta: 1.0 };
    Case {
        name: "conv_t",
        model: m,
        node: "deconv",
        x_dims: vec![n, c, h, wd],
        x,
        lin,
        w0: f64s(&w),
        b0: Some(f64s(&b)),
        sparsity: 0.5,
        ridge: Some(0.1),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Running renorm and reading what it wrote

/// `renorm prune input -o out --renorm refit --calib calib --json extra…`; the parsed report.
fn prune_refit_cli(input: &Path, calib: &Path, out: &Path, extra: &[String]) -> Value {
    let o = renorm_bin()
        .args(["prune", input.to_str().unwrap(), "-o", out.to_str().unwrap()])
        .args(["--renorm", "refit", "--calib", calib.to_str().unwrap(), "--json"])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{}: {stderr}", input.display());
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["method"]["renorm"], "refit", "{r}");
    r
}

fn target<'a>(r: &'a Value, node: &str) -> &'a Value {
    r["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["node"] == node)
        .unwrap_or_else(|| panic!("{node}: {r}"))
}

/// The weights of node `name` in the model at `path`, and its bias: input 2 of Gemm/Conv/ConvTranspose,
/// the constant of the Add that consumes a MatMul's output.
fn stored(path: &Path, name: &str) -> (Vec<f64>, Option<Vec<f64>>) {
    let m = load(path);
    let g = m.graph.as_ref().unwrap();
    let folder = path.parent().unwrap();
    let init = |t: &str| {
        values(
            g.initializer.iter().find(|i| i.name == t).unwrap_or_else(|| panic!("no initializer {t}")),
            folder,
        )
    };
    let n = g.node.iter().find(|n| n.name == name).unwrap();
    let w = init(&n.input[1]);
    let bias = if n.op_type == "MatMul" {
        g.node.iter().find(|a| a.op_type == "Add" && a.input.contains(&n.output[0])).map(|a| {
            let other = a.input.iter().find(|i| **i != n.output[0]).unwrap();
            init(other)
        })
    } else {
        n.input.get(2).filter(|s| !s.is_empty()).map(|b| init(b))
    };
    (w, bias)
}

/// min / mean / max.
fn stats(v: &[f64]) -> [f64; 3] {
    [
        v.iter().copied().fold(f64::INFINITY, f64::min),
        v.iter().sum::<f64>() / v.len() as f64,
        v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    ]
}

fn assert_stats(got: &Value, want: [f64; 3], what: &str) {
    for (k, w) in ["min", "mean", "max"].iter().zip(want) {
        let g = got[k].as_f64().unwrap_or_else(|| panic!("{what}.{k} missing: {got}"));
        assert!((g - w).abs() <= 1e-4 * w.abs() + 1e-6, "{what}.{k} is {g}, want {w}");
    }
}

fn assert_near(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() <= 1e-4 * want.abs() + 1e-7, "{what} is {got}, want {want}");
}

/// Checks one unit's stored weights and bias against the reference (effective values).
fn assert_unit(case: &str, j: usize, got_w: &[f64], got_b: f64, want_w: &[f64], want_b: f64, z: &[f64]) {
    let wmax = want_w.iter().fold(0f64, |m, v| m.max(v.abs()));
    for (f, (g, w)) in got_w.iter().zip(want_w).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * w.abs().max(wmax),
            "{case}: unit {j}, fan-in {f}: weight {g}, reference {w}\n got  {got_w:?}\n want {want_w:?}"
        );
    }
    let zrms = (z.iter().map(|v| v * v).sum::<f64>() / z.len() as f64).sqrt();
    assert!(
        (got_b - want_b).abs() <= 1e-4 * want_b.abs().max(zrms),
        "{case}: unit {j}: bias {got_b}, reference {want_b}"
    );
}

fn save_case(case: &Case, dir: &Path) -> (PathBuf, PathBuf) {
    let input = dir.join(format!("{}.onnx", case.name));
    save(&case.model, &input);
    let npy = dir.join(format!("{}.npy", case.name));
    write_data(&npy, &case.x_dims, &case.x);
    (input, npy)
}

/// The original output Z (f64, from the formula) — checked against tract on the original model, which
/// validates this file's own im2col.
fn original_output(case: &Case, input: &Path) -> Vec<f64> {
    let b0 = case.b0.clone().unwrap_or_else(|| vec![0.0; case.lin.units.len()]);
    let z = case.lin.forward(&case.w0, &b0);
    assert_close(&tract_run(input, &case.x_dims, &case.x), &z, 1e-5, &format!("{}: test's own Z", case.name));
    z
}

/// `--refit-steps 1`: mask = magnitude mask, weights and bias = the ridge solution, the written model
/// runs in tract and computes X·w + b from the stored values, the report's figures agree.
fn check_exact(case: &Case, dir: &Path) -> Checked {
    let (input, npy) = save_case(case, dir);
    let z = original_output(case, &input);
    let out = dir.join(format!("{}-refit.onnx", case.name));
    let mut args =
        vec!["--sparsity".to_string(), case.sparsity.to_string(), "--refit-steps".into(), "1".into()];
    if let Some(r) = case.ridge {
        args.extend(["--ridge".to_string(), r.to_string()]);
    }
    let r = prune_refit_cli(&input, &npy, &out, &args);
    let t = target(&r, case.node);
    let (w, b) = stored(&out, case.node);
    let b = b.unwrap_or_else(|| panic!("{}: refit wrote no bias", case.name));
    let lin = &case.lin;
    assert_eq!((w.len(), b.len()), (case.w0.len(), lin.units.len()), "{}", case.name);

    // The mask: exactly the magnitude mask (single target, so global = layer).
    let pruned = reference_pruned(&case.w0, torch_count(case.sparsity, case.w0.len()));
    for (i, (v, p)) in w.iter().zip(&pruned).enumerate() {
        assert_eq!(*v == 0.0, *p, "{}: element {i} is {v}, magnitude mask prunes it: {p}", case.name);
    }

    // Each unit: the ridge solution over its kept fan-in.
    let ridge = case.ridge.unwrap_or(0.01);
    let b0 = case.b0.clone().unwrap_or_else(|| vec![0.0; lin.units.len()]);
    let (mut ref_w, mut ref_b) = (vec![0.0; w.len()], vec![0.0; b.len()]);
    let (mut scales, mut shifts) = (Vec::new(), Vec::new());
    for (j, (g, idx)) in lin.units.iter().enumerate() {
        let zj = lin.column(&z, j);
        let keep: Vec<bool> = idx.iter().map(|&i| !pruned[i]).collect();
        let w0j: Vec<f64> = idx.iter().map(|&i| lin.alpha * case.w0[i]).collect();
        let (wr, br) = ridge_fit(&lin.rows[*g], &zj, &keep, &w0j, ridge);
        let got: Vec<f64> = idx.iter().map(|&i| lin.alpha * w[i]).collect();
        assert_unit(case.name, j, &got, lin.beta * b[j], &wr, br, &zj);
        for (f, &i) in idx.iter().enumerate() {
            ref_w[i] = wr[f] / lin.alpha;
        }
        ref_b[j] = br / lin.beta;
        let kept_norm = w0j.iter().zip(&keep).filter(|(_, k)| **k).map(|(v, _)| v * v).sum::<f64>().sqrt();
        if kept_norm > 0.0 {
            scales.push(wr.iter().map(|v| v * v).sum::<f64>().sqrt() / kept_norm);
        }
        shifts.push(br - lin.beta * b0[j]);
    }

    // The written model runs and computes X·w + b with what it stores.
    let ran = tract_run(&out, &case.x_dims, &case.x);
    assert_close(&ran, &lin.forward(&w, &b), 1e-4, &format!("{}: tract on the written model", case.name));

    // Report: output errors of the plain-pruned and the refitted target, scale and shift.
    let plain: Vec<f64> = case.w0.iter().zip(&pruned).map(|(v, p)| if *p { 0.0 } else { *v }).collect();
    let before = rel_l2(&lin.forward(&plain, &b0), &z);
    let after = rel_l2(&lin.forward(&ref_w, &ref_b), &z);
    assert_near(t["output_error"]["before"].as_f64().unwrap(), before, "output_error.before");
    assert_near(t["output_error"]["after"].as_f64().unwrap(), after, "output_error.after");
    assert!(after < before, "{}: after {after} >= before {before}", case.name);
    eprintln!("{}: output error {before:.4} → {after:.4}", case.name);
    let shifts = (lin.beta == 1.0).then_some(shifts);
    Checked { name: case.name, node: case.node, out, report: r, scales, shifts }
}

/// What `check_exact` found, and the report's per-unit statistics still to check (last, so that a
/// failure there does not hide the checks on the written model).
struct Checked {
    name: &'static str,
    node: &'static str,
    out: PathBuf,
    report: Value,
    /// ‖w_refit‖ / ‖w0_K‖ of every unit that kept a non-zero weight.
    scales: Vec<f64>,
    /// b_new − b_orig of every unit (None when beta ≠ 1: the contract does not say in which units).
    shifts: Option<Vec<f64>>,
}

impl Checked {
    fn assert_scale_and_shift(&self) {
        let t = target(&self.report, self.node);
        assert_stats(&t["scale"], stats(&self.scales), &format!("{}: scale", self.name));
        if let Some(shifts) = &self.shifts {
            assert_stats(&t["shift"], stats(shifts), &format!("{}: shift", self.name));
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// 1. --refit-steps 1: exact weights and biases

#[test]
fn gemm_trans_b_with_bias_is_the_ridge_solution() {
    let dir = tempfile::tempdir().unwrap();
    check_exact(&gemm_trans_b(), dir.path()).assert_scale_and_shift();
}

#[test]
fn gemm_with_alpha_beta_and_trans_b_0_stores_weights_over_alpha_and_bias_over_beta() {
    let dir = tempfile::tempdir().unwrap();
    check_exact(&gemm_alpha_beta(), dir.path()).assert_scale_and_shift();
}

#[test]
fn gemm_without_bias_gains_input_2_and_an_empty_unit_gets_the_mean_output() {
    let dir = tempfile::tempdir().unwrap();
    let case = gemm_no_bias();
    let checked = check_exact(&case, dir.path());
    let m = load(&checked.out);
    let g = m.graph.as_ref().unwrap();
    assert_eq!(g.node.len(), 1);
    let n = &g.node[0];
    assert_eq!((n.input.len(), &n.output[..]), (3, &["y".to_string()][..]), "{n:?}");
    let c = g.initializer.iter().find(|t| t.name == n.input[2]).expect("bias initializer");
    assert_eq!(c.dims.iter().product::<i64>(), 5);
    // Unit 2 kept nothing: zero weights, bias = mean of its original output (checked in check_exact too).
    let (w, b) = stored(&checked.out, "fc");
    assert!(w[24..36].iter().all(|v| *v == 0.0));
    let z = case.lin.forward(&case.w0, &[0.0; 5]);
    let z2 = case.lin.column(&z, 2);
    assert_near(b.unwrap()[2], z2.iter().sum::<f64>() / z2.len() as f64, "empty unit's bias");
    // The shift statistics cover every unit, the empty one too (its b_new − b_orig is well defined).
    checked.assert_scale_and_shift();
}

#[test]
fn matmul_with_add_refits_the_add_bias() {
    let dir = tempfile::tempdir().unwrap();
    let checked = check_exact(&matmul_add(), dir.path());
    let ops: Vec<String> = load(&checked.out).graph.node.iter().map(|n| n.op_type.clone()).collect();
    assert_eq!(ops, ["MatMul", "Add"]);
    checked.assert_scale_and_shift();
}

#[test]
fn matmul_without_add_gets_an_add_and_keeps_its_output_name() {
    let dir = tempfile::tempdir().unwrap();
    let checked = check_exact(&matmul_alone(), dir.path());
    let m = load(&checked.out);
    let g = m.graph.as_ref().unwrap();
    let ops: Vec<&str> = g.node.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["MatMul", "Add"]);
    assert_eq!(g.node[1].output, ["y"]);
    assert_ne!(g.node[0].output[0], "y");
    assert!(g.node[1].input.contains(&g.node[0].output[0]));
    let outputs: Vec<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outputs, ["y"]);
    checked.assert_scale_and_shift();
}

#[test]
fn grouped_strided_dilated_padded_conv_is_the_ridge_solution_per_group() {
    let dir = tempfile::tempdir().unwrap();
    check_exact(&conv_grouped(), dir.path()).assert_scale_and_shift();
}

#[test]
fn depthwise_conv_with_auto_pad_gains_a_bias() {
    let dir = tempfile::tempdir().unwrap();
    let checked = check_exact(&conv_depthwise(), dir.path());
    assert_eq!(load(&checked.out).graph.node[0].input.len(), 3);
    checked.assert_scale_and_shift();
}

#[test]
fn conv_transpose_with_stride_and_pads_is_the_ridge_solution() {
    let dir = tempfile::tempdir().unwrap();
    check_exact(&conv_transpose(), dir.path()).assert_scale_and_shift();
}

// ---------------------------------------------------------------------------------------------------------
// 2. --refit-steps 4

/// Per-unit counts of `pruned` (flat) over `units`.
fn kept_counts(pruned: &[bool], units: &[(usize, Vec<usize>)]) -> Vec<usize> {
    units.iter().map(|(_, idx)| idx.iter().filter(|&&i| !pruned[i]).count()).collect()
}

/// Saves the case, runs `--refit-steps steps`: the original output Z, the stored weights and bias, the report.
fn run_steps(case: &Case, dir: &Path, steps: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>, Value) {
    let (input, npy) = save_case(case, dir);
    let z = original_output(case, &input);
    let out = dir.join(format!("{}-steps{steps}.onnx", case.name));
    let mut args =
        vec!["--sparsity".to_string(), case.sparsity.to_string(), "--refit-steps".into(), steps.to_string()];
    if let Some(r) = case.ridge {
        args.extend(["--ridge".to_string(), r.to_string()]);
    }
    let r = prune_refit_cli(&input, &npy, &out, &args);
    let (w, b) = stored(&out, case.node);
    (z, w, b.unwrap_or_else(|| panic!("{}: no bias", case.name)), r)
}

fn steps_cases() -> Vec<Case> {
    let mut cases = vec![gemm_trans_b(), gemm_alpha_beta(), matmul_add(), conv_grouped(), conv_transpose()];
    for c in &mut cases {
        c.sparsity = 0.7;
    }
    cases
}

#[test]
fn refit_steps_4_keeps_each_units_magnitude_count_and_lowers_the_output_error() {
    let dir = tempfile::tempdir().unwrap();
    for case in steps_cases() {
        let (z, w, b, r) = run_steps(&case, dir.path(), 4);
        let n_pruned = torch_count(case.sparsity, w.len());
        let pruned = reference_pruned(&case.w0, n_pruned);
        let got: Vec<bool> = w.iter().map(|v| *v == 0.0).collect();
        assert_eq!(
            kept_counts(&got, &case.lin.units),
            kept_counts(&pruned, &case.lin.units),
            "{}: kept per unit",
            case.name
        );
        assert_eq!(got.iter().filter(|p| **p).count(), n_pruned, "{}: total pruned", case.name);
        let t = target(&r, case.node);
        assert_eq!(t["pruned"].as_u64().unwrap() as usize, n_pruned, "{}", case.name);
        let (before, after) =
            (t["output_error"]["before"].as_f64().unwrap(), t["output_error"]["after"].as_f64().unwrap());
        assert!(after < before, "{}: output_error after {after} >= before {before}", case.name);
        // `after` is the error of what was stored.
        let stored_err = rel_l2(&case.lin.forward(&w, &b), &z);
        assert!(
            (after - stored_err).abs() <= 1e-4 * stored_err + 1e-6,
            "{}: after {after} vs {stored_err}",
            case.name
        );
        eprintln!("{} steps 4: output error {before:.4} → {after:.4}", case.name);
    }

    // The MLP fixture at 90 % global: each unit keeps its count of the global magnitude mask.
    let mlp = fixtures().join("mnist_mlp.onnx");
    let out = dir.path().join("mlp-steps4.onnx");
    let args = ["--sparsity", "0.9", "--refit-steps", "4"].map(String::from);
    let r = prune_refit_cli(&mlp, &fixtures().join("mnist_calib_1000.npy"), &out, &args);
    let original = load(&mlp);
    let written = load(&out);
    let names = ["fc1.weight", "fc2.weight", "fc3.weight"];
    let get = |m: &pb::ModelProto, name: &str| {
        let t = m.graph.initializer.iter().find(|t| t.name == name).unwrap();
        (values(t, Path::new(".")), t.dims.iter().map(|d| *d as usize).collect::<Vec<_>>())
    };
    let all: Vec<f64> = names.iter().flat_map(|n| get(&original, n).0).collect();
    let pruned_all = reference_pruned(&all, torch_count(0.9, all.len()));
    let mut offset = 0;
    let mut total = 0;
    for name in names {
        let (w0, dims) = get(&original, name);
        let pruned = &pruned_all[offset..offset + w0.len()];
        offset += w0.len();
        assert!(pruned.iter().any(|p| !p), "{name}: the global mask would collapse it (guard not modelled)");
        let units: Vec<(usize, Vec<usize>)> =
            reference_units("Gemm", &dims, true, 1).into_iter().map(|u| (0, u)).collect();
        let got: Vec<bool> = get(&written, name).0.iter().map(|v| *v == 0.0).collect();
        assert_eq!(kept_counts(&got, &units), kept_counts(pruned, &units), "{name}: kept per unit");
        total += got.iter().filter(|p| **p).count();
    }
    assert_eq!(total, torch_count(0.9, all.len()));
    for t in r["targets"].as_array().unwrap() {
        let e = &t["output_error"];
        assert!(e["after"].as_f64().unwrap() < e["before"].as_f64().unwrap(), "{t}");
    }
}

#[test]
fn refit_steps_4_follows_the_contract_schedule() {
    let dir = tempfile::tempdir().unwrap();
    for case in steps_cases() {
        let (z, w, b, _) = run_steps(&case, dir.path(), 4);
        let lin = &case.lin;
        let pruned = reference_pruned(&case.w0, torch_count(case.sparsity, w.len()));
        let counts = kept_counts(&pruned, &lin.units);
        let ridge = case.ridge.unwrap_or(0.01);
        let mut near = 0;
        for (j, (g, idx)) in lin.units.iter().enumerate() {
            let zj = lin.column(&z, j);
            let w0j: Vec<f64> = idx.iter().map(|&i| lin.alpha * case.w0[i]).collect();
            let (wr, br, near_tie) = schedule_fit(&lin.rows[*g], &zj, &w0j, counts[j], 4, ridge);
            if near_tie {
                near += 1;
                continue;
            }
            let got: Vec<f64> = idx.iter().map(|&i| lin.alpha * w[i]).collect();
            let mask_got: Vec<bool> = got.iter().map(|v| *v != 0.0).collect();
            let mask_want: Vec<bool> = wr.iter().map(|v| *v != 0.0).collect();
            assert_eq!(mask_got, mask_want, "{}: unit {j}: final mask", case.name);
            assert_unit(case.name, j, &got, lin.beta * b[j], &wr, br, &zj);
        }
        eprintln!(
            "{}: {} of {} units compared exactly (others: near ties)",
            case.name,
            lin.units.len() - near,
            lin.units.len()
        );
        assert!(
            near * 4 <= lin.units.len(),
            "{}: {near} units with near ties: test data too tied",
            case.name
        );
    }
}

#[test]
fn refit_steps_4_breaks_exact_ties_toward_the_lower_index() {
    // Every unit: magnitudes 0.9 … 0.4, four tied 0.3s, 0.1, 0.05, in its own order and signs. At --scope
    // unit 75 %, n = 3, c0 = 12 and c1 = round(12 · 0.25^¼) = 8: step 1 keeps two of the four 0.3s.
    let (n, k, u) = (60, 12, 6);
    let mags = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.3, 0.3, 0.3, 0.1, 0.05];
    let mut w = vec![0f32; u * k];
    for j in 0..u {
        for (r, m) in mags.iter().enumerate() {
            let f = (r * 5 + j * 7) % k; // 5 is coprime with 12: a permutation per unit
            w[j * k + f] = if (r + j) % 3 == 0 { -m } else { *m };
        }
    }
    let c = weights(u, 102);
    let (i, o) = io(&[None, Some(k)], &[None, Some(u)]);
    let m = model(
        vec![node("Gemm", "fc", &["x", "W", "C"], &["y"], vec![attr_int("transB", 1)])],
        vec![f32_tensor("W", &[u, k], &w), f32_tensor("C", &[u], &c)],
        i,
        o,
    );
    let x = calib_values(n, k, 101);
    let lin = dense_lin(&x, k, reference_units("Gemm", &[u, k], true, 1), 1.0, 1.0);
    let case = Case {
        name: "gemm_tied",
        model: m,
        node: "fc",
        x_dims: vec![n, k],
        x,
        lin,
        w0: f64s(&w),
        b0: Some(f64s(&c)),
        sparsity: 0.75,
        ridge: Some(0.1),
    };
    let dir = tempfile::tempdir().unwrap();
    let (input, npy) = save_case(&case, dir.path());
    let z = original_output(&case, &input);
    let out = dir.path().join("tied.onnx");
    let args =
        ["--sparsity", "0.75", "--scope", "unit", "--refit-steps", "4", "--ridge", "0.1"].map(String::from);
    prune_refit_cli(&input, &npy, &out, &args);
    let (ws, bs) = stored(&out, "fc");
    let bs = bs.unwrap();
    let mut near = 0;
    for (j, (_, idx)) in case.lin.units.iter().enumerate() {
        let zj = case.lin.column(&z, j);
        let w0j: Vec<f64> = idx.iter().map(|&i| case.w0[i]).collect();
        let (wr, br, near_tie) = schedule_fit(&case.lin.rows[0], &zj, &w0j, k - torch_count(0.75, k), 4, 0.1);
        let got: Vec<f64> = idx.iter().map(|&i| ws[i]).collect();
        assert_eq!(got.iter().filter(|v| **v != 0.0).count(), 3, "unit {j}: kept count");
        if near_tie {
            near += 1;
            continue;
        }
        let mask_got: Vec<bool> = got.iter().map(|v| *v != 0.0).collect();
        let mask_want: Vec<bool> = wr.iter().map(|v| *v != 0.0).collect();
        assert_eq!(mask_got, mask_want, "gemm_tied: unit {j}: final mask");
        assert_unit("gemm_tied", j, &got, bs[j], &wr, br, &zj);
    }
    eprintln!("gemm_tied: {} of {u} units compared exactly (others: near ties)", u - near);
    assert!(near * 3 <= u, "{near} units with near ties after step 1: test data too tied");
}

// ---------------------------------------------------------------------------------------------------------
// 3. Two targets: the second sees the refitted first

#[test]
fn the_second_target_is_fitted_on_the_refitted_first_layers_output() {
    let dir = tempfile::tempdir().unwrap();
    let (n, k, h, u) = (80, 10, 8, 4);
    let (w1, c1, w2, c2) = (weights(h * k, 91), weights(h, 92), weights(u * h, 93), weights(u, 94));
    let (i, o) = io(&[None, Some(k)], &[None, Some(u)]);
    let m = model(
        vec![
            node("Gemm", "fc1", &["x", "W1", "C1"], &["h"], vec![attr_int("transB", 1)]),
            node("Relu", "relu", &["h"], &["r"], vec![]),
            node("Gemm", "fc2", &["r", "W2", "C2"], &["y"], vec![attr_int("transB", 1)]),
        ],
        vec![
            f32_tensor("W1", &[h, k], &w1),
            f32_tensor("C1", &[h], &c1),
            f32_tensor("W2", &[u, h], &w2),
            f32_tensor("C2", &[u], &c2),
        ],
        i,
        o,
    );
    let input = dir.path().join("two.onnx");
    save(&m, &input);
    let x = calib_values(n, k, 9);
    let npy = dir.path().join("two.npy");
    write_data(&npy, &[n, k], &x);

    let out = dir.path().join("two-refit.onnx");
    let opts = PruneOptions {
        selector: Selector::Sparsity { sparsity: 0.5, scope: Scope::Layer },
        renorm: Renorm::Refit,
        calib: Some(DataSpec { data: npy, batch: 64, ..Default::default() }),
        refit: RefitOptions { steps: 1, ridge: 0.01 },
        ..Default::default()
    };
    let report = renorm::prune_file(&input, &out, &opts).unwrap();
    assert_eq!(report.method.renorm, "refit");
    assert_eq!(report.targets.len(), 2);

    let (w1s, b1s) = stored(&out, "fc1");
    let (w2s, b2s) = stored(&out, "fc2");
    let (b1s, b2s) = (b1s.unwrap(), b2s.unwrap());
    let relu = |v: Vec<f64>| -> Vec<f64> { v.into_iter().map(|a| a.max(0.0)).collect() };

    // Layer 1 against its own reference.
    let lin1 = dense_lin(&x, k, reference_units("Gemm", &[h, k], true, 1), 1.0, 1.0);
    let (w1o, c1o, w2o, c2o) = (f64s(&w1), f64s(&c1), f64s(&w2), f64s(&c2));
    let z1 = lin1.forward(&w1o, &c1o);
    let pruned1 = reference_pruned(&w1o, torch_count(0.5, w1o.len()));
    for (j, (_, idx)) in lin1.units.iter().enumerate() {
        let keep: Vec<bool> = idx.iter().map(|&i| !pruned1[i]).collect();
        let w0j: Vec<f64> = idx.iter().map(|&i| w1o[i]).collect();
        let zj = lin1.column(&z1, j);
        let (wr, br) = ridge_fit(&lin1.rows[0], &zj, &keep, &w0j, 0.01);
        let got: Vec<f64> = idx.iter().map(|&i| w1s[i]).collect();
        assert_unit("fc1", j, &got, b1s[j], &wr, br, &zj);
    }

    // Layer 2: X = relu of the *written* first layer (our own forward pass), Z = the original model's y.
    let to_f32 = |v: &[f64]| v.iter().map(|a| *a as f32).collect::<Vec<f32>>();
    let x2_new = relu(lin1.forward(&w1s, &b1s));
    let x2_old = relu(z1.clone());
    let lin2_new = dense_lin(&to_f32(&x2_new), h, reference_units("Gemm", &[u, h], true, 1), 1.0, 1.0);
    let lin2_old = dense_lin(&to_f32(&x2_old), h, reference_units("Gemm", &[u, h], true, 1), 1.0, 1.0);
    // The original output (our forward pass, checked against tract).
    let z2 = lin2_old.forward(&w2o, &c2o);
    assert_close(&tract_run(&input, &[n, k], &x), &z2, 1e-5, "test's own original y");
    let pruned2 = reference_pruned(&w2o, torch_count(0.5, w2o.len()));
    let mut differs = 0f64;
    for (j, (_, idx)) in lin2_new.units.iter().enumerate() {
        let keep: Vec<bool> = idx.iter().map(|&i| !pruned2[i]).collect();
        let w0j: Vec<f64> = idx.iter().map(|&i| w2o[i]).collect();
        let zj = lin2_new.column(&z2, j);
        let (wr, br) = ridge_fit(&lin2_new.rows[0], &zj, &keep, &w0j, 0.01);
        let got: Vec<f64> = idx.iter().map(|&i| w2s[i]).collect();
        assert_unit("fc2 (on refitted fc1)", j, &got, b2s[j], &wr, br, &zj);
        // The fit on the original first layer's output is a different answer: the check can tell.
        let (wo, _) = ridge_fit(&lin2_old.rows[0], &zj, &keep, &w0j, 0.01);
        let wmax = wr.iter().fold(0f64, |m, v| m.max(v.abs()));
        differs = differs.max(wo.iter().zip(&wr).map(|(a, b)| (a - b).abs() / wmax).fold(0.0, f64::max));
    }
    assert!(differs > 1e-2, "fitting on the original fc1 output gives nearly the same weights ({differs})");
    // And the written model computes that.
    let want = lin2_new.forward(&w2s, &b2s);
    assert_close(&tract_run(&out, &[n, k], &x), &want, 1e-4, "tract on the written two-layer model");
}

// ---------------------------------------------------------------------------------------------------------
// 4. Determinism

#[test]
fn output_is_byte_identical_whatever_the_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let calib = fixtures().join("mnist_calib_1000.npy");
    // The CNN's conv rows (1000 · 24 · 24) exceed 16384: subsampled, and many chunks per Gram matrix.
    for (name, sparsity) in [("mnist_cnn", "0.9"), ("mnist_mlp", "0.95")] {
        let input = fixtures().join(format!("{name}.onnx"));
        let mut files = Vec::new();
        for threads in ["1", "2"] {
            let out = dir.path().join(format!("{name}-{threads}.onnx"));
            let o = renorm_bin()
                .env("RAYON_NUM_THREADS", threads)
                .args(["prune", input.to_str().unwrap(), "-o", out.to_str().unwrap()])
                .args(["--sparsity", sparsity, "--renorm", "refit", "--calib", calib.to_str().unwrap()])
                .output()
                .unwrap();
            assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
            files.push(std::fs::read(&out).unwrap());
        }
        assert!(files[0] == files[1], "{name}: 1 and 2 threads wrote different files");
    }
}

// ---------------------------------------------------------------------------------------------------------
// 5. The fixtures: refit > stats > l2 in accuracy

fn accuracies(model: &str, sparsity: f64, dir: &Path) -> (f64, [f64; 3]) {
    let input = fixtures().join(model);
    let test = DataSpec {
        data: fixtures().join("mnist_test_1000.npy"),
        labels: Some(fixtures().join("mnist_test_1000_labels.npy")),
        batch: 64,
        ..Default::default()
    };
    let calib = DataSpec { data: fixtures().join("mnist_calib_1000.npy"), batch: 64, ..Default::default() };
    let mut dense = 0.0;
    let mut acc = [0.0; 3];
    for (k, renorm) in [Renorm::L2, Renorm::Stats, Renorm::Refit].into_iter().enumerate() {
        let out = dir.join(format!("{model}-{sparsity}-{}.onnx", renorm.name()));
        let opts = PruneOptions {
            selector: Selector::Sparsity { sparsity, scope: Scope::Global },
            renorm,
            calib: (renorm != Renorm::L2).then(|| calib.clone()),
            ..Default::default()
        };
        renorm::prune_file(&input, &out, &opts).unwrap();
        let a = renorm::validate::validate_files(&input, &out, &test).unwrap().accuracy.unwrap();
        dense = a.original;
        acc[k] = a.pruned;
    }
    eprintln!(
        "{model} {:.0} % global, 1000 test images: dense {dense}, l2 {}, stats {}, refit {}",
        sparsity * 100.0,
        acc[0],
        acc[1],
        acc[2]
    );
    (dense, acc)
}

#[test]
fn on_the_mlp_refit_beats_stats_beats_l2_at_90_95_97_percent() {
    let dir = tempfile::tempdir().unwrap();
    for s in [0.9, 0.95, 0.97] {
        let (_, [l2, stats, refit]) = accuracies("mnist_mlp.onnx", s, dir.path());
        assert!(stats > l2, "MLP {s}: stats {stats} <= l2 {l2}");
        assert!(refit > stats, "MLP {s}: refit {refit} <= stats {stats}");
    }
}

#[test]
fn on_the_cnn_refit_beats_stats_beats_l2_at_95_percent() {
    let dir = tempfile::tempdir().unwrap();
    let (_, [l2, stats, refit]) = accuracies("mnist_cnn.onnx", 0.95, dir.path());
    assert!(stats > l2, "CNN 0.95: stats {stats} <= l2 {l2}");
    assert!(refit > stats, "CNN 0.95: refit {refit} <= stats {stats}");
}

// ---------------------------------------------------------------------------------------------------------
// 6. Bad input

/// Runs `prune input -o <empty dir>/out.onnx extra…` and checks the refusal: exit 1, one line starting
/// `renorm: error:`, nothing written, the input's bytes unchanged.
fn refused(input: &Path, extra: &[&str], what: &str) {
    let out_dir = tempfile::tempdir().unwrap();
    let output = out_dir.path().join("out.onnx");
    let before = std::fs::read(input).unwrap();
    let o = renorm_bin()
        .args(["prune", input.to_str().unwrap(), "-o", output.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    eprintln!("{what}: {}", stderr.trim_end());
    assert_eq!(o.status.code(), Some(1), "{what}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{what}: not one line: {stderr}");
    assert!(stderr.starts_with("renorm: error:"), "{what}: {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert!(!output.exists(), "{what}: wrote the output");
    let left: Vec<_> = std::fs::read_dir(out_dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{what}: left files behind: {left:?}");
    assert_eq!(std::fs::read(input).unwrap(), before, "{what}: input changed");
}

#[test]
fn bad_input_is_one_line_exit_1_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let case = gemm_trans_b();
    let (input, good) = save_case(&case, dir.path());
    let path = |p: &Path| p.to_str().unwrap().to_string();

    refused(&input, &["--renorm", "refit"], "refit without --calib");

    let wrong = dir.path().join("wrong.npy");
    write_data(&wrong, &[20, 7], &calib_values(20, 7, 10));
    refused(&input, &["--renorm", "refit", "--calib", &path(&wrong)], "calibration data of the wrong shape");

    let mut x = calib_values(20, 12, 11);
    x[37] = f32::NAN;
    let nan = dir.path().join("nan.npy");
    write_data(&nan, &[20, 12], &x);
    refused(&input, &["--renorm", "refit", "--calib", &path(&nan)], "NaN in the calibration data");

    // An op tract does not know, ahead of the Gemm.
    let mut odd = model(
        vec![
            node("Frobnicate", "odd", &["x"], &["h"], vec![]),
            node("Gemm", "fc", &["h", "W", "C"], &["y"], vec![attr_int("transB", 1)]),
        ],
        vec![f32_tensor("W", &[5, 12], &weights(60, 11)), f32_tensor("C", &[5], &weights(5, 12))],
        vec![value_info("x", &[None, Some(12)], FLOAT)],
        vec![value_info("y", &[None, Some(5)], FLOAT)],
    );
    odd.graph.as_mut().unwrap().node[0].domain = "com.example".into();
    let odd_path = dir.path().join("odd.onnx");
    save(&odd, &odd_path);
    refused(&odd_path, &["--renorm", "refit", "--calib", &path(&good)], "a model tract cannot run");

    // The good data on the good model works (the refusals above were about what they changed).
    let out = dir.path().join("ok.onnx");
    prune_refit_cli(&input, &good, &out, &[]);
}

//! The linear algebra of `refit`, in f64 with faer: the moments of one group's rows (Gram matrix and
//! cross products, summed chunk by chunk) and each unit's ridge least-squares solve.
//!
//! Results do not depend on the thread count: chunks are added in order, each product is split into
//! fixed column blocks computed sequentially, and units are solved independently.

use faer::linalg::matmul::matmul;
use faer::linalg::solvers::{DenseSolveCore, Solve, SolveLstsq};
use faer::{Accum, Col, Mat, MatMut, MatRef, Par, Side};
use rayon::prelude::*;

/// Columns per block of a product computed as one task.
const BLOCK: usize = 32;

/// Sums over rows a = [x 1] (fan-in, then a ones column) of one group: the Gram matrix G = aᵀa, the
/// cross products with the original output z and the current output y, Σz², Σy² per unit.
pub struct Moments {
    /// (F+1) × (F+1+2U): G, then aᵀz, then aᵀy.
    m: Mat<f64>,
    pub zz: Vec<f64>,
    pub yy: Vec<f64>,
    pub fan_in: usize,
    pub units: usize,
    pub rows: usize,
}

impl Moments {
    pub fn new(fan_in: usize, units: usize) -> Moments {
        Moments {
            m: Mat::zeros(fan_in + 1, fan_in + 1 + 2 * units),
            zz: vec![0.0; units],
            yy: vec![0.0; units],
            fan_in,
            units,
            rows: 0,
        }
    }

    /// Adds a chunk of rows: `chunk` is r × (F+1+2U) holding [x 1 z y] per row. Of G only the lower
    /// triangle (and the diagonal blocks) is computed: `g` reads it symmetrically.
    pub fn add(&mut self, chunk: MatRef<f64>) {
        let f1 = self.fan_in + 1;
        let a = chunk.subcols(0, f1);
        let (g, c) = self.m.as_mut().split_at_col_mut(f1);
        let mut tasks = blocks(g, BLOCK, 0);
        tasks.extend(blocks(c, BLOCK, f1));
        tasks.into_par_iter().for_each(|(start, dst)| {
            let width = dst.ncols();
            let top = if start < f1 { start } else { 0 };
            let rows = dst.nrows() - top;
            matmul(
                dst.subrows_mut(top, rows),
                Accum::Add,
                a.subcols(top, rows).transpose(),
                chunk.subcols(start, width),
                1.0,
                Par::Seq,
            );
        });
        for r in 0..chunk.nrows() {
            for u in 0..self.units {
                let (z, y) = (chunk[(r, f1 + u)], chunk[(r, f1 + self.units + u)]);
                self.zz[u] += z * z;
                self.yy[u] += y * y;
            }
        }
        self.rows += chunk.nrows();
    }

    pub fn g(&self, i: usize, j: usize) -> f64 {
        self.m[(i.max(j), i.min(j))]
    }

    /// Σ a_i z_u (i = F: Σ z_u).
    pub fn cz(&self, i: usize, u: usize) -> f64 {
        self.m[(i, self.fan_in + 1 + u)]
    }

    /// Σ a_i y_u.
    pub fn cy(&self, i: usize, u: usize) -> f64 {
        self.m[(i, self.fan_in + 1 + self.units + u)]
    }

    /// Σ_rows (a·[w; b] − target)² for unit `u`, with w on fan-in indices `idx` (all others zero),
    /// against z (`against_y` false) or y.
    pub fn residual(&self, u: usize, idx: &[usize], w: &[f64], b: f64, against_y: bool) -> f64 {
        let f = self.fan_in;
        let c = |i: usize| if against_y { self.cy(i, u) } else { self.cz(i, u) };
        let tt = if against_y { self.yy[u] } else { self.zz[u] };
        let mut quad = b * b * self.g(f, f) - 2.0 * b * c(f);
        for (a, &i) in idx.iter().enumerate() {
            let mut gw = 0.0;
            for (bb, &j) in idx.iter().enumerate() {
                gw += self.g(i, j) * w[bb];
            }
            quad += w[a] * gw + 2.0 * w[a] * b * self.g(i, f) - 2.0 * w[a] * c(i);
        }
        (quad + tt).max(0.0)
    }

    /// Ridge least squares for unit `u` on fan-in indices `idx`, pulled toward `w0` (one per index):
    /// (G[idx+b] + λ·diag(1,…,1,0)) [w; b] = c[idx+b] + λ[w0; 0], λ = ridge·mean(diag G over idx).
    /// Cholesky, least squares if the system is singular. No index: w empty, b = mean z.
    pub fn ridge(&self, u: usize, idx: &[usize], w0: &[f64], ridge: f64) -> (Vec<f64>, f64) {
        let lambda = if idx.is_empty() {
            0.0
        } else {
            ridge * idx.iter().map(|&i| self.g(i, i)).sum::<f64>() / idx.len() as f64
        };
        self.ridge_with(u, idx, w0, lambda)
    }

    /// `ridge` with a given λ.
    pub fn ridge_with(&self, u: usize, idx: &[usize], w0: &[f64], lambda: f64) -> (Vec<f64>, f64) {
        let f = self.fan_in;
        if idx.is_empty() {
            return (Vec::new(), self.cz(f, u) / self.rows.max(1) as f64);
        }
        let n = idx.len() + 1;
        let at = |a: usize| if a < idx.len() { idx[a] } else { f };
        let h = Mat::from_fn(n, n, |a, b| {
            self.g(at(a), at(b)) + if a == b && a < idx.len() { lambda } else { 0.0 }
        });
        let rhs = Col::from_fn(n, |a| self.cz(at(a), u) + if a < idx.len() { lambda * w0[a] } else { 0.0 });
        let x = match h.llt(Side::Lower) {
            Ok(llt) => llt.solve(&rhs),
            Err(_) => h.col_piv_qr().solve_lstsq(&rhs),
        };
        let x: Vec<f64> = (0..n).map(|a| x[a]).collect();
        if x.iter().all(|v| v.is_finite()) {
            (x[..n - 1].to_vec(), x[n - 1])
        } else {
            (w0.to_vec(), self.cz(f, u) / self.rows.max(1) as f64)
        }
    }
}

/// For the intermediate refit steps: H = (G + λ·diag(1,…,1,0))⁻¹ with one λ for all units of the group
/// (ridge · mean diag G over the whole fan-in). A unit keeping the index set S then solves its system
/// through the pruned set P instead: x_S = H_SS r_S − H_SP H_PP⁻¹ H_PS r_S (the OBS/SparseGPT identity),
/// which costs |P|³ instead of |S|³ — the cheap side while the mask is still wide.
pub struct Shared {
    h: Mat<f64>,
    pub lambda: f64,
}

impl Moments {
    /// The shared inverse, or None if the regularized Gram matrix is not positive definite.
    pub fn shared(&self, ridge: f64) -> Option<Shared> {
        let f = self.fan_in;
        let lambda = ridge * (0..f).map(|i| self.g(i, i)).sum::<f64>() / f.max(1) as f64;
        let a = Mat::from_fn(f + 1, f + 1, |i, j| self.g(i, j) + if i == j && i < f { lambda } else { 0.0 });
        let h = a.llt(Side::Lower).ok()?.inverse();
        let finite = (0..f + 1).all(|j| (0..f + 1).all(|i| h[(i, j)].is_finite()));
        finite.then_some(Shared { h, lambda })
    }

    /// The ridge solution of unit `u` on `idx` with the shared λ: through H when fewer weights are pruned
    /// than kept, directly otherwise.
    pub fn ridge_shared(&self, s: &Shared, u: usize, idx: &[usize], w0: &[f64]) -> (Vec<f64>, f64) {
        let f = self.fan_in;
        let pruned: Vec<usize> = {
            let mut kept = vec![false; f];
            idx.iter().for_each(|&i| kept[i] = true);
            (0..f).filter(|&i| !kept[i]).collect()
        };
        if idx.is_empty() || pruned.len() > idx.len() {
            return self.ridge_with(u, idx, w0, s.lambda);
        }
        let set: Vec<usize> = idx.iter().copied().chain([f]).collect();
        let r: Vec<f64> = set
            .iter()
            .enumerate()
            .map(|(a, &i)| self.cz(i, u) + if i < f { s.lambda * w0[a] } else { 0.0 })
            .collect();
        let h = |i: usize, j: usize| s.h[(i, j)];
        let mut x: Vec<f64> =
            set.iter().map(|&i| set.iter().zip(&r).map(|(&j, rj)| h(i, j) * rj).sum()).collect();
        if !pruned.is_empty() {
            let hpp = Mat::from_fn(pruned.len(), pruned.len(), |a, b| h(pruned[a], pruned[b]));
            let v =
                Col::from_fn(pruned.len(), |a| set.iter().zip(&r).map(|(&j, rj)| h(pruned[a], j) * rj).sum());
            let t = match hpp.llt(Side::Lower) {
                Ok(llt) => llt.solve(&v),
                Err(_) => return self.ridge_with(u, idx, w0, s.lambda),
            };
            for (a, &i) in set.iter().enumerate() {
                x[a] -= pruned.iter().enumerate().map(|(b, &p)| h(i, p) * t[b]).sum::<f64>();
            }
        }
        let b = x.pop().expect("the bias");
        (x, b)
    }
}

/// `m` cut into column blocks of `width`, with their first column index (`m` starting at `first`).
fn blocks(mut m: MatMut<f64>, width: usize, first: usize) -> Vec<(usize, MatMut<f64>)> {
    let mut out = Vec::new();
    let mut start = first;
    while m.ncols() > 0 {
        let w = width.min(m.ncols());
        let (left, right) = m.split_at_col_mut(w);
        out.push((start, left));
        start += w;
        m = right;
    }
    out
}

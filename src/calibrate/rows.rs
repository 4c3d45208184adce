//! A target's calibration rows (refit): for each output position, the fan-in vector its units see
//! (the input row for Gemm/MatMul, the im2col patch for Conv, the gathered inputs for ConvTranspose),
//! in the weight layout's fan-in order (input channel outer, kernel position inner).

use crate::onnx::model::Node;

/// At most this many rows per target: a deterministic subsample beyond it.
pub const MAX_ROWS: usize = 16_384;

/// How a target's input maps to rows, and its output to (position, unit).
#[derive(Debug, Clone)]
pub struct Rows {
    kind: Kind,
    /// Output positions (rows before subsampling).
    pub positions: usize,
    pub units: usize,
    pub groups: usize,
    /// Fan-in per group.
    pub fan_in: usize,
}

#[derive(Debug, Clone)]
enum Kind {
    /// Gemm / MatMul: `positions` rows of `fan_in`; `transposed` when the input is (fan_in, positions).
    Dense { transposed: bool },
    /// Conv / ConvTranspose over N-D spatial dims.
    Conv(Conv),
}

#[derive(Debug, Clone)]
struct Conv {
    transpose: bool,
    channels: usize,
    in_spatial: Vec<usize>,
    out_spatial: Vec<usize>,
    kernel: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    pads_begin: Vec<i64>,
}

impl Rows {
    /// The rows of `node` (a target whose weight has `shape`, with `units` and per-group `fan_in`)
    /// given its input and output shapes, or why they cannot be formed.
    pub fn new(
        node: &Node,
        shape: &[usize],
        input: &[usize],
        output: &[usize],
        units: usize,
        fan_in: usize,
    ) -> Result<Rows, String> {
        let mismatch = || format!("input {input:?} / output {output:?} do not fit the weight");
        match node.op_type.as_str() {
            "Gemm" | "MatMul" => {
                let transposed = node.op_type == "Gemm" && node.int_attribute("transA", 0) != 0;
                let (positions, k) = match (input, transposed) {
                    ([k, m], true) => (*m, *k),
                    ([lead @ .., k], false) if !lead.is_empty() => (lead.iter().product(), *k),
                    _ => return Err(mismatch()),
                };
                if k != fan_in || output.last() != Some(&units) {
                    return Err(mismatch());
                }
                Ok(Rows { kind: Kind::Dense { transposed }, positions, units, groups: 1, fan_in })
            }
            "Conv" | "ConvTranspose" => {
                let transpose = node.op_type == "ConvTranspose";
                let ([n, c, ins @ ..], [n2, m, outs @ ..]) = (input, output) else { return Err(mismatch()) };
                let groups = usize::try_from(node.int_attribute("group", 1)).unwrap_or(1).max(1);
                let d = ins.len();
                if n != n2 || *m != units || outs.len() != d || d == 0 || c % groups != 0 {
                    return Err(mismatch());
                }
                let per = |name: &str, default: i64| -> Result<Vec<usize>, String> {
                    let v = node.ints_attribute(name, vec![default; d]);
                    if v.len() != d || v.iter().any(|x| *x < 1) {
                        return Err(format!("{name} {v:?} is not {d} positive values"));
                    }
                    Ok(v.iter().map(|x| *x as usize).collect())
                };
                let strides = per("strides", 1)?;
                let dilations = per("dilations", 1)?;
                // The kernel is the weight's spatial dims (the kernel_shape attribute may be absent).
                let kernel = shape.get(2..).unwrap_or_default().to_vec();
                let kk: usize = kernel.iter().product();
                if kernel.len() != d || (c / groups) * kk != fan_in {
                    return Err(mismatch());
                }
                let mut conv = Conv {
                    transpose,
                    channels: *c,
                    in_spatial: ins.to_vec(),
                    out_spatial: outs.to_vec(),
                    kernel,
                    strides,
                    dilations,
                    pads_begin: vec![0; d],
                };
                conv.pads_begin = pads_begin(node, &conv)?;
                let positions = n * outs.iter().product::<usize>();
                Ok(Rows { kind: Kind::Conv(conv), positions, units, groups, fan_in })
            }
            op => Err(format!("{op} has no calibration rows")),
        }
    }

    /// The positions used: all of them up to `MAX_ROWS`, else a deterministic pseudo-random subset of
    /// about `MAX_ROWS` (a hash of the index, so no stride aliases with the spatial grid).
    pub fn chosen(&self) -> Vec<usize> {
        if self.positions <= MAX_ROWS {
            return (0..self.positions).collect();
        }
        let cut = (MAX_ROWS as u128 * (1u128 << 64) / self.positions as u128) as u64;
        (0..self.positions).filter(|p| splitmix(*p as u64) < cut).collect()
    }

    /// Units of each group: units `g * per_group .. (g + 1) * per_group`.
    pub fn units_per_group(&self) -> usize {
        self.units / self.groups
    }

    /// Writes the fan-in vector of `position` for `group` into `row` (length `fan_in`).
    pub fn fill(&self, x: &[f32], position: usize, group: usize, row: &mut [f64]) {
        match &self.kind {
            Kind::Dense { transposed: false } => {
                let start = position * self.fan_in;
                for (r, v) in row.iter_mut().zip(&x[start..start + self.fan_in]) {
                    *r = f64::from(*v);
                }
            }
            Kind::Dense { transposed: true } => {
                for (f, r) in row.iter_mut().enumerate() {
                    *r = f64::from(x[f * self.positions + position]);
                }
            }
            Kind::Conv(c) => c.fill(x, position, group, row, self.fan_in),
        }
    }

    /// The flat index in the target's output of `unit` at `position`.
    pub fn out_index(&self, position: usize, unit: usize) -> usize {
        match &self.kind {
            Kind::Dense { .. } => position * self.units + unit,
            Kind::Conv(c) => {
                let s: usize = c.out_spatial.iter().product();
                let (n, p) = (position / s, position % s);
                (n * self.units + unit) * s + p
            }
        }
    }
}

impl Conv {
    fn fill(&self, x: &[f32], position: usize, group: usize, row: &mut [f64], fan_in: usize) {
        let d = self.in_spatial.len();
        let s_out: usize = self.out_spatial.iter().product();
        let s_in: usize = self.in_spatial.iter().product();
        let kk: usize = self.kernel.iter().product();
        let cg = fan_in / kk;
        let (n, mut p) = (position / s_out, position % s_out);
        let mut out = vec![0usize; d];
        for i in (0..d).rev() {
            out[i] = p % self.out_spatial[i];
            p /= self.out_spatial[i];
        }
        // For each kernel offset, the flat input position it reads (None: padding or no tap).
        let mut taps: Vec<Option<usize>> = Vec::with_capacity(kk);
        let mut k = vec![0usize; d];
        for _ in 0..kk {
            let mut flat = Some(0usize);
            for i in 0..d {
                let at = self.input_coordinate(i, out[i], k[i]);
                flat = match (flat, at) {
                    (Some(f), Some(a)) => Some(f * self.in_spatial[i] + a),
                    _ => None,
                };
            }
            taps.push(flat);
            for i in (0..d).rev() {
                k[i] += 1;
                if k[i] < self.kernel[i] {
                    break;
                }
                k[i] = 0;
            }
        }
        for c in 0..cg {
            let channel = group * cg + c;
            let base = (n * self.channels + channel) * s_in;
            for (t, tap) in taps.iter().enumerate() {
                row[c * kk + t] = tap.map_or(0.0, |q| f64::from(x[base + q]));
            }
        }
    }

    /// The input coordinate on axis `i` that kernel offset `k` reads for output coordinate `o`.
    fn input_coordinate(&self, i: usize, o: usize, k: usize) -> Option<usize> {
        let (s, dil, pad) = (self.strides[i] as i64, self.dilations[i] as i64, self.pads_begin[i]);
        let at = if self.transpose {
            // o = at·s + k·dil − pad
            let t = o as i64 + pad - k as i64 * dil;
            if t < 0 || t % s != 0 {
                return None;
            }
            t / s
        } else {
            o as i64 * s + k as i64 * dil - pad
        };
        (0..self.in_spatial[i] as i64).contains(&at).then_some(at as usize)
    }
}

/// The leading pads of a Conv/ConvTranspose from `pads` or `auto_pad` (ONNX operator spec).
fn pads_begin(node: &Node, c: &Conv) -> Result<Vec<i64>, String> {
    let d = c.in_spatial.len();
    let auto = node.string_attribute("auto_pad").unwrap_or("NOTSET");
    let eff = |i: usize| ((c.kernel[i] - 1) * c.dilations[i] + 1) as i64;
    let total = |i: usize| -> i64 {
        let (ins, outs, s) = (c.in_spatial[i] as i64, c.out_spatial[i] as i64, c.strides[i] as i64);
        if c.transpose {
            let extra = node.ints_attribute("output_padding", vec![0; d]).get(i).copied().unwrap_or(0);
            s * (ins - 1) + extra + eff(i) - outs
        } else {
            ((outs - 1) * s + eff(i) - ins).max(0)
        }
    };
    match auto {
        "SAME_UPPER" | "SAME_LOWER" => Ok((0..d)
            .map(|i| {
                let t = total(i);
                if auto == "SAME_UPPER" {
                    t / 2
                } else {
                    t - t / 2
                }
            })
            .collect()),
        "VALID" => Ok(vec![0; d]),
        "NOTSET" | "" => {
            let pads = node.ints_attribute("pads", vec![]);
            if pads.is_empty() && c.transpose && node.attribute("output_shape").is_some() {
                // output_shape without pads: the spec's total padding, split as for SAME_UPPER.
                return Ok((0..d).map(|i| total(i) / 2).collect());
            }
            if pads.is_empty() {
                return Ok(vec![0; d]);
            }
            if pads.len() != 2 * d {
                return Err(format!("pads {pads:?} do not have 2 x {d} values"));
            }
            Ok(pads[..d].to_vec())
        }
        other => Err(format!("auto_pad '{other}' is not known")),
    }
}

/// SplitMix64: a fixed, well-mixed hash of a position index.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

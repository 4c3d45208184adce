//! Making one target's payload for the streamed engine (`streamed`): its mask (its cut, its layer's own
//! cut, or the unit/N:M selection of that target alone), per-unit scales and the rescaled bytes
//! (`prune::grid`, `prune::grid_f32` for f32 units that are one run each), made and written piece by
//! piece: making the next piece overlaps writing this one (`write::pipelined`), and both stay in the
//! cores' caches. What a target needs before its first piece (`Ahead`) can be settled while the target
//! before it is made and written, so the writer never waits on it.

use std::io::Write;
use std::sync::OnceLock;

use super::output::ProduceError;
use super::streamed::{finite, Work};
use super::{PruneOptions, Scope, Selector};
use crate::error::Error;
use crate::onnx::model::{Model, Payload};
use crate::onnx::payload;
use crate::onnx::tensor::{decode_raw, FloatType};
use crate::onnx::write;
use crate::prune::cut::{self, Cut, NonFinite};
use crate::prune::grid::{Grid, Rule};
use crate::prune::grid_f32::{self, RunRule};
use crate::prune::renorm::{self, Renorm};
use crate::prune::select::{self, prune_count, Weights};
use crate::prune::targets::Layout;

/// What making one target's payload gave, for its report.
pub(super) struct Made {
    pub scales: Vec<Option<f64>>,
    pub dense_tail: usize,
}

/// Makes one target's pruned and rescaled payload and writes it to `out`, piece by piece; None if
/// its values, still to be checked, are not all finite (the write is then dropped whole, whatever
/// part of the payload reached it).
pub(super) fn target(
    model: &Model,
    w: &Work,
    ahead: &Ahead,
    opts: &PruneOptions,
    out: &mut (dyn Write + Send),
) -> std::result::Result<Option<Made>, ProduceError> {
    let ty = w.target.dtype;
    let raw = payload::view(model, w.tensor, ty)?;
    // A piece made is never read again: its pages of the mapped model go now, not all at the end.
    let done = |r: std::ops::Range<usize>| {
        if let Payload::Raw(at) = &w.tensor.payload {
            model.bytes.release(at.start + r.start..at.start + r.end);
        }
    };
    let layout = &w.target.layout;
    let internal =
        |what: String| Error::model(&model.path, format!("internal: weight '{}' {what}", w.target.weight));
    let cut = match layer_k(w, opts).map(|k| ahead.cut.get_or_init(|| cut::layer(ty, &raw, k))) {
        None => w.cut,
        Some(Ok(c)) => Some(*c),
        Some(Err(_)) if w.unchecked => return Ok(None),
        Some(Err(_)) => return Err(internal("became non-finite".into()).into()),
    };
    let grid = Grid::of(layout, w.params);
    let one_run = grid.filter(|g| fused(g, ty));
    let run_rule = match (opts.selector, cut, one_run) {
        (_, Some(c), Some(g)) => Some((g, RunRule::Cut(c))),
        (Selector::Pattern { n, m }, None, Some(g)) if m <= 16 => {
            Some((g, RunRule::NofM { n, m, rows: layout.rows, cols: layout.cols }))
        }
        _ => None,
    };
    // Layer cuts find non-finite values as they select, and N:M runs as they select (a write that
    // meets one is dropped whole); other rules check first.
    if w.unchecked && cut.is_none() && run_rule.is_none() && finite(ty, &raw).is_err() {
        return Ok(None);
    }
    let (scales, pruned, dense_tail) = match run_rule {
        Some((g, rule)) => {
            // Selected, summed and rescaled in cache.
            let pieces = write::pieces(raw.len(), grid_f32::group(g.run));
            let parts = write::pipelined(out, &pieces, |r, buf| {
                let made = grid_f32::runs(&raw, g.run, &rule, opts.renorm, r.start, buf);
                done(r);
                made
            })?;
            if parts.iter().any(|p| p.non_finite) {
                return if w.unchecked { Ok(None) } else { Err(internal("became non-finite".into()).into()) };
            }
            let pruned = parts.iter().map(|p| p.pruned).sum();
            let dense_tail = match rule {
                RunRule::NofM { m, .. } => layout.units * layout.cols * (layout.rows % m),
                RunRule::Cut(_) => 0,
            };
            (parts.into_iter().flat_map(|p| p.scales).collect(), pruned, dense_tail)
        }
        None => {
            let (rule, dense_tail) = match (opts.selector, cut) {
                (_, Some(c)) => (Rule::Cut(c), 0),
                (Selector::Sparsity { sparsity, .. }, None) => {
                    let values = decode_raw(ty, &raw);
                    (Rule::Mask(select::unit(&Weights { values: &values, layout }, sparsity).keep), 0)
                }
                (Selector::Pattern { n, m }, None) => {
                    let values = decode_raw(ty, &raw);
                    let sel = select::n_of_m(&Weights { values: &values, layout }, n, m);
                    (Rule::Mask(sel.keep), sel.dense_tail)
                }
            };
            let (scales, pruned) = match grid {
                Some(grid) => {
                    let (scales, pruned) = match rule {
                        Rule::Cut(_) => {
                            ahead.scales.get_or_init(|| grid.scales(ty, &raw, &rule, opts.renorm)).clone()
                        }
                        Rule::Mask(_) => grid.scales(ty, &raw, &rule, opts.renorm),
                    };
                    let size = ty.size();
                    let pieces = write::pieces(raw.len(), grid.run.max(1) * size);
                    write::pipelined(out, &pieces, |r, buf| {
                        grid.apply(ty, &raw, &rule, &scales, r.start / size, buf);
                        done(r);
                    })?;
                    (scales, pruned)
                }
                None => {
                    let mut buf = Vec::new();
                    let made = by_units(ty, &raw, &rule, layout, opts.renorm, &mut buf);
                    out.write_all(&buf)?;
                    done(0..raw.len());
                    made
                }
            };
            (scales, pruned, dense_tail)
        }
    };
    if pruned != w.pruned {
        return Err(internal(format!("pruned {pruned} weights, {} expected", w.pruned)).into());
    }
    Ok(Some(Made { scales, dense_tail }))
}

/// A layer's own cut, or the first non-finite value met settling it.
type LayerCut = std::result::Result<Cut, NonFinite>;

/// What a target needs before its first piece can be made, settled once: by its own make, or while
/// the target before it is made and written (`settle_ahead`).
#[derive(Default)]
pub(super) struct Ahead {
    /// Its own layer cut (`layer_k`).
    cut: OnceLock<LayerCut>,
    /// Under a cut, a grid path's unit scales and pruned count: a pass over the whole payload.
    scales: OnceLock<(Vec<Option<f64>>, usize)>,
}

/// f32 units that are one run each take the fused kernel (`grid_f32`), under a cut or N:M up to 16;
/// it settles their scales piece by piece, so nothing is settled ahead for them.
fn fused(g: &Grid, ty: FloatType) -> bool {
    ty == FloatType::F32 && g.rows == 1 && g.blocks == 1
}

/// Settles what `target` will need of `w`: its layer cut and, under a cut, the grid path's scales. A
/// payload that cannot be read, or is not finite, settles nothing here: its own make meets the error.
pub(super) fn settle_ahead(model: &Model, w: &Work, ahead: &Ahead, opts: &PruneOptions) {
    let ty = w.target.dtype;
    let Ok(raw) = payload::view(model, w.tensor, ty) else { return };
    let cut = match layer_k(w, opts).map(|k| ahead.cut.get_or_init(|| cut::layer(ty, &raw, k))) {
        None => w.cut,
        Some(Ok(c)) => Some(*c),
        Some(Err(_)) => return,
    };
    if let (Some(c), Some(grid)) = (cut, Grid::of(&w.target.layout, w.params)) {
        if !fused(&grid, ty) {
            ahead.scales.get_or_init(|| grid.scales(ty, &raw, &Rule::Cut(c), opts.renorm));
        }
    }
}

/// How many weights a target's own layer cut prunes, when it takes one (layer scope, or the collapse
/// guard of global scope).
fn layer_k(w: &Work, opts: &PruneOptions) -> Option<usize> {
    match (opts.selector, w.cut) {
        (Selector::Sparsity { sparsity, scope: Scope::Global | Scope::Layer }, None) => {
            Some(prune_count(sparsity, w.params))
        }
        _ => None,
    }
}

/// For a layout without a grid: the in-memory computation on this one target.
fn by_units(
    ty: FloatType,
    raw: &[u8],
    rule: &Rule,
    layout: &Layout,
    method: Renorm,
    out: &mut Vec<u8>,
) -> (Vec<Option<f64>>, usize) {
    let values = decode_raw(ty, raw);
    let size = ty.size();
    let keep: Vec<bool> =
        raw.chunks_exact(size).enumerate().map(|(i, b)| rule.keeps(i, cut::key(ty, b))).collect();
    let scales = renorm::scales(&values, &keep, layout, method);
    out.clear();
    out.extend_from_slice(raw);
    for (u, s) in scales.iter().enumerate() {
        for i in layout.unit_indices(u) {
            ty.rescale(&mut out[i * size..(i + 1) * size], keep[i], s.unwrap_or(1.0));
        }
    }
    let pruned = keep.iter().filter(|k| !**k).count();
    (scales, pruned)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `by_units` serves layouts no grid describes (none of today's ops makes one): on layouts a grid
    /// does describe, it must give what the grid paths give, bit for bit.
    #[test]
    fn by_units_gives_what_the_grid_paths_give() {
        for (l, n) in crate::prune::grid::tests::layouts() {
            let grid = Grid::of(&l, n).expect("a layout a grid describes");
            let values: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 11) as f32 - 5.0) / 4.0 * if i % 3 == 0 { -1.0 } else { 1.0 })
                .collect();
            let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let cut = Cut { threshold: 0.5f32.to_bits(), equal_before: n / 2 };
            let mask: Vec<bool> = (0..n).map(|i| i % 4 != 1).collect();
            for rule in [Rule::Cut(cut), Rule::Mask(mask)] {
                for method in [Renorm::None, Renorm::L1, Renorm::L2] {
                    let mut got = Vec::new();
                    let (scales, pruned) = by_units(FloatType::F32, &raw, &rule, &l, method, &mut got);
                    let want = grid.scales(FloatType::F32, &raw, &rule, method);
                    let mut out = vec![0u8; raw.len()];
                    grid.apply(FloatType::F32, &raw, &rule, &want.0, 0, &mut out);
                    assert_eq!((scales, pruned, got), (want.0, want.1, out), "{l:?} {method:?}");
                }
            }
        }
    }
}

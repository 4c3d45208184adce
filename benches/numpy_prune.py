"""Reference for `benches/scale.sh`: what a plain onnx + numpy script does, to compare renorm against.

    numpy_prune.py MODEL OUT [--sparsity 0.5]

Global magnitude pruning over every Gemm weight and every 2-D constant MatMul weight: the round(S * n)
smallest |w| of all of them are zeroed (one threshold; ties at it are all pruned), then each output unit's
kept weights are scaled by ||w_unit||_2 / ||w_unit kept||_2 (l2 renormalization; a unit with nothing kept
stays zero). The whole model is loaded with onnx.load and written with onnx.save (so it must fit in 2 GB).
"""

import argparse

import numpy as np
import onnx
from onnx import numpy_helper


def targets(model):
    """(initializer, fan-in axis) of every Gemm / MatMul weight held in an initializer."""
    inits = {t.name: t for t in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        if node.op_type not in ("Gemm", "MatMul") or len(node.input) < 2 or node.input[1] not in inits:
            continue
        t = inits[node.input[1]]
        if len(t.dims) != 2:
            continue
        trans_b = any(a.name == "transB" and a.i for a in node.attribute) if node.op_type == "Gemm" else False
        # (out, in) with transB=1: a unit is a row, its fan-in runs along axis 1; (in, out): a column, axis 0.
        found[t.name] = (t, 1 if trans_b else 0)
    return list(found.values())


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("--sparsity", type=float, default=0.5)
    a = p.parse_args()

    model = onnx.load(a.model)
    found = targets(model)
    weights = [numpy_helper.to_array(t) for t, _ in found]
    magnitudes = np.concatenate([np.abs(w).ravel() for w in weights])
    k = int(round(a.sparsity * magnitudes.size))
    threshold = np.partition(magnitudes, k - 1)[k - 1] if k > 0 else -np.inf
    del magnitudes

    for (t, axis), w in zip(found, weights):
        kept = np.where(np.abs(w) > threshold, w, 0).astype(np.float32)
        full = np.sqrt((w.astype(np.float64) ** 2).sum(axis=axis, keepdims=True))
        now = np.sqrt((kept.astype(np.float64) ** 2).sum(axis=axis, keepdims=True))
        scale = np.where(now > 0, full / np.where(now > 0, now, 1), 1).astype(np.float32)
        t.CopyFrom(numpy_helper.from_array(kept * scale, t.name))
    print(f"pruned {k} of {sum(w.size for w in weights)} weights in {len(found)} targets")
    onnx.save(model, a.out)


if __name__ == "__main__":
    main()

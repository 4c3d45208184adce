"""Build the synthetic models and samples of `benches/scale.sh` (issue 5) into a folder.

    make_models.py DIR [--width 2048] [--layers 24] [--samples 2048]
                       [--big-width 4096] [--big-layers 36] [--no-big]

- DIR/gemm24.onnx: input x [batch, W] float32, LAYERS x (Gemm transB=1 with weight [W, W] as (out, in),
  bias [W], Relu except after the last), output y; weights normal * sqrt(2/W), all in raw_data.
- DIR/big/big.onnx + big.onnx.data: BIG_LAYERS x (MatMul with weight [BW, BW] as (in, out), Add bias, Relu
  except after the last); every initializer in external data, offsets aligned to 4096. The data file is
  written one tensor at a time, never held in memory whole.
- DIR/x.npy: SAMPLES validation samples float32 [SAMPLES, W].

Everything is deterministic (fixed seeds). A file is rebuilt only when its stamp (DIR/NAME.stamp, holding
VERSION and the parameters) is missing or differs.
"""

import argparse
import json
import math
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

VERSION = 2
OPSET = 17
IR_VERSION = 8
ALIGN = 4096


def up_to_date(path, params, extra):
    stamp = path + ".stamp"
    if not all(os.path.exists(f) for f in [path, stamp] + extra):
        return False
    with open(stamp) as f:
        return f.read() == json.dumps(params, sort_keys=True)


def write_stamp(path, params):
    with open(path + ".stamp", "w") as f:
        f.write(json.dumps(params, sort_keys=True))


def io(name, width):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", width])


def finish(nodes, inits, width, name):
    graph = helper.make_graph(nodes, name, [io("x", width)], [io("y", width)], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                             producer_name="renorm benches/make_models.py")


def make_gemm(path, width, layers, seed):
    """Gemm stack, weights in raw_data (about layers * width^2 * 4 bytes).

    The tensors go straight into the finished model, one at a time (make_graph and make_model would copy
    them all twice): peak memory is about three times the model (the model and its serialization).
    """
    nodes, x = [], "x"
    for i in range(layers):
        last = i == layers - 1
        out = "y" if last else f"h{i}"
        nodes.append(helper.make_node("Gemm", [x, f"fc{i}.weight", f"fc{i}.bias"], [out if last else f"g{i}"],
                                      name=f"fc{i}", transB=1))
        if not last:
            nodes.append(helper.make_node("Relu", [f"g{i}"], [out], name=f"relu{i}"))
        x = out
    model = finish(nodes, [], width, "gemm_stack")
    rng = np.random.default_rng(seed)
    std = np.float32(math.sqrt(2.0 / width))
    for i in range(layers):
        w = rng.standard_normal((width, width), dtype=np.float32)
        w *= std
        b = rng.standard_normal(width, dtype=np.float32) * np.float32(0.01)
        model.graph.initializer.add().CopyFrom(numpy_helper.from_array(w, f"fc{i}.weight"))
        model.graph.initializer.add().CopyFrom(numpy_helper.from_array(b, f"fc{i}.bias"))
        del w
    onnx.save(model, path)


def external(name, shape, location, offset, length):
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=shape, data_location=TensorProto.EXTERNAL)
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = t.external_data.add()
        entry.key, entry.value = k, v
    return t


def make_big(path, width, layers, seed):
    """MatMul + Add + Relu stack, every initializer in external data written tensor by tensor."""
    rng = np.random.default_rng(seed)
    std = math.sqrt(2.0 / width)
    data_name = os.path.basename(path) + ".data"
    nodes, inits, x = [], [], "x"
    with open(os.path.join(os.path.dirname(path), data_name), "wb") as f:
        def put(name, arr):
            offset = f.tell()
            arr.tofile(f)
            f.write(b"\0" * (-f.tell() % ALIGN))
            inits.append(external(name, arr.shape, data_name, offset, arr.nbytes))

        for i in range(layers):
            w = rng.standard_normal((width, width), dtype=np.float32)
            w *= std
            put(f"dense{i}.kernel", w)
            del w
            put(f"dense{i}.bias", rng.standard_normal(width, dtype=np.float32) * np.float32(0.01))
            last = i == layers - 1
            out = "y" if last else f"h{i}"
            nodes.append(helper.make_node("MatMul", [x, f"dense{i}.kernel"], [f"m{i}"], name=f"dense{i}/MatMul"))
            nodes.append(helper.make_node("Add", [f"m{i}", f"dense{i}.bias"], [out if last else f"a{i}"],
                                          name=f"dense{i}/Add"))
            if not last:
                nodes.append(helper.make_node("Relu", [f"a{i}"], [out], name=f"dense{i}/Relu"))
            x = out
    # No tensor holds raw_data, so onnx.save writes only the (small) graph.
    onnx.save(finish(nodes, inits, width, "big_external"), path)


def make_samples(path, width, samples, seed):
    np.save(path, np.random.default_rng(seed).standard_normal((samples, width), dtype=np.float32))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir")
    p.add_argument("--width", type=int, default=2048)
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--samples", type=int, default=2048)
    p.add_argument("--big-width", type=int, default=4096)
    p.add_argument("--big-layers", type=int, default=36)
    p.add_argument("--no-big", action="store_true")
    a = p.parse_args()
    os.makedirs(os.path.join(a.dir, "big"), exist_ok=True)

    jobs = [
        ("gemm24.onnx", dict(width=a.width, layers=a.layers, seed=1),
         lambda path, prm: make_gemm(path, **prm), []),
        ("x.npy", dict(width=a.width, samples=a.samples, seed=2),
         lambda path, prm: make_samples(path, **prm), []),
    ]
    if not a.no_big:
        jobs.append(("big/big.onnx", dict(width=a.big_width, layers=a.big_layers, seed=3),
                     lambda path, prm: make_big(path, **prm), [".data"]))
    for name, params, build, extra in jobs:
        path = os.path.join(a.dir, name)
        params = dict(params, version=VERSION)
        if up_to_date(path, params, [path + suffix for suffix in extra]):
            print(f"  {name}: up to date")
            continue
        print(f"  {name}: building {params}", flush=True)
        build(path, {k: v for k, v in params.items() if k != "version"})
        write_stamp(path, params)


if __name__ == "__main__":
    main()

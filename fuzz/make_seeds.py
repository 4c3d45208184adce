#!/usr/bin/env python3
"""Writes the seed corpus under fuzz/seeds/<target>/: a few small files of each kind, from fixtures/ and
hand-encoded (standard library only). Rerun after changing it: python3 fuzz/make_seeds.py"""
import gzip
import io
import os
import shutil
import struct
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SEEDS = os.path.join(HERE, "seeds")
CONF = os.path.join(ROOT, "fixtures", "onnx-conformance")


def put(target, name, data):
    os.makedirs(os.path.join(SEEDS, target), exist_ok=True)
    with open(os.path.join(SEEDS, target, name), "wb") as f:
        f.write(data)


# --- protobuf, by hand -------------------------------------------------------------------------------
def varint(v):
    v &= (1 << 64) - 1
    out = b""
    while v >= 0x80:
        out += bytes([v & 0x7F | 0x80])
        v >>= 7
    return out + bytes([v])


def vf(n, v):  # varint field
    return varint(n << 3) + varint(v)


def bf(n, b):  # length-delimited field
    if isinstance(b, str):
        b = b.encode()
    return varint(n << 3 | 2) + varint(len(b)) + b


def f32f(n, x):  # fixed32 field
    return varint(n << 3 | 5) + struct.pack("<f", x)


def tensor(name, dims, dtype, raw=None, floats=None, int32s=None, doubles=None, external=None):
    t = b"".join(vf(1, d) for d in dims) + vf(2, dtype) + bf(8, name)
    if raw is not None:
        t += bf(9, raw)
    if floats is not None:
        t += bf(4, b"".join(struct.pack("<f", x) for x in floats))
    if int32s is not None:
        t += bf(5, b"".join(varint(x) for x in int32s))
    if doubles is not None:
        t += bf(10, b"".join(struct.pack("<d", x) for x in doubles))
    if external is not None:
        t += b"".join(bf(13, bf(1, k) + bf(2, v)) for k, v in external) + vf(14, 1)
    return t


def attr_int(name, v):
    return bf(1, name) + vf(3, v) + vf(20, 2)


def attr_ints(name, vs):
    return bf(1, name) + b"".join(vf(8, v) for v in vs) + vf(20, 7)


def attr_tensor(name, t):
    return bf(1, name) + bf(5, t) + vf(20, 4)


def attr_graph(name, g):
    return bf(1, name) + bf(6, g) + vf(20, 5)


def node(op, name, inputs, outputs, attrs=()):
    n = b"".join(bf(1, i) for i in inputs) + b"".join(bf(2, o) for o in outputs) + bf(3, name) + bf(4, op)
    return n + b"".join(bf(5, a) for a in attrs)


def value_info(name, dims, elem=1):
    shape = b"".join(bf(1, vf(1, d)) for d in dims)
    return bf(1, name) + bf(2, bf(1, vf(1, elem) + bf(2, shape)))


def graph(nodes, inits, inputs, outputs):
    g = b"".join(bf(1, n) for n in nodes) + bf(2, "g")
    g += b"".join(bf(5, t) for t in inits)
    g += b"".join(bf(11, value_info(*i)) for i in inputs) + b"".join(bf(12, value_info(*o)) for o in outputs)
    return g


def model(g, meta=()):
    m = vf(1, 8) + bf(2, "fuzz-seed") + bf(7, g) + bf(8, bf(1, "") + vf(2, 17))
    return m + b"".join(bf(14, bf(1, k) + bf(2, v)) for k, v in meta)


def f32s(xs):
    return b"".join(struct.pack("<f", x) for x in xs)


def halves(xs):
    return [struct.unpack("<H", struct.pack("<e", x))[0] for x in xs]


W6 = [0.5, -1.0, 0.25, 2.0, -0.125, 3.0]
W16 = [(i - 7) / 4 for i in range(16)]

# --- model and prune seeds ---------------------------------------------------------------------------
models = {}
models["gemm_transb_raw"] = model(graph(
    [node("Gemm", "fc", ["x", "W", "b"], ["y"], [attr_int("transB", 1)])],
    [tensor("W", [2, 3], 1, raw=f32s(W6)), tensor("b", [2], 1, raw=f32s([0.1, -0.2]))],
    [("x", [1, 3])], [("y", [1, 2])]))
models["gemm_fp16_typed"] = model(graph(
    [node("Gemm", "fc", ["x", "W"], ["y"])],
    [tensor("W", [3, 2], 10, int32s=halves(W6))], [("x", [1, 3], 10)], [("y", [1, 2], 10)]))
models["matmul_constant_fp64"] = model(graph(
    [node("Constant", "c", [], ["W"], [attr_tensor("value", tensor("", [3, 2], 11, doubles=W6))]),
     node("MatMul", "mm", ["x", "W"], ["y"])],
    [], [("x", [1, 3], 11)], [("y", [1, 2], 11)]))
models["matmul_transpose_floats"] = model(graph(
    [node("Transpose", "t", ["W"], ["Wt"], [attr_ints("perm", [1, 0])]), node("MatMul", "mm", ["x", "Wt"], ["y"])],
    [tensor("W", [2, 3], 1, floats=W6)], [("x", [1, 3])], [("y", [1, 2])]))
models["conv_groups_bf16"] = model(graph(
    [node("Conv", "conv", ["x", "W"], ["y"], [attr_int("group", 2), attr_ints("kernel_shape", [2, 2])])],
    [tensor("W", [4, 1, 2, 2], 16, raw=b"".join(struct.pack("<H", struct.unpack("<I", struct.pack("<f", x))[0] >> 16) for x in W16))],
    [("x", [1, 2, 3, 3])], [("y", [1, 4, 2, 2])]))
models["convtranspose_batched_matmul"] = model(graph(
    [node("ConvTranspose", "ct", ["x", "W"], ["h"], [attr_int("group", 2)]),
     node("MatMul", "bmm", ["h", "B"], ["y"])],
    [tensor("W", [2, 2, 2, 2], 1, raw=f32s(W16)), tensor("B", [2, 2, 2], 1, raw=f32s(W16[:8]))],
    [("x", [1, 2, 2, 2])], [("y", [1, 4, 3, 2])]))
models["external_data"] = model(graph(
    [node("Gemm", "fc", ["x", "W"], ["y"], [attr_int("transB", 1)])],
    [tensor("W", [2, 3], 1, external=[("location", "model.onnx"), ("offset", "0"), ("length", "24")])],
    [("x", [1, 3])], [("y", [1, 2])]))
models["if_subgraph_shared"] = model(graph(
    [node("Gemm", "fc", ["x", "W"], ["y"], [attr_int("transB", 1)]),
     node("If", "if", ["cond"], ["z"], [attr_graph("then_branch", graph([node("Identity", "i", ["W"], ["z"])], [], [], [("z", [2, 3])])),
                                         attr_graph("else_branch", graph([node("Identity", "j", ["W"], ["z"])], [], [], [("z", [2, 3])]))])],
    [tensor("W", [2, 3], 1, raw=f32s(W6))], [("x", [1, 3]), ("cond", [], 9)], [("y", [1, 2]), ("z", [2, 3])]),
    meta=[("renorm", "{}")])
models["quantized_and_int"] = model(graph(
    [node("MatMulInteger", "q", ["x", "Wq"], ["y"]), node("MatMul", "m", ["x2", "Wi"], ["y2"])],
    [tensor("Wq", [2, 2], 3, raw=b"\x01\xff\x02\x03"), tensor("Wi", [2, 2], 7, raw=struct.pack("<4q", 1, 2, 3, 4))],
    [("x", [1, 2], 3), ("x2", [1, 2], 7)], [("y", [1, 2], 6), ("y2", [1, 2], 7)]))
for name, m in models.items():
    put("model", name + ".onnx", m)
    put("prune", name + ".onnx", m)
for rel in ["pytorch-converted/test_Linear", "pytorch-converted/test_Conv2d_groups", "pytorch-converted/test_Conv1d",
            "pytorch-converted/test_ConvTranspose2d", "pytorch-converted/test_Conv3d_groups",
            "pytorch-converted/test_Conv2d_depthwise_with_multiplier", "node/test_matmul_4d", "node/test_gemm_all_attributes"]:
    data = open(os.path.join(CONF, rel, "model.onnx"), "rb").read()
    put("model", rel.split("/")[1] + ".onnx", data)
    put("prune", rel.split("/")[1] + ".onnx", data)

# --- npy, npz, labels --------------------------------------------------------------------------------
def npy(descr, shape, data, version=1, fortran=False):
    shape_text = "(" + "".join(f"{d}, " if len(shape) == 1 else f"{d}," for d in shape).rstrip(",") + ")"
    if len(shape) > 1:
        shape_text = "(" + ", ".join(str(d) for d in shape) + ")"
    header = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape_text}, }}"
    pre = 10 if version == 1 else 12
    header += " " * ((64 - (pre + len(header) + 1) % 64) % 64) + "\n"
    size = struct.pack("<H", len(header)) if version == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + size + header.encode("latin1") + data


npys = {
    "f32_2x3": npy("<f4", [2, 3], f32s(W6)),
    "f64_be_v2": npy(">f8", [3], struct.pack(">3d", 1.5, -2.0, 1e300), version=2),
    "f16_v3": npy("<f2", [2, 2], struct.pack("<4e", 1, -1, 0.5, 65504), version=3),
    "u8_scalar": npy("|u1", [], b"\x07"),
    "bool_1d": npy("|b1", [3], b"\x01\x00\x01"),
    "i64_labels": npy("<i8", [4], struct.pack("<4q", 3, 0, 9, 1)),
    "i16_empty": npy("<i2", [0, 5], b""),
    "fortran": npy("<f4", [2], f32s([1, 2]), fortran=True),
}
for name, data in npys.items():
    put("npy", name + ".npy", data)
put("labels", "i64_labels.npy", npys["i64_labels"])
put("labels", "u8.npy", npy("|u1", [3], b"\x01\x02\x09"))
put("labels", "f32.npy", npy("<f4", [2], f32s([2, 0])))


def zipped(entries, method):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in entries:
            z.writestr(name, data)
    return buf.getvalue()


pair = [("x.npy", npys["f32_2x3"]), ("y.npy", npys["i64_labels"])]
put("npz", "stored.npz", b"\x00" + zipped(pair, zipfile.ZIP_STORED))
put("npz", "deflated.npz", b"\x00" + zipped(pair, zipfile.ZIP_DEFLATED))
put("npz", "dir_entry.npz", b"\x00" + zipped([("d/", b""), ("d/z.npy", npys["u8_scalar"])], zipfile.ZIP_STORED))
put("npz", "entry_stored", b"\x01" + npys["f64_be_v2"])
put("npz", "entry_deflated", b"\x02" + npys["f16_v3"])
put("npz", "two_entries", b"\x03" + npys["bool_1d"] + npys["u8_scalar"])

# --- idx -----------------------------------------------------------------------------------------------
def idx(code, dims, data):
    return bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + data


idxs = {
    "u8_2x2x2": idx(0x08, [2, 2, 2], bytes(range(8))),
    "i8_3": idx(0x09, [3], b"\x01\xff\x7f"),
    "i16_2": idx(0x0B, [2], struct.pack(">2h", -300, 300)),
    "i32_2": idx(0x0C, [2], struct.pack(">2i", -70000, 70000)),
    "f32_2x1": idx(0x0D, [2, 1], struct.pack(">2f", 0.5, -2)),
    "f64_1": idx(0x0E, [1], struct.pack(">d", 3.25)),
}
for name, data in idxs.items():
    put("idx", name + ".idx", b"\x00" + data)
put("idx", "u8_gz_here.idx", b"\x01" + idxs["u8_2x2x2"])
put("idx", "f32_two_members", b"\x03" + idxs["f32_2x1"] + idxs["f32_2x1"])
put("idx", "i16_gz_file.idx.gz", b"\x00" + gzip.compress(idxs["i16_2"], mtime=0))
put("labels", "labels.idx", idx(0x08, [4], b"\x07\x02\x01\x00"))
put("labels", "labels.idx.gz", gzip.compress(idx(0x08, [3], b"\x07\x02\x01"), mtime=0))

# --- TensorProto files -----------------------------------------------------------------------------------
for rel in ["node/test_gemm_beta/test_data_set_0/input_2.pb", "node/test_matmulinteger/test_data_set_0/input_1.pb",
            "node/test_convinteger_with_padding/test_data_set_0/input_0.pb",
            "pytorch-converted/test_Conv1d_pad1size1/test_data_set_0/input_0.pb",
            "node/test_matmul_2d/test_data_set_0/input_0.pb"]:
    put("tensor_pb", rel.split("/")[1] + "_" + rel.split("/")[-1], open(os.path.join(CONF, rel), "rb").read())
put("tensor_pb", "floats.pb", tensor("x", [2, 3], 1, floats=W6))
put("tensor_pb", "fp16_typed.pb", tensor("h", [2], 10, int32s=halves([1.5, -2])))
put("tensor_pb", "doubles.pb", tensor("d", [2], 11, doubles=[1.5, -2]))
put("tensor_pb", "int64.pb", tensor("i", [2], 7) + bf(7, varint(5) + varint(2**64 - 3)))
put("tensor_pb", "uint64.pb", tensor("u", [1], 13) + bf(11, varint(2**40)))
put("tensor_pb", "bool_raw.pb", tensor("b", [3], 9, raw=b"\x01\x00\x01"))
put("tensor_pb", "external.pb", tensor("e", [2], 1, external=[("location", "x.bin")]))

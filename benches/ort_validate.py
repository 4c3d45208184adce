"""onnxruntime counterpart of `renorm validate`, for `benches/scale.sh`.

    ort_validate.py ORIGINAL PRUNED DATA.npy [--batch 64]

Loads both models with onnxruntime (default session options, CPUExecutionProvider), runs every batch of
the samples (first axis of DATA, fed to the first input) through both, and computes per output what renorm's
validation report holds: top-1 agreement (argmax over the last axis), max and mean |error|, relative L2 error
and cosine similarity of the pruned output to the original. Prints one JSON object, with the load time and
the steady-state run time (all batches through both models, loading excluded) and its samples/s.
"""

import argparse
import json
import time

import numpy as np
import onnxruntime as ort


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("original")
    p.add_argument("pruned")
    p.add_argument("data")
    p.add_argument("--batch", type=int, default=64)
    a = p.parse_args()

    t0 = time.perf_counter()
    providers = ["CPUExecutionProvider"]
    sessions = [ort.InferenceSession(m, providers=providers) for m in (a.original, a.pruned)]
    x = np.load(a.data)
    feed = sessions[0].get_inputs()[0].name
    names = [o.name for o in sessions[0].get_outputs()]
    t1 = time.perf_counter()

    acc = {n: dict(agree=0, max_abs=0.0, sum_abs=0.0, count=0, diff2=0.0, ref2=0.0, new2=0.0, dot=0.0)
           for n in names}
    for start in range(0, len(x), a.batch):
        xb = x[start:start + a.batch]
        ref, new = (s.run(names, {feed: xb}) for s in sessions)
        for n, r, q in zip(names, ref, new):
            r, q, s = r.astype(np.float64), q.astype(np.float64), acc[n]
            d = np.abs(q - r)
            s["agree"] += int((r.reshape(len(xb), -1, r.shape[-1]).argmax(-1)
                               == q.reshape(len(xb), -1, q.shape[-1]).argmax(-1)).all(-1).sum())
            s["max_abs"] = max(s["max_abs"], float(d.max(initial=0.0)))
            s["sum_abs"] += float(d.sum())
            s["count"] += d.size
            s["diff2"] += float((d * d).sum())
            s["ref2"] += float((r * r).sum())
            s["new2"] += float((q * q).sum())
            s["dot"] += float((r * q).sum())
    t2 = time.perf_counter()

    outputs = [dict(name=n, top1_agreement=s["agree"] / len(x), max_abs_error=s["max_abs"],
                    mean_abs_error=s["sum_abs"] / max(s["count"], 1),
                    rel_l2_error=(s["diff2"] / s["ref2"]) ** 0.5 if s["ref2"] else None,
                    cosine=s["dot"] / (s["ref2"] * s["new2"]) ** 0.5 if s["ref2"] and s["new2"] else None)
               for n, s in acc.items()]
    print(json.dumps(dict(samples=len(x), batch=a.batch, onnxruntime=ort.__version__,
                          load_seconds=t1 - t0, run_seconds=t2 - t1,
                          run_samples_per_second=len(x) / (t2 - t1), outputs=outputs), indent=2))


if __name__ == "__main__":
    main()

"""The measurements behind the export forms: for each loop form a lowering could take, file size
and latency of the ESN, LSTM and TCN window models, float and int8.

    python tools/bench/export_forms.py [--runs 5000] [--batch 256] [--bundle BUNDLE ...] [--json PATH]

Forms: ONNX ``scan`` (what ``export/onnx.py`` writes: a Scan, the body's input work hoisted in
front of it) against ``unroll`` (the loop's body inlined ``steps`` times in the description by
:func:`inline_loops` below, then lowered as any graph); for the LSTM also its fused ``LSTM`` op
(what the export writes, from the loop's hint) against the Scan (hint removed). TFLite ``unroll``
against ``while`` (``export/tflite.py``'s two forms). The TCN has no loop: one form per format.

Models: DS1 shapes (T=126, 9 RR features, 5 classes) with random weights, since size and latency
depend on shapes only: the ESN at N=300, the ``small`` LSTM (1 x 32) and TCN (6 blocks x 24, K=3);
``--bundle`` puts a trained ECG bundle in its kind's place. int8: ``graph/quantize.py``, ranges
calibrated on 256 random beats. Each file runs as edgeseq's runtime opens it, on one thread:
onnxruntime with QDQ fusion off (``runtime/onnx_backend.py``), TFLite's builtin kernels without
XNNPACK (``runtime/tflite_backend.py``). Single window: B=1, the forms of one model, precision and
format take turns call by call on the same beats, median and p90 of ``--runs`` calls after 20
warm-up calls. Batched: B=``--batch``, best of 3 calls, per window; on that batch, the largest
distance of each form's outputs from the description's on the numpy interpreter (its integer form
for int8). Written to ``results/export_forms.json``; ``python tools/bench/report.py`` renders it
into BENCHMARKS.md. About 2 minutes on a 2-core VM.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "tools" / "bench" / "results"
T, F, C = 126, 9, 5
WARMUP, PASSES = 20, 3


# -- the models ------------------------------------------------------------------------------------

def _esn(rng):
    from edgeseq.models.esn import ESNClassifier, describe

    est = ESNClassifier(units=300, seed=0).init_reservoir(1)
    est.Wout_ = (0.1 * rng.standard_normal((2 * 300 + F, C))).astype(np.float32)
    est.bout_ = np.zeros(C, np.float32)
    return describe(est, T, F), "N=300, T=126 (random reservoir as `init_reservoir` draws it, random readout)"


def _head(rng, H, head=32):
    u = lambda *s: rng.uniform(-1, 1, s).astype(np.float32)  # noqa: E731
    return {"in_scale": np.full(1, 3.0, np.float32), "side_center": np.ones(F, np.float32),
            "side_scale": np.full(F, 2.0, np.float32), "head_W1": u(2 * H + F, head),
            "head_b1": np.zeros(head, np.float32), "head_W2": u(head, C), "head_b2": np.zeros(C, np.float32)}


def _lstm(rng, H=32):
    from edgeseq.models.lstm import LSTMModel, describe

    a = {**_head(rng, H), "lstm_Wih0": rng.uniform(-1, 1, (4 * H, 1)).astype(np.float32) / np.sqrt(H),
         "lstm_Whh0": rng.uniform(-1, 1, (4 * H, H)).astype(np.float32) / np.sqrt(H),
         "lstm_b0": np.zeros(4 * H, np.float32)}
    return describe(LSTMModel.from_arrays({}, a), T, F), "small preset: 1 layer x 32, T=126 (random weights)"


def _tcn(rng, Ch=24, L=6, K=3):
    from edgeseq.models.tcn import TCNModel, describe

    a = {**_head(rng, Ch), "tcn_P": rng.uniform(-1, 1, (Ch, 1)).astype(np.float32),
         "tcn_pb": np.zeros(Ch, np.float32)}
    for l in range(L):
        cin = Ch if l else 1
        a[f"tcn_W{l}"] = rng.uniform(-1, 1, (Ch, cin, K)).astype(np.float32) / np.sqrt(cin * K)
        a[f"tcn_b{l}"] = np.zeros(Ch, np.float32)
    what = "small preset: 6 blocks x 24 channels, K=3, T=126 (random weights)"
    return describe(TCNModel.from_arrays({}, a), T, F), what


def _from_bundle(path):
    from edgeseq.bundle import load_bundle
    from edgeseq.models import family

    b = load_bundle(path)
    kind = b.manifest["model"]["kind"]
    return kind, family(b.manifest).describe(b.manifest, b.arrays, "window"), f"trained bundle {Path(path).name}"


def feeds(g, B: int, rng) -> dict:
    """Random beats for ``g``'s inputs: windows ~ N(0, 0.3), RR features in [0.5, 1.5] s."""
    return {k: (rng.uniform(0.5, 1.5, (B, *g.shapes[k][1:])) if k == "rr" else
                rng.normal(0, 0.3, (B, *g.shapes[k][1:]))).astype(np.float32) for k in g.inputs}


# -- forms: graph transforms applied before lowering -----------------------------------------------

def inline_loops(g):
    """``g`` with every loop's body inlined ``steps`` times (the unrolled form): step ``t`` reads
    ``take(scan, t)``, collected outputs are stacked by ``concat`` on axis 1, the final states
    replace the loop's state outputs where later nodes and the outputs read them."""
    from edgeseq.graph import Node

    g = copy.deepcopy(g)
    old, alias = g.nodes, {}
    g.nodes = []
    for n in old:
        n.inputs = [alias.get(i, i) for i in n.inputs]
        if n.op != "loop":
            g.nodes.append(n)
            continue
        body, ns, nc = n.attrs["body"], n.attrs["n_state"], n.attrs["n_carry"]
        vals, cols = n.inputs[:ns + nc], [[] for _ in body.outputs[ns:]]
        for t in range(n.attrs["steps"]):
            ren = dict(zip(body.inputs, vals + [g.take(x, t, name=f"{x}@{t}") for x in n.inputs[ns + nc:]]))
            for m in body.nodes:
                outs = [f"{o}@{t}" for o in m.outputs]
                for o, new in zip(m.outputs, outs):
                    g.shapes[new] = g.shapes[o]
                g.nodes.append(Node(m.op, [ren.get(i, i) for i in m.inputs], outs, m.attrs))
                ren.update(zip(m.outputs, outs))
            new = [ren.get(o, o) for o in body.outputs]
            vals[:ns] = new[:ns]
            for c, v in zip(cols, new[ns:]):
                c.append(g.reshape(v, 1, *g.shapes[v][1:]))
        alias.update(zip(n.outputs[:ns], vals[:ns]))
        for c, o in zip(cols, n.outputs[ns:]):
            g.nodes.append(Node("concat", c, [o], {"axis": 1}))
    g.outputs = [alias.get(o, o) for o in g.outputs]
    return g


def without_hint(g):
    """``g`` with its loops' hints removed: the LSTM as a Scan over its explicit cell."""
    g = copy.deepcopy(g)
    for n in g.nodes:
        if n.op == "loop":
            n.attrs["hint"] = {}
    return g


def forms(kind: str, g, int8: bool) -> dict:
    """``{(format, form): (file bytes, whether edgeseq's export writes this form)}``."""
    from edgeseq.export.onnx import to_onnx
    from edgeseq.export.tflite import to_tflite

    loops = any(n.op == "loop" for n in g.nodes)
    onnx = lambda x: to_onnx(x).SerializeToString()  # noqa: E731
    out = {("onnx", "LSTM op" if kind == "lstm" else "scan" if loops else "conv"): (onnx(g), True)}
    if kind == "lstm":
        out["onnx", "scan"] = (onnx(without_hint(g)), False)
    if loops:
        out["onnx", "unroll"] = (onnx(inline_loops(g)), False)
        out["tflite", "unroll"] = (to_tflite(g, loop="unroll"), not int8)
        out["tflite", "while"] = (to_tflite(g, loop="while"), int8)
    else:
        out["tflite", "conv"] = (to_tflite(g), True)
    return out


# -- running ---------------------------------------------------------------------------------------

def onnx_runner(data: bytes):
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads = o.inter_op_num_threads = 1
    o.add_session_config_entry("session.disable_quant_qdq", "1")  # as runtime/onnx_backend.py
    s = ort.InferenceSession(data, o, providers=["CPUExecutionProvider"])
    out = s.get_outputs()[0].name
    return lambda f: s.run([out], f)[0]


def tflite_runner(data: bytes):
    from edgeseq.runtime.tflite_backend import _interpreter_class, _open

    it = _open(_interpreter_class(), data, 1)
    it.allocate_tensors()
    ins = {d["name"]: d["index"] for d in it.get_input_details()}
    out = it.get_output_details()[0]["index"]
    batch = [1]

    def call(f):
        B = len(next(iter(f.values())))
        if B != batch[0]:
            for k, v in f.items():
                it.resize_tensor_input(ins[k], v.shape)
            it.allocate_tensors()
            batch[0] = B
        for k, v in f.items():
            it.set_tensor(ins[k], v)
        it.invoke()
        return it.get_tensor(out)
    return call


def measure(g, files: dict, runs: int, batch: int, rng) -> dict:
    """Per form: file size, B=1 latency (the forms take turns), batched latency per window, and the
    largest distance of its outputs from the description's."""
    from edgeseq.graph.numpy import run

    calls = {k: (onnx_runner if k[0] == "onnx" else tflite_runner)(data) for k, (data, _) in files.items()}
    beats = feeds(g, WARMUP + runs, rng)
    times = {k: [] for k in calls}
    for i in range(WARMUP + runs):
        f = {k: v[i:i + 1] for k, v in beats.items()}
        for k, call in calls.items():
            t0 = time.perf_counter()
            call(f)
            if i >= WARMUP:
                times[k].append(time.perf_counter() - t0)
    big = feeds(g, batch, rng)
    want = run(g, big)[g.outputs[0]]
    rows = {}
    for k, call in calls.items():
        got, best = call(big), float("inf")
        for _ in range(PASSES):
            t0 = time.perf_counter()
            call(big)
            best = min(best, time.perf_counter() - t0)
        t = np.array(times[k]) * 1e6
        rows[k] = {"bytes": len(files[k][0]), "exported": files[k][1], "p50_us": float(np.median(t)),
                   "p90_us": float(np.percentile(t, 90)), "batched_us_per_window": 1e6 * best / batch,
                   "max_abs_diff": float(np.abs(got - want).max()),
                   "max_abs_output": float(np.abs(want).max())}
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5000, help="single-window calls per form (default 5000)")
    ap.add_argument("--batch", type=int, default=256, help="windows per batched call (default 256)")
    ap.add_argument("--bundle", action="append", default=[], help="a trained ECG bundle in its kind's place")
    ap.add_argument("--json", default=str(RESULTS / "export_forms.json"))
    args = ap.parse_args(argv)
    import ai_edge_litert
    import onnx
    import onnxruntime

    import edgeseq
    from edgeseq.graph.quantize import calibrate, quantize
    from edgeseq.profile.core import machine

    rng = np.random.default_rng(0)
    models = {k: fn(rng) for k, fn in (("esn", _esn), ("lstm", _lstm), ("tcn", _tcn))}
    for path in args.bundle:
        kind, g, what = _from_bundle(path)
        models[kind] = (g, what)
    rows, t0 = [], time.perf_counter()
    for kind, (g, _) in models.items():
        for precision in ("float32", "int8"):
            q = quantize(g, calibrate(g, [feeds(g, 256, rng)])) if precision == "int8" else g
            files = forms(kind, q, precision == "int8")
            for fmt in ("onnx", "tflite"):
                res = measure(q, {k: v for k, v in files.items() if k[0] == fmt}, args.runs, args.batch, rng)
                for (_, form), r in res.items():
                    rows.append({"model": kind, "precision": precision, "format": fmt, "form": form, **r})
                    print(f"{kind:5s} {precision:8s} {fmt:7s} {form:8s} {r['bytes'] / 1000:7.1f} kB  B=1 p50 "
                          f"{r['p50_us']:7.0f} us p90 {r['p90_us']:7.0f} us  B={args.batch} "
                          f"{r['batched_us_per_window']:6.0f} us/window  |diff| {r['max_abs_diff']:.1e}"
                          f"{'  <- export' if r['exported'] else ''}  [{time.perf_counter() - t0:.0f} s]", flush=True)
    cmd = " ".join(["python tools/bench/export_forms.py", *(argv if argv is not None else sys.argv[1:])])
    out = {"command": cmd, "machine": machine(),
           "versions": {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__,
                        "ai_edge_litert": getattr(ai_edge_litert, "__version__", None), "edgeseq": edgeseq.__version__},
           "timing": {"runs": args.runs, "warmup": WARMUP, "batch": args.batch, "batch_passes": PASSES, "threads": 1},
           "models": {k: what for k, (_, what) in models.items()}, "rows": rows}
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

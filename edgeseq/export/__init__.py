"""Export: a trained bundle -> a bundle a device runtime loads. The flow, top to bottom::

    family description (edgeseq/models, ``Family.describe``): the window and the step graph
      -> int8 only: calibration ranges and the integer form (edgeseq/graph/quantize.py)
      -> one lowering per format (export/onnx.py, export/tflite.py)
      -> the bundle: the source manifest + a ``runtime`` section, the model files, the initial
         states a run starts from, and nothing else (no float weights beside an int8 model).

Forms (by measurement, ``tools/bench/export_forms.py``): ONNX runs loops as a Scan (the LSTM as
its fused op, 8x faster); TFLite unrolls a float loop (as fast for one window, faster in batches)
and runs an int8 one as a WHILE over one stored step (as fast, under half the size); a TFLite
sequence model of any length is its step graph, looped by the runtime. Host side: ``onnx`` and
``ai-edge-litert``'s schema are imported by the lowerings.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from ..bundle import load_bundle, write_bundle
from ..errors import EdgeseqError
from ..finite import require_finite


def _onnx(g, int8: bool):
    from .onnx import to_onnx

    return to_onnx(g).SerializeToString(), "scan"


def _tflite(g, int8: bool):
    """None for a loop whose length is known only at run time: TFLite has no form for it."""
    if any(n.op == "loop" and n.attrs["steps"] is None for n in g.nodes):
        return None
    from .tflite import to_tflite

    form = "while" if int8 else "unroll"
    return to_tflite(g, loop=form, description=f"edgeseq {g.name}"), form


#: format -> lowering: ``(graph, int8) -> (model file bytes, form) or None``
FORMATS = {"onnx": _onnx, "tflite": _tflite}


# -- calibration inputs, by the runtime interface of the family ------------------------------------

def _spread(X, limit=2000):
    """At most ``limit`` rows spread evenly over ``X`` (every record, not the first one only), finite:
    no row, or a NaN, is one line here, not a quantiser dividing by an empty or infinite range."""
    X = np.asarray(X, np.float32)
    if not len(X):
        raise EdgeseqError("--calibration: the data hold no usable beats or windows to calibrate int8 ranges on")
    return require_finite(X[np.linspace(0, len(X) - 1, min(limit, len(X))).astype(np.int64)], "calibration data")


def _beats(calibration, manifest):
    """``(windows, rr)`` arrays, or ``(data_dir, records)`` to read."""
    w, rr = calibration
    if not isinstance(w, np.ndarray):
        from ..preprocess.ecg import EcgPreprocessing
        from ..tasks.ecg import load_beats
        beats = load_beats(w, list(rr), EcgPreprocessing.from_config(manifest["preprocessing"]), progress=False)
        w, rr = beats.windows, beats.rr
    w, rr = _spread(w), _spread(rr)
    return [{"window": w[i:i + 250], "rr": rr[i:i + 250]} for i in range(0, len(w), 250)]


def _windows(calibration, manifest):
    """Balance windows ``[B, T, D]``: an array, a ``.npy`` file, or the data directory of the task."""
    X = calibration
    if isinstance(X, (str, Path)) and str(X).endswith(".npy"):
        X = np.load(X)
    elif not isinstance(X, np.ndarray):
        if manifest["task"] != "balance":
            raise EdgeseqError(f"--calibration {X}: a sequence model calibrates on a .npy file of inputs (T, D)")
        from ..preprocess.balance import BalancePreprocessing
        from ..tasks.balance import load_windows
        X = load_windows(X, BalancePreprocessing.from_config(manifest["preprocessing"]), manifest["target"],
                         progress=False).X
    return _spread(X[None] if np.ndim(X) == 2 else X)  # one (T, D) sequence, or windows


CALIBRATION = {
    "beats": lambda c, m, init: _beats(c, m),
    "windows": lambda c, m, init: [{"window": x} for x in np.array_split(_windows(c, m), 8)],
    "sequence": lambda c, m, init: [{"x": x, **{k: np.broadcast_to(v, (len(x), len(v))) for k, v in init.items()}}
                                    for x in np.array_split(_windows(c, m), 8) if len(x)],
}


def export(bundle_path, out_dir, *, fmt: str, int8: bool = False, calibration=None) -> Path:
    """Export the trained bundle at ``bundle_path`` to ``out_dir`` in ``fmt`` (``FORMATS``),
    float32 or int8. ``calibration`` (int8, when the description leaves ranges open): for beat
    models ``(windows, rr)`` or ``(data_dir, records)``; for balance models windows or the data
    directory; for sequence models inputs ``(T, D)`` or a ``.npy`` file of them."""
    from ..graph.quantize import calibrate, plan, quantize
    from ..models import family
    from ..runtime import contract

    if fmt not in FORMATS:
        raise EdgeseqError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    src = Path(bundle_path)
    if Path(out_dir).resolve() == src.resolve():  # it would replace the training bundle
        raise EdgeseqError(f"export --out {out_dir} is the bundle being exported: choose another directory")
    bundle = load_bundle(src)
    manifest = json.loads(json.dumps(bundle.manifest))  # a private copy to extend
    if "runtime" in manifest:
        raise EdgeseqError(f"bundle {src} is already an exported bundle ({manifest['runtime'].get('format')})")
    fam = family(manifest)
    graphs = {form: fam.describe(manifest, bundle.arrays, form) for form in ("window", "step")}
    init = fam.initial(bundle.arrays)
    if int8:
        g = graphs["window"]
        ranges, n = {}, 0
        if any(node.op == "q" and node.attrs["fixed"] is None for node in g.walk()):
            if calibration is None:
                raise EdgeseqError("int8 export of this model needs calibration data (--calibration): "
                                   "real inputs set its activation ranges")
            feeds = CALIBRATION[fam.interface](calibration, manifest, init)
            n = sum(len(next(iter(f.values()))) for f in feeds)  # windows, or sequences
            ranges = calibrate(g, feeds)
        graphs = {k: quantize(v, ranges) for k, v in graphs.items()}
    with tempfile.TemporaryDirectory(prefix="edgeseq_export_") as work:
        files, paths, form = {}, {}, "step"  # the form of the window model; a step is a plain graph
        for key, which in (("model", "window"), ("step", "step")):
            lowered = FORMATS[fmt](graphs[which], int8)
            if lowered is not None:
                files[key] = name = f"{key}.{fmt}"
                paths[name] = Path(work) / name
                paths[name].write_bytes(lowered[0])
                form = lowered[1] if key == "model" else form
        rt = {"format": fmt, "precision": "int8" if int8 else "float32", **files, "graph_form": form,
              **contract(graphs, fam.interface)}
        if "model" not in files:
            del rt["inputs"], rt["outputs"]
        rt["source_sha256"] = manifest["files"][manifest["model"]["weights"]]["sha256"]  # checked by load_bundle
        if int8:
            rt["quantization"] = {**plan(graphs["window"]), "calibration_inputs": n}
        manifest["runtime"] = rt
        return write_bundle(Path(out_dir), manifest, init, files=paths)

"""Export: a trained bundle -> a bundle a device runtime loads. The flow, top to bottom::

    family description (edgeseq/models, ``Family.describe``): the window and the step graph
      -> int8 only: calibration ranges and the integer form (edgeseq/graph/quantize.py)
      -> one lowering per format (export/onnx.py, export/tflite.py; export/c.py from the step's
         fixed-point program, edgeseq/graph/fixed.py)
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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..bundle import load_bundle, write_bundle
from ..errors import EdgeseqError
from ..finite import require_finite


def _onnx(graphs, int8: bool, ctx):
    from .onnx import to_onnx

    return {k: (f"{k}.onnx", to_onnx(graphs[w]).SerializeToString()) for k, w in (("model", "window"), ("step", "step"))}, "scan"


def _tflite(graphs, int8: bool, ctx):
    """No window file for a loop whose length is known only at run time: TFLite has no form for it."""
    from .tflite import to_tflite

    form = "while" if int8 else "unroll"
    files = {"step": ("step.tflite", to_tflite(graphs["step"], loop=form, description=f"edgeseq {graphs['step'].name}"))}
    g = graphs["window"]
    if not any(n.op == "loop" and n.attrs["steps"] is None for n in g.nodes):
        files["model"] = ("model.tflite", to_tflite(g, loop=form, description=f"edgeseq {g.name}"))
    return files, form


def _c(graphs, int8: bool, ctx):
    """One C library for both entry points: the step, and the window as the step looped. int8 is
    the fixed-point program (``_program``)."""
    from ..graph import fixed
    from .c import float_program, to_c

    step, window = graphs["step"], graphs["window"]
    try:
        prog = _program(graphs, ctx) if int8 else float_program(step, ctx["initial"])
        lib = to_c(prog, int8=int8, window_length=ctx["window_length"], graph=step, inputs=list(window.inputs),
                   outputs=list(window.outputs))
    except fixed.Unsupported as exc:
        raise EdgeseqError(f"the C lowering does not support this model: {exc}") from None
    ctx["c"] = {"header": "model.h", "arena_bytes": lib["arena_bytes"]}
    src = lib["model.c"].encode()
    return {"model": ("model.c", src), "step": ("model.c", src), "header": ("model.h", lib["model.h"].encode())}, "step"


def _program(graphs, ctx):
    """The fixed-point program of the int8 step, every tensor's range traced by stepping it over
    the calibration windows."""
    from ..graph import fixed

    step = graphs["step"]
    return fixed.lower(step, fixed.ranges(step, ctx["feeds"](), ctx["initial"]), ctx["initial"])


@dataclass(frozen=True)
class Lowering:
    """``lower(graphs, int8, context) -> ({file key: (name, bytes)}, form of the window file)``;
    the keys ``model`` and ``step`` are what the runtime opens. ``traces_all``: an int8 export
    calibrates every tensor's range, not only the ``q`` nodes the description left open."""

    lower: Callable
    traces_all: bool = False


FORMATS = {"onnx": Lowering(_onnx), "tflite": Lowering(_tflite), "c": Lowering(_c, traces_all=True)}


# -- calibration inputs, by the runtime interface of the family ------------------------------------

def _spread(X, limit=2000):
    """At most ``limit`` rows spread evenly over ``X`` (every record, not the first one only), finite:
    no row, or a NaN, is one line here, not a quantiser dividing by an empty or infinite range."""
    X = np.asarray(X, np.float32)
    if not len(X):
        raise EdgeseqError("--calibration: the data hold no usable beats or windows to calibrate int8 ranges on")
    return require_finite(X[np.linspace(0, len(X) - 1, min(limit, len(X))).astype(np.int64)], "calibration data")


def _beats(calibration, manifest, progress=False):
    """``(windows, rr)`` arrays, or ``(data_dir, records)`` to read."""
    w, rr = calibration
    if not isinstance(w, np.ndarray):
        from ..preprocess.ecg import EcgPreprocessing
        from ..tasks.ecg import load_beats
        beats = load_beats(w, list(rr), EcgPreprocessing.from_config(manifest["preprocessing"]), progress=progress)
        w, rr = beats.windows, beats.rr
    w, rr = _spread(w), _spread(rr)
    return [{"window": w[i:i + 250], "rr": rr[i:i + 250]} for i in range(0, len(w), 250)]


def _windows(calibration, manifest, progress=False):
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
                         progress=progress).X
    return _spread(X[None] if np.ndim(X) == 2 else X)  # one (T, D) sequence, or windows


CALIBRATION = {  # (calibration, manifest, initial states, progress lines on stderr) -> feed batches
    "beats": lambda c, m, init, pr: _beats(c, m, pr),
    "windows": lambda c, m, init, pr: [{"window": x} for x in np.array_split(_windows(c, m, pr), 8)],
    "sequence": lambda c, m, init, pr: [{"x": x, **{k: np.broadcast_to(v, (len(x), len(v))) for k, v in init.items()}}
                                        for x in np.array_split(_windows(c, m, pr), 8) if len(x)],
}


def export(bundle_path, out_dir, *, fmt: str, int8: bool = False, calibration=None, progress: bool = False) -> Path:
    """Export the trained bundle at ``bundle_path`` to ``out_dir`` in ``fmt`` (``FORMATS``),
    float32 or int8. ``calibration`` (int8, when the description leaves ranges open): for beat
    models ``(windows, rr)`` or ``(data_dir, records)``; for balance models windows or the data
    directory; for sequence models inputs ``(T, D)`` or a ``.npy`` file of them."""
    from ..graph.quantize import plan
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
    graphs, ctx = _prepare(manifest, bundle.arrays, fam, int8=int8, calibration=calibration,
                           traces_all=FORMATS[fmt].traces_all, progress=progress)
    with tempfile.TemporaryDirectory(prefix="edgeseq_export_") as work:
        lowered, form = FORMATS[fmt].lower(graphs, int8, ctx)
        paths = {name: Path(work) / name for name, _ in lowered.values()}
        for name, data in lowered.values():
            paths[name].write_bytes(data)
        files = {k: name for k, (name, _) in lowered.items() if k in ("model", "step")}
        rt = {"format": fmt, "precision": "int8" if int8 else "float32", **files, "graph_form": form,
              **contract(graphs, fam.interface), **({"c": ctx["c"]} if "c" in ctx else {})}
        if "model" not in files:
            del rt["inputs"], rt["outputs"]
        rt["source_sha256"] = manifest["files"][manifest["model"]["weights"]]["sha256"]  # checked by load_bundle
        if int8:
            rt["quantization"] = {**plan(graphs["window"]), "calibration_inputs": ctx["n"]}
        manifest["runtime"] = rt
        return write_bundle(Path(out_dir), manifest, ctx["initial"], files=paths)


def _prepare(manifest, arrays, fam, *, int8: bool, calibration, traces_all: bool,
             progress: bool = False) -> tuple[dict, dict]:
    """The window and step graphs (int8: quantized at calibrated ranges) and what a lowering needs
    beside them: the initial states, the window length, the calibration feeds. ``progress``: lines
    on stderr while the calibration data are read and run (records, then batches)."""
    from ..graph.quantize import calibrate, quantize
    from ..progress import Progress

    graphs = {form: fam.describe(manifest, arrays, form) for form in ("window", "step")}
    init = fam.initial(arrays)
    ctx = {"feeds": lambda: _calibration(calibration, manifest, init, fam, progress), "initial": init, "n": 0,
           "window_length": None if fam.interface == "sequence" else graphs["window"].shapes[graphs["window"].inputs[0]][1]}
    # the C fixed-point form traces every tensor's range; the others only the q nodes left open
    if int8 and (traces_all or any(n.op == "q" and n.attrs["fixed"] is None for n in graphs["window"].walk())):
        batches = ctx["feeds"]()
        ctx["n"] = sum(len(next(iter(f.values()))) for f in batches)
        ctx["feeds"] = lambda: batches
        ranges = calibrate(graphs["window"], batches,
                           progress=Progress("int8 calibration (batches)", len(batches), enabled=progress))
        graphs = {k: quantize(v, ranges) for k, v in graphs.items()}
    elif int8:
        graphs = {k: quantize(v, {}) for k, v in graphs.items()}
    return graphs, ctx


def fixed_program(bundle_path, calibration):
    """The fixed-point program an int8 C export of the training bundle prints: its reference
    (``graph/fixed.py`` runs it in numpy), from the same calibration."""
    from ..models import family

    bundle = load_bundle(bundle_path)
    fam = family(bundle.manifest)
    return _program(*_prepare(bundle.manifest, bundle.arrays, fam, int8=True, calibration=calibration,
                              traces_all=True))


def _calibration(calibration, manifest, init, fam, progress: bool = False):
    if calibration is None:
        raise EdgeseqError("int8 export of this model needs calibration data (--calibration): "
                           "real inputs set its activation ranges")
    return CALIBRATION[fam.interface](calibration, manifest, init, progress)

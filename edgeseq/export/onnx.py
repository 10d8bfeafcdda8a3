"""Export an ESN bundle to ONNX (host side; ``onnx`` and ``onnxruntime`` are imported
lazily so ``import edgeseq.export`` stays cheap).

Two graphs go into the exported bundle:

- ``model.onnx``, the WINDOW model ``(window [B, T], rr [B, 9]) -> logits [B, 5]``: rr -> reservoir
  constant inputs, the whole reservoir run over the window, last + mean state, readout. One call
  per beat (or per batch of beats).
- ``step.onnx``, the STEP model ``(u [B, 1], const [B, K], state [B, N]) -> state' [B, N]``: one
  reservoir update, for a device that feeds samples as they arrive.

The input drive ``u[t] * Win[:, 0] + const @ Win[:, 1:].T + bias`` of every step is computed in
one broadcast before the recurrence, so a step is MatMul + Add + Tanh + Sub + Mul + Add on
``[B, 1, N]`` tensors.

Window graph form, chosen by measurement (onnxruntime 1.32, CPU, intra_op_num_threads=1, DS1
bundle N=300, T=126, median of 300 single-beat runs on a 2-core host VM)::

    form                       B=1 us/beat (median, p90)   B=2000 us/beat   file
    Scan (body = one step)     961, 1067                   533              381 kB
    unrolled (126 steps)       1054, 1453                  1156             400 kB

The float export is Scan (faster, and it does not hold 126 states alive in a batch). The int8
export is a Scan too, built by hand (``build_int8_window_model``): int8 weights stored once, int16
state; 27.5% of the float file at N=300.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from . import source_bundle
from ..bundle import WEIGHTS, sha256_file, write_bundle
from ..errors import EdgeseqError
from ..finite import require_finite

OPSET = 17
QOPSET = 21
MODEL = "model.onnx"
STEP = "step.onnx"


# -- graph construction ----------------------------------------------------------------------------

def _esn_parts(manifest: dict, arrays: dict) -> dict:
    kind = manifest["model"]["kind"]
    if kind != "esn":
        raise EdgeseqError(f"ONNX export supports ESN bundles only, this one is {kind!r}")
    params = manifest["model"]["params"]
    spec = np.asarray(params.get("rr_inputs") or np.zeros((0, 2)), dtype=np.float64).reshape(-1, 2)
    W = np.asarray(arrays["W"], np.float32)
    Win = np.asarray(arrays["Win"], np.float32)
    N = W.shape[0]
    K = len(spec)
    D = Win.shape[1] - K
    if D != 1:
        raise EdgeseqError(f"ONNX export supports single-channel windows, this reservoir has {D} inputs")
    inp = manifest["model"].get("input", {})
    return {"W": W, "Win": Win, "bias": np.asarray(arrays["bias"], np.float32),
            "Wout": np.asarray(arrays["Wout"], np.float32), "bout": np.asarray(arrays["bout"], np.float32),
            "lr": float(params["lr"]), "cols": spec[:, 0].astype(np.int64), "ref": spec[:, 1],
            "N": N, "K": K, "T": int(inp.get("window_length", 0)) or None,
            "F": len(inp.get("rr_features", [])) or None}


def _init(name, arr):
    from onnx import numpy_helper
    return numpy_helper.from_array(np.ascontiguousarray(arr), name)


def _const_rr(helper, p, nodes, inits):
    """rr [B, F] -> const [B, K], exactly ``ESNClassifier.reservoir_rr``."""
    inits += [_init("rr_cols", p["cols"]),
              _init("rr_eps", np.array(0.01, np.float32)),
              _init("rr_floor", np.array(1e-6, np.float32)),
              _init("rr_ref", (p["ref"] + 0.01).astype(np.float32)),
              _init("rr_lo", np.array(-3.0, np.float32)), _init("rr_hi", np.array(3.0, np.float32))]
    nodes += [helper.make_node("Gather", ["rr", "rr_cols"], ["rr_sel"], axis=1),
              helper.make_node("Add", ["rr_sel", "rr_eps"], ["rr_add"]),
              helper.make_node("Max", ["rr_add", "rr_floor"], ["rr_max"]),
              helper.make_node("Div", ["rr_max", "rr_ref"], ["rr_ratio"]),
              helper.make_node("Log", ["rr_ratio"], ["rr_log"]),
              helper.make_node("Clip", ["rr_log", "rr_lo", "rr_hi"], ["const"])]


def _cell(helper, x, d, out, tag, nodes):
    """``out = x + lr * (tanh(x @ W.T + d) - x)``, the reservoirpy update in the reference's order."""
    nodes += [helper.make_node("MatMul", [x, "WT"], [f"rec{tag}"]),
              helper.make_node("Add", [f"rec{tag}", d], [f"pre{tag}"]),
              helper.make_node("Tanh", [f"pre{tag}"], [f"act{tag}"]),
              helper.make_node("Sub", [f"act{tag}", x], [f"dx{tag}"]),
              helper.make_node("Mul", [f"dx{tag}", "lr"], [f"ldx{tag}"]),
              helper.make_node("Add", [x, f"ldx{tag}"], [out])]


def _scan(helper, body: list) -> list:
    """The Scan over the window's steps around a one-step ``body`` (state ``xs``, running sum
    ``accs``, drive ``ds`` in; ``xn``, ``accn`` out), from a zero state shaped like the drive."""
    from onnx import TensorProto

    f = TensorProto.FLOAT
    graph = helper.make_graph(
        body, "step",
        [helper.make_tensor_value_info("xs", f, None), helper.make_tensor_value_info("accs", f, None),
         helper.make_tensor_value_info("ds", f, None)],
        [helper.make_tensor_value_info("xn", f, None), helper.make_tensor_value_info("accn", f, None)])
    return [helper.make_node("Shape", ["cdrive1"], ["shape_bn"]),
            helper.make_node("ConstantOfShape", ["shape_bn"], ["zeros"]),
            helper.make_node("Scan", ["zeros", "zeros", "drive"], ["last", "xsum"], body=graph,
                             num_scan_inputs=1, scan_input_axes=[1])]


def build_window_model(p: dict, form: str = "unrolled"):
    """The WINDOW graph in ``form`` ``"unrolled"`` or ``"scan"`` (both kept for the measurement)."""
    import onnx
    from onnx import TensorProto, helper

    N, T = p["N"], p["T"]
    if T is None:
        raise EdgeseqError("bundle manifest lacks model.input.window_length; cannot fix the window length")
    F = p["F"] or 9
    nodes, inits = [], []
    _const_rr(helper, p, nodes, inits)
    inits += [_init("WT", p["W"].T), _init("win_u", p["Win"][:, 0].reshape(1, 1, N)),
              _init("WinCT", p["Win"][:, 1:].T), _init("bias", p["bias"]),
              _init("lr", np.array(p["lr"], np.float32)), _init("ax2", np.array([2], np.int64)),
              _init("ax1", np.array([1], np.int64)), _init("Wout", p["Wout"]), _init("bout", p["bout"]),
              _init("invT", np.array(1.0 / T, np.float32)), _init("shapeBN", np.array([-1, N], np.int64))]
    # Drive of every step at once: window[:, :, None] * Win[:, 0] + (const @ WinC.T + bias)[:, None].
    nodes += [helper.make_node("MatMul", ["const", "WinCT"], ["cdrive0"]),
              helper.make_node("Add", ["cdrive0", "bias"], ["cdrive1"]),
              helper.make_node("Unsqueeze", ["cdrive1", "ax1"], ["cdrive"]),
              helper.make_node("Unsqueeze", ["window", "ax2"], ["win3"]),
              helper.make_node("Mul", ["win3", "win_u"], ["udrive"]),
              helper.make_node("Add", ["udrive", "cdrive"], ["drive"])]  # [B, T, N]
    if form == "unrolled":
        nodes.append(helper.make_node("Split", ["drive"], [f"d{t}" for t in range(T)], axis=1,
                                      num_outputs=T) if OPSET >= 18 else
                     helper.make_node("Split", ["drive"], [f"d{t}" for t in range(T)], axis=1))
        # x[0] = lr * tanh(d0) since x[-1] = 0: saves a MatMul and the zero state's dynamic shape.
        nodes += [helper.make_node("Tanh", ["d0"], ["act0"]),
                  helper.make_node("Mul", ["act0", "lr"], ["x0"])]
        for t in range(1, T):
            _cell(helper, f"x{t - 1}", f"d{t}", f"x{t}", t, nodes)
        nodes += [helper.make_node("Sum", [f"x{t}" for t in range(T)], ["xsum"]),
                  helper.make_node("Reshape", [f"x{T - 1}", "shapeBN"], ["last"])]
    elif form == "scan":
        body_nodes = []
        _cell(helper, "xs", "ds", "xn", "", body_nodes)
        body_nodes.append(helper.make_node("Add", ["accs", "xn"], ["accn"]))
        nodes += _scan(helper, body_nodes)
    else:
        raise ValueError(f"unknown graph form {form!r}")
    nodes += [helper.make_node("Reshape", ["xsum", "shapeBN"], ["xsum2"]),
              helper.make_node("Mul", ["xsum2", "invT"], ["mean"]),
              helper.make_node("Concat", ["last", "mean", "rr"], ["features"], axis=1),
              helper.make_node("MatMul", ["features", "Wout"], ["lin"]),
              helper.make_node("Add", ["lin", "bout"], ["logits"])]
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "esn_window",
        [helper.make_tensor_value_info("window", f, ["B", T]), helper.make_tensor_value_info("rr", f, ["B", F])],
        [helper.make_tensor_value_info("logits", f, ["B", p["Wout"].shape[1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="edgeseq")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def build_step_model(p: dict):
    import onnx
    from onnx import TensorProto, helper

    N, K = p["N"], p["K"]
    nodes = [helper.make_node("MatMul", ["const", "WinCT"], ["cdrive0"]),
             helper.make_node("Add", ["cdrive0", "bias"], ["cdrive"]),
             helper.make_node("Mul", ["u", "win_u"], ["udrive"]),  # [B, 1] * [N]
             helper.make_node("Add", ["udrive", "cdrive"], ["drive"])]
    _cell(helper, "state", "drive", "state_out", "", nodes)
    inits = [_init("WT", p["W"].T), _init("win_u", p["Win"][:, 0]), _init("WinCT", p["Win"][:, 1:].T),
             _init("bias", p["bias"]), _init("lr", np.array(p["lr"], np.float32))]
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "esn_step",
        [helper.make_tensor_value_info("u", f, ["B", 1]), helper.make_tensor_value_info("const", f, ["B", K]),
         helper.make_tensor_value_info("state", f, ["B", N])],
        [helper.make_tensor_value_info("state_out", f, ["B", N])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgeseq")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# -- int8 -------------------------------------------------------------------------------------------

# |x| < 1 always (x' = (1 - lr) x + lr tanh(.), 0 < lr <= 1, x0 = 0), and so are last and mean:
# one fixed int16 scale covers the state without calibration and never clips.
STATE_SCALE = 1.0 / 32767
CONST_SCALE = 3.0 / 32767  # const is clipped to [-3, 3] by construction


def _qweight(w: np.ndarray, bits: int = 8):
    """Symmetric per-output-channel (``axis=1``) quantization: columns of ``W.T`` differ several-fold
    in norm, one scale for all would spend most of the 8 bits on the largest."""
    qmax = 2 ** (bits - 1) - 1
    amax = np.abs(w).max(axis=0)
    scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
    q = np.clip(np.round(w / scale), -qmax, qmax).astype(np.int8 if bits == 8 else np.int16)
    return q, scale


def build_int8_window_model(p: dict):
    """The WINDOW graph as a Scan with int8 weights, each stored once.

    ``quantize_static`` never looks inside a Scan body, which forced an unrolled graph whose 126
    per-step QDQ nodes kept the file at 38% of float. Here the weights are dequantized in the main
    graph and the body reads ``WT`` from the outer scope; the state goes through int16
    Quantize/DequantizeLinear before every recurrent MatMul, as an int8 x int16 kernel sees it.

    Precision per tensor, chosen by measurement on all 50,977 DS1 beats (N=300), changed labels
    vs the float graph: recurrent W, Win int8 per-channel + int16 state: 78. Readout Wout int8
    instead of int16: 124, S +P -2.2 points (600 features with weights ~1 summed, the int8 rounding
    moves logits by up to 0.7). int16 rr features into the readout with a calibrated scale: a
    beat after a 100 s gap clipped and changed label (rr is raw seconds and unbounded), so rr
    stays float32 (9 of 609 readout inputs).
    """
    import onnx
    from onnx import TensorProto, helper

    N, T = p["N"], p["T"]
    if T is None:
        raise EdgeseqError("bundle manifest lacks model.input.window_length; cannot fix the window length")
    F = p["F"] or 9
    nodes, inits = [], []
    _const_rr(helper, p, nodes, inits)

    def weight(name, w, bits=8):
        q, s = _qweight(w, bits)
        inits.extend([_init(name + "_q", q), _init(name + "_s", s)])
        nodes.append(helper.make_node("DequantizeLinear", [name + "_q", name + "_s"], [name], axis=1))

    def qdq(x, out, scale, into):
        into.extend([helper.make_node("QuantizeLinear", [x, scale, "zp16"], [out + "_q"]),
                     helper.make_node("DequantizeLinear", [out + "_q", scale, "zp16"], [out])])

    inits += [_init("zp16", np.array(0, np.int16)),
              _init("s_state", np.array(STATE_SCALE, np.float32)),
              _init("s_const", np.array(CONST_SCALE, np.float32)),
              _init("bias", p["bias"]), _init("lr", np.array(p["lr"], np.float32)),
              _init("ax1", np.array([1], np.int64)), _init("ax2", np.array([2], np.int64)),
              _init("bout", p["bout"]), _init("invT", np.array(1.0 / T, np.float32)),
              _init("shapeBN", np.array([-1, N], np.int64))]
    weight("WT", p["W"].T)
    weight("WinCT", p["Win"][:, 1:].T)
    weight("win_u", p["Win"][:, 0].reshape(1, N))
    weight("Wout", p["Wout"], bits=16)
    qdq("const", "const_d", "s_const", nodes)
    nodes += [helper.make_node("MatMul", ["const_d", "WinCT"], ["cdrive0"]),
              helper.make_node("Add", ["cdrive0", "bias"], ["cdrive1"]),
              helper.make_node("Unsqueeze", ["cdrive1", "ax1"], ["cdrive"]),
              helper.make_node("Unsqueeze", ["window", "ax2"], ["win3"]),
              helper.make_node("Unsqueeze", ["win_u", "ax1"], ["win_u3"]),
              helper.make_node("Mul", ["win3", "win_u3"], ["udrive"]),
              helper.make_node("Add", ["udrive", "cdrive"], ["drive"])]  # [B, T, N]
    body = []
    qdq("xs", "xs_d", "s_state", body)
    body += [helper.make_node("MatMul", ["xs_d", "WT"], ["rec"]),
             helper.make_node("Add", ["rec", "ds"], ["pre"]),
             helper.make_node("Tanh", ["pre"], ["act"]),
             helper.make_node("Sub", ["act", "xs"], ["dx"]),
             helper.make_node("Mul", ["dx", "lr"], ["ldx"]),
             helper.make_node("Add", ["xs", "ldx"], ["xn"]),
             helper.make_node("Add", ["accs", "xn"], ["accn"])]
    nodes += _scan(helper, body) + [
              helper.make_node("Reshape", ["xsum", "shapeBN"], ["xsum2"]),
              helper.make_node("Mul", ["xsum2", "invT"], ["mean"])]
    qdq("last", "last_d", "s_state", nodes)
    qdq("mean", "mean_d", "s_state", nodes)
    nodes += [helper.make_node("Concat", ["last_d", "mean_d", "rr"], ["features"], axis=1),
              helper.make_node("MatMul", ["features", "Wout"], ["lin"]),
              helper.make_node("Add", ["lin", "bout"], ["logits"])]
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "esn_window_int8",
        [helper.make_tensor_value_info("window", f, ["B", T]), helper.make_tensor_value_info("rr", f, ["B", F])],
        [helper.make_tensor_value_info("logits", f, ["B", p["Wout"].shape[1]])], inits)
    # opset 21: the first whose QuantizeLinear/DequantizeLinear take int16
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", QOPSET)],
                              producer_name="edgeseq")
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


def _agreement(float_path: Path, int8_path: Path, windows, rr) -> float:
    """Share of ``windows`` given the same label by both graphs: a check recorded in the manifest
    (the quantization itself needs no data, see ``STATE_SCALE``)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    labels = []
    for path in (float_path, int8_path):
        s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        labels.append(np.concatenate([
            s.run(None, {"window": windows[i:i + 512], "rr": rr[i:i + 512]})[0].argmax(1)
            for i in range(0, len(windows), 512)]))
    return float((labels[0] == labels[1]).mean()) if len(windows) else 1.0


# -- bundle ------------------------------------------------------------------------------------------

def esn_runtime_section(p: dict, fmt: str, *, int8: bool, model: str, step: str, graph_form: str,
                        source_sha256: str) -> dict:
    """The manifest ``runtime`` section of an exported ESN, the same for every format: what the
    device runtime reads to feed the window and step models."""
    def f32(*shape):
        return {"shape": list(shape), "dtype": "float32"}

    return {
        "format": fmt, "precision": "int8" if int8 else "float32", "model": model, "step": step,
        "graph_form": graph_form, "source_sha256": source_sha256,
        "inputs": {"window": f32("B", p["T"]), "rr": f32("B", p["F"] or 9)},
        "outputs": {"logits": f32("B", p["Wout"].shape[1])},
        "step_inputs": {"u": f32("B", 1), "const": f32("B", p["K"]), "state": f32("B", p["N"])},
        "step_outputs": {"state_out": f32("B", p["N"])},
        "rr_inputs": [[int(c), float(r)] for c, r in zip(p["cols"], p["ref"])],
    }


def _calibration_beats(calibration, manifest, limit=2000):
    """The beats int8 ranges are calibrated on, for every exporter: ``(windows, rr)`` arrays or
    ``(data_dir, records)`` to read. No beat, or a non-finite value, is one line here, not a
    quantiser dividing by an empty or infinite range."""
    if calibration is None:
        raise EdgeseqError("int8 export needs calibration beats: pass calibration=(windows, rr) or "
                           "calibration=(data_dir, records)")
    a, b = calibration
    if isinstance(a, np.ndarray):
        windows, rr = np.asarray(a, np.float32), np.asarray(b, np.float32)
        where = "calibration arrays"
    else:
        from ..preprocess.ecg import EcgPreprocessing
        from ..tasks.ecg import load_beats
        prep = EcgPreprocessing.from_config(manifest["preprocessing"])
        beats = load_beats(a, list(b), prep, progress=False)
        windows, rr = beats.windows, beats.rr
        where = f"--calibration {a}: records {', '.join(b)}"
    if len(windows) == 0:
        raise EdgeseqError(f"{where} hold no usable beats to calibrate int8 ranges on")
    require_finite(windows, "calibration beat windows")
    require_finite(rr, "calibration RR features")
    if len(windows) > limit:  # an even spread over records, not the first record only
        idx = np.linspace(0, len(windows) - 1, limit).astype(np.int64)
        windows, rr = windows[idx], rr[idx]
    return windows, rr


def export_esn_onnx(bundle_path, out_dir, *, int8: bool = False, calibration=None,
                    form: str = "scan") -> Path:
    """Write an exported bundle: the source manifest plus a ``runtime`` section, ``model.onnx``
    (WINDOW), ``step.onnx`` (STEP, always float) and the source ``weights.npz`` (the numpy
    reference keeps working from the same directory).

    ``calibration`` (int8 only): ``(windows, rr)`` arrays, or ``(data_dir, records)`` to read beats.
    """
    import onnx

    src, bundle, manifest = source_bundle(bundle_path, out_dir)
    p = _esn_parts(manifest, bundle.arrays)
    out = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="edgeseq_onnx_") as work:
        work = Path(work)
        onnx.save(build_window_model(p, form), work / "float.onnx")
        onnx.save(build_step_model(p), work / STEP)
        model_file = work / "float.onnx"
        if int8:
            windows, rr = _calibration_beats(calibration, manifest)
            onnx.save(build_int8_window_model(p), work / "int8.onnx")
            agree = _agreement(work / "float.onnx", work / "int8.onnx", windows, rr)
            model_file, form = work / "int8.onnx", "scan"
        weights_name = manifest["model"].get("weights", WEIGHTS)
        manifest["runtime"] = esn_runtime_section(p, "onnx", int8=int8, model=MODEL, step=STEP, graph_form=form,
                                                  source_sha256=sha256_file(src / weights_name))
        if int8:
            manifest["runtime"]["quantization"] = {
                "tool": "edgeseq.export.onnx", "format": "QDQ", "weights": "int8",
                "weight_scales": "per-channel", "readout_weights": "int16",
                "activations": "int16", "calibration_beats": int(len(windows)),
                "calibration_agreement": round(agree, 6)}
        return write_bundle(out, manifest, bundle.arrays, files={MODEL: model_file, STEP: work / STEP})

"""reservoirpy 0.4 import (from_reservoirpy) and the exported sequence model, on a synthetic task
(delayed and filtered sines): what was imported is reservoirpy's model (its arrays reproduce its
run), the exported model's outputs equal reservoirpy's own run in both formats, its state follows
reservoirpy's (the first run continues from the reservoir's state, later runs from the last),
int8 stays close to float, and what cannot be imported or run is one clear error."""

import importlib.util
import json
import shutil

import numpy as np
import pytest

rpy = pytest.importorskip("reservoirpy")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from reservoirpy import ESN  # noqa: E402
from reservoirpy.nodes import LMS, Input, Output, Reservoir, Ridge  # noqa: E402

from edgeseq import runtime  # noqa: E402
from edgeseq.bundle import load_bundle  # noqa: E402
from edgeseq.errors import EdgeseqError  # noqa: E402
from edgeseq.export import export  # noqa: E402
from edgeseq.interop import from_reservoirpy  # noqa: E402
from edgeseq.interop.reservoirpy import extract  # noqa: E402

HAVE_LITERT = any(importlib.util.find_spec(m) is not None for m in ("ai_edge_litert", "tflite_runtime"))
needs_litert = pytest.mark.skipif(not HAVE_LITERT, reason="no TFLite interpreter installed")
FORMATS = ["onnx", pytest.param("tflite", marks=needs_litert)]
FLOAT_TOL = 1e-4  # float32 export against reservoirpy's float64 run (measured <= 1e-5)


def synthetic(T, inputs, outputs, seed=0):
    """Inputs: sines of different periods plus a little noise. Targets: the first input delayed by
    5 steps, and (second output) an exponential moving average of the last input."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)
    X = np.stack([np.sin(2 * np.pi * t / (25 + 11 * i)) + 0.05 * rng.normal(size=T)
                  for i in range(inputs)], axis=1)
    ys = [np.concatenate([np.zeros(5), X[:-5, 0]])]
    ema = np.zeros(T)
    for i in range(1, T):
        ema[i] = 0.9 * ema[i - 1] + 0.1 * X[i, -1]
    ys.append(ema)
    return X, np.stack(ys[:outputs], axis=1)


def build(graph, units, lr, inputs, seed):
    scaling = np.linspace(0.5, 1.5, inputs) if inputs > 1 else 0.8
    res = Reservoir(units, lr=lr, sr=0.9, input_scaling=scaling, bias=0.3, seed=seed)
    ro = Ridge(ridge=1e-5)
    if graph == "res>>ro":
        return res >> ro
    data = Input()
    if graph == "data>>res>>ro & data>>ro":
        return data >> res >> ro & data >> ro
    if graph == "data>>ro & data>>res>>ro":  # readout concatenates [input, state]: the other order
        return data >> ro & data >> res >> ro
    if graph == "ESN(input_to_readout)":
        return ESN(reservoir=res, readout=ro, input_to_readout=True)
    raise ValueError(graph)


CONFIGS = [  # graph, units, lr, inputs, outputs
    ("res>>ro", 20, 1.0, 1, 1),
    ("res>>ro", 100, 0.3, 3, 2),
    ("data>>res>>ro & data>>ro", 20, 0.3, 3, 1),
    ("data>>res>>ro & data>>ro", 100, 1.0, 1, 2),
    ("data>>ro & data>>res>>ro", 50, 0.3, 3, 2),
    ("ESN(input_to_readout)", 100, "per-unit", 3, 2),
]


def fitted(graph, units, lr, inputs, outputs):
    """A model fitted on X[:400] (its reservoir left at the state the fit ended in), and X."""
    if lr == "per-unit":
        lr = np.linspace(0.2, 1.0, units)
    X, Y = synthetic(600, inputs, outputs)
    model = build(graph, units, lr, inputs, seed=units + inputs)
    model.fit(X[:400], Y[:400], warmup=20)
    return model, X


def reference(arrays, params, X):
    """The model the extracted float64 arrays describe, run from ``x0`` (the module doc's equations)."""
    f = {"tanh": np.tanh, "identity": lambda v: v, "relu": lambda v: np.maximum(v, 0),
         "sigmoid": lambda v: 1 / (1 + np.exp(-v))}[params["activation"]]
    N = params["units"]
    s, ys = arrays["x0"].copy(), []
    for x in X:
        s = (1 - arrays["lr"]) * s + arrays["lr"] * f(arrays["W"] @ s + arrays["Win"] @ x + arrays["bias"])
        y = s @ arrays["Wout"][:N] + arrays["bout"]
        ys.append(y + x @ arrays["Wout"][N:] if params["input_to_readout"] else y)
    return np.array(ys)


def exported_model(src, out, fmt, **kw):
    if fmt == "tflite":
        pytest.importorskip("ai_edge_litert")  # the exporter writes with its schema module
    return runtime.load(export(src, out, fmt=fmt, **kw))


# ---- what is imported -----------------------------------------------------------------------------

@pytest.mark.parametrize("graph,units,lr,inputs,outputs", CONFIGS)
def test_extracted_arrays_are_reservoirpys_model(graph, units, lr, inputs, outputs):
    model, X = fitted(graph, units, lr, inputs, outputs)
    arrays, params = extract(model)
    assert params["input_to_readout"] == (graph != "res>>ro")
    assert (params["units"], params["inputs"], params["outputs"]) == (units, inputs, outputs)
    # x0 is the reservoir's current state: where fit left it, not zeros
    res = next(n for n in model.nodes if type(n) is Reservoir)
    np.testing.assert_array_equal(arrays["x0"], np.asarray(res.state["out"]).reshape(-1))
    assert np.abs(arrays["x0"]).max() > 0.01
    want = model.run(X[400:])  # continues from that state
    assert np.max(np.abs(reference(arrays, params, X[400:]) - want)) < 1e-6


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("graph,units,lr,inputs,outputs", CONFIGS)
def test_export_matches_reservoirpy(tmp_path, graph, units, lr, inputs, outputs, fmt):
    """The exported model's first run equals reservoirpy's next run (float32 against float64)."""
    model, X = fitted(graph, units, lr, inputs, outputs)
    src = from_reservoirpy(model, tmp_path / "src")
    m = exported_model(src, tmp_path / fmt, fmt)
    want = model.run(X[400:])
    got = m.run(X[400:].astype(np.float32))
    assert got.shape == (200, outputs) and got.dtype == np.float32
    assert np.max(np.abs(got - want)) < FLOAT_TOL


def test_training_bundle_runs_on_numpy_and_matches_reservoirpy(tmp_path):
    model, X = fitted(*CONFIGS[5])
    m = runtime.load(from_reservoirpy(model, tmp_path / "src"))
    assert m.runtime["format"] == "numpy" and m.runtime["interface"] == "sequence"
    assert np.max(np.abs(m.run(X[400:].astype(np.float32)) - model.run(X[400:]))) < FLOAT_TOL


@pytest.mark.parametrize("act", ["identity", "sigmoid", "relu"])
def test_other_activations(tmp_path, act):
    X, Y = synthetic(300, 2, 1)
    model = Reservoir(30, lr=0.5, sr=0.5 if act != "identity" else 0.3, activation=act,
                      bias=0.1, seed=3) >> Ridge(ridge=1e-4)
    model.fit(X, Y, warmup=10)
    model.reset()
    src = from_reservoirpy(model, tmp_path / "s")
    assert json.loads((src / "manifest.json").read_text())["model"]["params"]["activation"] == act
    want = model.run(X)
    for fmt in ("onnx", "tflite") if HAVE_LITERT else ("onnx",):
        got = exported_model(src, tmp_path / fmt, fmt).run(X.astype(np.float32))
        assert np.max(np.abs(got - want)) < FLOAT_TOL, fmt


def test_sparse_weights_and_array_bias(tmp_path):
    from scipy import sparse
    rng = np.random.default_rng(5)
    W = sparse.random(30, 30, density=0.2, random_state=1, format="csr") * 0.3
    Win = sparse.random(30, 2, density=0.5, random_state=2, format="csr")
    model = Reservoir(W=W, Win=Win, bias=rng.normal(size=30) * 0.1, lr=0.7) >> Ridge(ridge=1e-5)
    X, Y = synthetic(200, 2, 2)
    model.fit(X, Y)
    arrays, params = extract(model)
    want = model.run(X)
    assert np.max(np.abs(reference(arrays, params, X) - want)) < 1e-6
    model.reset()  # reservoirpy back to zeros: the import records that state
    src = from_reservoirpy(model, tmp_path / "s")
    got = exported_model(src, tmp_path / "o", "onnx").run(X.astype(np.float32))
    assert np.max(np.abs(got - model.run(X))) < FLOAT_TOL
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["model"]["params"]["lr"] == 0.7


# ---- the state rule --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stateful(tmp_path_factory):
    """A fitted model imported twice, with its current state and with zeros, each exported to
    both formats; reservoirpy's own runs computed afterwards from the same states."""
    d = tmp_path_factory.mktemp("state")
    model, X = fitted("data>>res>>ro & data>>ro", 50, 0.3, 3, 2)
    src = {"reservoir": from_reservoirpy(model, d / "res"),
           "zero": from_reservoirpy(model, d / "zero", initial_state="zero")}
    first, second = model.run(X[400:500]), model.run(X[500:])  # continues from the fit, then from run 1
    model.reset()
    after_reset = model.run(X[400:500])
    return {"src": src, "X": X.astype(np.float32), "first": first, "second": second, "after_reset": after_reset,
            "d": d}


@pytest.mark.parametrize("fmt", FORMATS)
def test_first_run_continues_from_the_reservoirs_state_and_the_next_from_the_last(stateful, fmt):
    s, X = stateful, stateful["X"]
    m = exported_model(s["src"]["reservoir"], s["d"] / f"res.{fmt}", fmt)
    assert json.loads((m.path / "manifest.json").read_text())["model"]["params"]["initial_state"] == "reservoir"
    np.testing.assert_allclose(m.run(X[400:500]), s["first"], atol=FLOAT_TOL)
    np.testing.assert_allclose(m.run(X[500:]), s["second"], atol=FLOAT_TOL)  # as reservoirpy's run continues
    # the two starts differ plainly, so the checks above could tell them apart
    assert np.max(np.abs(s["first"] - s["after_reset"])) > 100 * FLOAT_TOL
    m.reset()  # back to the recorded state, not to zeros
    np.testing.assert_allclose(m.run(X[400:500]), s["first"], atol=FLOAT_TOL)
    np.testing.assert_allclose(m.run(X[400:500], m.initial_state()), s["first"], atol=FLOAT_TOL)
    # and the second run from the recorded state instead of the first run's end is plainly not reservoirpy's
    assert np.max(np.abs(m.run(X[500:], m.initial_state()) - s["second"])) > 100 * FLOAT_TOL


@pytest.mark.parametrize("fmt", FORMATS)
def test_zero_initial_state_equals_reservoirpy_after_reset(stateful, fmt):
    s, X = stateful, stateful["X"]
    m = exported_model(s["src"]["zero"], s["d"] / f"zero.{fmt}", fmt)
    assert not m.initial_state()["s"].any()
    np.testing.assert_allclose(m.run(X[400:500]), s["after_reset"], atol=FLOAT_TOL)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_stream_fed_in_chunks_equals_one_run(stateful, fmt):
    X = stateful["X"][400:]
    m = exported_model(stateful["src"]["reservoir"], stateful["d"] / f"chunks.{fmt}", fmt)
    whole = m.run(X)
    end = m.state["s"].copy()
    m.reset()
    parts = [m.run(X[a:b]) for a, b in ((0, 1), (1, 37), (37, 37), (37, 150), (150, 200))]
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-5)
    np.testing.assert_allclose(m.state["s"], end, atol=1e-5)
    m.reset()  # and one step at a time, as a device feeds samples
    ys = []
    for x in X[:20]:
        y, _ = m.step(x[None])
        ys.append(y[0])
    np.testing.assert_allclose(np.array(ys), whole[:20], atol=1e-5)


def test_bad_initial_state_option(tmp_path):
    model = _fitted(Reservoir(20, seed=1) >> Ridge(ridge=1e-4))
    with pytest.raises(EdgeseqError, match="initial_state must be 'reservoir' or 'zero'"):
        from_reservoirpy(model, tmp_path / "b", initial_state="last")
    assert not (tmp_path / "b").exists()


# ---- int8 -----------------------------------------------------------------------------------------

# Measured (tanh reservoirs of CONFIGS and the 40-unit model below, both formats): max |int8 - float|
# 4.6-7.2% of max |float|, RMS 2.9-5.6% of the outputs' std; NRMSE against the targets 0.071-0.095
# float, 0.078-0.113 int8.
INT8_MAX_REL, INT8_RMS_REL = 0.12, 0.08


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("rpy")
    X, Y = synthetic(300, 3, 2)
    model = build("res>>ro", 40, 0.5, 3, seed=7)
    model.fit(X, Y, warmup=10)
    src = from_reservoirpy(model, d / "src", sample_rate=100, labels=["a", "b"])
    out = {"src": src, "X": X, "Y": Y, "onnx": export(src, d / "onnx", fmt="onnx")}
    if importlib.util.find_spec("ai_edge_litert") is not None:
        out["tflite"] = export(src, d / "tflite", fmt="tflite")
    return out


def _need(exported, fmt):
    if fmt not in exported:
        pytest.skip(f"no {fmt} export here (needs ai-edge-litert)")
    return exported[fmt]


@pytest.mark.parametrize("fmt", FORMATS)
def test_int8_export_stays_close_to_float(exported, tmp_path, fmt):
    _need(exported, fmt)
    X, Y = exported["X"].astype(np.float32), exported["Y"]
    q = exported_model(exported["src"], tmp_path / "q", fmt, int8=True)  # tanh: no calibration needed
    rt = q.runtime
    assert rt["precision"] == "int8" and rt["quantization"]["calibration_inputs"] == 0
    assert set(rt["quantization"]["weights"]) == {"WT", "WinT"}
    f = runtime.load(exported[fmt]).run(X)
    y = q.run(X)
    diff = np.abs(y - f)
    assert diff.max() > 1e-4  # the weights really are int8, not float passed through
    assert diff.max() < INT8_MAX_REL * np.abs(f).max(), diff.max()
    assert np.sqrt(np.mean(diff ** 2)) < INT8_RMS_REL * f.std()
    nrmse = [np.sqrt(np.mean((z - Y) ** 2)) / Y.std() for z in (f, y)]
    assert nrmse[1] < nrmse[0] + 0.03, nrmse  # still does the task
    # the state rule holds at int8 too: a stream in chunks equals one run
    q.reset()
    np.testing.assert_allclose(np.concatenate([q.run(X[:100]), q.run(X[100:])]), y, atol=1e-5)


def test_int8_of_an_unbounded_reservoir_needs_calibration(tmp_path):
    """relu leaves the state's range open: int8 asks for real inputs, and with them stays close."""
    X, Y = synthetic(300, 2, 1)
    model = Reservoir(30, lr=0.5, sr=0.5, activation="relu", bias=0.1, seed=3) >> Ridge(ridge=1e-4)
    model.fit(X, Y, warmup=10)
    src = from_reservoirpy(model, tmp_path / "s")
    with pytest.raises(EdgeseqError, match="needs calibration data"):
        export(src, tmp_path / "q", fmt="onnx", int8=True)
    np.save(tmp_path / "cal.npy", X[:200].astype(np.float32))
    q = runtime.load(export(src, tmp_path / "q", fmt="onnx", int8=True, calibration=tmp_path / "cal.npy"))
    assert q.runtime["quantization"]["calibration_inputs"] == 1
    f = runtime.load(export(src, tmp_path / "f", fmt="onnx")).run(X[200:].astype(np.float32))
    diff = np.abs(q.run(X[200:].astype(np.float32)) - f)
    assert 0 < diff.max() < INT8_MAX_REL * np.abs(f).max()


# ---- the exported bundle --------------------------------------------------------------------------

def test_bundle_manifest_and_hashes(exported):
    b = load_bundle(exported["onnx"], task="sequence")  # verifies every file's sha256
    m = b.manifest
    assert m["sample_rate"] == 100.0 and m["labels"] == ["a", "b"]
    assert m["model"]["kind"] == "reservoirpy"
    assert m["model"]["params"]["units"] == 40 and m["model"]["params"]["inputs"] == 3
    rt = m["runtime"]
    assert rt == {**rt, "format": "onnx", "precision": "float32", "interface": "sequence", "model": "model.onnx",
                  "step": "step.onnx", "state": ["s"], "held": [], "window_length": None}
    assert rt["inputs"] == {"x": {"shape": ["B", "T", 3], "dtype": "float32"},
                            "s": {"shape": ["B", 40], "dtype": "float32"}}
    assert rt["outputs"]["y"] == {"shape": ["B", "T", 2], "dtype": "float32"}
    assert rt["step_inputs"] == {"x": {"shape": ["B", 3], "dtype": "float32"},
                                 "s": {"shape": ["B", 40], "dtype": "float32"}}
    assert set(m["files"]) == {"model.onnx", "step.onnx", "weights.npz"}
    # lean: the weights live in the model files; the npz holds the state a run starts from
    assert set(b.arrays) == {"s"}
    src = load_bundle(exported["src"])
    np.testing.assert_array_equal(b.arrays["s"], src.arrays["x0"])
    assert all(src.arrays[k].dtype == np.float32 for k in ("W", "Win", "bias", "lr", "Wout", "bout", "x0"))


def test_tflite_bundle_manifest(exported):
    b = load_bundle(_need(exported, "tflite"), task="sequence")
    m = b.manifest
    assert m["labels"] == ["a", "b"] and m["model"]["params"]["units"] == 40
    rt = m["runtime"]
    # no window file: a TFLite model of any length is its step graph, looped by the runtime
    assert rt == {**rt, "format": "tflite", "precision": "float32", "step": "step.tflite", "state": ["s"]}
    assert "model" not in rt and "inputs" not in rt
    assert rt["step_inputs"] == {"x": {"shape": ["B", 3], "dtype": "float32"},
                                 "s": {"shape": ["B", 40], "dtype": "float32"}}
    assert set(m["files"]) == {"step.tflite", "weights.npz"}
    assert (exported["tflite"] / "step.tflite").read_bytes()[4:8] == b"TFL3"


@pytest.mark.parametrize("fmt", FORMATS)
def test_tampered_bundle_refused(exported, tmp_path, fmt):
    d = tmp_path / "t"
    shutil.copytree(_need(exported, fmt), d)
    p = d / f"step.{fmt}"
    raw = bytearray(p.read_bytes())
    raw[-1] ^= 1
    p.write_bytes(bytes(raw))
    with pytest.raises(EdgeseqError, match="sha256"):
        runtime.load(d)


@pytest.mark.parametrize("fmt", FORMATS)
def test_runtime_input_checks(exported, fmt):
    m = runtime.load(_need(exported, fmt))
    X = exported["X"]
    with pytest.raises(EdgeseqError, match="float32"):
        m.run(X)
    with pytest.raises(EdgeseqError, match="float32"):
        m.run(X.tolist())
    with pytest.raises(EdgeseqError, match=r"shape \(T, 3\)"):
        m.run(X[:, :2].astype(np.float32))
    with pytest.raises(EdgeseqError, match=r"shape \(T, 3\)"):
        m.run(X[0].astype(np.float32))
    with pytest.raises(EdgeseqError, match=r"shape \(T, 3\)"):
        m.run(X[None].astype(np.float32))
    with pytest.raises(EdgeseqError, match="NaN"):
        m.run(np.full((4, 3), np.nan, np.float32))
    with pytest.raises(EdgeseqError, match="sequence model: call run"):
        m.logits(X.astype(np.float32))
    assert m.state is None  # nothing refused has moved the state
    assert m.run(X[:1].astype(np.float32)).shape == (1, 2)
    assert m.run(np.zeros((0, 3), np.float32)).shape == (0, 2)
    # runs share state, as reservoirpy's do: the same input twice differs, after reset() it repeats
    m.reset()
    x = X[:50].astype(np.float32)
    a = m.run(x)
    assert np.max(np.abs(m.run(x) - a)) > 1e-2
    m.reset()
    np.testing.assert_allclose(m.run(x), a, atol=1e-6)
    m.reset()
    labels = m.classify(X.astype(np.float32))  # per step, the run's argmax
    m.reset()
    assert labels.shape == (300,) and set(labels.tolist()) == {0, 1}
    np.testing.assert_array_equal(labels, m.run(X.astype(np.float32)).argmax(axis=1))


def test_exported_bundle_is_not_exported_again(exported):
    for fmt in ("onnx", "tflite"):
        with pytest.raises(EdgeseqError, match="already an exported"):
            export(exported["onnx"], exported["onnx"].parent / "again", fmt=fmt)
    assert not (exported["onnx"].parent / "again").exists()


def _fitted(model, inputs=1):
    X, Y = synthetic(100, inputs, 1)
    model.fit(X, Y)
    return model


@pytest.mark.parametrize("make,match", [
    (lambda: ESN(units=20, feedback=True), "feedback"),
    (lambda: (lambda r, o: (r >> o) & (r << o))(Reservoir(20, seed=1), Ridge()), "feedback"),
    (lambda: Reservoir(20, seed=1) >> 2 >> Ridge(), "delay"),
    (lambda: Reservoir(20, seed=1) >> Reservoir(20, seed=2) >> Ridge(), "2 Reservoir"),
    (lambda: [Reservoir(20, seed=1), Reservoir(20, seed=2)] >> Ridge(), "2 Reservoir"),
    (lambda: Reservoir(20, seed=1) >> Ridge(), "not initialised"),
    (lambda: (lambda m: (m.initialize(np.zeros((5, 1))), m)[1])(Reservoir(20, seed=1) >> Ridge(output_dim=1)),
     "not fitted"),
    (lambda: Reservoir(20, seed=1) >> LMS(), "LMS"),
    (lambda: Reservoir(20, seed=1) >> Ridge() & Reservoir(20) >> Output(), "Output"),
    (lambda: _fitted(Reservoir(20, activation=np.sin, seed=1) >> Ridge(ridge=1e-4)), "activation 'sin'"),
    (lambda: Reservoir(20), "single node"),
    (lambda: "model", "reservoirpy Model"),
])
def test_unsupported_refused(tmp_path, make, match):
    with pytest.raises(EdgeseqError, match=match):
        from_reservoirpy(make(), tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_bad_labels_and_rate(tmp_path):
    model = _fitted(Reservoir(20, seed=1) >> Ridge(ridge=1e-4))
    with pytest.raises(EdgeseqError, match="2 labels given for a readout with 1 outputs"):
        from_reservoirpy(model, tmp_path / "b", labels=["x", "y"])
    X, Y = synthetic(100, 2, 2)
    two = build("res>>ro", 20, 0.5, 2, seed=1)
    two.fit(X, Y)
    with pytest.raises(EdgeseqError, match="labels must be distinct"):
        from_reservoirpy(two, tmp_path / "b", labels=["x", "x"])
    with pytest.raises(EdgeseqError, match="sample_rate"):
        from_reservoirpy(model, tmp_path / "b", sample_rate=-1)
    with pytest.raises(EdgeseqError, match="sample_rate"):
        from_reservoirpy(model, tmp_path / "b", sample_rate="fast")
    assert not (tmp_path / "b").exists()


@needs_litert
def test_tflite_without_interpreter_is_a_clear_error(exported, monkeypatch):
    import sys
    path = _need(exported, "tflite")
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # import raises ImportError
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(EdgeseqError, match="pip install ai-edge-litert"):
        runtime.load(path)

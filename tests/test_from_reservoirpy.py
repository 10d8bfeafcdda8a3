"""reservoirpy 0.4 import (from_reservoirpy), sequence ONNX and TFLite export and the sequence
runtime, on a synthetic task (delayed and filtered sines): exported outputs equal reservoirpy's run."""

import importlib.util
import json

import numpy as np
import pytest

rpy = pytest.importorskip("reservoirpy")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from reservoirpy import ESN  # noqa: E402
from reservoirpy.nodes import LMS, Input, Output, Reservoir, Ridge  # noqa: E402

from edgeseq.bundle import load_bundle  # noqa: E402
from edgeseq.errors import EdgeseqError  # noqa: E402
from edgeseq.export.onnx_sequence import export_sequence_onnx  # noqa: E402
from edgeseq.interop import from_reservoirpy  # noqa: E402
from edgeseq.interop.reservoirpy import SequenceReference, extract  # noqa: E402
from edgeseq.runtime.sequence import load_sequence  # noqa: E402

HAVE_LITERT = any(importlib.util.find_spec(m) is not None for m in ("ai_edge_litert", "tflite_runtime"))
needs_litert = pytest.mark.skipif(not HAVE_LITERT, reason="no TFLite interpreter installed")


def export_tflite(src, out):
    pytest.importorskip("ai_edge_litert")  # the exporter writes with its schema module
    from edgeseq.export.tflite_sequence import export_sequence_tflite
    return export_sequence_tflite(src, out)


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
    """A fitted model, the inputs, and reservoirpy's run on X[400:] from the reset state."""
    if lr == "per-unit":
        lr = np.linspace(0.2, 1.0, units)
    X, Y = synthetic(600, inputs, outputs)
    model = build(graph, units, lr, inputs, seed=units + inputs)
    model.fit(X[:400], Y[:400], warmup=20)
    model.reset()
    want = model.run(X[400:])
    model.reset()
    return model, X, want


@pytest.mark.parametrize("graph,units,lr,inputs,outputs", CONFIGS)
def test_export_matches_reservoirpy(tmp_path, graph, units, lr, inputs, outputs):
    model, X, want = fitted(graph, units, lr, inputs, outputs)

    arrays, params = extract(model)
    assert params["input_to_readout"] == (graph != "res>>ro")
    ref64 = SequenceReference(arrays, params).run(X[400:])
    assert np.max(np.abs(ref64 - want)) < 1e-6

    src = from_reservoirpy(model, tmp_path / "src", labels=None)
    exported = export_sequence_onnx(src, tmp_path / "onnx")
    got = load_sequence(exported).run(X[400:].astype(np.float32))
    assert got.shape == (200, outputs) and got.dtype == np.float32
    assert np.max(np.abs(got - want)) < 1e-4
    # The numpy reference from the float32 bundle agrees too.
    assert np.max(np.abs(SequenceReference.from_bundle(src).run(X[400:]) - want)) < 1e-4


@needs_litert
@pytest.mark.parametrize("graph,units,lr,inputs,outputs", [CONFIGS[i] for i in (0, 1, 3, 4, 5)])
def test_tflite_export_matches_reservoirpy_and_onnx(tmp_path, graph, units, lr, inputs, outputs):
    from edgeseq.runtime import load

    model, X, want = fitted(graph, units, lr, inputs, outputs)
    src = from_reservoirpy(model, tmp_path / "src", labels=None)
    m = load(export_tflite(src, tmp_path / "tflite"))  # the public entry point
    got = m.run(X[400:].astype(np.float32))
    assert got.shape == (200, outputs) and got.dtype == np.float32
    assert np.max(np.abs(got - want)) < 1e-4
    onnx_y = load(export_sequence_onnx(src, tmp_path / "onnx")).run(X[400:].astype(np.float32))
    assert np.max(np.abs(got - onnx_y)) < 1e-4
    # Two runs never share state; a prefix run equals the prefix of a longer run.
    assert np.array_equal(m.run(X[400:450].astype(np.float32)), got[:50])


@pytest.mark.parametrize("act", ["identity", "sigmoid", "relu"])
def test_other_activations(tmp_path, act):
    X, Y = synthetic(300, 2, 1)
    model = Reservoir(30, lr=0.5, sr=0.5 if act != "identity" else 0.3, activation=act,
                      bias=0.1, seed=3) >> Ridge(ridge=1e-4)
    model.fit(X, Y, warmup=10)
    model.reset()
    want = model.run(X)
    src = from_reservoirpy(model, tmp_path / "s")
    got = load_sequence(export_sequence_onnx(src, tmp_path / "o")).run(X.astype(np.float32))
    assert np.max(np.abs(got - want)) < 1e-4
    if HAVE_LITERT:
        got = load_sequence(export_tflite(src, tmp_path / "t")).run(X.astype(np.float32))
        assert np.max(np.abs(got - want)) < 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("rpy")
    X, Y = synthetic(300, 3, 2)
    model = build("res>>ro", 40, 0.5, 3, seed=7)
    model.fit(X, Y, warmup=10)
    src = from_reservoirpy(model, d / "src", sample_rate=100, labels=["a", "b"])
    return {"src": src, "onnx": export_sequence_onnx(src, d / "onnx"), "X": X,
            "tflite": export_tflite(src, d / "tflite") if HAVE_LITERT else None}


def test_bundle_manifest_and_hashes(exported):
    b = load_bundle(exported["onnx"], task="sequence")  # verifies every file's sha256
    m = b.manifest
    assert m["sample_rate"] == 100.0 and m["labels"] == ["a", "b"]
    assert m["model"]["kind"] == "reservoirpy"
    assert m["model"]["params"]["units"] == 40 and m["model"]["params"]["inputs"] == 3
    assert m["runtime"] == {**m["runtime"], "format": "onnx", "precision": "float32", "model": "model.onnx",
                            "inputs": {"x": {"shape": ["T", 3], "dtype": "float32"}},
                            "outputs": {"y": {"shape": ["T", 2], "dtype": "float32"}}}
    assert set(m["files"]) == {"model.onnx", "weights.npz"}
    assert all(b.arrays[k].dtype == np.float32 for k in ("W", "Win", "bias", "lr", "Wout", "bout"))


@needs_litert
def test_tflite_bundle_manifest(exported):
    b = load_bundle(exported["tflite"], task="sequence")
    m = b.manifest
    assert m["labels"] == ["a", "b"] and m["model"]["params"]["units"] == 40
    assert m["runtime"] == {**m["runtime"], "format": "tflite", "precision": "float32", "model": "model.tflite",
                            "graph_form": "step", "initial_state": "zero",
                            "inputs": {"x": {"shape": ["T", 3], "dtype": "float32"}},
                            "outputs": {"y": {"shape": ["T", 2], "dtype": "float32"}},
                            "step_inputs": {"x": {"shape": [1, 3], "dtype": "float32"},
                                            "state": {"shape": [1, 40], "dtype": "float32"}}}
    assert set(m["files"]) == {"model.tflite", "weights.npz"}
    assert (exported["tflite"] / "model.tflite").read_bytes()[4:8] == b"TFL3"


@pytest.mark.parametrize("fmt", ["onnx", pytest.param("tflite", marks=needs_litert)])
def test_tampered_bundle_refused(exported, tmp_path, fmt):
    import shutil
    d = tmp_path / "t"
    shutil.copytree(exported[fmt], d)
    p = d / f"model.{fmt}"
    raw = bytearray(p.read_bytes())
    raw[-1] ^= 1
    p.write_bytes(bytes(raw))
    with pytest.raises(EdgeseqError, match="sha256"):
        load_sequence(d)


@pytest.mark.parametrize("fmt", ["onnx", pytest.param("tflite", marks=needs_litert)])
def test_runtime_input_checks(exported, fmt):
    m = load_sequence(exported[fmt])
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
    assert m.run(X[:1].astype(np.float32)).shape == (1, 2)
    assert m.run(np.zeros((0, 3), np.float32)).shape == (0, 2)
    # Runs never share state: the same input twice gives the same output.
    a = m.run(X.astype(np.float32))
    m.reset()
    assert np.array_equal(a, m.run(X.astype(np.float32)))
    assert m.classify(X.astype(np.float32)).shape == (300,)


def test_training_bundle_refused_by_runtime(exported):
    with pytest.raises(EdgeseqError, match="edgeseq export"):
        load_sequence(exported["src"])
    with pytest.raises(EdgeseqError, match="already an exported"):
        export_sequence_onnx(exported["onnx"], exported["onnx"].parent / "again")
    if HAVE_LITERT:
        with pytest.raises(EdgeseqError, match="already an exported"):
            export_tflite(exported["onnx"], exported["onnx"].parent / "again")


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
    with pytest.raises(EdgeseqError, match="sample_rate"):
        from_reservoirpy(model, tmp_path / "b", sample_rate=-1)


def test_sparse_weights_and_array_bias(tmp_path):
    from scipy import sparse
    rng = np.random.default_rng(5)
    W = sparse.random(30, 30, density=0.2, random_state=1, format="csr") * 0.3
    Win = sparse.random(30, 2, density=0.5, random_state=2, format="csr")
    model = Reservoir(W=W, Win=Win, bias=rng.normal(size=30) * 0.1, lr=0.7) >> Ridge(ridge=1e-5)
    X, Y = synthetic(200, 2, 2)
    model.fit(X, Y)
    model.reset()
    want = model.run(X)
    arrays, params = extract(model)
    assert np.max(np.abs(SequenceReference(arrays, params).run(X) - want)) < 1e-6
    got = load_sequence(export_sequence_onnx(from_reservoirpy(model, tmp_path / "s"), tmp_path / "o")) \
        .run(X.astype(np.float32))
    assert np.max(np.abs(got - want)) < 1e-4
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["model"]["params"]["lr"] == 0.7


@needs_litert
def test_tflite_without_interpreter_is_a_clear_error(exported, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # import raises ImportError
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(EdgeseqError, match="pip install ai-edge-litert"):
        load_sequence(exported["tflite"])

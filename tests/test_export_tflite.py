"""TFLite export (flatbuffer written directly) and its backend, on the packaged excerpt with a
small reservoir."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from edgeseq.bundle import load_bundle  # noqa: E402
from edgeseq.errors import EdgeseqError  # noqa: E402
from edgeseq.export.tflite import export_esn_tflite  # noqa: E402
from edgeseq.runtime.tflite_backend import TFLiteBackend  # noqa: E402
from edgeseq.tasks import ecg  # noqa: E402

SAMPLE = Path(ecg.__file__).resolve().parents[1] / "data" / "sample"
TRAIN = ["106", "118", "119", "124", "201", "205", "220", "223"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("tflite")
    ecg.train(SAMPLE, TRAIN, out=d / "src", params={"units": 60}, progress=False)
    _, prep, est = ecg.load_model(d / "src")
    beats = ecg.load_beats(SAMPLE, TRAIN + ["208", "209"], prep, progress=False)
    idx = np.linspace(0, len(beats.windows) - 1, 1500).astype(np.int64)
    w, rr = beats.windows[idx].astype(np.float32), beats.rr[idx].astype(np.float32)
    fl = export_esn_tflite(d / "src", d / "float")
    q = export_esn_tflite(d / "src", d / "int8", int8=True, calibration=(w[::5], rr[::5]))
    return {"dir": d, "est": est, "w": w, "rr": rr, "float": fl, "int8": q}


def _backend(path):
    m = load_bundle(path)
    return TFLiteBackend(Path(path), m.manifest["runtime"]), m.manifest


def test_float_logits_match_numpy(exported):
    be, man = _backend(exported["float"])
    ref = exported["est"].decision_function(exported["w"], exported["rr"])
    got = be.logits(exported["w"], exported["rr"])
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    rt = man["runtime"]
    assert rt["format"] == "tflite" and rt["precision"] == "float32" and rt["model"] == "model.tflite"
    assert rt["inputs"]["window"]["shape"] == ["B", exported["w"].shape[1]]


def test_step_model_reproduces_last_state(exported):
    from edgeseq import runtime
    from edgeseq.models.esn import batched_states
    est, w, rr = exported["est"], exported["w"][:50], exported["rr"][:50]
    const = est.reservoir_rr(rr).astype(np.float32)
    last, _ = batched_states(w, est.W_, est.Win_, est.bias_, est.lr, const=const)
    for kind in ("float", "int8"):  # the step model is float32 in both bundles
        m = runtime.load(exported[kind])
        rt = m.manifest["runtime"]
        assert rt["step"] == "step.tflite" and rt["step_outputs"]["state_out"]["shape"] == ["B", est.W_.shape[0]]
        m.reset()
        for t in range(w.shape[1]):
            s = m.step(np.ascontiguousarray(w[:, t:t + 1]), const)
        assert s.dtype == np.float32 and np.abs(s - last).max() <= 1e-4


@pytest.mark.parametrize("kind", ["float", "int8"])
def test_any_batch_size(exported, kind):
    be, _ = _backend(exported[kind])
    w, rr = exported["w"][:7], exported["rr"][:7]
    whole = be.logits(w, rr)
    one = np.concatenate([be.logits(w[i:i + 1], rr[i:i + 1]) for i in range(7)])
    assert np.abs(whole - one).max() <= 1e-5
    assert be.logits(w[:0], rr[:0]).shape == (0, whole.shape[1])


def test_float_matches_onnx(exported):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from edgeseq.export.onnx import export_esn_onnx
    from edgeseq.runtime.onnx_backend import OnnxBackend
    o = export_esn_onnx(exported["dir"] / "src", exported["dir"] / "onnx")
    ob = OnnxBackend(o, load_bundle(o).manifest["runtime"])
    be, _ = _backend(exported["float"])
    w, rr = exported["w"], exported["rr"]
    assert np.abs(be.logits(w, rr) - ob.window.run(None, {"window": w, "rr": rr})[0]).max() <= 1e-4


def _model(path):
    from ai_edge_litert import schema_py_generated as sch
    return sch.ModelT.InitFromObj(sch.Model.GetRootAs(Path(path).read_bytes(), 0))


def test_int8_agrees_with_float_and_onnx_int8(exported):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from edgeseq import runtime
    from edgeseq.export.onnx import export_esn_onnx
    from edgeseq.runtime.onnx_backend import OnnxBackend
    w, rr = exported["w"], exported["rr"]
    o = export_esn_onnx(exported["dir"] / "src", exported["dir"] / "onnx8", int8=True,
                        calibration=(w[::5], rr[::5]))
    ob = OnnxBackend(o, load_bundle(o).manifest["runtime"])
    q = runtime.load(exported["int8"])
    got = q.logits(w, rr)
    f = runtime.load(exported["float"]).logits(w, rr)
    assert (got.argmax(1) == f.argmax(1)).mean() >= 0.99
    assert (got.argmax(1) == exported["est"].predict(w, rr)).mean() >= 0.99
    assert (got.argmax(1) == ob.window.run(None, {"window": w, "rr": rr})[0].argmax(1)).mean() >= 0.99
    assert np.abs(got - f).max() <= 0.1 * max(1.0, np.abs(f).max())
    rt = q.manifest["runtime"]
    assert rt["precision"] == "int8" and rt["graph_form"] == "while"


def test_int8_is_a_16x8_while_loop(exported):
    from ai_edge_litert import schema_py_generated as sch
    TT = sch.TensorType
    m = _model(Path(exported["int8"]) / "model.tflite")
    assert len(m.subgraphs) == 3  # main, loop condition, loop body: one step in the file
    codes = {c.builtinCode for c in m.operatorCodes}
    assert sch.BuiltinOperator.WHILE in codes
    body = {t.name.decode(): t for t in m.subgraphs[2].tensors}
    n = exported["est"].W_.shape[0]
    W = body["W"]
    assert W.type == TT.INT8 and len(W.quantization.scale) == n  # per-channel
    assert body["x"].type == TT.INT16 and body["x"].quantization.scale[0] == pytest.approx(1 / 32767)
    main = {t.name.decode(): t for t in m.subgraphs[0].tensors}
    assert main["Wout"].type == TT.FLOAT32 and main["logits"].type == TT.FLOAT32


def test_int8_size_at_ds1_shape():
    """A random reservoir of the DS1 bundle's shape (N=300, T=126, K=4, 609 readout inputs): the
    int8 file stays under 35% of the float one."""
    from edgeseq.export.tflite import _ranges, build_int8_while_tflite, build_window_tflite
    rng = np.random.default_rng(0)
    N, K, T, F = 300, 4, 126, 9
    W = rng.normal(size=(N, N)).astype(np.float32) * (rng.random((N, N)) < 0.1)
    W *= 0.9 / np.abs(np.linalg.eigvals(W)).max()
    p = {"W": W.astype(np.float32), "Win": rng.uniform(-1, 1, (N, 1 + K)).astype(np.float32),
         "bias": rng.uniform(-0.1, 0.1, N).astype(np.float32),
         "Wout": rng.normal(size=(2 * N + F, 5)).astype(np.float32), "bout": np.zeros(5, np.float32),
         "lr": 0.3, "cols": np.arange(3, 3 + K), "ref": np.ones(K), "N": N, "K": K, "T": T, "F": F}
    w = rng.normal(size=(20, T)).astype(np.float32)
    rr = rng.uniform(0.5, 1.5, (20, F)).astype(np.float32)
    fl, q = build_window_tflite(p), build_int8_while_tflite(p, _ranges(p, w, rr))
    assert len(q) <= 0.35 * len(fl), (len(q), len(fl))


def test_altered_model_refused(exported, tmp_path):
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(exported["float"], bad)
    data = bytearray((bad / "model.tflite").read_bytes())
    data[len(data) // 2] ^= 0x01
    (bad / "model.tflite").write_bytes(bytes(data))
    with pytest.raises(EdgeseqError, match="model.tflite"):
        load_bundle(bad)


def test_int8_needs_calibration(exported, tmp_path):
    with pytest.raises(EdgeseqError, match="calibration"):
        export_esn_tflite(exported["dir"] / "src", tmp_path / "q", int8=True)


def test_backend_imports_no_heavy_framework(exported):
    code = (
        "import sys, json, numpy as np\n"
        "from pathlib import Path\n"
        "from edgeseq.runtime.tflite_backend import TFLiteBackend\n"
        f"p = Path({str(exported['float'])!r})\n"
        "rt = json.loads((p / 'manifest.json').read_text())['runtime']\n"
        "be = TFLiteBackend(p, rt)\n"
        "be.logits(np.zeros((2, rt['inputs']['window']['shape'][1]), np.float32),\n"
        "          np.ones((2, rt['inputs']['rr']['shape'][1]), np.float32))\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'torch', 'onnx', 'onnxruntime')]\n"
        "print(json.dumps(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []

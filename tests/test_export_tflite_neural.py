"""TFLite export of the LSTM and TCN beat classifiers (flatbuffer written directly), run through
``edgeseq.runtime``, on the packaged excerpt with small models: a 2-layer LSTM and a TCN whose
block 0 has an input projection."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
pytest.importorskip("torch")  # training the bundles

from edgeseq import runtime  # noqa: E402
from edgeseq.errors import EdgeseqError  # noqa: E402
from edgeseq.export.tflite_neural import export_neural_tflite  # noqa: E402
from edgeseq.tasks import ecg  # noqa: E402

TRAIN = ["119", "201", "223"]
PARAMS = {"lstm": {"epochs": 2, "hidden": 16, "layers": 2}, "tcn": {"epochs": 2, "channels": 8}}


@pytest.fixture(scope="module")
def trained(sample, tmp_path_factory):
    d = tmp_path_factory.mktemp("neural")
    for kind, params in PARAMS.items():
        ecg.train(sample, TRAIN, out=d / kind, model=kind, seed=1, params=params, progress=False)
    return {kind: d / kind for kind in PARAMS}


@pytest.fixture(scope="module")
def beats(sample, trained):
    _, prep, _ = ecg.load_model(trained["tcn"])
    b = ecg.load_beats(sample, TRAIN + ["208"], prep, progress=False)
    idx = np.linspace(0, len(b.windows) - 1, 1200).astype(np.int64)
    return b.windows[idx].astype(np.float32), b.rr[idx].astype(np.float32)


@pytest.fixture(scope="module", params=["lstm", "tcn"])
def exported(request, trained, beats, tmp_path_factory):
    kind = request.param
    src = trained[kind]
    d = tmp_path_factory.mktemp(kind)
    w, rr = beats
    _, _, est = ecg.load_model(src)
    return {"kind": kind, "src": src, "est": est, "float": export_neural_tflite(src, d / "float"),
            "int8": export_neural_tflite(src, d / "int8", int8=True, calibration=(w[::4], rr[::4]))}


def _flatbuffer(path):
    from ai_edge_litert import schema_py_generated as sch
    return sch, sch.ModelT.InitFromObj(sch.Model.GetRootAs(Path(path).read_bytes(), 0))


def test_float_window_matches_numpy(exported, beats):
    w, rr = beats
    m = runtime.load(exported["float"])
    ref = exported["est"].decision_function(w, rr)
    got = m.logits(w, rr)
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    rt = m.manifest["runtime"]
    assert rt["format"] == "tflite" and rt["precision"] == "float32" and rt["model"] == "model.tflite"
    assert rt["inputs"] == {"window": {"shape": ["B", w.shape[1]], "dtype": "float32"},
                            "rr": {"shape": ["B", rr.shape[1]], "dtype": "float32"}}
    if exported["kind"] == "lstm":
        assert rt["graph_form"] == "unrolled" and rt["state"] == ["h0", "c0", "h1", "c1"]
    else:
        assert exported["est"].has_projection and rt["graph_form"] == "conv2d"
        assert rt["state"] == [f"buf{l}" for l in range(6)]
        assert rt["step_inputs"]["buf5"]["shape"] == ["B", 64, 8]
        assert rt["step_counter"] == {"name": "pos", "modulo": 64}


@pytest.mark.parametrize("precision", ["float", "int8"])
def test_any_batch_size(exported, beats, precision):
    m = runtime.load(exported[precision])
    w, rr = beats[0][:7], beats[1][:7]
    whole = m.logits(w, rr)
    one = np.concatenate([m.logits(w[i:i + 1], rr[i:i + 1]) for i in range(7)])
    three = np.concatenate([m.logits(w[i:i + 3], rr[i:i + 3]) for i in range(0, 7, 3)])
    assert np.abs(whole - one).max() <= 1e-5 and np.abs(whole - three).max() <= 1e-5
    assert m.logits(w[:0], rr[:0]).shape == (0, whole.shape[1])


@pytest.mark.parametrize("precision", ["float", "int8"])  # the step model is float32 in both
def test_step_then_readout_equals_window(exported, beats, precision):
    w, rr = beats[0][:16], beats[1][:16]
    m = runtime.load(exported[precision])
    assert m.manifest["runtime"]["step"] == "step.tflite"
    window = runtime.load(exported["float"]).logits(w, rr)
    for _ in range(2):  # reset() starts the next window from the zero state (and t = 0)
        m.reset()
        outs = np.stack([m.step(np.ascontiguousarray(w[:, t:t + 1])) for t in range(w.shape[1])], axis=1)
        assert outs.dtype == np.float32 and set(m.state) == set(m.manifest["runtime"]["state"])
        got = m.readout(outs[:, -1], outs.mean(axis=1), rr)
        assert np.abs(got - window).max() <= 1e-4 * max(1.0, np.abs(window).max())


def test_int8_agrees_with_float_and_is_16x8(exported, beats):
    sch, model = _flatbuffer(Path(exported["int8"]) / "model.tflite")
    TT, BO = sch.TensorType, sch.BuiltinOperator
    w, rr = beats
    q, f = runtime.load(exported["int8"]), runtime.load(exported["float"])
    assert (q.classify(w, rr) == f.classify(w, rr)).mean() >= 0.99
    rt = q.manifest["runtime"]
    assert rt["precision"] == "int8" and rt["quantization"]["calibration_agreement"] >= 0.99
    assert rt["quantization"]["calibration_beats"] == len(w[::4])
    codes = [c.builtinCode for c in model.operatorCodes]
    n_weighted = 0
    for sg in model.subgraphs:
        for op in sg.operators:
            if codes[op.opcodeIndex] in (BO.FULLY_CONNECTED, BO.CONV_2D):
                x, wt = sg.tensors[op.inputs[0]], sg.tensors[op.inputs[1]]
                assert (x.type, wt.type, sg.tensors[op.outputs[0]].type) == (TT.INT16, TT.INT8, TT.INT16)
                if wt.name != b"zeros":  # per output channel
                    assert len(wt.quantization.scale) == wt.shape[0] > 1
                n_weighted += 1
    assert n_weighted >= 4
    main = {t.name.decode(): t for t in model.subgraphs[0].tensors}
    assert main["window"].type == main["rr"].type == main["logits"].type == TT.FLOAT32
    fsize = (Path(exported["float"]) / "model.tflite").stat().st_size
    qsize = (Path(exported["int8"]) / "model.tflite").stat().st_size
    if exported["kind"] == "lstm":  # one stored step against the unrolled float graph
        assert len(model.subgraphs) == 3 and BO.WHILE in codes
        body = {t.name.decode(): t for t in model.subgraphs[2].tensors}
        assert body["h0"].type == TT.INT16 and body["h0"].quantization.scale[0] == pytest.approx(1 / 32767)
        assert qsize <= 0.35 * fsize
    else:
        assert qsize < fsize


def test_altered_files_refused(exported, tmp_path):
    for name in ("model.tflite", "step.tflite"):
        bad = tmp_path / name
        shutil.copytree(exported["float"], bad)
        data = bytearray((bad / name).read_bytes())
        data[len(data) // 2] ^= 0x01
        (bad / name).write_bytes(bytes(data))
        with pytest.raises(EdgeseqError, match=name):
            runtime.load(bad)


def test_int8_needs_calibration(exported, tmp_path):
    with pytest.raises(EdgeseqError, match="calibration"):
        export_neural_tflite(exported["src"], tmp_path / "q", int8=True)


def test_cli_evaluate_on_exported_bundle(exported, sample, tmp_path):
    from edgeseq.cli import main
    path = exported["int8" if exported["kind"] == "lstm" else "float"]
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(path), "--data", str(sample), "--records", "208", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    b, prep, _ = ecg.load_model(path)
    beats = ecg.load_beats(sample, ["208"], prep, progress=False)
    labels = runtime.load(path).classify(beats.windows.astype(np.float32), beats.rr.astype(np.float32))
    assert rep["n_beats"] == len(beats.labels)
    assert rep["accuracy"] == pytest.approx(float((labels == beats.labels).mean()))


def test_loading_and_classifying_imports_no_heavy_framework(exported):
    script = "\n".join([
        "import sys, numpy as np",
        "from edgeseq import runtime",
        f"m = runtime.load({str(exported['int8'])!r})",
        "T, F = (m.manifest['runtime']['inputs'][k]['shape'][1] for k in ('window', 'rr'))",
        "m.classify(np.zeros((2, T), np.float32), np.ones((2, F), np.float32))",
        "m.step(np.zeros((2, 1), np.float32))",
        "print(' '.join(sorted({k.split('.')[0] for k in sys.modules} & set(sys.argv[1:]))) or 'none')"])
    heavy = ["torch", "tensorflow", "onnx", "onnxruntime", "reservoirpy"]
    out = subprocess.run([sys.executable, "-c", script, *heavy], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "none"

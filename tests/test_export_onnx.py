"""ONNX export and the device runtime, on the packaged excerpt with a small reservoir."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from edgeseq.errors import EdgeseqError  # noqa: E402
from edgeseq.export.onnx import export_esn_onnx  # noqa: E402
from edgeseq.models.esn import batched_states  # noqa: E402
from edgeseq.tasks import ecg  # noqa: E402

SAMPLE = Path(ecg.__file__).resolve().parents[1] / "data" / "sample"
TRAIN = ["106", "118", "119", "124", "201", "205", "220", "223"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    ecg.train(SAMPLE, TRAIN, out=d / "src", params={"units": 60}, progress=False)
    _, prep, est = ecg.load_model(d / "src")
    beats = ecg.load_beats(SAMPLE, TRAIN + ["208", "209"], prep, progress=False)
    idx = np.linspace(0, len(beats.windows) - 1, 1500).astype(np.int64)
    w, rr = beats.windows[idx], beats.rr[idx]
    fl = export_esn_onnx(d / "src", d / "float")
    q = export_esn_onnx(d / "src", d / "int8", int8=True, calibration=(w[::5], rr[::5]))
    return {"dir": d, "est": est, "w": w, "rr": rr, "float": fl, "int8": q}


def test_float_logits_match_numpy(exported):
    from edgeseq import runtime
    m = runtime.load(exported["float"])
    ref = exported["est"].decision_function(exported["w"], exported["rr"])
    got = m.logits(exported["w"], exported["rr"])
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    assert m.manifest["runtime"]["precision"] == "float32"


def test_step_model_reproduces_last_state(exported):
    from edgeseq import runtime
    est, w, rr = exported["est"], exported["w"][:50], exported["rr"][:50]
    const = est.reservoir_rr(rr).astype(np.float32)
    last, _ = batched_states(w, est.W_, est.Win_, est.bias_, est.lr, const=const)
    m = runtime.load(exported["float"])
    m.reset()
    for t in range(w.shape[1]):
        s = m.step(np.ascontiguousarray(w[:, t:t + 1]), const)
    assert np.abs(s - last).max() <= 1e-4


def test_int8_agrees_with_float(exported):
    from edgeseq import runtime
    f = runtime.load(exported["float"]).classify(exported["w"], exported["rr"])
    q = runtime.load(exported["int8"]).classify(exported["w"], exported["rr"])
    assert (f == q).mean() >= 0.99
    rt = runtime.load(exported["int8"]).manifest["runtime"]
    assert rt["precision"] == "int8" and rt["graph_form"] == "scan"
    assert rt["quantization"]["calibration_agreement"] >= 0.99


def test_int8_stores_each_weight_once_as_int8(exported):
    import onnx
    m = onnx.load(str(exported["int8"] / "model.onnx"))
    n = exported["est"].W_.shape[0]
    recurrent = [i for i in m.graph.initializer if tuple(i.dims) == (n, n)]
    assert len(recurrent) == 1 and recurrent[0].data_type == onnx.TensorProto.INT8
    # A Scan body, not 126 unrolled steps: the graph's size does not grow with the window.
    ops = [node.op_type for node in m.graph.node]
    assert ops.count("Scan") == 1 and ops.count("MatMul") == 2
    assert not [i for i in m.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and i.dims
                and np.prod(i.dims) >= n * n]


def test_int8_file_is_under_35_percent_at_300_units():
    """The size target is stated for the 300-unit DS1 reservoir (measured 104,671 / 380,833 bytes
    = 27.5%); a random reservoir of that shape has the same initializer sizes, no training needed."""
    import onnx

    from edgeseq.export.onnx import build_int8_window_model, build_window_model
    rng = np.random.default_rng(0)
    N, K, T = 300, 4, 126
    W = (rng.standard_normal((N, N)) * (rng.random((N, N)) < 0.1)).astype(np.float32)
    p = {"W": W, "Win": rng.uniform(-1, 1, (N, 1 + K)).astype(np.float32),
         "bias": rng.uniform(-0.2, 0.2, N).astype(np.float32),
         "Wout": rng.standard_normal((2 * N + 9, 5)).astype(np.float32),
         "bout": np.zeros(5, np.float32), "lr": 0.3, "cols": np.arange(3, 3 + K, dtype=np.int64),
         "ref": np.ones(K), "N": N, "K": K, "T": T, "F": 9}
    fl = len(build_window_model(p, "scan").SerializeToString())
    q = build_int8_window_model(p)
    onnx.checker.check_model(q)
    assert len(q.SerializeToString()) <= 0.35 * fl, (len(q.SerializeToString()), fl)


def test_runtime_imports_stay_small(exported):
    script = (
        "import sys, json, numpy as np\n"
        "from edgeseq import runtime\n"
        "before = sorted(sys.modules)\n"
        "m = runtime.load(sys.argv[1])\n"
        "m.classify(np.zeros((2, m._T), np.float32), np.ones((2, m._F), np.float32))\n"
        "print(json.dumps({'before': before, 'after': sorted(sys.modules)}))\n")
    out = subprocess.run([sys.executable, "-c", script, str(exported["int8"])], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    heavy = {"onnx", "scipy", "torch", "tensorflow", "reservoirpy"}
    before = {m.split(".")[0] for m in res["before"]}
    after = {m.split(".")[0] for m in res["after"]}
    assert not before & (heavy | {"onnxruntime"}), before & heavy
    assert not after & heavy, after & heavy


def test_altered_model_refused(exported, tmp_path):
    import shutil
    from edgeseq import runtime
    bad = tmp_path / "bad"
    shutil.copytree(exported["float"], bad)
    data = bytearray((bad / "model.onnx").read_bytes())
    data[-10] ^= 1
    (bad / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(EdgeseqError, match="model.onnx"):
        runtime.load(bad)


def test_input_errors(exported):
    from edgeseq import runtime
    m = runtime.load(exported["float"])
    T = exported["w"].shape[1]
    with pytest.raises(EdgeseqError, match=rf"\(B, {T}\).*\(3, 100\)"):
        m.classify(np.zeros((3, 100), np.float32), np.zeros((3, 9), np.float32))
    with pytest.raises(EdgeseqError, match="float32"):
        m.classify(np.zeros((3, T)), np.zeros((3, 9), np.float32))
    with pytest.raises(EdgeseqError, match="edgeseq export"):
        runtime.load(exported["dir"] / "src")
    with pytest.raises(EdgeseqError, match="not 'other'"):
        runtime.load(exported["float"], task="other")


def test_cli_export_then_evaluate_matches_the_reference(small_bundle, sample, tmp_path):
    import json

    from edgeseq.cli import main

    out = tmp_path / "x.onnx.bundle"
    assert main(["export", str(small_bundle), "--format", "onnx", "--out", str(out)]) == 0
    for b, name in ((small_bundle, "ref.json"), (out, "onnx.json")):
        assert main(["evaluate", str(b), "--data", str(sample), "--records", "208",
                     "--json", str(tmp_path / name), "--quiet"]) == 0
    ref = json.loads((tmp_path / "ref.json").read_text())
    onnx_rep = json.loads((tmp_path / "onnx.json").read_text())
    assert onnx_rep["runtime"] == {"format": "onnx", "precision": "float32"}
    assert onnx_rep["confusion"] == ref["confusion"]


def test_cli_int8_needs_calibration(small_bundle, tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "edgeseq", "export", str(small_bundle), "--int8",
                           "--out", str(tmp_path / "q")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "edgeseq: error: --int8 needs --calibration DIR: real beats set the activation ranges")

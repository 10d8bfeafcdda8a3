"""`edgeseq export` and exported bundles through the CLI: one-line errors with exit status 2, and a
device-side evaluate that never imports a training framework."""

import json
import re
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _run(*args):
    return subprocess.run([sys.executable, "-m", "edgeseq", *map(str, args)], capture_output=True, text=True)


def _one_line_error(proc, pattern):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeseq: error:") and "Traceback" not in proc.stderr, proc.stderr
    assert re.search(pattern, lines[0]), lines[0]


@pytest.fixture(scope="module")
def onnx_bundle(small_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_export") / "m.onnx.bundle"
    proc = _run("export", small_bundle, "--format", "onnx", "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out


def test_export_of_an_altered_bundle_is_refused(small_bundle, tmp_path):
    bad = tmp_path / "altered.bundle"
    shutil.copytree(small_bundle, bad)
    (bad / "weights.npz").write_bytes((bad / "weights.npz").read_bytes() + b"x")
    _one_line_error(_run("export", bad, "--out", tmp_path / "o"), "altered or truncated")


def test_exported_bundle_with_a_missing_model_is_refused(onnx_bundle, sample, tmp_path):
    bad = tmp_path / "missing.bundle"
    shutil.copytree(onnx_bundle, bad)
    (bad / "model.onnx").unlink()
    _one_line_error(_run("evaluate", bad, "--data", sample, "--records", "208", "--quiet"), "model.onnx is missing")


def test_exporting_an_exported_bundle_is_refused(onnx_bundle, tmp_path):
    _one_line_error(_run("export", onnx_bundle, "--out", tmp_path / "again"), "already exported")


def test_a_bundle_of_another_task_is_refused(tmp_path, sample):
    np = pytest.importorskip("numpy")
    from reservoirpy.nodes import Reservoir, Ridge

    import edgeseq

    x = np.sin(np.linspace(0, 20, 300))[:, None]
    model = Reservoir(20, seed=1) >> Ridge(ridge=1e-4)
    model.fit(x[:-1], x[1:])
    seq = edgeseq.from_reservoirpy(model, tmp_path / "seq.bundle")
    _one_line_error(_run("evaluate", seq, "--data", sample, "--records", "208", "--quiet"),
                    r"is a 'sequence' model, not 'ecg'")


def test_unsupported_reservoirpy_graph_is_one_clear_error():
    from reservoirpy.nodes import Reservoir, Ridge

    import edgeseq
    from edgeseq.errors import EdgeseqError

    deep = Reservoir(10, seed=1) >> Reservoir(10, seed=2) >> Ridge()
    with pytest.raises(EdgeseqError) as info:
        edgeseq.from_reservoirpy(deep, "/nonexistent/never-written")
    assert "\n" not in str(info.value) and "Reservoir" in str(info.value)


def test_runtime_refuses_a_stream_at_the_wrong_rate(onnx_bundle):
    from edgeseq import runtime
    from edgeseq.errors import EdgeseqError

    model = runtime.load(onnx_bundle)
    assert model.sample_rate == 360.0
    model.expect_stream(sample_rate=360.0)
    with pytest.raises(EdgeseqError, match=r"stream at 250 Hz, but .* trained at 360 Hz"):
        model.expect_stream(sample_rate=250.0)


def test_evaluate_on_an_exported_bundle_stays_on_the_device_path(onnx_bundle, sample):
    code = (
        "import sys, json\n"
        "from edgeseq.cli import main\n"
        f"rc = main(['evaluate', {str(onnx_bundle)!r}, '--data', {str(sample)!r}, '--records', '208', '--quiet'])\n"
        "print(json.dumps({'rc': rc, 'modules': sorted(sys.modules)}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["rc"] == 0
    top = {m.split(".")[0] for m in res["modules"]}
    assert "onnxruntime" in top
    assert not top & {"torch", "tensorflow", "reservoirpy", "onnx"}, top & {"torch", "tensorflow", "reservoirpy", "onnx"}


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_a_device_stepping_samples_gets_the_window_logits(small_bundle, sample, tmp_path, fmt):
    """A device that feeds samples one at a time (``step(u, state)``, the beat's rr held over the
    window) gets nothing until the window is full, then the logits of one window call."""
    import numpy as np

    if fmt == "tflite":
        pytest.importorskip("ai_edge_litert")
    from edgeseq import runtime
    from edgeseq.errors import EdgeseqError
    from edgeseq.tasks import ecg

    out = tmp_path / f"m.{fmt}.bundle"
    assert _run("export", small_bundle, "--format", fmt, "--out", out).returncode == 0
    _, prep, _ = ecg.load_model(small_bundle)
    beats = ecg.load_beats(sample, ["208"], prep, progress=False)
    w, rr = beats.windows[:16].astype(np.float32), beats.rr[:16].astype(np.float32)
    model = runtime.load(out)
    assert model.held == ["rr"] and model.window_length == w.shape[1]
    with pytest.raises(EdgeseqError, match=r"pass initial_state\(rr=\.\.\.\)"):
        model.step(w[:, :1])  # the rr of the beat is needed before its first sample
    state = model.initial_state(len(w), rr=rr)
    for t in range(w.shape[1]):
        y, state = model.step(w[:, t:t + 1], state)
        assert (y is None) == (t < w.shape[1] - 1)
    assert state["steps"] == w.shape[1]
    np.testing.assert_allclose(y, model.logits(w, rr), atol=1e-4 * max(1.0, np.abs(y).max()))


def test_int8_export_of_a_sequence_model_through_the_cli(tmp_path):
    """A tanh reservoir's int8 export needs no data; a relu one's asks for --calibration, a .npy of
    inputs, and then exports."""
    import numpy as np
    from reservoirpy.nodes import Reservoir, Ridge

    import edgeseq

    x = np.stack([np.sin(np.linspace(0, 20, 300)), np.cos(np.linspace(0, 13, 300))], axis=1)
    for act in ("tanh", "relu"):
        model = Reservoir(20, activation=act, sr=0.5, seed=1) >> Ridge(ridge=1e-4)
        model.fit(x[:-1], x[1:, :1])
        edgeseq.from_reservoirpy(model, tmp_path / f"{act}.bundle")
    ok = _run("export", tmp_path / "tanh.bundle", "--int8", "--out", tmp_path / "tanh.int8")
    assert ok.returncode == 0 and "exported int8 onnx bundle" in ok.stdout, ok.stderr
    _one_line_error(_run("export", tmp_path / "relu.bundle", "--int8", "--out", tmp_path / "relu.int8"),
                    r"needs calibration data \(--calibration\)")
    np.save(tmp_path / "cal.npy", x.astype(np.float32))
    ok = _run("export", tmp_path / "relu.bundle", "--int8", "--calibration", tmp_path / "cal.npy",
              "--out", tmp_path / "relu.int8")
    assert ok.returncode == 0, ok.stderr
    m = json.loads((tmp_path / "relu.int8" / "manifest.json").read_text())
    assert m["runtime"]["precision"] == "int8" and m["runtime"]["quantization"]["calibration_inputs"] == 1

"""What an exported bundle is, beyond its outputs (tests/test_parity.py): lean (what its runtime
needs and nothing else; int8 a third of float at the sizes the project trains), light to load
(the device path imports no training or export framework), and refused with one line where an
export cannot be made."""

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("ai_edge_litert")

from edgeseq.bundle import load_bundle, write_bundle  # noqa: E402
from edgeseq.cli import main  # noqa: E402
from edgeseq.export import export  # noqa: E402


def _dir_bytes(path) -> int:
    return sum(p.stat().st_size for p in path.iterdir())


@pytest.fixture(scope="module")
def ds1_shaped(small_bundle, tmp_path_factory):
    """Bundles of the shapes the project trains on DS1 (the 300-unit ESN, a 300-unit reservoir
    sequence model) with random weights: file sizes depend on shapes only."""
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("ds1")
    N = 300
    W = (rng.standard_normal((N, N)) * (rng.random((N, N)) < 0.1)).astype(np.float32)
    m = json.loads(json.dumps(load_bundle(small_bundle).manifest))
    m["model"]["params"]["units"] = N
    esn = write_bundle(d / "esn", m, {"W": W, "Win": rng.uniform(-1, 1, (N, 5)).astype(np.float32),
                                      "bias": rng.uniform(-0.2, 0.2, N).astype(np.float32),
                                      "Wout": rng.standard_normal((2 * N + 9, 5)).astype(np.float32),
                                      "bout": np.zeros(5, np.float32)})
    seq = write_bundle(d / "seq", {"task": "sequence", "sample_rate": 100.0, "labels": [],
                                   "model": {"kind": "reservoirpy", "params": {"activation": "tanh"}}},
                       {"W": W, "Win": rng.uniform(-1, 1, (N, 2)).astype(np.float32),
                        "bias": np.zeros(N, np.float32), "lr": np.full(N, 0.3, np.float32),
                        "Wout": rng.standard_normal((N, 1)).astype(np.float32), "bout": np.zeros(1, np.float32)})
    cal = (rng.normal(0, 0.3, (64, 126)).astype(np.float32), rng.uniform(0.5, 1.5, (64, 9)).astype(np.float32))
    return {"esn": (esn, cal), "seq": (seq, None)}


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
@pytest.mark.parametrize("name", ["esn", "seq"])
def test_int8_bundle_is_at_most_35_percent_of_float(ds1_shaped, tmp_path, name, fmt):
    src, cal = ds1_shaped[name]
    f = export(src, tmp_path / "f", fmt=fmt)
    q = export(src, tmp_path / "q", fmt=fmt, int8=True, calibration=cal)
    assert _dir_bytes(q) <= 0.35 * _dir_bytes(f), (_dir_bytes(q), _dir_bytes(f))
    # lean both ways: the model files and the initial states, no training weights
    for b in (f, q):
        files = set(json.loads((b / "manifest.json").read_text())["files"])
        assert files <= {"model.onnx", "step.onnx", "model.tflite", "step.tflite", "weights.npz"}
        assert not load_bundle(b).arrays or set(load_bundle(b).arrays) == {"s"}


def test_loading_and_running_imports_no_heavy_framework(small_bundle, tmp_path):
    """The device path: numpy, the runtime, nothing from training or export."""
    cal = (np.zeros((8, 126), np.float32), np.ones((8, 9), np.float32))
    bundles = [export(small_bundle, tmp_path / f"{fmt}{q}", fmt=fmt, int8=bool(q), calibration=cal)
               for fmt in ("onnx", "tflite") for q in (0, 1)]
    script = (
        "import sys, json, numpy as np\n"
        "from edgeseq import runtime\n"
        "before = sorted(sys.modules)\n"
        "for p in sys.argv[1:]:\n"
        "    m = runtime.load(p)\n"
        "    m.classify(np.zeros((2, 126), np.float32), np.ones((2, 9), np.float32))\n"
        "    m.step(np.zeros((2, 1), np.float32), m.initial_state(2, rr=np.ones((2, 9), np.float32)))\n"
        "print(json.dumps({'before': before, 'after': sorted(sys.modules)}))\n")
    out = subprocess.run([sys.executable, "-c", script, *map(str, bundles)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    heavy = {"onnx", "scipy", "torch", "tensorflow", "reservoirpy", "flatbuffers", "matplotlib"}
    before = {m.split(".")[0] for m in res["before"]}
    after = {m.split(".")[0] for m in res["after"]}
    assert not before & (heavy | {"onnxruntime", "ai_edge_litert"}), before & heavy
    assert not after & heavy, after & heavy
    assert {"onnxruntime", "ai_edge_litert"} <= after


def test_int8_without_calibration_is_one_line_where_ranges_are_open(neural_bundles, tmp_path, capsys):
    assert main(["export", str(neural_bundles["tcn"]), "--int8", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgeseq: error:") and "calibration" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_cli_export_names_every_file_and_its_size(small_bundle, tmp_path, capsys):
    assert main(["export", str(small_bundle), "--format", "tflite", "--out", str(tmp_path / "t")]) == 0
    out = capsys.readouterr().out
    for name in ("model.tflite", "step.tflite", "weights.npz"):
        assert f"{name} {(tmp_path / 't' / name).stat().st_size:,} bytes" in out

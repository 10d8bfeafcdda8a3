"""The device path stays small: preprocessing, detection, bundle loading and ESN inference import
numpy and the standard library only (checked in a fresh interpreter)."""

import json
import subprocess
import sys

import pytest

HEAVY = ["scipy", "reservoirpy", "torch", "tensorflow", "wfdb", "matplotlib", "pandas", "sklearn"]
#: PyNaCl is on the device only to check a signature: an unsigned bundle loaded without --trust
#: must not import it (nor its cffi).
SIGNING = ["nacl", "cffi", "_cffi_backend"]

SCRIPT = r"""
import json, sys
import numpy as np
from edgeseq.bundle import load_bundle
from edgeseq.models import model_class
from edgeseq.preprocess.ecg import EcgPreprocessing
from edgeseq.preprocess.qrs import QRSDetector

b = load_bundle(sys.argv[1], task="ecg")
prep = EcgPreprocessing.from_config(b.manifest["preprocessing"])
det = QRSDetector.from_config(b.manifest["detector"])
est = model_class(b.manifest["model"]["kind"]).from_arrays(b.manifest["model"]["params"], b.arrays)
rng = np.random.default_rng(0)
t = np.arange(360 * 20) / 360.0
ecg = np.exp(-0.5 * (((t % 0.8) - 0.4) / 0.01) ** 2) + 0.01 * rng.normal(size=t.size)  # synthetic spikes
peaks = np.concatenate([det.process(ecg), det.flush()])
w, rr, idx = prep.beats(ecg, peaks)
labels = est.predict(w, rr)
print(json.dumps({"peaks": len(peaks), "labels": len(labels), "modules": sorted(sys.modules)}))
"""


def test_device_path_imports_no_training_framework(small_bundle):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(small_bundle)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["peaks"] >= 20 and res["labels"] >= 20
    loaded = {m.split(".")[0] for m in res["modules"]}
    assert not loaded & set(HEAVY + SIGNING), loaded & set(HEAVY + SIGNING)
    assert "jsonschema" in loaded  # the manifest was checked against its schema


BRIDGE_SCRIPT = r"""
import json, sys
import numpy as np
from edgeseq.bridge.serve import Bridge, serve
from edgeseq.bridge.pipelines import open_pipeline
from edgeseq.bridge.tracker import Block
from edgeseq.bridge.link import SerialLink
import serial

pipe = open_pipeline(sys.argv[1])
t = np.arange(360 * 30) / 360.0
ecg = np.exp(-0.5 * (((t % 0.8) - 0.4) / 0.01) ** 2)  # synthetic spikes
preds = []
for i in range(0, len(ecg), 10):
    preds += pipe.feed(Block(i, ecg[i:i + 10, None], 0, 0, 0.0))
preds += pipe.flush()
print(json.dumps({"predictions": len(preds), "modules": sorted(sys.modules)}))
"""


def _bundle(request, kind):
    return request.getfixturevalue("small_bundle") if kind == "esn" else request.getfixturevalue("neural_bundles")[kind]


@pytest.mark.parametrize("kind", ["esn", "lstm", "tcn"])
def test_bridge_serve_path_imports_only_device_dependencies(request, kind):
    """``edgeseq serve`` on the board: numpy, pyserial and a runtime; no training framework (an
    LSTM or TCN training bundle runs on its numpy reference: no torch either)."""
    out = subprocess.run([sys.executable, "-c", BRIDGE_SCRIPT, str(_bundle(request, kind))], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["predictions"] >= 30
    loaded = {m.split(".")[0] for m in res["modules"]}
    assert not loaded & set(HEAVY + SIGNING), loaded & set(HEAVY + SIGNING)


PROFILE_SCRIPT = r"""
import json, sys
from edgeseq.profile import profile_bundle
res = profile_bundle(sys.argv[1], n=10, warmup=2, arena=False)
print(json.dumps({"p50": res["latency_us"]["window"]["p50"], "modules": sorted(sys.modules)}))
"""


@pytest.mark.parametrize("kind", ["esn", "lstm", "tcn"])
def test_profiler_runs_on_the_device_path(request, kind):
    """``edgeseq profile`` runs on the board: no training framework, no plotting library."""
    out = subprocess.run([sys.executable, "-c", PROFILE_SCRIPT, str(_bundle(request, kind))], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["p50"] > 0
    loaded = {m.split(".")[0] for m in res["modules"]}
    assert not loaded & set(HEAVY), loaded & set(HEAVY)

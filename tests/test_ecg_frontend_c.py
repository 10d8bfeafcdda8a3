"""The C ECG front end (firmware_bridge/src/edgeseq_ecg.c) against EcgBeatStream, on real records.

Compiled here with the system compiler and the strict flags against a config header generated
from a manifest (edgeseq.export.c_frontend), driven through firmware_bridge/tests/ecg_run.c.

Tolerance, measured on all 22 DS1 records (tools/bench/ecg_frontend_c.py, 51,335 beats):

* R peaks: identical, also when the Python reads the record's float64 samples and the C their
  float32 rounding (the C takes float, the device's type).
* Interval features (RR columns 0-6): bit-identical; they depend on the R peaks alone.
* Windows (mV) and template features, same float32 input: at most 6e-8 apart (the two
  implementations order the band-pass arithmetic differently; everything after follows numpy's
  order); asserted below 1.2e-7. With the Python on the float64 samples: 4.8e-7 (windows) and
  1.2e-7 (template features); asserted below 1e-6 and 2.4e-7.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeseq.errors import EdgeseqError
from edgeseq.export import c_frontend
from edgeseq.preprocess.ecg import EcgPreprocessing
from edgeseq.preprocess.filters import SOSFilter
from edgeseq.preprocess.qrs import QRSDetector
from edgeseq.preprocess.stream import EcgBeatStream

ROOT = Path(__file__).resolve().parents[1]
FW = ROOT / "firmware_bridge"
SAMPLE = ROOT / "edgeseq" / "data" / "sample"
STATE_BUDGET = 48 * 1024  # bytes of es_ecg_t with the default config (40,024 measured)

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no system C compiler (cc)")


def _bench():
    path = ROOT / "tools" / "bench" / "ecg_frontend_c.py"
    spec = importlib.util.spec_from_file_location("bench_ecg_frontend_c", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


bench = _bench()


def _signal(data_dir, rec) -> np.ndarray:
    pytest.importorskip("wfdb")
    from edgeseq.data.mitdb import load_record

    return load_record(data_dir, rec).signal


@pytest.fixture(scope="module")
def default_exe(tmp_path_factory):
    d = tmp_path_factory.mktemp("ecg_c")
    return bench.build(d, bench.default_manifest()), d


def _check_parity(py_beats, c_beats, *, window_tol, template_tol):
    ok = [b for b in py_beats if b.ok]
    assert len(ok) == len(py_beats), "the Python stream dropped beats on a clean record"
    assert len(ok) > 100
    r_py = np.array([b.r for b in ok])
    assert len(r_py) == len(c_beats), (len(r_py), len(c_beats))
    np.testing.assert_array_equal(c_beats["r"], r_py)
    rr_py = np.array([b.rr for b in ok])
    np.testing.assert_array_equal(c_beats["rr"][:, :7], rr_py[:, :7])  # intervals: bit for bit
    assert np.abs(c_beats["w"] - np.array([b.window for b in ok])).max() <= window_tol
    assert np.abs(c_beats["rr"][:, 7:] - rr_py[:, 7:]).max() <= template_tol


@pytest.mark.parametrize("rec", ["106", "208", "119"])
def test_sample_records_match_the_python_stream(default_exe, rec):
    exe, d = default_exe
    x32 = _signal(SAMPLE, rec).astype(np.float32)
    c_beats, info, _ = bench.run_c(exe, x32, d)
    py, counters, _ = bench.run_python(bench.default_manifest(), x32.astype(np.float64), chunk=4096)
    _check_parity(py, c_beats, window_tol=1.2e-7, template_tol=1.2e-7)
    assert (info["beats_detected"], info["beats_unscored"]) == (counters["beats_detected"], counters["beats_unscored"])
    assert info["samples"] == len(x32) and info["resets"] == 0 and info["dropped"] == 0


def test_ds1_records_match_the_python_stream(default_exe, mitdb):
    """Three whole DS1 records (not excerpts) with hard rhythms: 203 (multiform PVCs, AF),
    207 (flutter, bundle branch blocks), 101 (noise). The Python reads float64 samples here."""
    exe, d = default_exe
    for rec in ("203", "207", "101"):
        x = _signal(mitdb, rec)
        c_beats, _, _ = bench.run_c(exe, x.astype(np.float32), d)
        py, _, _ = bench.run_python(bench.default_manifest(), x)
        _check_parity(py, c_beats, window_tol=1e-6, template_tol=2.4e-7)


def test_non_finite_samples_are_refused_without_a_trace(default_exe):
    """As EcgBeatStream.feed refuses a chunk holding one (nothing of it used), the C refuses the
    sample: the stream around it gives the beats it gives without it."""
    exe, d = default_exe
    x = _signal(SAMPLE, "208").astype(np.float32)[:360 * 120]
    clean, _, _ = bench.run_c(exe, x, d)
    at = np.arange(1000, len(x), 7919)
    dirty = np.insert(x, at, np.float32(np.nan))
    dirty[at[1::2] + np.arange(len(at))[1::2]] = np.inf
    got, info, _ = bench.run_c(exe, dirty, d)
    assert info["rejected"] == len(at) and info["samples"] == len(x)
    assert clean.tobytes() == got.tobytes()
    assert len(clean) > 100
    stream = EcgBeatStream(EcgPreprocessing(), QRSDetector(360.0))
    with pytest.raises(EdgeseqError, match="non-finite sample"):
        stream.feed(dirty[:2000].astype(np.float64))


def test_a_bundle_with_other_settings(tmp_path):
    """Another window, median lengths (odd template), frame longer than the MWI window: the
    generated header carries them and the parity holds."""
    prep = EcgPreprocessing(pre_s=0.3, post_s=0.5, decimate=3, local_beats=4, running_beats=50,
                            irregularity_beats=5, template_beats=7)
    det = QRSDetector(360.0, mwi_s=0.1, frame_s=0.2, lookahead_s=0.5, n_avg=5, refine_s=0.15)
    manifest = {"preprocessing": prep.config(), "detector": det.config()}
    exe = bench.build(tmp_path, manifest)
    x32 = _signal(SAMPLE, "119").astype(np.float32)
    c_beats, info, _ = bench.run_c(exe, x32, tmp_path)
    assert info["window"] == prep.window_length == 96
    py, _, _ = bench.run_python(manifest, x32.astype(np.float64))
    _check_parity(py, c_beats, window_tol=1.2e-7, template_tol=1.2e-7)


def test_config_header_holds_the_bundle_numbers():
    m = bench.default_manifest()
    text = c_frontend.frontend_config_header(m, source="test")
    prep, det = EcgPreprocessing.from_config(m["preprocessing"]), QRSDetector.from_config(m["detector"])
    macros = dict(re.findall(r"^#define (ES_ECG_\w+) (\d+)", text, re.M))
    assert int(macros["ES_ECG_WINDOW"]) == prep.window_length
    assert int(macros["ES_ECG_DELAY"]) == det.delay_samples
    assert int(macros["ES_ECG_HIST"]) == det._H and int(macros["ES_ECG_TEMPLATE"]) == prep.template_beats
    init = text[text.index("#define ES_ECG_CONFIG_INIT"):]
    numbers = [float(v) for v in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", init)]
    expected = SOSFilter(prep.sos).sos.ravel().tolist()
    assert numbers[1:1 + len(expected)] == expected  # exact: repr round-trips the doubles
    assert SOSFilter(det.sos).sos.ravel().tolist()[0] in numbers
    # the header shipped in firmware_bridge/src is this default one
    assert (FW / "src" / "edgeseq_ecg_config.h").read_text() == c_frontend.frontend_config_header(
        m, source="the default ECG preprocessing and detector")


def test_generator_cli_and_errors(tmp_path, capsys):
    import json

    bundle = tmp_path / "b.bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps({"task": "ecg", **bench.default_manifest()}))
    out = tmp_path / "edgeseq_ecg_config.h"
    assert c_frontend.main([str(bundle), "-o", str(out)]) == 0
    assert out.read_text() == c_frontend.frontend_config_header(bench.default_manifest(), source="b.bundle")
    with pytest.raises(EdgeseqError, match="no 'detector' section"):
        c_frontend.frontend_config_header({"preprocessing": {}})
    m = bench.default_manifest()
    m["detector"]["fs"] = 250.0
    with pytest.raises(EdgeseqError, match="detector runs at 250 Hz") as e:
        c_frontend.frontend_config_header(m)
    assert "\n" not in str(e.value)
    (bundle / "manifest.json").write_text("{not json")
    assert c_frontend.main([str(bundle)]) == 2
    assert capsys.readouterr().err.startswith("error: manifest")


def test_freestanding_fixed_size_object(default_exe, tmp_path):
    """No malloc, no libm, no libc: the object compiled freestanding leaves no symbol to link;
    the whole state is one fixed struct within the budget."""
    if shutil.which("nm") is None:
        pytest.skip("nm (binutils) is needed to list undefined symbols")
    obj = tmp_path / "edgeseq_ecg.o"
    subprocess.run(["cc", *bench.CFLAGS, "-ffreestanding", "-c", str(FW / "src" / "edgeseq_ecg.c"), "-o", str(obj)],
                   check=True, capture_output=True)
    undefined = subprocess.run(["nm", "-u", str(obj)], capture_output=True, text=True, check=True).stdout.split()
    assert undefined == []
    exe, d = default_exe
    _, info, _ = bench.run_c(exe, np.zeros(10, np.float32), d)
    _, info2, _ = bench.run_c(exe, _signal(SAMPLE, "106").astype(np.float32), d)
    assert info["state_bytes"] == info2["state_bytes"] <= STATE_BUDGET

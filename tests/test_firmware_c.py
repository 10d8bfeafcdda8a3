"""The C protocol library in firmware_bridge/: its host tests (make test) and a cross-check in the
other direction from those tests: streams made by the C encoder (and by the two Arduino sketches,
run on the host against a stub core) decoded by the Python reference in edgeseq.bridge."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeseq.bridge import protocol as P
from edgeseq.bridge.decoder import FrameDecoder

FW = Path(__file__).resolve().parents[1] / "firmware_bridge"
BUILD = FW / "build"

pytestmark = pytest.mark.skipif(
    not (shutil.which("gcc") and shutil.which("g++") and shutil.which("make")),
    reason="gcc, g++ and make are needed to build the C library's host tests",
)


@pytest.fixture(scope="module")
def make_test() -> subprocess.CompletedProcess:
    """``make -C firmware_bridge test`` once: builds everything the other tests run."""
    return subprocess.run(["make", "-C", str(FW), "test"], capture_output=True, text=True, timeout=600)


def run(*args) -> str:
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_make_test_passes(make_test):
    out = make_test.stdout + make_test.stderr
    assert make_test.returncode == 0, out[-4000:]
    assert "ALL OK" in make_test.stdout, out[-4000:]
    for group in ("crc16_ccitt_false", "cobs encode/decode", "frames pack/encode/decode", "stream.bin", "fuzz"):
        assert re.search(rf"^{re.escape(group)}\s+ok", make_test.stdout, re.M), group


def test_c_encoded_samples_decode_in_python(make_test, tmp_path):
    assert make_test.returncode == 0
    n = 300
    path = tmp_path / "samples.bin"
    run(BUILD / "emit_stream", "samples", path, n)
    d = FrameDecoder()
    frames = d.feed(path.read_bytes())
    assert (d.frames, d.crc_errors, d.framing_errors, d.discarded_bytes) == (n + 2, 0, 0, 0)
    assert [f.seq for f in frames] == list(range(n + 2))
    info = P.parse_info(frames[0])
    assert (info.device_id, info.sample_rate, info.units, info.channels, info.sample_format) == (
        "emit_stream", 360.0, "mV", 1, 1)
    assert info.scale == (0.0048828125,) and info.offset == (0.0,)
    for k, f in enumerate(frames[1:-1]):
        assert (f.type, f.channels, f.sample_format) == (P.SAMPLES, 1, 1)
        first, x = P.parse_samples(f)
        assert first == 10 * k
        assert f.timestamp_us == first * 1_000_000 // 360
        want = (np.arange(first, first + 10) % 1000 - 500).reshape(-1, 1)
        np.testing.assert_array_equal(x, want)
    assert frames[-1].type == P.HEARTBEAT and P.parse_heartbeat(frames[-1]) == 10 * n


def test_fuzz_stream_counts_agree_with_python(make_test, tmp_path):
    """The same damaged bytes through both decoders: same frames accepted, same error classes."""
    assert make_test.returncode == 0
    path = tmp_path / "fuzz.bin"
    out = run(BUILD / "emit_stream", "fuzz", path, 20000, 7)
    c = {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", out)}
    data = path.read_bytes()
    d = FrameDecoder()
    frames = d.feed(data)
    assert (d.frames, d.crc_errors, d.framing_errors, d.bytes, d.discarded_bytes) == (
        c["frames"], c["crc_errors"], c["framing_errors"], c["bytes"], c["discarded_bytes"])
    assert d.frames > 1000 and d.crc_errors > 100 and d.framing_errors > 1000
    # fed in ragged slices the reference agrees with itself (and so with the C decoder)
    d2, got, i = FrameDecoder(), [], 0
    rng = np.random.default_rng(0)
    while i < len(data):
        k = int(rng.integers(1, 700))
        got += d2.feed(data[i:i + k])
        i += k
    assert [P.pack_frame(f) for f in got] == [P.pack_frame(f) for f in frames]
    assert (d2.crc_errors, d2.framing_errors) == (d.crc_errors, d.framing_errors)


@pytest.mark.parametrize("sketch, device, rate, channels, fmt, units", [
    ("ecg_ad8232", "ecg-ad8232", 360.0, 1, 1, "mV"),
    ("balance_hx711", "hx711x4", 80.0, 4, 2, "N"),
])
def test_sketch_on_stub_core_streams(make_test, tmp_path, sketch, device, rate, channels, fmt, units):
    """Each example sketch, run for 3 simulated seconds (START at 0.1 s, PREDICTION at 1 s, STOP at
    2.5 s): INFO, then SAMPLES with consecutive indices, and a final HEARTBEAT after STOP."""
    assert make_test.returncode == 0
    path = tmp_path / f"{sketch}.bin"
    run(BUILD / f"sketch_{sketch}", path)
    d = FrameDecoder()
    frames = d.feed(path.read_bytes())
    assert d.crc_errors == d.framing_errors == 0 and d.discarded_bytes == 0
    assert [f.seq for f in frames] == list(range(len(frames)))
    info = P.parse_info(frames[0])
    assert (info.device_id, info.sample_rate, info.channels, info.sample_format, info.units) == (
        device, rate, channels, fmt, units)
    nxt = None
    n_samples = 0
    for f in frames[1:]:
        if f.type == P.SAMPLES:
            first, x = P.parse_samples(f)
            assert x.shape[1] == channels
            assert nxt is None or first == nxt
            nxt = first + len(x)
            n_samples += len(x)
        elif f.type == P.HEARTBEAT:
            assert P.parse_heartbeat(f) == nxt
        else:
            assert f.type == P.ERROR
    assert frames[-1].type == P.HEARTBEAT  # after STOP
    assert abs(n_samples - 2.4 * rate) <= 0.05 * 2.4 * rate + 10

"""Hostile streams through ``edgeseq serve`` (issue 13, serve part): a non-finite or overflowing
sample never becomes a label and the stream recovers; every sample the device sent is delivered
or counted lost, whatever arrives first; one frame cannot allocate a gap; serve behaves as a
service (signals, an exclusive port, a failed --give-up, bounded memory for its statistics).

Recorded streams replay through a file (in-process, fast); what needs a pseudo-terminal or a
signal runs ``edgeseq`` in subprocesses with timeouts.
"""

import json
import math
import signal
import subprocess
import sys
import threading
import time
import tracemalloc

import numpy as np
import pytest

from edgeseq.bridge import protocol as P
from edgeseq.bridge import serve as serve_mod
from edgeseq.bridge.emulator import Emulator, load_source, parse_faults
from edgeseq.bridge.pipelines import WindowPipeline
from edgeseq.bridge.tracker import Block, StreamTracker
from edgeseq.errors import EdgeseqError

FS = 360.0


@pytest.fixture(scope="module")
def rec208(sample):
    return load_source(f"mitdb:{sample}/208")


def strict_jsonl(path):
    """Every line parsed as strict JSON: a bare NaN/Infinity token fails."""
    def bad(tok):
        raise AssertionError(f"non-JSON token {tok} in {path}")
    return [json.loads(line, parse_constant=bad) for line in path.read_text().splitlines()]


def enc(typ, seq, payload=b"", ch=0, fmt=0, ts=0):
    return P.encode_frame(P.Frame(typ, seq & 0xFFFF, ts & 0xFFFFFFFF, ch, fmt, payload))


def info(seq, src, rate=FS, scale=None, ch=1, fmt=1):
    scale = src.scale if scale is None else scale
    return enc(P.INFO, seq, P.info_payload("dev", rate, scale * ch if len(scale) == 1 else scale,
                                          src.offset * ch if len(src.offset) == 1 else src.offset, "mV"), ch, fmt)


def sample_frames(seq0, first, x, fmt=1, k=10):
    """(wire bytes, frames) of ``x`` (n, channels) in frames of ``k`` samples from index ``first``."""
    out = bytearray()
    n = 0
    for j, i in enumerate(range(0, len(x), k)):
        out += enc(P.SAMPLES, seq0 + j, P.samples_payload(first + i, x[i:i + k], fmt), x.shape[1], fmt)
        n += 1
    return bytes(out), n


def replay(tmp_path, data: bytes, bundle, **kw):
    raw = tmp_path / f"s{time.monotonic_ns()}.raw"
    raw.write_bytes(data)
    return serve_mod.serve(str(raw), bundle, quiet=True, **kw)


# ---- non-finite and overflowing values -----------------------------------------------------

def test_text_line_1e200_is_counted_lost_and_the_stream_recovers(tmp_path, rec208, small_bundle):
    x = rec208.counts[:120 * 360, 0]
    clean = tmp_path / "clean.txt"
    clean.write_text("".join(f"{v}\n" for v in x))
    lines = [f"{v}\n" for v in x]
    spike = 30 * 360
    lines[spike] = "1e200\n"
    hot = tmp_path / "hot.txt"
    hot.write_text("".join(lines))
    kw = dict(text=True, rate=FS, scale=rec208.scale[0], offset=rec208.offset[0], quiet=True)
    ref = serve_mod.serve(str(clean), small_bundle, out=str(tmp_path / "clean.jsonl"), **kw)
    s = serve_mod.serve(str(hot), small_bundle, out=str(tmp_path / "hot.jsonl"), **kw)
    recs = strict_jsonl(tmp_path / "hot.jsonl")
    assert recs and all(r["label"] is not None and math.isfinite(r["score"]) for r in recs)
    assert s["samples"] + s["lost_samples"] == len(x)
    assert s["overflow_samples"] > 0 and s["stream_resets"] >= 1
    # Recovery: 20 s after the spike the labels are those of the clean stream, beat for beat.
    want = {r["sample"]: r["label"] for r in strict_jsonl(tmp_path / "clean.jsonl")}
    after = [(r["sample"], r["label"]) for r in recs if r["sample"] > spike + 20 * 360]
    assert len(after) > 100 and len(after) >= 0.9 * sum(1 for k in want if k > spike + 20 * 360)
    same = sum(want.get(k) == lab for k, lab in after)
    assert same >= 0.9 * len(after), (same, len(after))
    assert ref["lost_samples"] == 0


def test_info_scale_1e38_never_labels_and_a_sane_info_recovers(tmp_path, rec208, small_bundle):
    """A scale that makes float32 windows infinite: no beat is labelled while it holds (counted
    unlabelled); the device's next INFO with its real scale brings labels back."""
    x = rec208.counts[:120 * 360]
    part1, n1 = sample_frames(1, 0, x[:60 * 360])
    part2, n2 = sample_frames(n1 + 2, 60 * 360, x[60 * 360:])
    data = info(0, rec208, scale=[1e38]) + part1 + info(n1 + 1, rec208) + part2
    out = tmp_path / "p.jsonl"
    s = replay(tmp_path, data, small_bundle, out=str(out))
    recs = strict_jsonl(out)
    assert all(r["label"] is not None and math.isfinite(r["score"]) for r in recs)
    assert s["samples"] + s["lost_samples"] == len(x)
    # The minute at 1e40 mV holds about 100 beats: counted (not ok, or a non-finite output), none labelled.
    assert s["windows_dropped"] + s["nonfinite_outputs"] > 50
    assert not [r for r in recs if r["sample"] < 60 * 360 - 2 * 360]  # nothing labelled from 1e40 mV
    assert len([r for r in recs if r["sample"] > 70 * 360]) > 50  # the sane INFO: labels again


def test_non_finite_float_sample_is_counted_lost_and_serve_goes_on(tmp_path, rec208, small_bundle):
    phys = (rec208.counts[:60 * 360].astype(np.float64) * rec208.scale[0] + rec208.offset[0]).astype(np.float32)
    phys[1000, 0] = np.nan
    phys[20000, 0] = np.inf
    wire, n = sample_frames(1, 0, phys, fmt=3)
    data = enc(P.INFO, 0, P.info_payload("dev", FS, [1.0], [0.0], "mV"), 1, 3) + wire
    out = tmp_path / "p.jsonl"
    s = replay(tmp_path, data, small_bundle, out=str(out))
    assert s["nonfinite_samples"] == 2 and s["lost_samples"] == 2
    assert s["samples"] == len(phys) - 2 and s["predictions"] > 50
    assert s["ended"].startswith("end of")
    assert all(math.isfinite(r["score"]) for r in strict_jsonl(out))


# ---- every sample delivered or counted lost -----------------------------------------------

def test_frames_before_an_info_that_never_comes_are_counted(tmp_path, rec208, small_bundle):
    x = rec208.counts[:2000]
    wire, n = sample_frames(0, 0, x)
    s = replay(tmp_path, wire, small_bundle)
    assert s["samples"] == 0 and s["lost_samples"] == 2000


def test_frames_pushed_out_of_the_hold_and_the_rest_are_all_counted(tmp_path, rec208):
    t = StreamTracker(hold_frames=16)
    x = rec208.counts[:1000]
    for seq, i in enumerate(range(0, 1000, 10)):
        t.on_frame(P.Frame(P.SAMPLES, seq, 0, 1, 1, P.samples_payload(i, x[i:i + 10], 1)), 0.0)
    t.finish()
    assert t.samples == 0 and t.lost_samples + t.lost_before_first == 1000


BAD_INFOS = {
    "nan-rate": lambda src: enc(P.INFO, 0, P.info_payload("d", float("nan"), src.scale, src.offset, "mV"), 1, 1),
    "zero-rate": lambda src: enc(P.INFO, 0, P.info_payload("d", 0.0, src.scale, src.offset, "mV"), 1, 1),
    "zero-channels": lambda src: enc(P.INFO, 0, P.info_payload("d", FS, [], [], "mV"), 0, 1),
    "255-channels": lambda src: enc(P.INFO, 0, P.info_payload("d", FS, src.scale * 20, src.offset * 20, "mV"), 255, 1),
    "unknown-format": lambda src: enc(P.INFO, 0, P.info_payload("d", FS, src.scale, src.offset, "mV"), 1, 9),
}


@pytest.mark.parametrize("kind", sorted(BAD_INFOS))
def test_a_bad_info_loses_its_stream_counted(tmp_path, rec208, small_bundle, kind):
    wire, n = sample_frames(1, 0, rec208.counts[:3000])
    hb = enc(P.HEARTBEAT, n + 1, P.heartbeat_payload(3600))
    s = replay(tmp_path, BAD_INFOS[kind](rec208) + wire + hb, small_bundle)
    assert s["payload_errors"] == 1 and s["samples"] == 0
    assert s["lost_samples"] == 3600  # 3000 held, never interpretable, and 600 announced


def test_a_second_info_is_checked_against_the_bundle(tmp_path, rec208, small_bundle):
    x = rec208.counts[:20 * 360]
    a, n = sample_frames(1, 0, x[:3600])
    b, _ = sample_frames(n + 2, 3600, x[3600:])
    for other in (info(n + 1, rec208, rate=250.0), info(n + 1, rec208, ch=2)):
        with pytest.raises(EdgeseqError, match="250 Hz|2 channel") as e:
            replay(tmp_path, info(0, rec208) + a + other + b, small_bundle)
        assert e.value.summary["samples"] == 3600  # what was counted before is still reported


def _run_emulated(tmp_path, source, bundle, faults, duration=20.0, seed=3):
    link = tmp_path / f"tty{time.monotonic_ns()}"
    emu = Emulator(load_source(source), link, speed=None, faults=parse_faults(faults), seed=seed,
                   duration_s=duration, connect_timeout_s=20, log=lambda m: None)
    report, errors = {}, []

    def target():
        try:
            report.update(emu.run())
        except Exception as e:  # noqa: BLE001  (surfaced below)
            errors.append(e)

    th = threading.Thread(target=target, daemon=True)
    th.start()
    while not link.is_symlink() and th.is_alive():
        time.sleep(0.01)
    summary = serve_mod.Bridge(str(link), bundle, give_up_s=0.5, quiet=True).run()
    th.join(timeout=60)
    assert not th.is_alive() and not errors, errors
    return report, summary


@pytest.mark.parametrize("faults", ["bitflip=0.3", "truncate=0.3", "garbage=1", "drop=0.9"])
def test_heavy_faults_delivered_plus_lost_equals_sent(tmp_path, sample, small_bundle, faults):
    rep, s = _run_emulated(tmp_path, f"mitdb:{sample}/208", small_bundle, faults)
    assert rep["samples"] == 20 * 360
    assert s["samples"] + s["lost_samples"] == rep["samples"], (rep, s)
    assert s["lost_samples"] > 0
    if faults != "drop=0.9":
        assert s["crc_errors"] + s["framing_errors"] > 0


# ---- one frame cannot allocate a gap ------------------------------------------------------

def _window_pipeline(window, hop, channels=4):
    """A WindowPipeline around a stand-in model (mean of the window): the gap handling is what is
    tested, not a bundle."""
    p = WindowPipeline.__new__(WindowPipeline)
    p.window, p.hop, p.channels, p.channel = window, hop, channels, None
    p.labels, p.windows_dropped, p.predictions, p.nonfinite_outputs = [], 0, 0, 0
    p._mean_output = False
    p._inputs = lambda raw: raw
    p._run = lambda X: X.mean(axis=0, keepdims=True)[:, :1]
    p.restart()
    return p


@pytest.mark.parametrize("gap", [50_000_000, 2**31])
def test_an_index_jump_is_counted_not_allocated(gap):
    p = _window_pipeline(window=500, hop=100)
    x = np.ones((1000, 4))
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        p.feed(Block(0, x, 0, 0, 0.0))
        p.feed(Block(1000 + gap, x, gap, 0, 0.0))
        took = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5e6 and took < 1.0
    # Windows overlapping the gap: ends from 1100 up to the first one past it, on the hop grid.
    first_clean = 1100 + -(-(1000 + gap + 500 - 1100) // 100) * 100
    assert p.windows_dropped == (first_clean - 1100) // 100
    assert p.predictions == 6 + max(0, (1000 + gap + 1000 - first_clean) // 100 + 1)


def test_a_heartbeat_announcing_2_31_through_tracker_and_pipeline():
    t = StreamTracker()
    src_info = P.Frame(P.INFO, 0, 0, 4, 2, P.info_payload("bal", 100.0, [0.01] * 4, [0.0] * 4, "N"))
    blocks = t.on_frame(src_info, 0.0)
    blocks += t.on_frame(P.Frame(P.SAMPLES, 1, 0, 4, 2, P.samples_payload(0, np.ones((10, 4), np.int32), 2)), 0.0)
    blocks += t.on_frame(P.Frame(P.HEARTBEAT, 2, 0, 0, 0, P.heartbeat_payload(10 + 2**31)), 0.0)
    assert t.lost_samples == 2**31
    p = _window_pipeline(window=300, hop=50)
    tracemalloc.start()
    try:
        for b in blocks:
            p.feed(b)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5e6


@pytest.mark.parametrize("window,hop", [(5, 1), (7, 3), (10, 10), (4, 9)])
def test_counted_gaps_drop_the_windows_a_materialised_gap_would(window, hop):
    """Against the placeholder path (gaps shorter than a window) run on gaps of every length:
    the same predictions and drops once the samples after the gap are all in."""
    rng = np.random.default_rng(window * 31 + hop)
    for _ in range(30):
        a, gap = int(rng.integers(1, 40)), int(rng.integers(window, 4 * window + 10))
        tail = 4 * window + 3 * hop + 2
        p = _window_pipeline(window, hop, channels=1)
        p.feed(Block(0, np.ones((a, 1)), 0, 0, 0.0))
        p.feed(Block(a + gap, np.ones((tail, 1)), gap, 0, 0.0))
        # Reference: the stream as one buffer with the gap marked, windows on the same grid.
        bad = np.r_[np.zeros(a, bool), np.ones(gap, bool), np.zeros(tail, bool)]
        ends = np.arange(window, len(bad) + 1, hop)
        drops = sum(bad[e - window:e].any() for e in ends)
        assert p.windows_dropped == drops, (a, gap)
        assert p.predictions == len(ends) - drops, (a, gap)


# ---- serve as a service ------------------------------------------------------------------

def _cli(*args):
    return [sys.executable, "-m", "edgeseq", *map(str, args)]


def _start_emulator(tmp_path, sample, link):
    emu = subprocess.Popen(_cli("emulate", "--source", f"mitdb:{sample}/208", "--link", link, "--speed", "1",
                                "--wait", "30"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not link.is_symlink():
        assert time.monotonic() < deadline and emu.poll() is None, "emulator did not start"
        time.sleep(0.05)
    return emu


def _stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=10)


def _wait_connected(proc, timeout=30):
    """Reads serve's stderr until it says it connected."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "connected to" in line:
            return
        assert line or proc.poll() is None, "serve ended before connecting"
    raise AssertionError("serve did not connect")


def test_sighup_prints_the_summary(tmp_path, sample, small_bundle):
    link = tmp_path / "tty"
    emu = _start_emulator(tmp_path, sample, link)
    srv = subprocess.Popen(_cli("serve", "--port", link, "--bundle", small_bundle, "--quiet"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_connected(srv)
        time.sleep(2.0)
        srv.send_signal(signal.SIGHUP)
        out, err = srv.communicate(timeout=30)
    finally:
        _stop(srv)
        _stop(emu)
    assert srv.returncode == 0, err
    s = json.loads(out.strip().splitlines()[-1])
    assert s["ended"] == "signal SIGHUP" and s["samples"] > 0


def test_a_second_serve_on_the_same_port_is_refused(tmp_path, sample, small_bundle):
    link = tmp_path / "tty"
    emu = _start_emulator(tmp_path, sample, link)
    first = subprocess.Popen(_cli("serve", "--port", link, "--bundle", small_bundle, "--quiet"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_connected(first)
        second = subprocess.run(_cli("serve", "--port", link, "--bundle", small_bundle, "--quiet"),
                                capture_output=True, text=True, timeout=60)
        first.send_signal(signal.SIGTERM)
        out, _ = first.communicate(timeout=30)
    finally:
        _stop(first)
        _stop(emu)
    assert second.returncode == 2
    err = second.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgeseq: error:") and "in use" in err[0], second.stderr
    assert json.loads(out.strip().splitlines()[-1])["samples"] > 0  # the first one kept its stream


def test_give_up_without_ever_connecting_fails_with_a_summary(tmp_path, small_bundle):
    r = subprocess.run(_cli("serve", "--port", tmp_path / "nothing", "--bundle", small_bundle, "--quiet",
                            "--give-up", "0.3"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    err = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("edgeseq:")]
    assert len(err) == 1 and "never connected" in err[0] and "Traceback" not in r.stderr, r.stderr
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["connects"] == 0 and s["samples"] == 0


def test_latency_statistics_keep_bounded_memory():
    from edgeseq.bridge.serve import LatencyHistogram

    h = LatencyHistogram()
    size = h.counts.nbytes
    rng = np.random.default_rng(0)
    lat = rng.lognormal(1.0, 0.8, 200_000)
    for v in lat:
        h.add(float(v))
    assert h.counts.nbytes == size < 16_384 and h.n == len(lat)
    for q in (0.5, 0.99):
        assert abs(h.quantile(q) / np.quantile(lat, q) - 1) < 0.03
    assert h.max == lat.max()


def test_device_errors_counted_past_100_and_unknown_types_reported(tmp_path, rec208, small_bundle):
    data = bytearray(info(0, rec208))
    seq = 1
    for k in range(150):
        data += enc(P.ERROR, seq, P.error_payload(2, f"leads off {k}"))
        seq += 1
    for typ, n in ((0x55, 3), (0x7F, 2)):
        for _ in range(n):
            data += enc(typ, seq, b"?")
            seq += 1
    s = replay(tmp_path, bytes(data), small_bundle)
    assert s["device_errors"] == 150
    assert 0 < len(s["device_error_messages"]) <= 10
    assert s["device_error_messages"][0] == "sensor: leads off 0"
    assert s["device_error_messages"][-1] == "sensor: leads off 149"
    assert s["unknown_frames"] == {"0x55": 3, "0x7f": 2}


def test_damage_after_the_last_announced_index_is_reported_not_claimed_zero(tmp_path, rec208, small_bundle):
    """Frames destroyed after the device's last announced index carried an unknowable number of
    samples: serve says so (lost_unknown_frames) instead of a falsely exact lost_samples."""
    wire, n = sample_frames(1, 0, rec208.counts[:1000])
    frames = [sample_frames(n + 1 + k, 1000 + 10 * k, rec208.counts[1000 + 10 * k:1010 + 10 * k])[0] for k in range(10)]
    bad = bytearray(frames[8])
    bad[3] ^= 0x40  # the ninth frame fails its CRC,
    damaged = b"".join(frames[:8]) + bytes(bad) + frames[9][:-5]  # the tenth is cut short by the end
    s = replay(tmp_path, info(0, rec208) + wire + damaged, small_bundle)
    assert s["lost_unknown_frames"] == 2 and s["samples"] == 1080
    hb = enc(P.HEARTBEAT, n + 11, P.heartbeat_payload(1100))
    s = replay(tmp_path, info(0, rec208) + wire + damaged + P.DELIMITER + hb, small_bundle)
    assert s["lost_unknown_frames"] == 0 and s["samples"] + s["lost_samples"] == 1100

"""Property suite over serial byte streams (issue 13): a device session built from the protocol's
own encoder, then damaged on the wire (bit flips, truncation, garbage, drops, duplicates), with
index jumps, INFO variants, non-finite samples and text lines, fed through the decoder, the
tracker and a window pipeline, in process.

For every stream: nothing is raised at all (damage is counted, not an error), no prediction carries a NaN or a label
from a non-finite output, and ``delivered + counted lost == sent``, where *sent* is every index the
device numbered (its final, clean HEARTBEAT's ``next_index``: the emulator's contract too).
Derandomized: a CRC-16 lets about 1 in 65,536 damaged frames through, and a run that passed must
not fail by chance later.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeseq.bridge import protocol as P
from edgeseq.bridge.decoder import FrameDecoder, TextLineDecoder
from edgeseq.bridge.pipelines import WindowPipeline
from edgeseq.bridge.tracker import StreamTracker, TextTracker

SETTINGS = settings(max_examples=100, deadline=2000, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

FORMATS = {1: np.int16, 2: np.int32, 3: np.float32}


def pipeline(channels):
    """WindowPipeline around a stand-in model (+-mean of the window): what is tested is the stream
    handling around the model, and that its outputs go through ``finite.decide``."""
    p = WindowPipeline.__new__(WindowPipeline)
    p.window, p.hop, p.channels, p.channel = 8, 3, channels, None
    p.labels, p.windows_dropped, p.predictions, p.nonfinite_outputs = ["a", "b"], 0, 0, 0
    p._mean_output = False
    p._inputs = lambda raw: raw
    p._run = lambda X: np.stack([X.mean(axis=0)[:1], -X.mean(axis=0)[:1]], axis=1)
    p.restart()
    return p


VALUE = st.one_of(st.integers(-30000, 30000).map(float), st.sampled_from([np.nan, np.inf, -np.inf, 3e38, -3e38]))

OP = st.one_of(
    st.tuples(st.just("samples"), st.integers(1, 10), st.lists(VALUE, min_size=1, max_size=40)),
    st.tuples(st.just("jump"), st.sampled_from([1, 7, 1000, 50_000_000, 2**31 - 1])),
    st.tuples(st.just("heartbeat")),
    st.tuples(st.just("info"), st.sampled_from(["good", "good", "nan-rate", "zero-rate", "zero-channels",
                                                 "bad-format", "other-channels", "huge-scale"])),
    st.tuples(st.just("error"), st.integers(1, 4)),
    st.tuples(st.just("unknown"), st.integers(0x05, 0x0F)),
)

DAMAGE = st.one_of(
    st.just(("none",)), st.just(("none",)), st.just(("none",)),
    st.tuples(st.just("bitflip"), st.integers(0, 10_000)),
    st.tuples(st.just("truncate"), st.integers(1, 10_000)),
    st.tuples(st.just("garbage"), st.binary(min_size=1, max_size=40)),
    st.just(("drop",)),
    st.just(("dup",)),
)


@st.composite
def sessions(draw):
    channels = draw(st.sampled_from([1, 4]))
    fmt = draw(st.sampled_from([1, 2, 3]))
    start = draw(st.sampled_from([0, 0, 5, 2**32 - 20]))
    ops = draw(st.lists(st.tuples(OP, DAMAGE), max_size=40))
    info_first = draw(st.booleans())
    chunk = draw(st.integers(1, 300))
    return channels, fmt, start, ops, info_first, chunk


def info_frame(seq, variant, channels, fmt):
    rate, ch, f, scale = 100.0, channels, fmt, [0.5] * channels
    if variant == "nan-rate":
        rate = float("nan")
    elif variant == "zero-rate":
        rate = 0.0
    elif variant == "zero-channels":
        ch, scale = 0, []
    elif variant == "bad-format":
        f = 9
    elif variant == "other-channels":
        ch = 5 - channels
        scale = [0.5] * ch
    elif variant == "huge-scale":
        scale = [3e38] * channels
    return P.Frame(P.INFO, seq, 0, ch, f, P.info_payload("dev", rate, scale, [1.0] * len(scale), "u"))


def build(channels, fmt, start, ops, info_first):
    """The wire bytes and the device's final index (everything it numbered is 'sent')."""
    wire = bytearray()
    seq, index, jumped = 0, start, 0

    def put(frame, damage):
        nonlocal wire
        raw = P.encode_frame(frame)
        kind = damage[0]
        if kind == "garbage":
            wire += damage[1]
        if kind == "drop":
            return
        if kind == "bitflip":
            b = bytearray(raw)
            pos = damage[1] % (len(raw) * 8)
            b[pos // 8] ^= 1 << (pos % 8)
            raw = bytes(b)
        elif kind == "truncate":
            raw = raw[:max(1, damage[1] % len(raw))]
        wire += raw
        if kind == "dup":
            wire += raw

    if info_first:
        put(info_frame(seq, "good", channels, fmt), ("none",))
        seq += 1
    dt = FORMATS[fmt]
    for op, damage in ops:
        kind = op[0]
        if kind == "samples":
            n = op[1]
            vals = np.resize(np.asarray(op[2]), n * channels).reshape(n, channels)
            if fmt != 3:
                info = np.iinfo(dt)
                vals = np.where(np.isfinite(vals), vals, 0.0).clip(info.min, info.max)
            frame = P.Frame(P.SAMPLES, seq & 0xFFFF, 0, channels, fmt, P.samples_payload(index, vals.astype(dt), fmt))
            index += n
        elif kind == "jump":
            # The device skipped (an overrun): numbered, never sent, lost. In all at most 2^31 -
            # 1000: a u32 index cannot tell a longer jump from a restart, the tracker takes a restart.
            if jumped + op[1] <= 2**31 - 1000:
                jumped += op[1]
                index += op[1]
            continue
        elif kind == "heartbeat":
            frame = P.Frame(P.HEARTBEAT, seq & 0xFFFF, 0, 0, 0, P.heartbeat_payload(index))
        elif kind == "info":
            frame = info_frame(seq & 0xFFFF, op[1], channels, fmt)
        elif kind == "error":
            frame = P.Frame(P.ERROR, seq & 0xFFFF, 0, 0, 0, P.error_payload(op[1], "fault"))
        else:
            frame = P.Frame(op[1], seq & 0xFFFF, 0, 0, 0, b"x")
        put(frame, damage)
        seq += 1
    # As the emulator ends: a lone delimiter, then a clean final HEARTBEAT.
    wire += P.DELIMITER
    wire += P.encode_frame(P.Frame(P.HEARTBEAT, seq & 0xFFFF, 0, 0, 0, P.heartbeat_payload(index)))
    return bytes(wire), index - start, start


def check_predictions(preds):
    for p in preds:
        assert p.label in ("a", "b") and math.isfinite(p.score) and 0.0 <= p.score <= 1.0
        assert all(math.isfinite(v) for v in p.scores)


@SETTINGS
@given(sessions())
def test_binary_streams_account_for_every_sample(session):
    channels, fmt, start, ops, info_first, chunk = session
    wire, sent, start = build(channels, fmt, start, ops, info_first)
    dec, trk, pipe = FrameDecoder(), StreamTracker(hold_frames=8), pipeline(channels)
    # No exception at all: the decoder and the tracker count damage, they never raise on it.
    for i in range(0, len(wire), chunk):
        for frame in dec.feed(wire[i:i + chunk]):
            for block in trk.on_frame(frame, 0.0):
                assert np.isfinite(block.samples).all()
                if block.samples.shape[1] == channels:
                    check_predictions(pipe.feed(block))
    trk.finish()
    # Exact but for the device's u32 index: the host cannot see wraps before its first frame.
    total = trk.samples + trk.lost_samples + trk.lost_before_first
    assert (total - (sent + start)) % 2**32 == 0, (trk.summary(), sent, start)
    assert trk.samples + trk.lost_samples <= sent


LINE = st.one_of(
    st.integers(-5000, 5000).map(str), st.integers(-5000, 5000).map(str), st.integers(-5000, 5000).map(str),
    st.sampled_from(["1e200", "-1e300", "nan", "inf", "1e400", "abc", "", "1,2", "  7 ", "1e-320", "9" * 300]),
)


@SETTINGS
@given(st.lists(LINE, max_size=200), st.sampled_from([1.0, 1e10, 1e300]), st.integers(1, 64))
def test_text_lines_account_for_every_line(lines, scale, chunk):
    data = "".join(f"{ln}\n" for ln in lines).encode()
    dec, trk, pipe = TextLineDecoder(channels=1), TextTracker(100.0, scale, 0.0), pipeline(1)
    for i in range(0, len(data), chunk):
        for values, lost in dec.feed(data[i:i + chunk]):
            for block in trk.on_run(values, lost, 0.0):
                assert np.isfinite(block.samples).all()
                check_predictions(pipe.feed(block))
    # Sent: every line from the first that parses (earlier ones are a sketch's banner).
    good = [i for i, ln in enumerate(lines) if _parses(ln)]
    sent = len(lines) - good[0] if good else 0
    assert trk.samples + trk.lost_samples == sent
    assert dec.skipped_lines == (good[0] if good else len(lines))


def _parses(line):
    t = line.strip()
    if not t or len(line) > TextLineDecoder.MAX_LINE:
        return False
    try:
        return math.isfinite(float(t))
    except ValueError:
        return False


@pytest.fixture(scope="module")
def ecg_parts(small_bundle, sample):
    """The bundle's own preprocessing and detector config, and 60 s of record 208 in mV."""
    from edgeseq.bridge.emulator import load_source
    from edgeseq.bundle import read_manifest
    from edgeseq.preprocess.ecg import EcgPreprocessing

    m = read_manifest(small_bundle)
    src = load_source(f"mitdb:{sample}/208")
    x = src.counts[:60 * 360, 0] * src.scale[0] + src.offset[0]
    return EcgPreprocessing.from_config(m["preprocessing"]), m["detector"], x


SPIKE = st.sampled_from([1e200, -1e300, 1e150, 3e38, 1e-300, 0.0])


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 60 * 360 - 1), SPIKE), max_size=4),
       st.lists(st.tuples(st.integers(0, 60 * 360 - 1), st.integers(1, 2000)), max_size=3),
       st.integers(5, 700))
def test_ecg_stream_survives_huge_samples_and_gaps(ecg_parts, spikes, gaps, chunk):
    """The ECG stream (band-pass, detector, beats) fed huge-but-finite samples and gaps: no
    exception, every beat it returns as ok has a finite window and features, and every sample
    fed is used or counted (``samples + overflow_samples``)."""
    from edgeseq.preprocess.qrs import QRSDetector
    from edgeseq.preprocess.stream import EcgBeatStream

    prep, det_cfg, x = ecg_parts
    x = x[:20 * 360].copy()
    for i, v in spikes:
        x[i % len(x)] = v
    lost_at = {i % len(x): n for i, n in gaps}
    s = EcgBeatStream(prep, QRSDetector.from_config(det_cfg))
    fed = lost = 0
    beats = []
    for i in range(0, len(x), chunk):
        part = x[i:i + chunk]
        gap = sum(n for j, n in lost_at.items() if i <= j < i + chunk)
        beats += s.feed(part, lost_before=gap)
        fed += len(part)
        lost += gap
    beats += s.flush()
    for b in beats:
        if b.ok:
            assert np.isfinite(b.window).all() and np.isfinite(b.rr).all()
    assert s.samples + s.overflow_samples == fed
    assert s.lost_samples == lost + s.overflow_samples

"""EcgBeatStream: streamed beats equal the offline ``prep.beats`` of the detector's peaks, whatever
the chunking; lost samples are filled (short gaps) or reset the stream (long ones); state stays bounded."""

import numpy as np
import pytest

from edgeseq.data.mitdb import load_record
from edgeseq.errors import EdgeseqError
from edgeseq.preprocess.ecg import RR_FEATURES, EcgPreprocessing
from edgeseq.preprocess.qrs import QRSDetector, match_beats
from edgeseq.preprocess.stream import Beat, EcgBeatStream

FS = 360.0
PREP = EcgPreprocessing()


def offline(x):
    """The host path: detector over the whole signal, then ``prep.beats``."""
    det = QRSDetector(FS)
    peaks = np.concatenate([det.process(x), det.flush()]).astype(np.int64)
    w, rr, idx = PREP.beats(x, peaks)
    return peaks[idx], w, rr, peaks


def stream(x, sizes, s=None):
    """Feeds x in chunk sizes (an int, or a sequence cycled; zeros allowed), then flushes."""
    s = s or EcgBeatStream(PREP, QRSDetector(FS))
    sizes = [sizes] if np.isscalar(sizes) else list(sizes)
    out, i, k = [], 0, 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        k += 1
        out += s.feed(x[i:i + n])
        i += n
    out += s.flush()
    return out, s


def arrays(beats):
    r = np.array([b.r for b in beats], dtype=np.int64)
    w = np.array([b.window for b in beats], dtype=np.float32).reshape(len(beats), PREP.window_length)
    rr = np.array([b.rr for b in beats], dtype=np.float32).reshape(len(beats), len(RR_FEATURES))
    return r, w, rr


def assert_parity(beats, ref, shift=0):
    r, w, rr = arrays(beats)
    r_ref, w_ref, rr_ref = ref[:3]
    assert len(r) == len(r_ref)
    np.testing.assert_array_equal(r, r_ref + shift)
    assert w.dtype == np.float32 and rr.dtype == np.float32
    np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(rr, rr_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(rr[:, :7], rr_ref[:, :7])  # interval features: same float ops


def assert_accounted(s, beats):
    """Every detected peak is returned ok, dropped (not ok / reset) or unscored."""
    n_ok = sum(b.ok for b in beats)
    assert s.dropped >= sum(not b.ok for b in beats)
    assert s.beats_detected == n_ok + s.dropped + s.beats_unscored


@pytest.fixture(scope="module")
def rec208(mitdb):
    x = load_record(mitdb, "208").signal
    return x, offline(x)


@pytest.fixture(scope="module")
def sample208(sample):
    x = load_record(sample, "208").signal
    return x, offline(x)


@pytest.mark.parametrize("chunk", [650000, 10000, 360, 7])
def test_parity_full_record_208(rec208, chunk):
    x, ref = rec208
    beats, s = stream(x, chunk)
    assert_parity(beats, ref)
    assert all(b.ok and b.reason is None for b in beats)
    assert s.beats_detected == len(ref[3]) and s.dropped == 0 and s.resets == 0
    assert s.beats_unscored == len(ref[3]) - len(ref[0])
    assert s.samples == len(x)
    assert_accounted(s, beats)


@pytest.mark.parametrize("name", ["119", "201", "223"])
def test_parity_other_records_irregular_chunks(sample, name):
    x = load_record(sample, name).signal
    sizes = np.random.default_rng(int(name)).integers(0, 700, size=97).tolist()  # zeros included
    beats, s = stream(x, sizes)
    assert_parity(beats, offline(x))
    assert_accounted(s, beats)


def test_one_sample_chunks_and_emission_time(sample):
    """Sample by sample: same beats, each returned exactly when the next R peak is detected
    (the call that brings sample next_r + delay_samples)."""
    x = load_record(sample, "119").signal[: int(90 * FS)]
    ref = offline(x)
    s = EcgBeatStream(PREP, QRSDetector(FS))
    beats, when = [], []
    for i in range(len(x)):
        got = s.feed(x[i:i + 1])
        beats += got
        when += [i] * len(got)
    beats += s.flush()
    assert_parity(beats, ref)
    peaks = ref[3]
    nxt = peaks[np.searchsorted(peaks, [b.r for b in beats[:len(when)]]) + 1]
    np.testing.assert_array_equal(when, nxt + s.detector.delay_samples)
    # flush returns the beats whose next R peak lies within the detector delay of the end
    at_flush = np.array([b.r for b in beats[len(when):]])
    nxt = peaks[np.searchsorted(peaks, at_flush) + 1]
    assert len(at_flush) <= 3 and np.all(nxt + s.detector.delay_samples >= len(x))


def test_window_pending_longer_than_detector_delay(sample):
    """A window reaching past the detector delay is cut once its samples arrive: still parity."""
    prep = EcgPreprocessing(post_s=1.2)
    assert prep.post > QRSDetector(FS).delay_samples
    x = load_record(sample, "201").signal[: int(120 * FS)]
    det = QRSDetector(FS)
    peaks = np.concatenate([det.process(x), det.flush()])
    w_ref, rr_ref, idx = prep.beats(x, peaks)
    s = EcgBeatStream(prep, QRSDetector(FS))
    beats = []
    for i in range(0, len(x), 50):
        beats += s.feed(x[i:i + 50])
    beats += s.flush()
    r, w, rr = (np.array([b.r for b in beats]), np.array([b.window for b in beats]),
                np.array([b.rr for b in beats]))
    np.testing.assert_array_equal(r, peaks[idx])
    np.testing.assert_allclose(w, w_ref, atol=1e-6, rtol=0)
    np.testing.assert_allclose(rr, rr_ref, atol=1e-5, rtol=1e-5)


def feed_with_gap(x, a, n, chunk=360, s=None):
    """Streams x with x[a:a+n] lost (reported as lost_before on the chunk that starts at a+n)."""
    s = s or EcgBeatStream(PREP, QRSDetector(FS))
    out = []
    for i in range(0, a, chunk):
        out += s.feed(x[i:min(i + chunk, a)])
    first = True
    for i in range(a + n, len(x), chunk):
        out += s.feed(x[i:i + chunk], lost_before=n if first else 0)
        first = False
    out += s.flush()
    return out, s


def test_short_gap_is_filled_and_flagged(sample208):
    x, clean = sample208
    a, n = 100000, 200  # 0.56 s lost, a beat among them
    beats, s = feed_with_gap(x, a, n)
    assert (s.lost_samples, s.filled_samples, s.resets, s.samples) == (n, n, 0, len(x) - n)
    assert_accounted(s, beats)

    # Filter and detector ran on the signal with the gap interpolated: same peaks and windows as
    # offline on that signal, and the same pre/post intervals.
    filled = x.copy()
    filled[a:a + n] = x[a - 1] + (x[a + n] - x[a - 1]) * np.arange(1, n + 1) / (n + 1)
    r_f, w_f, rr_f, peaks_f = offline(filled)
    r, w, rr = arrays(beats)
    np.testing.assert_array_equal(r, r_f)
    np.testing.assert_allclose(w, w_f, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(rr[:, :2], rr_f[:, :2])

    # Flagged: exactly the beats whose window or pre/post interval touches a filled sample.
    j = np.searchsorted(peaks_f, r)
    prev, nxt = peaks_f[j - 1], peaks_f[j + 1]
    in_gap = lambda lo, hi: (hi >= a) & (lo < a + n)  # noqa: E731  [lo, hi] meets [a, a+n)
    last = int(np.arange(-PREP.pre, PREP.post, PREP.decimate)[-1])  # window: r - pre .. r + last
    m = PREP.gap_margin  # an interval also touches a gap near one of its peaks (peaks_near_gap)
    touches = (in_gap(r - PREP.pre, r + last) | in_gap(prev - m, r + m) | in_gap(r - m, nxt + m))
    ok = np.array([b.ok for b in beats])
    np.testing.assert_array_equal(ok, ~touches)
    assert 1 <= (~ok).sum() <= 4 and s.dropped == (~ok).sum()
    assert all(b.reason and "lost samples" in b.reason for b in beats if not b.ok)

    # Intervals touching the gap stay out of the running means: local_rr is the mean of the last
    # 10 clean intervals, running_rr (local_rr / local_rr_norm) of the last 200.
    iv = np.diff(peaks_f) / FS
    iv_clean = ~in_gap(peaks_f[:-1] - m, peaks_f[1:] + m)
    for b in beats:
        if not b.ok:
            continue
        k = int(np.searchsorted(peaks_f, b.r))  # the beat's pre interval is iv[k - 1]
        hist = iv[:k][iv_clean[:k]]
        local, running = hist[-10:].mean(), hist[-200:].mean()
        np.testing.assert_allclose(b.rr[2], local, rtol=1e-5)
        np.testing.assert_allclose(b.rr[2] / b.rr[5], running, rtol=1e-5)

    # Beats before the gap (window and next interval clear of it) are those of the clean stream;
    # after it, the same R peaks, windows once the band-pass transient has died out (10 s), and
    # all features once the 200-interval history no longer reaches back to the gap.
    C = {int(rc): i for i, rc in enumerate(clean[0])}
    assert all(int(q) in C for q in r)  # the gap costs beats, it invents none
    ic = np.array([C[int(q)] for q in r])
    before = (r + PREP.post < a) & (nxt < a)
    np.testing.assert_allclose(w[before], clean[1][ic[before]], atol=1e-6, rtol=0)
    np.testing.assert_allclose(rr[before], clean[2][ic[before]], atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(rr[before, :7], clean[2][ic[before], :7])
    after = r > a + n + 10 * FS
    np.testing.assert_allclose(w[after], clean[1][ic[after]], atol=1e-6, rtol=0)
    np.testing.assert_array_equal(rr[after, :2], clean[2][ic[after], :2])
    late = np.flatnonzero(after)[210:]
    assert len(late) > 100
    np.testing.assert_allclose(rr[late], clean[2][ic[late]], atol=1e-5, rtol=1e-5)


def test_long_gap_resets_and_keeps_absolute_indices(sample208):
    x, clean = sample208
    peaks = clean[3]
    r0 = next(int(q) for q, q1 in zip(peaks, peaks[1:]) if q > 100000 and q1 - q > 300)
    a, n = r0 + 250, int(5 * FS)  # lost: more than max_fill_s = 2 s, just after a beat's window
    beats, s = feed_with_gap(x, a, n, chunk=250)
    assert (s.resets, s.lost_samples, s.filled_samples) == (1, n, 0)
    assert all(b.ok for b in beats)
    assert_accounted(s, beats)
    r = np.array([b.r for b in beats])
    # Each side is a stream of its own, exactly as offline on that piece (filter from zero state).
    ref1, ref2 = offline(x[:a]), offline(x[a + n:])
    assert ref1[3][-1] == r0
    assert s.dropped == 1  # r0, waiting for its next R when the gap came: discarded
    k1 = len(ref1[0])
    assert_parity(beats[:k1], ref1)
    assert_parity(beats[k1:], ref2, shift=a + n)
    # ... and its R indices are absolute: they match the clean stream's beats after the gap.
    # (The restarted detector relearns its levels: a few clean-stream beats of the first seconds
    # may be missing, none is invented.)
    post, post_clean = r[r > a + n], clean[0][clean[0] > a + n]
    m, _, _, missed = match_beats(post, post_clean, FS)
    assert len(m) == len(post) and len(post) > 400
    assert len(missed) <= 0.02 * len(post_clean)
    assert np.all(post_clean[missed] < a + n + 30 * FS)
    assert s.position == 0  # flushed: a new stream starts at 0


def test_gap_reported_with_empty_chunk_and_at_stream_start(sample208):
    x, _ = sample208
    x = x[: int(60 * FS)]
    a, n = 9000, 300
    ref, _ = feed_with_gap(x, a, n, chunk=1000)
    s = EcgBeatStream(PREP, QRSDetector(FS))
    got = s.feed(x[:a])
    got += s.feed(np.zeros(0), lost_before=100)
    got += s.feed([], lost_before=200)
    assert s.position == a  # not applied yet
    got += s.feed(x[a + n:]) + s.flush()
    assert [(b.r, b.ok) for b in got] == [(b.r, b.ok) for b in ref]
    for b, c in zip(got, ref):
        np.testing.assert_allclose(b.window, c.window, atol=1e-6, rtol=0)
        np.testing.assert_allclose(b.rr, c.rr, rtol=1e-6, atol=1e-6)

    # Lost before the first sample: the stream starts later, nothing to fill.
    s = EcgBeatStream(PREP, QRSDetector(FS))
    shifted = s.feed(x, lost_before=1234) + s.flush()
    plain, _ = stream(x, len(x))
    assert [b.r for b in shifted] == [b.r + 1234 for b in plain]
    assert s.filled_samples == 0 and s.resets == 0 and s.lost_samples == 1234


def test_bad_input_raises_with_stream_index_and_changes_nothing(sample208):
    x, _ = sample208
    x = x[: int(60 * FS)]
    ref, _ = stream(x, 500)
    s = EcgBeatStream(PREP, QRSDetector(FS))
    got = s.feed(x[:1000])
    bad = x[1000:1500].copy()
    bad[7] = np.nan
    with pytest.raises(EdgeseqError, match=r"stream sample 1007\b"):
        s.feed(bad)
    s.feed([], lost_before=0)
    bad[7] = np.inf
    with pytest.raises(EdgeseqError, match="non-finite.*stream sample 1007"):
        s.feed(bad)
    with pytest.raises(EdgeseqError, match="1-D.*stream at sample 1000"):
        s.feed(x[1000:1500].reshape(2, -1))
    with pytest.raises(EdgeseqError, match="lost_before"):
        s.feed(x[1000:1500], lost_before=-3)
    got += s.feed(x[1000:]) + s.flush()  # the rejected chunks left no trace
    assert [b.r for b in got] == [b.r for b in ref]
    np.testing.assert_allclose(np.array([b.window for b in got]), np.array([b.window for b in ref]), atol=1e-6)

    s = EcgBeatStream(PREP, QRSDetector(FS))
    s.feed(x[:10])
    s.feed([], lost_before=5)
    with pytest.raises(EdgeseqError, match="stream sample 17"):
        s.feed([0.0, 0.1, np.nan])


def test_state_bounded_over_an_hour(mitdb):
    """Record 208 twice back to back (60 min): buffer sizes after an hour are those after minutes."""
    x = load_record(mitdb, "208").signal
    x = np.concatenate([x, x])
    s = EcgBeatStream(PREP, QRSDetector(FS))
    sizes, n_beats = [], 0
    for i in range(0, len(x), 3600):
        n_beats += len(s.feed(x[i:i + 3600]))
        if i and i % (3600 * 50) == 0:
            sizes.append(s.state_size())
    assert n_beats > 5800
    early, late = sizes[1], sizes[-1]  # after ~17 min and ~58 min
    assert set(early) == set(late)
    for key in ("ring", "filter_state", "interval_history", "irregularity_history", "template_history",
                "detector_history"):
        assert all(sz[key] == early[key] for sz in sizes[1:]), key
    assert early["interval_history"] == PREP.running_beats + 1
    assert early["irregularity_history"] == PREP.irregularity_beats
    assert early["template_history"] == PREP.template_beats
    for sz in sizes:
        assert sz["pending_beats"] <= 3
        assert sz["detector_pending"] < 64 and sz["detector_candidates"] < 64 and sz["detector_output"] <= 8
        assert sz["ring"] < 40000
    assert s.samples == len(x)


def test_beat_fields():
    b = Beat(r=5, window=np.zeros(PREP.window_length, np.float32), rr=np.zeros(9, np.float32), ok=True,
             reason=None)
    assert b.ok and b.reason is None and b.window.shape == (PREP.window_length,)
    with pytest.raises(EdgeseqError, match="Hz"):
        EcgBeatStream(PREP, QRSDetector(250.0))

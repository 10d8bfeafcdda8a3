import ast
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeseq.errors import EdgeseqError
from edgeseq.preprocess import qrs
from edgeseq.preprocess.qrs import (
    BEAT_SYMBOLS,
    QRSDetector,
    detect,
    match_beats,
    score,
    vf_episodes,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mitdb"


def load(rec, seconds=None):
    if not DATA.is_dir():
        pytest.skip(f"MIT-BIH data not found at {DATA}")
    import wfdb

    sampto = None if seconds is None else int(360 * seconds)
    sig = wfdb.rdrecord(str(DATA / rec), sampto=sampto)
    ann = wfdb.rdann(str(DATA / rec), "atr", sampto=sampto)
    sym = np.array(ann.symbol)
    ref = ann.sample[np.isin(sym, list(BEAT_SYMBOLS))]
    return sig.p_signal[:, sig.sig_name.index("MLII")], ref, vf_episodes(ann.symbol, ann.sample)


def run(x, sizes, fs=360.0, **params):
    """Streams x in the given chunk sizes (cycled); returns detections and emission lateness."""
    det = QRSDetector(fs, **params)
    out, late, i, k = [], [], 0, 0
    while i < len(x):
        n = int(sizes[k % len(sizes)])
        k += 1
        b = det.process(x[i : i + n])
        i += n
        late += [i - 1 - (r + det.delay_samples) for r in b]
        out.append(b)
    out.append(det.flush())
    return np.concatenate(out), late


def synthetic_ecg(seconds, fs=360.0, seed=0):
    """QRS-like spikes, T waves, baseline wander and noise; returns signal and true R peaks."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    t = np.arange(n) / fs
    beats = 0.3 + np.cumsum(np.r_[0.0, rng.uniform(0.6, 1.0, size=int(seconds / 0.6) + 2)])
    beats = beats[beats < seconds - 1]
    x = 0.3 * np.sin(2 * np.pi * 0.2 * t) + 0.02 * rng.normal(size=n)
    for b in beats:
        i0, i1 = int((b - 0.1) * fs), int((b + 0.5) * fs)
        tt = t[i0:i1] - b
        x[i0:i1] += np.exp(-0.5 * (tt / 0.012) ** 2) + 0.25 * np.exp(-0.5 * ((tt - 0.3) / 0.05) ** 2)
    return x, np.round(beats * fs).astype(np.int64)


@pytest.fixture(scope="module")
def excerpt():
    x, ref, _ = load("208", seconds=180)  # PVCs, fusion beats, noise: a demanding excerpt
    return x


def test_chunk_invariance_on_real_record(excerpt):
    whole, _ = run(excerpt, [len(excerpt)])
    assert len(whole) > 250
    rng = np.random.default_rng(0)
    for sizes in ([1], [37], [360], rng.integers(0, 3000, size=500)):
        got, _ = run(excerpt, sizes)
        np.testing.assert_array_equal(got, whole)


def test_fixed_delay_with_chunks_of_one(excerpt):
    _, late = run(excerpt[: 360 * 60], [1])
    assert late and set(late) == {0}  # emitted exactly when sample r + delay arrived


def test_never_early_with_large_chunks(excerpt):
    _, late = run(excerpt, [1000])
    assert min(late) >= 0 and max(late) < 1000


@pytest.mark.parametrize("rec", ["101", "112"])
def test_clean_records_full(rec):
    x, ref, vf = load(rec)
    s = score(ref, detect(x, 360.0), 360.0, exclude=vf)
    assert s["se"] >= 0.995 and s["ppv"] >= 0.995, s


def test_other_sample_rate():
    from scipy.signal import resample_poly

    x, ref, _ = load("119", seconds=600)
    x250 = resample_poly(x, 25, 36)
    ref250 = np.round(ref * 250 / 360).astype(np.int64)
    s = score(ref250, detect(x250, 250.0), 250.0)
    assert s["se"] >= 0.995 and s["ppv"] >= 0.995, s
    d = QRSDetector(250.0)
    assert abs(d.delay_samples / 250.0 - QRSDetector(360.0).delay_samples / 360.0) < 0.02


def test_synthetic_stream_buffers_stay_bounded():
    x, beats = synthetic_ecg(1800)
    det = QRSDetector(360.0)
    D, refr, frame = det.delay_samples, 0.2 * 360, det.params["frame_s"] * 360
    sizes, out = [], []
    for i in range(0, len(x), 997):
        out.append(det.process(x[i : i + 997]))
        sizes.append(det.state_size())
    out.append(det.flush())
    peak = {k: max(s[k] for s in sizes) for k in sizes[0]}
    assert len({s["history"] for s in sizes}) == 1  # fixed-size histories
    # Candidates are MWI local maxima (>= 2 samples apart) within the look-ahead; beats wait at
    # most the delay and are a refractory period apart.
    assert peak["pending"] < frame and peak["candidates"] <= D // 2 and peak["recent"] <= refr // 2 + 1
    assert peak["output"] <= D // refr + 1 and peak["levels"] <= 3 * det.params["n_avg"]
    s = score(beats, np.concatenate(out), 360.0, window_s=0.05)
    assert s["se"] == 1.0 and s["ppv"] == 1.0, s


def test_noise_lead_in_and_recovery_after_amplitude_drop():
    fs = 360.0
    x, beats = synthetic_ecg(90, seed=1)
    lead = int(3 * fs)
    y = np.r_[0.02 * np.random.default_rng(2).normal(size=lead), x]
    beats = beats + lead
    drop = lead + int(30 * fs)
    y[drop:] /= 10  # e.g. an electrode losing contact: the levels must be learnt again
    det = detect(y, fs)
    mr, md, miss, false = match_beats(beats, det, fs, window_s=0.05)
    assert len(false) == 0  # no beats invented from the noise before the first QRS
    assert np.all(beats[miss] > drop) and np.all(beats[miss] < drop + 5 * fs), beats[miss] / fs


def test_config_round_trip_needs_no_scipy(excerpt, monkeypatch):
    det = QRSDetector(360.0, th=0.3)
    cfg = json.loads(json.dumps(det.config()))
    expected = detect(excerpt, 360.0, th=0.3)

    def no_scipy(*a, **k):
        raise AssertionError("design_bandpass called on the device path")

    monkeypatch.setattr(qrs, "design_bandpass", no_scipy)
    clone = QRSDetector.from_config(cfg)
    assert clone.config() == cfg and clone.delay_samples == det.delay_samples
    got = np.concatenate([clone.process(excerpt), clone.flush()])
    np.testing.assert_array_equal(got, expected)


def test_reset_and_flush_start_a_new_stream(excerpt):
    det = QRSDetector(360.0)
    a = np.concatenate([det.process(excerpt[:36000]), det.flush()])
    det.process(excerpt[50000:60000])
    det.reset()
    b = np.concatenate([det.process(excerpt[:36000]), det.flush()])
    np.testing.assert_array_equal(a, b)


def test_match_beats_nearest_first_one_to_one():
    fs = 100.0  # window 0.15 s = 15 samples
    ref = [100, 120, 300, 500]
    det = [112, 118, 320, 700]
    mr, md, miss, false = match_beats(ref, det, fs)
    # 118 is nearest to 120 (2) and taken first, so 100 gets 112; 320 is 20 away from 300.
    assert mr.tolist() == [0, 1] and md.tolist() == [0, 1]
    assert miss.tolist() == [2, 3] and false.tolist() == [2, 3]
    s = score(ref, det, fs)
    assert (s["tp"], s["fn"], s["fp"]) == (2, 2, 2) and s["se"] == 0.5 and s["ppv"] == 0.5


def test_match_window_edges_and_unsorted_detections():
    mr, md, miss, false = match_beats([1000], [1054], 360.0)  # 150 ms = 54 samples: inside
    assert len(mr) == 1 and len(false) == 0
    mr, md, miss, false = match_beats([1000], [1055], 360.0)
    assert len(mr) == 0 and miss.tolist() == [0] and false.tolist() == [0]
    mr, md, _, _ = match_beats([10, 500], [505, 12], 360.0)
    assert mr.tolist() == [0, 1] and md.tolist() == [1, 0]
    assert score([], [], 360.0)["tp"] == 0


def test_score_exclusion_and_vf_episodes():
    sym = ["N", "[", "!", "!", "]", "N", "[", "!"]
    smp = [100, 200, 250, 300, 400, 500, 900, 950]
    eps = vf_episodes(sym, smp)
    assert eps[0] == (200, 400) and eps[1][0] == 900 and eps[1][1] > 10**9
    assert vf_episodes(["!", "]", "N"], [5, 10, 20]) == [(0, 10)]
    s = score([100, 500], [100, 300, 500, 950], 360.0, exclude=eps)
    assert (s["tp"], s["fn"], s["fp"]) == (2, 0, 0)
    assert "!" not in BEAT_SYMBOLS and "V" in BEAT_SYMBOLS


def test_bad_input_is_reported_with_the_sample():
    det = QRSDetector(360.0)
    det.process(np.zeros(500))
    chunk = np.zeros(100)
    chunk[7] = np.nan
    with pytest.raises(EdgeseqError, match=r"non-finite.*stream sample 507"):
        det.process(chunk)
    with pytest.raises(EdgeseqError, match=r"1-D.*\(2, 50\).*sample 500"):
        det.process(np.zeros((2, 50)))
    with pytest.raises(EdgeseqError, match="unknown"):
        QRSDetector(360.0, treshold=0.3)
    with pytest.raises(EdgeseqError, match="sample rate"):
        QRSDetector(0.0)
    assert det.process(np.zeros(10)).dtype == np.int64  # a rejected chunk leaves the state intact


def test_device_module_imports_only_numpy_and_stdlib():
    tree = ast.parse(Path(qrs.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in top if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= {"numpy", "edgeseq", "__future__"} | set(sys.stdlib_module_names)

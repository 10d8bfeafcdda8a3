"""ECG preprocessing: features a device can compute beat by beat, and a config that needs no scipy."""

import numpy as np
import pytest

from edgeseq.data.mitdb import load_record
from edgeseq.errors import EdgeseqError
from edgeseq.preprocess import filters
from edgeseq.preprocess.ecg import RR_FEATURES, EcgPreprocessing


@pytest.fixture(scope="module")
def prep():
    return EcgPreprocessing()


@pytest.fixture(scope="module")
def rec(sample):
    return load_record(sample, "223")


def test_rr_intervals_by_hand(prep):
    r = np.array([0, 360, 700, 1100, 1400, 1800])  # intervals 1.0, 0.944, 1.111, 0.833, 1.111 s
    feats, ok = prep.rr_features(r)
    assert ok.tolist() == [False, True, True, True, True, False]
    rr = np.diff(r) / 360.0
    row = feats[2]  # beat 3 (r = 1100)
    col = {name: i for i, name in enumerate(RR_FEATURES)}
    assert row[col["pre_rr"]] == pytest.approx(rr[2])
    assert row[col["post_rr"]] == pytest.approx(rr[3])
    assert row[col["local_rr"]] == pytest.approx(rr[:3].mean())
    assert row[col["pre_rr_norm"]] == pytest.approx(rr[2] / rr[:3].mean())
    assert row[col["post_rr_norm"]] == pytest.approx(rr[3] / rr[:3].mean())


def test_features_are_causal(prep, rec):
    """A beat's features depend on the past and its own next R peak only: changing what comes
    after that leaves them untouched, so a streaming device gets the same numbers."""
    r = rec.beat_samples
    m = 400
    w_all, f_all, i_all = prep.beats(rec.signal, r)
    sig = rec.signal.copy()
    sig[r[m] + 400:] = 0.3 * np.random.default_rng(0).normal(size=len(sig) - r[m] - 400)
    w_cut, f_cut, i_cut = prep.beats(sig, r[:m + 1])
    n = np.searchsorted(i_cut, m - 1)  # beats before m - 1 have their next R peak inside the cut
    assert np.array_equal(i_all[:n], i_cut[:n])
    np.testing.assert_allclose(f_cut[:n], f_all[:n], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(w_cut[:n], w_all[:n])


def test_shapes_and_columns(prep, rec):
    w, f, idx = prep.beats(rec.signal, rec.beat_samples)
    assert w.shape == (len(idx), prep.window_length) and w.dtype == np.float32
    assert f.shape == (len(idx), len(RR_FEATURES)) and np.isfinite(f).all()
    assert prep.window_length == 126  # 0.7 s at 360 Hz, every second sample
    corr = f[:, RR_FEATURES.index("template_corr")]
    v = rec.beat_labels[idx] == 2
    assert np.median(corr[~v]) > 0.9 > np.median(corr[v])  # ventricular beats unlike the template


def test_config_round_trip_needs_no_scipy(prep, rec, monkeypatch):
    def no_scipy(*a, **k):
        raise AssertionError("design_bandpass called on the device path")

    monkeypatch.setattr(filters, "design_bandpass", no_scipy)
    again = EcgPreprocessing.from_config(prep.config())
    a = prep.beats(rec.signal[:20000], rec.beat_samples[rec.beat_samples < 20000])
    b = again.beats(rec.signal[:20000], rec.beat_samples[rec.beat_samples < 20000])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_bad_input(prep, rec):
    sig = rec.signal[:5000].copy()
    sig[1234] = np.nan
    with pytest.raises(EdgeseqError, match="NaN or infinite values .*sample 1234"):
        prep.beats(sig, np.array([1000, 2000, 3000]))
    with pytest.raises(EdgeseqError, match="one lead"):
        prep.beats(np.zeros((100, 2)), np.array([10]))
    with pytest.raises(EdgeseqError, match="increasing"):
        prep.beats(rec.signal[:5000], np.array([3000, 1000]))
    with pytest.raises(EdgeseqError, match="unknown ECG preprocessing keys"):
        EcgPreprocessing.from_config({**prep.config(), "colour": "red"})

"""ECG preprocessing shared by training (host) and inference (device): numpy only.

A beat becomes model input here: the causal band-pass filter, a window of samples around the R
peak, and per-beat context features (RR intervals, rhythm irregularity, likeness to the record's
recent beats). The whole recipe is a JSON-serialisable config stored in the bundle, so the device
rebuilds exactly what the model was trained on, filter coefficients included, without scipy.

Every context feature looks only at the past (and the beat itself, plus the next R peak for
``post_rr``), so a device that sees beats one at a time computes the same numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import EdgeseqError
from .filters import sosfilt

#: A lost (filled) stretch this close to an R peak may have held its upslope or its top; the
#: detector then puts the peak up to tens of samples off, so the RR intervals that end at it are
#: as uncertain as a window with lost samples. 0.15 s spans the QRS complex either side.
PEAK_GAP_MARGIN_S = 0.15


def _filled_between(filled: np.ndarray, a, b) -> np.ndarray:
    """Per pair, whether ``filled[a:b + 1]`` (clipped to the signal) holds a filled sample."""
    c = np.concatenate([[0], np.cumsum(filled)])
    return c[np.clip(np.asarray(b) + 1, 0, len(filled))] - c[np.clip(np.asarray(a), 0, len(filled))] > 0


def peaks_near_gap(filled, r_samples, margin: int) -> np.ndarray:
    """Per R peak, whether a filled sample lies within ``margin`` samples of it.

    The one rule for scoring beats around lost samples: a beat is unscored when its window
    touches a filled sample, or when one of its RR intervals does -- spans one, or ends at a
    peak this close to one (its position is then a guess). :meth:`EcgPreprocessing.beats` applies
    it offline (``filled=``); :class:`~edgeseq.preprocess.stream.EcgBeatStream` per peak.
    """
    r = np.asarray(r_samples, dtype=np.int64)
    return _filled_between(np.asarray(filled, dtype=bool), r - int(margin), r + int(margin))


#: Names of the per-beat context features (the ``rr`` array), in column order.
RR_FEATURES = ("pre_rr", "post_rr", "local_rr", "pre_rr_norm", "post_rr_norm", "local_rr_norm",
               "rr_irregularity", "template_corr", "template_log_gain")


@dataclass
class EcgPreprocessing:
    """How raw ECG samples become (window, RR features) for one beat.

    The band-pass is causal (the device filters as samples arrive), so training filters the same
    way instead of using zero-phase filtering that no stream could reproduce.
    """

    sample_rate: float = 360.0
    lead: str = "MLII"
    band_hz: tuple[float, float] = (0.5, 40.0)
    band_order: int = 2
    sos: list[list[float]] = field(default_factory=list)
    pre_s: float = 0.25
    post_s: float = 0.45
    decimate: int = 2
    local_beats: int = 10
    running_beats: int = 200
    irregularity_beats: int = 16
    template_beats: int = 32

    def __post_init__(self):
        self.band_hz = tuple(float(f) for f in self.band_hz)
        if not self.sos:
            from .filters import design_bandpass  # host only: scipy designs, the device reads numbers

            self.sos = np.asarray(design_bandpass(self.sample_rate, *self.band_hz,
                                                  order=self.band_order)).tolist()

    @property
    def pre(self) -> int:
        return int(round(self.pre_s * self.sample_rate))

    @property
    def post(self) -> int:
        return int(round(self.post_s * self.sample_rate))

    @property
    def gap_margin(self) -> int:
        """:data:`PEAK_GAP_MARGIN_S` in samples."""
        return int(round(PEAK_GAP_MARGIN_S * self.sample_rate))

    @property
    def window_length(self) -> int:
        """Steps the model sees per beat (after decimation)."""
        return len(range(-self.pre, self.post, self.decimate))

    def config(self) -> dict:
        cfg = asdict(self)
        cfg["band_hz"] = list(self.band_hz)
        return cfg

    @classmethod
    def from_config(cls, cfg: dict) -> "EcgPreprocessing":
        known = set(cls.__dataclass_fields__)
        unknown = set(cfg) - known
        if unknown:
            raise EdgeseqError(f"unknown ECG preprocessing keys in bundle: {', '.join(sorted(unknown))}")
        return cls(**cfg)

    def filter(self, signal: np.ndarray) -> np.ndarray:
        """Causal band-pass of a whole signal from its first sample."""
        return sosfilt(self.sos, signal)

    def windows(self, filtered: np.ndarray, r_samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Beat windows ``(n_valid, window_length)`` float32 and the mask of beats that fit."""
        r = np.asarray(r_samples, dtype=np.int64)
        offsets = np.arange(-self.pre, self.post, self.decimate)
        ok = (r - self.pre >= 0) & (r + offsets[-1] < len(filtered))
        return filtered[r[ok, None] + offsets].astype(np.float32), ok

    def rr_features(self, r_samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The interval columns of :data:`RR_FEATURES` per beat ``(n_valid, 7)`` in seconds (and
        ratios), and the mask of beats that have both a previous and a next beat.

        Averages are causal (only intervals up to the beat's own previous RR), so a device that
        sees beats one at a time computes the same numbers.
        """
        r = np.asarray(r_samples, dtype=np.int64)
        n = len(r)
        ok = np.zeros(n, dtype=bool)
        if n < 3:
            return np.zeros((0, len(RR_FEATURES) - 2), np.float32), ok
        rr = np.diff(r) / self.sample_rate  # rr[j] = r[j+1] - r[j]
        csum = np.concatenate([[0.0], np.cumsum(rr)])
        i = np.arange(1, n - 1)  # beats with a previous and a next interval
        pre, post = rr[i - 1], rr[i]
        lo_local = np.maximum(0, i - self.local_beats)
        lo_run = np.maximum(0, i - self.running_beats)
        local = (csum[i] - csum[lo_local]) / (i - lo_local)
        running = (csum[i] - csum[lo_run]) / (i - lo_run)
        irr = self._irregularity(rr, i) / local
        feats = np.stack([pre, post, local, pre / running, post / running, local / running, irr], axis=1)
        ok[i] = True
        return feats.astype(np.float32), ok

    def _irregularity(self, rr: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Median |successive RR difference| over the ``irregularity_beats`` intervals before the
        beat's own. High in atrial fibrillation, near zero in sinus rhythm even with a few ectopic
        beats (the median ignores them): it tells a premature beat in a regular rhythm (likely
        ectopic) from one in an irregular rhythm (often not)."""
        k = self.irregularity_beats
        d = np.abs(np.diff(rr))  # d[m] = |rr[m + 1] - rr[m]|
        win = np.lib.stride_tricks.sliding_window_view(np.concatenate([np.full(k - 1, np.nan), d]), k)
        # Beat i's own interval is rr[i - 1], so its last difference is d[i - 3] = win[i - 3][-1].
        out = np.zeros(len(i))
        have = i >= 3
        out[have] = np.nanmedian(win[i[have] - 3], axis=1)
        return out

    def template_features(self, windows: np.ndarray) -> np.ndarray:
        """``(template_corr, template_log_gain)`` of each window against the sample-wise median of
        the ``template_beats`` windows before it (the record's dominant beat, mostly normal).

        A beat's shape relative to the patient's own beats transfers between patients better than
        its absolute shape: a bundle-branch-block record has wide normal beats, and only a beat
        unlike its neighbours is likely ventricular. The first beat is its own template.
        """
        X = np.asarray(windows, dtype=np.float64)
        n, k = len(X), self.template_beats
        out = np.zeros((n, 2))
        if n == 0:
            return out.astype(np.float32)
        T = np.empty_like(X)
        T[0] = X[0]
        for j in range(1, min(k, n)):
            T[j] = np.median(X[:j], axis=0)
        # Beats k.. in chunks: the k windows before each beat as a (chunk, T, k) view, and
        # partition (not sort) for the median, which dominates preprocessing time.
        mid = (k - 1) // 2, k // 2
        X32 = X.astype(np.float32)
        for s in range(k, n, 1024):
            e = min(n, s + 1024)
            P = np.partition(np.lib.stride_tricks.sliding_window_view(X32[s - k:e - 1], k, axis=0), mid, axis=2)
            T[s:e] = 0.5 * (P[..., mid[0]] + P[..., mid[1]])
        a = X - X.mean(axis=1, keepdims=True)
        b = T - T.mean(axis=1, keepdims=True)
        aa, bb = (a * a).sum(axis=1), (b * b).sum(axis=1)
        out[:, 0] = (a * b).sum(axis=1) / np.sqrt(aa * bb + 1e-12)
        out[:, 1] = 0.5 * np.log((aa + 1e-12) / (bb + 1e-12))
        return out.astype(np.float32)

    def touches_gap(self, filled, r_samples) -> np.ndarray:
        """Per R peak: its window, or an RR interval from its previous or to its next peak,
        touches a filled sample (see :func:`peaks_near_gap`)."""
        f = np.asarray(filled, dtype=bool)
        r = np.asarray(r_samples, dtype=np.int64)
        if len(r) == 0:
            return np.zeros(0, dtype=bool)
        offsets = np.arange(-self.pre, self.post, self.decimate)
        window = _filled_between(f, r - self.pre, r + offsets[-1])
        near = peaks_near_gap(f, r, self.gap_margin)
        interval = _filled_between(f, r[:-1], r[1:]) | near[:-1] | near[1:]  # interval j: r[j] -> r[j + 1]
        bad = window.copy()
        bad[1:] |= interval  # the interval before each beat
        bad[:-1] |= interval  # and the one after
        return bad

    def beats(self, signal: np.ndarray, r_samples: np.ndarray, *, filtered: bool = False, filled=None):
        """Model inputs for every usable beat of one signal.

        Returns ``(windows, rr, index)`` where ``rr`` holds the :data:`RR_FEATURES` columns and
        ``index`` the positions in ``r_samples`` of the beats kept (those whose window fits in
        the signal and that have both neighbours). ``filled`` (a mask over ``signal`` of samples
        that were lost and interpolated) also leaves out every beat whose window or RR
        intervals touch a filled sample (:func:`peaks_near_gap`): counted, never classified.
        """
        x = np.asarray(signal, dtype=np.float64)
        if x.ndim != 1:
            raise EdgeseqError(f"ECG signal must be one lead (1-D), got shape {x.shape}")
        bad = ~np.isfinite(x)
        if bad.any():
            raise EdgeseqError(f"ECG signal has NaN or infinite values (first at sample {int(np.argmax(bad))})")
        r = np.asarray(r_samples, dtype=np.int64)
        if len(r) and (np.any(np.diff(r) <= 0) or r[0] < 0 or r[-1] >= len(x)):
            raise EdgeseqError("R-peak positions must be increasing and inside the signal")
        y = x if filtered else self.filter(x)
        feats, ok_rr = self.rr_features(r)
        all_windows, ok_win = self.windows(y, r)
        shape = self.template_features(all_windows)  # templates from every beat that fits
        keep = ok_rr & ok_win
        if filled is not None:
            keep &= ~self.touches_gap(filled, r)
        index = np.flatnonzero(keep)
        rr_rows = np.cumsum(ok_rr) - 1  # row of each beat in ``feats``
        win_rows = np.cumsum(ok_win) - 1
        rr = np.concatenate([feats[rr_rows[index]], shape[win_rows[index]]], axis=1)
        return all_windows[win_rows[index]], rr, index

"""ECG beats from a live sample stream: the device-side twin of ``EcgPreprocessing.beats``.

Samples arrive in chunks of any size (a serial bridge), possibly with samples lost on the way.
:class:`EcgBeatStream` filters them, finds R peaks with the streaming :class:`QRSDetector` and
turns every beat into the same ``(window, rr)`` model input that the host computes offline with::

    peaks = np.concatenate([detector.process(signal), detector.flush()])
    windows, rr, idx = prep.beats(signal, peaks)

On a gap-free stream the beats returned by ``feed`` (and ``flush``) are those of the offline call,
in order, whatever the chunking: same R peaks, the same windows (the band-pass runs chunk by chunk
from zero state, equal to the whole-signal filter to rounding), and bit-identical interval
features. A beat is returned once the next R peak is detected (``post_rr`` needs it): at most one
RR interval plus ``detector.delay_samples`` after its R peak.

Lost samples (``lost_before=n``): up to ``max_fill_s`` seconds are filled by linear interpolation
so the filter and the detector stay aligned with time; a beat whose window, previous or next RR
interval touches a filled sample comes back with ``ok=False`` (count it, do not classify it), and
such intervals and windows stay out of the running RR and template histories. A longer gap ends the
segment as a flush would, drops the beat still waiting for its neighbour, resets the filter, the
detector and the histories, and the stream goes on at the absolute index after the gap.

Device side: numpy and the standard library only; every buffer is bounded (see ``state_size``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..errors import EdgeseqError
from .ecg import RR_FEATURES, EcgPreprocessing, peaks_near_gap
from .filters import SOSFilter
from .qrs import QRSDetector

__all__ = ["Beat", "EcgBeatStream"]


@dataclass
class Beat:
    """One beat ready for the model (``ok``) or to be counted but not classified (``not ok``)."""

    r: int  # R-peak index in the stream (0 = first sample fed; lost samples count as indices)
    window: np.ndarray  # float32 (prep.window_length,)
    rr: np.ndarray  # float32 (len(RR_FEATURES),)
    ok: bool  # False: the window or the pre/post RR interval touches lost (filled) samples
    reason: str | None = None  # why not ok


class _Peak:
    """A detected R peak while its beat is being assembled."""

    __slots__ = ("r", "cfill", "filled_at", "pre", "pre_clean", "post", "post_clean", "feats",
                 "win", "win_state", "win_filled", "win_bad", "shape")

    def __init__(self, r: int, cfill: int, filled_at: bool):
        self.r = r
        self.cfill = cfill  # filled samples in the segment up to and including r
        self.filled_at = filled_at  # a filled sample near r: its position, so its RR intervals, uncertain
        self.pre = self.post = None  # intervals in seconds
        self.pre_clean = self.post_clean = True
        self.feats = None  # the 7 interval features (float64)
        self.win = None
        self.win_state = None  # None: samples not all there yet, "cut", "nofit"
        self.win_filled = False
        self.win_bad = False  # the window (float32) holds a non-finite value
        self.shape = None  # (template_corr, template_log_gain)


class EcgBeatStream:
    """Streaming ``prep.beats``: feed samples as they arrive, get finished beats back.

    ``feed(x, lost_before=0)``: ``x`` is a 1-D chunk of physical samples (mV, any length, also
    0); ``lost_before`` says how many samples went missing just before ``x[0]`` (reported with an
    empty chunk it applies before the next non-empty one). Returns the beats finished by this
    chunk, ordered by ``r``. ``flush()`` ends the stream: what the detector still holds is decided,
    the beats that can be finished are returned and the stream starts again at index 0 (the
    counters keep counting).

    Counters: ``samples`` (received), ``lost_samples`` (reported lost), ``filled_samples``
    (interpolated), ``beats_detected`` (R peaks), ``beats_unscored`` (no previous or next beat in
    their segment, or a window that does not fit in it: offline drops them too), ``dropped``
    (returned with ``ok=False``, or discarded by a reset), ``resets`` (gaps too long to fill, or a
    state gone non-finite), ``overflow_samples`` (samples fed while the state went non-finite:
    lost, as in ``lost_samples``, not in ``samples``).
    Once flushed, ``beats_detected == returned ok + dropped + beats_unscored``.
    """

    def __init__(self, prep: EcgPreprocessing, detector: QRSDetector, *, max_fill_s: float = 2.0,
                 block: int = 1024):
        if abs(float(detector.fs) - float(prep.sample_rate)) > 1e-9:
            raise EdgeseqError(f"detector runs at {detector.fs:g} Hz but preprocessing expects "
                               f"{prep.sample_rate:g} Hz")
        if not np.isfinite(max_fill_s) or max_fill_s < 0:
            raise EdgeseqError(f"max_fill_s must be a non-negative number of seconds, got {max_fill_s}")
        self.prep = prep
        self.detector = detector
        self.fs = float(prep.sample_rate)
        self.max_fill = int(np.floor(float(max_fill_s) * self.fs))
        self._B = max(1, int(block))  # samples through filter/detector per step (bounds the ring)
        self._offsets = np.arange(-prep.pre, prep.post, prep.decimate)
        self._pre = int(prep.pre)
        self._last_off = int(self._offsets[-1])
        k = int(prep.template_beats)
        self._k = k
        self._mid = ((k - 1) // 2, k // 2)
        # The ring keeps every sample a window of a peak still to come (or pending) can need.
        self._keep = self._B + int(detector.delay_samples) + self._pre + max(self._last_off, 0) + 4
        self._cap = 2 * self._keep
        self._filter = SOSFilter(prep.sos)
        self._buf = np.zeros(self._cap)
        self._mbuf = np.zeros(self._cap, dtype=bool)
        self.samples = 0
        self.lost_samples = 0
        self.filled_samples = 0
        self.beats_detected = 0
        self.beats_unscored = 0
        self.dropped = 0
        self.resets = 0
        self.overflow_samples = 0
        self._origin = 0  # stream index of the current segment's first sample
        self._pending_lost = 0
        self.detector.reset()  # a detector used before would count from its old stream
        self._new_segment()

    # ---- public ---------------------------------------------------------------------------
    @property
    def position(self) -> int:
        """Stream index of the next sample (lost samples included, a pending gap not yet)."""
        return self._origin + self._n

    def feed(self, x, lost_before: int = 0) -> list[Beat]:
        """Feeds one chunk; returns the beats it finished (see the class docstring)."""
        x = self._check(x, lost_before)
        self.lost_samples += int(lost_before)
        self._pending_lost += int(lost_before)
        out: list[Beat] = []
        if len(x) == 0:
            return out
        gap, self._pending_lost = self._pending_lost, 0
        if gap:
            if self._n == 0:  # nothing in this segment yet: the segment just starts later
                self._origin += gap
            elif gap <= self.max_fill:
                last = self._last_x
                t = np.arange(1, gap + 1) / (gap + 1.0)
                self.filled_samples += gap
                self._push(last + (x[0] - last) * t, True, out)
            else:
                end = self._origin + self._n
                self._end_segment(out, reset=True)
                self.resets += 1
                self._new_segment()
                self._origin = end + gap
        with np.errstate(over="ignore", invalid="ignore"):
            self._push(x, False, out)
        if not self._healthy():
            self._overflow(x, out)
            return out
        self.samples += len(x)
        self._last_x = float(x[-1])
        return out

    def _healthy(self) -> bool:
        """Is every state that carries over to the next chunk finite? A huge but finite sample
        (``1e200`` from a text line) squares to infinity inside the detector, and from then on
        every threshold and window would be NaN: the stream must notice and start over."""
        tail_ok = not self._nf or np.isfinite(self._buf[max(0, self._nf - 64):self._nf]).all()
        return self._filter.state_is_finite() and self.detector.state_is_finite() and bool(tail_ok)

    def _overflow(self, x: np.ndarray, out: list) -> None:
        """The state went non-finite while ``x`` went through: ``x`` counts as lost
        (``overflow_samples``), the beats it finished are dropped (not ok), the beats still being
        assembled are unscored, and a new segment (zero filter, fresh detector) starts after ``x``."""
        for i, b in enumerate(out):
            if b.ok:
                self.dropped += 1
                out[i] = Beat(b.r, b.window, b.rr, False, "filter overflow")
        self.beats_unscored += len(self._pending)
        self._pending.clear()
        end = self._origin + self._n
        self.overflow_samples += len(x)
        self.lost_samples += len(x)
        self.resets += 1
        self.detector.reset()
        self._new_segment()
        self._origin = end

    def flush(self) -> list[Beat]:
        """End of stream: decides what the detector holds, returns what can be finished, resets;
        the next ``feed`` starts a new stream at index 0."""
        out: list[Beat] = []
        self._end_segment(out, reset=False)
        self._new_segment()
        self._origin = 0
        self._pending_lost = 0
        return out

    def state_size(self) -> dict:
        """Lengths of all internal buffers: bounded whatever the stream length."""
        det = self.detector.state_size()
        return {
            "ring": len(self._buf) + len(self._mbuf),
            "filter_state": self._filter.n_states,
            "pending_beats": len(self._pending),
            "interval_history": len(self._csum),
            "irregularity_history": len(self._diffs),
            "template_history": len(self._tmpl),
            **{f"detector_{k}": v for k, v in det.items()},
        }

    def counters(self) -> dict:
        return {k: getattr(self, k) for k in ("samples", "lost_samples", "filled_samples", "beats_detected",
                                              "beats_unscored", "dropped", "resets", "overflow_samples")}

    # ---- segments -------------------------------------------------------------------------
    def _new_segment(self) -> None:
        """Zero filter state, a fresh detector, empty histories; the segment holds no sample."""
        self._filter.reset()
        self._n = 0  # samples (filled ones included) in the segment
        self._last_x = 0.0
        self._start = 0  # segment index of _buf[0]
        self._len = 0  # valid samples in _buf
        self._nf = 0  # _buf[:_nf] is band-passed, _buf[_nf:_len] still raw
        self._fill_before = 0  # filled samples before _buf[0]
        self._pending: deque[_Peak] = deque()  # peaks whose beat is not finished, in order
        self._last: _Peak | None = None
        # Clean-interval cumulative sums (the offline ``csum``, minus intervals that touch lost
        # samples): local / running means are differences of these, as offline.
        self._csum = deque([0.0], maxlen=int(self.prep.running_beats) + 1)
        self._diffs = deque(maxlen=int(self.prep.irregularity_beats))  # |successive RR differences|
        self._pdiff = None  # the newest difference, which enters the history one beat later
        self._prev_iv = None  # the previous interval, if clean
        self._tmpl = deque(maxlen=self._k)  # float32 windows for the template median

    def _end_segment(self, out: list, *, reset: bool) -> None:
        """Ends the segment as offline ends a record: the detector is flushed, windows that no
        longer fit are given up, and the last beat (no next beat) is unscored (or, at a reset,
        dropped)."""
        if self._n:
            for r in self.detector.flush().tolist():
                self._on_peak(self._origin + int(r))
        else:
            self.detector.reset()
        end = self._origin + self._n
        for p in self._pending:
            if p.win_state is None and p.r + self._last_off >= end:
                p.win_state = "nofit"
        self._advance(out)
        for p in self._pending:  # what is left waits for a next beat that will never come
            if reset and p.pre is not None and p.win_state == "cut":
                self.dropped += 1
            else:
                self.beats_unscored += 1
        self._pending.clear()

    # ---- samples --------------------------------------------------------------------------
    def _check(self, x, lost_before) -> np.ndarray:
        at = self._origin + self._n + self._pending_lost
        try:
            lost = int(lost_before)
        except (TypeError, ValueError):
            lost = -1
        if lost < 0 or lost != lost_before:
            raise EdgeseqError(f"lost_before must be a non-negative integer, got {lost_before!r} "
                               f"(stream at sample {at})")
        x = np.asarray(x)
        if x.ndim != 1:
            raise EdgeseqError(f"ECG stream expects a 1-D chunk of samples, got shape {x.shape} "
                               f"(stream at sample {at + lost})")
        if x.dtype.kind not in "biuf":
            raise EdgeseqError(f"ECG stream expects real numbers, got dtype {x.dtype} "
                               f"(stream at sample {at + lost})")
        x = x.astype(np.float64, copy=False)
        if not np.isfinite(x).all():
            bad = np.flatnonzero(~np.isfinite(x))
            i = int(bad[0])
            raise EdgeseqError(f"ECG stream: non-finite sample {x[i]} at stream sample {at + lost + i} "
                               f"(index {i} of the chunk); nothing of this chunk was used")
        return x

    def _push(self, x: np.ndarray, filled: bool, out: list) -> None:
        B = self._B
        for s in range(0, len(x), B):
            piece = x[s:s + B]
            n = len(piece)
            if self._len + n > self._cap:  # keep the newest samples, drop the rest
                self._filter_tail()
                d = self._len - self._keep
                self._fill_before += int(np.count_nonzero(self._mbuf[:d]))
                self._buf[:self._keep] = self._buf[d:self._len]
                self._mbuf[:self._keep] = self._mbuf[d:self._len]
                self._start += d
                self._len = self._keep
                self._nf = self._keep
            # Raw samples wait in the ring and are band-passed in batches (per-call overhead
            # dominates small chunks): when a window needs them, or once a block has gathered.
            self._buf[self._len:self._len + n] = piece
            self._mbuf[self._len:self._len + n] = filled
            self._len += n
            self._n += n
            if self._len - self._nf >= self._filter.block:
                self._filter_tail()
            for r in self.detector.process(piece).tolist():
                self._on_peak(self._origin + int(r))
            if self._pending:
                self._advance(out)

    def _filter_tail(self) -> None:
        """Band-passes the raw samples at the end of the ring, in place."""
        if self._nf < self._len:
            self._buf[self._nf:self._len] = self._filter.process(self._buf[self._nf:self._len])
            self._nf = self._len

    def _pos(self, r: int) -> int:
        """Position in the ring of stream index ``r`` (of the current segment)."""
        i = r - self._origin - self._start
        if not 0 <= i < self._len:
            raise AssertionError(f"sample {r} is no longer (or not yet) in the ring")
        return i

    # ---- beats ----------------------------------------------------------------------------
    def _on_peak(self, r: int) -> None:
        self.beats_detected += 1
        i = self._pos(r)
        cfill = self._fill_before + int(np.count_nonzero(self._mbuf[:i + 1]))
        p = _Peak(r, cfill, peaks_near_gap(self._mbuf[:self._len], [i], self.prep.gap_margin)[0])
        if r - self._pre < self._origin:
            p.win_state = "nofit"
        prev = self._last
        if prev is not None:
            v = (r - prev.r) / self.fs
            clean = cfill - prev.cfill + int(prev.filled_at) + int(p.filled_at) == 0
            if prev.pre is not None:
                prev.feats = self._rr_features(prev.pre, v)
            prev.post, prev.post_clean = v, clean
            p.pre, p.pre_clean = v, clean
            self._add_interval(v, clean)
        self._last = p
        self._pending.append(p)

    def _add_interval(self, v: float, clean: bool) -> None:
        if self._pdiff is not None:
            self._diffs.append(self._pdiff)
        self._pdiff = abs(v - self._prev_iv) if clean and self._prev_iv is not None else None
        self._prev_iv = v if clean else None
        if clean:
            self._csum.append(self._csum[-1] + v)

    def _rr_features(self, pre: float, post: float) -> np.ndarray:
        """The interval columns for a beat, from the histories as they stand before its ``post``
        interval enters them (offline ``rr_features``, the same float operations)."""
        c = self._csum
        n = len(c) - 1
        if n:
            nl = min(n, int(self.prep.local_beats))
            local = (c[-1] - c[-1 - nl]) / nl
            nr = min(n, int(self.prep.running_beats))
            running = (c[-1] - c[-1 - nr]) / nr
        else:  # no clean interval yet (only with lost samples): the beat's own
            local = running = pre
        irr = _median(self._diffs) / local if self._diffs else 0.0
        return np.array([pre, post, local, pre / running, post / running, local / running, irr])

    def _template(self, X: np.ndarray) -> np.ndarray:
        """(template_corr, template_log_gain) as offline ``template_features``, bit for bit."""
        h = self._tmpl
        X64 = X.astype(np.float64)[None, :]
        if not h:
            T = X64
        elif len(h) < self._k:
            T = np.median(np.asarray(h, dtype=np.float64), axis=0)[None, :]
        else:
            P = np.partition(np.stack(h), self._mid, axis=0)
            T = (0.5 * (P[self._mid[0]] + P[self._mid[1]])).astype(np.float64)[None, :]
        a = X64 - X64.mean(axis=1, keepdims=True)
        b = T - T.mean(axis=1, keepdims=True)
        aa, bb = (a * a).sum(axis=1), (b * b).sum(axis=1)
        corr = (a * b).sum(axis=1) / np.sqrt(aa * bb + 1e-12)
        gain = 0.5 * np.log((aa + 1e-12) / (bb + 1e-12))
        return np.array([corr[0], gain[0]])

    def _advance(self, out: list) -> None:
        """Cuts the windows whose samples are all there, then finishes beats in order."""
        end = self._origin + self._n
        for p in self._pending:
            if p.win_state is not None:
                continue
            if p.r + self._last_off >= end:
                break
            self._filter_tail()
            i = self._pos(p.r)
            with np.errstate(over="ignore", invalid="ignore"):
                p.win = self._buf[i + self._offsets].astype(np.float32)
                p.shape = self._template(p.win)
            p.win_filled = bool(self._mbuf[i - self._pre:i + self._last_off + 1].any())
            # Finite in float64 is not enough: 1e150 mV is infinite in float32, the model's dtype.
            p.win_bad = not np.isfinite(p.win).all()
            if not p.win_filled and not p.win_bad:
                self._tmpl.append(p.win)
            p.win_state = "cut"
        pend = self._pending
        while pend:
            p = pend[0]
            if p.win_state is None:
                break
            if p.pre is None or p.win_state == "nofit":
                pend.popleft()
                self.beats_unscored += 1
                continue
            if p.post is None:
                break
            pend.popleft()
            reasons = []
            if p.win_filled:
                reasons.append("lost samples in window")
            with np.errstate(over="ignore", invalid="ignore"):
                rr = np.concatenate([p.feats, p.shape]).astype(np.float32)
            if p.win_bad or not np.isfinite(rr).all():
                reasons.append("non-finite window or features")
            if not p.pre_clean:
                reasons.append("lost samples in previous RR interval")
            if not p.post_clean:
                reasons.append("lost samples in next RR interval")
            ok = not reasons
            if not ok:
                self.dropped += 1
            assert rr.shape == (len(RR_FEATURES),)
            out.append(Beat(p.r, p.win, rr, ok, "; ".join(reasons) or None))


def _median(v) -> float:
    s = sorted(v)
    h = len(s) // 2
    return s[h] if len(s) % 2 else (s[h - 1] + s[h]) / 2.0

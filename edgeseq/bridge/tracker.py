"""Frames become meaning: the protocol half of the bridge (pyserial's ``Protocol`` to the decoder's
``Packetizer``).

:class:`StreamTracker` follows one device's stream: it checks sequence numbers (gaps, duplicates),
keeps the sample index continuous (every index never received is a lost sample, counted exactly),
turns raw values into physical units with the device's ``INFO`` and unwraps the device clock.
What comes out are :class:`Block` s of samples with the number of samples lost just before them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from . import protocol as P

_U32 = 1 << 32


@dataclass
class DevicePrediction:
    """A PREDICTION frame from the device (a sketch that classifies its own beats)."""

    sample: int  # unwrapped absolute sample index, as Block.first_index
    label: str | None  # None when label_index is 255 (a score only)
    label_index: int | None
    score: float


@dataclass
class Block:
    first_index: int  # absolute sample index (unwrapped) of samples[0]
    samples: np.ndarray  # (n, channels) float64 physical units
    lost_before: int  # samples missing between the previous block and this one
    device_time_us: int  # unwrapped device clock of samples[0]
    arrival: float  # host perf_counter() when the bytes carrying it were read


#: Device ERROR messages kept for the summary (all are counted; the text of the first and the
#: latest few is enough to diagnose, and a device that fails every frame must not grow memory).
KEEP_ERRORS = 10


def _finite_runs(x: np.ndarray, lost_before: int):
    """Splits physical samples (n, channels) into runs of finite rows: ``[(offset, rows, lost_before)]``
    plus the count of non-finite rows after the last run. A non-finite value is a lost sample, never
    a model input (``edgeseq.finite``): the filters downstream would carry it forever."""
    fin = np.isfinite(x)
    if fin.all():  # the common case in one reduction: a frame per sample makes this per-sample work
        return [(0, x, lost_before)], 0, 0
    ok = fin.all(axis=1)
    runs, lost, i, n = [], lost_before, 0, len(x)
    bad = int(n - ok.sum())
    while i < n:
        if not ok[i]:
            lost += 1
            i += 1
            continue
        j = i
        while j < n and ok[j]:
            j += 1
        runs.append((i, x[i:j], lost))
        lost, i = 0, j
    return runs, lost, bad


class StreamTracker:
    """Feed it decoded frames in order; it returns :class:`Block` s and keeps the counts.

    The one place that decides what is lost: every index the device numbered up to the highest one
    it announced (a SAMPLES frame's end, a HEARTBEAT's ``next_index``) is either in a delivered block
    or counted in ``lost_samples``, whatever arrived first. Indices count from 0 (the device's
    power-up, PROTOCOL.md section 3): samples numbered before the first index this host saw are
    lost too but kept apart in ``lost_before_first`` (``lost_samples`` is the loss within the
    stream seen), because a host that joins a device streaming for days would otherwise report
    its whole past; ``edgeseq serve`` reports their sum.

    Samples that arrive before the device's ``INFO`` are held (up to ``hold_frames``) and released
    once it comes; a frame pushed out of the hold, and whatever is still held when the stream ends
    (:meth:`finish`), is counted lost, so a lost or invalid ``INFO`` costs samples, never silence.
    Non-finite physical values (a float32 NaN, a scale that overflows) are lost samples too.
    """

    def __init__(self, *, hold_frames: int = 4096):
        self.info: P.DeviceInfo | None = None
        self.hold_frames = hold_frames
        self._held: deque = deque()
        self._last_seq: int | None = None
        self._recent_gaps = (0, 0)  # (events, frames) counted since the last samples frame
        self._next_index = 0  # unwrapped index of the next expected sample
        self._started = False  # has any index been seen (the first one is taken as it comes)
        self._clock_hi = 0
        self._last_ts: int | None = None
        self.samples = self.lost_samples = 0
        self.lost_before_first = self.nonfinite_samples = self.unreadable_frames = 0
        self.seq_gaps = self.lost_frames = self.duplicates = 0
        self.device_errors = 0
        self.device_error_messages: list[tuple[int, str]] = []
        self.unknown_frames: dict[str, int] = {}
        self.payload_errors = self.restarts = self.info_changes = 0
        self.heartbeats = 0
        self.device_predictions = 0
        # Device PREDICTION frames since the caller last took them (:meth:`take_predictions`).
        self._predictions: list[DevicePrediction] = []
        self.last_error: str | None = None
        self.finished = False

    @property
    def needs_info(self) -> bool:
        return self.info is None

    @property
    def held_frames(self) -> int:
        """Sample frames waiting for the device's INFO."""
        return len(self._held)

    # ---- frames ---------------------------------------------------------------------------
    def on_frame(self, frame: P.Frame, arrival: float) -> list[Block]:
        if not self._sequence(frame):
            return []
        try:
            if frame.type == P.SAMPLES:
                return self._samples(frame, arrival)
            if frame.type == P.INFO:
                return self._info(P.parse_info(frame), arrival)
            if frame.type == P.HEARTBEAT:
                self.heartbeats += 1
                return self._heartbeat(P.parse_heartbeat(frame), frame.timestamp_us, arrival)
            if frame.type == P.PREDICTION:
                # A device that classifies its own beats (PROTOCOL.md 3): no samples in it, the
                # caller compares it with its own prediction for the same index.
                idx, lab, score, label = P.parse_prediction(frame)
                self.device_predictions += 1
                self._predictions.append(DevicePrediction(
                    self._unwrap_index(idx), None if lab == P.NO_LABEL else label,
                    None if lab == P.NO_LABEL else lab, score))
                return []
            if frame.type == P.ERROR:
                code, msg = P.parse_error(frame)
                self.device_errors += 1
                keep = self.device_error_messages
                keep.append((code, msg))
                if len(keep) > KEEP_ERRORS:
                    del keep[1]  # the first one (often the cause) and the latest ones
                return []
        except P.ProtocolError as e:
            # CRC-valid but nonsensical: a firmware bug, not line noise. Say so, keep going; its
            # samples, if any, are counted by the index continuity of the next good frame.
            self.payload_errors += 1
            self.last_error = f"{frame.type_name} frame seq {frame.seq}: {e}"
            return []
        name = frame.type_name
        self.unknown_frames[name] = self.unknown_frames.get(name, 0) + 1
        return []

    def take_predictions(self) -> list[DevicePrediction]:
        """The device's PREDICTION frames decoded since the last call, in arrival order."""
        out, self._predictions = self._predictions, []
        return out

    def _sequence(self, frame: P.Frame) -> bool:
        last, self._last_seq = self._last_seq, frame.seq
        if last is None:
            return True
        gap = (frame.seq - last - 1) & 0xFFFF
        if gap == 0xFFFF:  # the same seq again
            self.duplicates += 1
            return False
        if gap:
            self.seq_gaps += 1
            self.lost_frames += gap
            self._recent_gaps = (self._recent_gaps[0] + 1, self._recent_gaps[1] + gap)
        return True

    def _unwrap_time(self, ts: int) -> int:
        if self._last_ts is not None and ts < self._last_ts and self._last_ts - ts > _U32 // 2:
            self._clock_hi += _U32
        self._last_ts = ts
        return self._clock_hi + ts

    def _unwrap_index(self, first: int) -> int:
        """The unwrapped index nearest to where the stream is (forward by at most 2^31); may be
        below ``_next_index``, even negative: :meth:`_advance` decides what going back means."""
        if not self._started:
            return first
        base = self._next_index - (self._next_index % _U32)
        cand = base + first
        if cand - self._next_index > _U32 // 2:
            cand -= _U32
        elif self._next_index - cand > _U32 // 2:
            cand += _U32
        return cand

    def _info(self, info: P.DeviceInfo, arrival: float) -> list[Block]:
        if self.info is not None and (info.channels, info.sample_rate, info.sample_format) != (
                self.info.channels, self.info.sample_rate, self.info.sample_format):
            # Indices keep counting across a new configuration (they count from power-up), so
            # continuity still holds; the caller must check the new INFO against its model.
            self.info_changes += 1
        self.info = info
        out: list[Block] = []
        held, self._held = self._held, deque()
        for frame, t in held:  # in arrival order, heartbeats included
            try:
                if frame.type == P.HEARTBEAT:
                    out += self._heartbeat_index(P.parse_heartbeat(frame), t, frame.timestamp_us)
                else:
                    out += self._samples(frame, t)
            except P.ProtocolError as e:
                # One held frame that contradicts this INFO must not take the others with it; its
                # indices are counted by the continuity of the next one.
                self.payload_errors += 1
                self.last_error = f"held {frame.type_name} frame seq {frame.seq}: {e}"
        return out

    def _advance(self, first: int, n: int) -> tuple[int, int]:
        """Moves the expected index past ``n`` samples from the device's u32 index ``first``;
        returns ``(unwrapped index, indices before it never received)``. Every loss is counted
        here, and only here."""
        if not self._started:
            self._started = True
            self.lost_before_first += first
            self._next_index = first + n
            return first, 0
        idx = self._unwrap_index(first)
        if idx < self._next_index:
            # Indices went back: the device restarted, and its sequence numbers with them (a jump
            # of 2^31 or more reads the same: a u32 cannot tell them apart). Its new stream counts
            # from the index as sent; the jump in seq since the last samples was no loss.
            self.restarts += 1
            self.seq_gaps -= self._recent_gaps[0]
            self.lost_frames -= self._recent_gaps[1]
            idx = lost = first
        else:
            lost = idx - self._next_index
        self._next_index = idx + n
        self._recent_gaps = (0, 0)
        self.lost_samples += lost
        return idx, lost

    def _hold(self, frame: P.Frame, arrival: float) -> list[Block]:
        if len(self._held) >= self.hold_frames:
            # Held too long without INFO: these samples cannot be interpreted; count them.
            old, _ = self._held.popleft()
            self._lose_frame(old)
        self._held.append((frame, arrival))
        return []

    def _samples(self, frame: P.Frame, arrival: float) -> list[Block]:
        if self.info is None:
            return self._hold(frame, arrival)
        if frame.channels != self.info.channels or frame.sample_format != self.info.sample_format:
            raise P.ProtocolError(f"{frame.channels} channels of format {frame.sample_format}, but the "
                                  f"device's INFO announced {self.info.channels} of {self.info.sample_format}")
        first, raw = P.parse_samples(frame)
        idx, lost = self._advance(first, len(raw))
        t = self._unwrap_time(frame.timestamp_us)
        with np.errstate(over="ignore", invalid="ignore"):
            x = self.info.to_physical(raw)
        runs, tail, bad = _finite_runs(x, lost)
        if bad:
            self.nonfinite_samples += bad
            self.lost_samples += bad
            self.last_error = f"samples frame seq {frame.seq}: {bad} non-finite sample(s) counted lost"
        self.samples += len(raw) - bad
        dt = 1e6 / self.info.sample_rate
        out = [Block(idx + off, rows, lb, t + int(round(off * dt)), arrival) for off, rows, lb in runs]
        if tail:
            # Lost at the end of the frame: an empty block carries the count to the pipeline now.
            out.append(Block(idx + len(raw), np.zeros((0, self.info.channels)), tail,
                             t + int(round(len(raw) * dt)), arrival))
        return out

    def _lose_frame(self, frame: P.Frame) -> None:
        """A held frame that will never be interpreted: a heartbeat still moves the index, the
        samples of a samples frame count as lost through the index continuity (so a later frame
        or heartbeat does not count them twice)."""
        try:
            if frame.type == P.HEARTBEAT:
                self._heartbeat_index(P.parse_heartbeat(frame), 0.0, None)
                return
            first, raw = P.parse_samples(frame)
        except P.ProtocolError:
            self.unreadable_frames += 1
            return  # its indices are counted by the continuity of the next readable frame
        self._advance(first, 0)
        self._next_index += len(raw)
        self.lost_samples += len(raw)
        self.last_error = f"{len(raw)} samples arrived before the device's INFO and were counted lost"

    def _heartbeat(self, next_index: int, ts: int, arrival: float) -> list[Block]:
        if self.info is None:
            # Held in order with the samples frames: its index means something only after theirs.
            frame = P.Frame(P.HEARTBEAT, 0, ts, 0, 0, P.heartbeat_payload(next_index))
            return self._hold(frame, arrival)
        return self._heartbeat_index(next_index, arrival, ts)

    def _heartbeat_index(self, next_index: int, arrival: float, ts: int | None) -> list[Block]:
        if self._started and self._unwrap_index(next_index) <= self._next_index:
            return []  # nothing new (or behind: a restart shows in the next samples frame)
        # Samples lost at the end of a stream (or before a pause): no later frame will say so.
        idx, lost = self._advance(next_index, 0)
        if not lost or self.info is None:
            return []
        t = self._unwrap_time(ts) if ts is not None else (self._clock_hi + (self._last_ts or 0))
        return [Block(idx, np.zeros((0, self.info.channels)), lost, t, arrival)]

    def finish(self) -> None:
        """End of stream: frames still waiting for an INFO that never came (or never parsed) are
        counted lost, and the indices their heartbeats announced. Idempotent."""
        if self.finished:
            return
        self.finished = True
        held, self._held = self._held, deque()
        for frame, _ in held:
            self._lose_frame(frame)

    def summary(self) -> dict:
        return {"samples": self.samples, "lost_samples": self.lost_samples, "seq_gaps": self.seq_gaps,
                "lost_frames": self.lost_frames, "duplicates": self.duplicates,
                "device_errors": self.device_errors, "payload_errors": self.payload_errors,
                "restarts": self.restarts, "lost_before_first": self.lost_before_first,
                "nonfinite_samples": self.nonfinite_samples, "unreadable_frames": self.unreadable_frames,
                "info_changes": self.info_changes, "device_predictions": self.device_predictions,
                "unknown_frames": dict(self.unknown_frames),
                "device_error_messages": [f"{P.ERROR_CODES.get(c, c)}: {m}" for c, m in self.device_error_messages]}


class TextTracker:
    """Plain text lines (no sequence numbers, no device clock): blocks counted from the first good
    line at the rate given on the command line; a bad line is one lost sample, and so is a value
    that is not finite once scaled (``1e300`` times a scale of ``1e10``)."""

    def __init__(self, sample_rate: float, scale=1.0, offset=0.0):
        self.sample_rate = float(sample_rate)
        self.scale, self.offset = scale, offset
        self._next = 0
        self.samples = self.lost_samples = self.nonfinite_samples = 0

    def on_run(self, values: np.ndarray, lost_before: int, arrival: float) -> list[Block]:
        first = self._next + lost_before
        self._next = first + len(values)
        self.lost_samples += lost_before
        with np.errstate(over="ignore", invalid="ignore"):
            x = values * np.asarray(self.scale) + np.asarray(self.offset)
        runs, tail, bad = _finite_runs(x, lost_before) if len(x) else ([], lost_before, 0)
        self.nonfinite_samples += bad
        self.lost_samples += bad
        self.samples += len(values) - bad
        out = [Block(first + off, rows, lb, int(round((first + off) * 1e6 / self.sample_rate)), arrival)
               for off, rows, lb in runs]
        if tail:
            end = first + len(values)
            out.append(Block(end, np.zeros((0, x.shape[1] if x.ndim == 2 else 0)), tail,
                             int(round(end * 1e6 / self.sample_rate)), arrival))
        return out

    def finish(self) -> None:
        pass

    def summary(self) -> dict:
        return {"samples": self.samples, "lost_samples": self.lost_samples, "seq_gaps": 0, "lost_frames": 0,
                "duplicates": 0, "nonfinite_samples": self.nonfinite_samples}

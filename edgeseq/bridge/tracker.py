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
class Block:
    first_index: int  # absolute sample index (unwrapped) of samples[0]
    samples: np.ndarray  # (n, channels) float64 physical units
    lost_before: int  # samples missing between the previous block and this one
    device_time_us: int  # unwrapped device clock of samples[0]
    arrival: float  # host perf_counter() when the bytes carrying it were read


class StreamTracker:
    """Feed it decoded frames in order; it returns :class:`Block` s and keeps the counts.

    Samples that arrive before the device's ``INFO`` are held (up to ``hold_frames``) and
    released once it comes, so a lost ``INFO`` costs nothing as long as the host can ask again
    (``needs_info`` tells the caller to send ``START``).
    """

    def __init__(self, *, hold_frames: int = 4096):
        self.info: P.DeviceInfo | None = None
        self.hold_frames = hold_frames
        self._held: deque = deque()
        self._last_seq: int | None = None
        self._recent_gaps = (0, 0)  # (events, frames) counted since the last samples frame
        self._next_index: int | None = None  # unwrapped index of the next expected sample
        self._clock_hi = 0
        self._last_ts: int | None = None
        self.samples = self.lost_samples = 0
        self.seq_gaps = self.lost_frames = self.duplicates = 0
        self.device_errors: list[tuple[int, str]] = []
        self.unknown_frames = self.payload_errors = self.restarts = 0
        self.heartbeats = 0
        self.last_error: str | None = None

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
            if frame.type == P.ERROR:
                code, msg = P.parse_error(frame)
                self.device_errors.append((code, msg))
                if len(self.device_errors) > 100:
                    del self.device_errors[0]
                return []
        except P.ProtocolError as e:
            # CRC-valid but nonsensical: a firmware bug, not line noise. Say so, keep going.
            self.payload_errors += 1
            self.last_error = f"{frame.type_name} frame seq {frame.seq}: {e}"
            return []
        self.unknown_frames += 1
        return []

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
        if self._next_index is None:
            return first
        base = self._next_index - (self._next_index % _U32)
        cand = base + first
        # Nearest to where we expected it: forward by less than 2^31, or slightly behind.
        if cand - self._next_index > _U32 // 2:
            cand -= _U32
        elif self._next_index - cand > _U32 // 2:
            cand += _U32
        return cand

    def _info(self, info: P.DeviceInfo, arrival: float) -> list[Block]:
        if self.info is not None and (info.channels, info.sample_rate) != (self.info.channels, self.info.sample_rate):
            self.restarts += 1
            self._next_index = None
        self.info = info
        out: list[Block] = []
        held, self._held = self._held, deque()
        for frame, t in held:
            out += self._samples(frame, t)
        return out

    def _samples(self, frame: P.Frame, arrival: float) -> list[Block]:
        if self.info is None:
            if len(self._held) >= self.hold_frames:
                # Held too long without INFO: these samples cannot be interpreted; count them.
                old, _ = self._held.popleft()
                self._lose_frame(old)
            self._held.append((frame, arrival))
            return []
        if frame.channels != self.info.channels or frame.sample_format != self.info.sample_format:
            raise P.ProtocolError(f"{frame.channels} channels of format {frame.sample_format}, but the "
                                  f"device's INFO announced {self.info.channels} of {self.info.sample_format}")
        first, raw = P.parse_samples(frame)
        idx = self._unwrap_index(first)
        lost = 0
        if self._next_index is not None:
            if idx < self._next_index:
                # Indices went back: the device restarted, and its sequence numbers with them. Its
                # new stream starts here; the jump in seq since the last samples was no loss.
                self.restarts += 1
                self.seq_gaps -= self._recent_gaps[0]
                self.lost_frames -= self._recent_gaps[1]
            else:
                lost = idx - self._next_index
        self._next_index = idx + len(raw)
        self._recent_gaps = (0, 0)
        self.samples += len(raw)
        self.lost_samples += lost
        return [Block(idx, self.info.to_physical(raw), lost, self._unwrap_time(frame.timestamp_us), arrival)]

    def _lose_frame(self, frame: P.Frame) -> None:
        # Only possible before the first INFO, so no index is known yet and continuity will not
        # count these samples later: count them here.
        try:
            _, raw = P.parse_samples(frame)
        except P.ProtocolError:
            return
        self.lost_samples += len(raw)
        self.last_error = f"{len(raw)} samples arrived before the device's INFO and were dropped"

    def _heartbeat(self, next_index: int, ts: int, arrival: float) -> list[Block]:
        if self.info is None or self._next_index is None:
            return []
        idx = self._unwrap_index(next_index)
        if idx > self._next_index:
            # Samples lost at the end of a stream (or before a pause): no later frame will say so.
            lost = idx - self._next_index
            self._next_index = idx
            self.lost_samples += lost
            return [Block(idx, np.zeros((0, self.info.channels)), lost, self._unwrap_time(ts), arrival)]
        return []

    def summary(self) -> dict:
        return {"samples": self.samples, "lost_samples": self.lost_samples, "seq_gaps": self.seq_gaps,
                "lost_frames": self.lost_frames, "duplicates": self.duplicates,
                "device_errors": len(self.device_errors), "payload_errors": self.payload_errors,
                "restarts": self.restarts}


class TextTracker:
    """Plain text lines (no sequence numbers, no device clock): blocks counted from the first good
    line at the rate given on the command line; a bad line is one lost sample."""

    def __init__(self, sample_rate: float, scale=1.0, offset=0.0):
        self.sample_rate = float(sample_rate)
        self.scale, self.offset = scale, offset
        self._next = 0
        self.samples = self.lost_samples = 0

    def on_run(self, values: np.ndarray, lost_before: int, arrival: float) -> Block:
        self._next += lost_before
        self.lost_samples += lost_before
        first = self._next
        self._next += len(values)
        self.samples += len(values)
        x = values * np.asarray(self.scale) + np.asarray(self.offset)
        return Block(first, x, lost_before, int(round(first * 1e6 / self.sample_rate)), arrival)

    def summary(self) -> dict:
        return {"samples": self.samples, "lost_samples": self.lost_samples, "seq_gaps": 0, "lost_frames": 0,
                "duplicates": 0}

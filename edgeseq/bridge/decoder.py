"""Bytes in, frames (or text samples) out: the packetizer half of the bridge.

Both decoders are incremental: ``feed(data)`` takes whatever the port returned, any length, and
returns what became complete. Neither blocks, and neither holds more than one maximal frame (or
line) of unfinished input, whatever garbage arrives.
"""

from __future__ import annotations

import re

import numpy as np

from .protocol import MAX_WIRE, Frame, ProtocolError, cobs_decode, unpack_frame


class FrameDecoder:
    """Splits a byte stream at 0x00, undoes COBS, checks length, CRC and version.

    Counters (all ints): ``frames`` accepted, ``crc_errors`` (decoded but the CRC disagrees),
    ``framing_errors`` (not valid COBS, too short, too long or a foreign version), ``bytes``
    received, ``discarded_bytes`` (in rejected frames). ``last_error`` says what the latest
    rejected frame was and where it started in the stream.
    """

    def __init__(self):
        self._buf = bytearray()
        self._buf_start = 0  # stream offset of _buf[0]
        self._overflow = False
        self.frames = self.crc_errors = self.framing_errors = 0
        self.bytes = self.discarded_bytes = 0
        self.last_error: str | None = None
        # Per frame of the latest ``feed``: bad frames counted before it (where damage happened
        # relative to good frames, which the loss accounting needs).
        self.bad_before: list[int] = []

    @property
    def bad_frames(self) -> int:
        return self.crc_errors + self.framing_errors

    @property
    def pending_bytes(self) -> int:
        """Bytes of an unfinished frame (a stream that ends inside a frame loses it)."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget a partial frame (the port was reopened: what follows is a new stream)."""
        self.discarded_bytes += len(self._buf)
        self._buf_start += len(self._buf)
        self._buf.clear()
        self._overflow = False

    def feed(self, data: bytes) -> list[Frame]:
        out: list[Frame] = []
        self.bad_before = []
        if not data:
            return out
        self.bytes += len(data)
        if 0 not in data:
            self._buf += data
            self._bound()
            return out
        parts = data.split(b"\x00")
        parts[0] = bytes(self._buf) + parts[0]
        start = self._buf_start
        for chunk in parts[:-1]:
            if self._overflow:
                self._overflow = False
                self._reject("long", f"more than {MAX_WIRE} bytes without a delimiter", start, len(chunk))
            elif chunk:
                frame = self._decode(chunk, start)
                if frame is not None:
                    out.append(frame)
                    self.bad_before.append(self.bad_frames)
            start += len(chunk) + 1
        self._buf = bytearray(parts[-1])
        self._buf_start = start
        self._bound()
        return out

    def _bound(self) -> None:
        if len(self._buf) >= MAX_WIRE:
            # No frame is this long: everything up to the next delimiter is garbage.
            self.discarded_bytes += len(self._buf)
            self._buf_start += len(self._buf)
            self._buf.clear()
            self._overflow = True

    def _decode(self, chunk: bytes, start: int) -> Frame | None:
        try:
            frame = unpack_frame(cobs_decode(chunk))
        except ProtocolError as e:
            self._reject(getattr(e, "kind", "cobs"), str(e), start, len(chunk))
            return None
        self.frames += 1
        return frame

    def _reject(self, kind: str, why: str, start: int, n: int) -> None:
        if kind == "crc":
            self.crc_errors += 1
        else:
            self.framing_errors += 1
        self.discarded_bytes += n
        self.last_error = f"bad frame at stream byte {start}: {why}"


_SPLIT = re.compile(rb"[,;\t ]+")


class TextLineDecoder:
    """One sample per text line, values separated by commas, semicolons, tabs or spaces.

    ``feed`` returns a list of ``(samples (n, channels) float64, lost_before)`` runs: a line that
    does not parse is one lost sample (``bad_lines``) once the stream has started; lines before the
    first good one are a sketch's banner (``skipped_lines``). With ``channels=None`` the first good
    line fixes the channel count.
    """

    MAX_LINE = 256

    def __init__(self, channels: int | None = None):
        self.channels = channels
        self._buf = bytearray()
        self._too_long = False
        self.lines = self.bad_lines = self.skipped_lines = self.bytes = 0
        self.last_error: str | None = None
        self._started = False

    def reset(self) -> None:
        self._buf.clear()
        self._too_long = False

    def feed(self, data: bytes) -> list[tuple[np.ndarray, int]]:
        self.bytes += len(data)
        self._buf += data
        if b"\n" not in data:
            if len(self._buf) > self.MAX_LINE:
                self._buf.clear()
                self._too_long = True
            return []
        *lines, rest = bytes(self._buf).split(b"\n")
        self._buf = bytearray(rest)
        if len(self._buf) > self.MAX_LINE:
            self._buf.clear()
            self._too_long = True
        runs: list[tuple[list, int]] = []
        lost = 0
        for line in lines:
            if self._too_long or len(line) > self.MAX_LINE:
                # Also when the whole long line came in one read: the limit must not depend on
                # how the port happened to split the bytes.
                self._too_long = False
                vals = None
                self.last_error = f"line {self.lines + 1}: longer than {self.MAX_LINE} bytes"
            else:
                vals = self._parse(line)
            self.lines += 1
            if vals is None:
                if self._started:
                    self.bad_lines += 1
                    lost += 1
                else:
                    self.skipped_lines += 1
                continue
            self._started = True
            if lost or not runs:
                runs.append(([], lost))
                lost = 0
            runs[-1][0].append(vals)
        out = [(np.asarray(v, dtype=np.float64).reshape(-1, self.channels), n) for v, n in runs]
        if lost:
            out.append((np.zeros((0, self.channels or 0)), lost))
        return out

    def _parse(self, line: bytes):
        text = line.strip()
        if not text:
            return None
        try:
            vals = [float(t) for t in _SPLIT.split(text) if t]
        except ValueError:
            self.last_error = f"line {self.lines + 1}: not numbers: {text[:40]!r}"
            return None
        if self.channels is None:
            self.channels = len(vals)
        if len(vals) != self.channels or not all(np.isfinite(vals)):
            self.last_error = (f"line {self.lines + 1}: {len(vals)} values, expected {self.channels} "
                               f"finite numbers: {text[:40]!r}")
            return None
        return vals

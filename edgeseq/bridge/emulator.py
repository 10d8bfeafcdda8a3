"""A device on a pseudo-terminal: streams a real recording framed exactly as the firmware in
``firmware_bridge/`` does, and injects faults at given rates, so the host side can be tested
(and benchmarked) without hardware. Host-side tool: reading the recordings needs the ``train``
extra (wfdb); the frames come from :mod:`edgeseq.bridge.protocol`.

Sources: ``mitdb:DIR/REC`` (one MIT-BIH record's MLII lead as 11-bit ADC counts at 360 Hz, the
record's own gain and baseline in ``INFO``) and ``hbedb:FILE`` (one trial of the human balance
data set as the four corner forces of a Wii-Balance-Board-sized plate, 0.01 N per count, 100 Hz).

Fault accounting: the emulator knows, for every transmission, whether the host can receive it
intact (unaltered, complete, and preceded on the wire by an intact 0x00 delimiter). From that it
derives what the host must report (``expected``): frames accepted, duplicates, sequence gaps,
lost frames counted from the first frame the host can see, and lost samples from index 0. A test compares
these with ``edgeseq serve``'s summary.
"""

from __future__ import annotations

import os
import random
import select
import sys
import termios
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import EdgeseqError
from . import protocol as P
from .decoder import FrameDecoder

FAULT_KINDS = ("bitflip", "drop", "dup", "garbage", "truncate", "disconnect")

NEWTON_PER_COUNT = 0.01


@dataclass
class Source:
    name: str
    counts: np.ndarray  # (n, channels) integer ADC counts
    sample_rate: float
    scale: list
    offset: list
    units: str
    sample_format: int
    device_id: str
    frame_samples: int
    channel_names: list = field(default_factory=list)


def parse_faults(spec: str | None) -> dict[str, float]:
    """``"bitflip=1e-3,drop=1e-3"`` -> rates per frame; unknown kinds and bad numbers are errors."""
    rates = {k: 0.0 for k in FAULT_KINDS}
    if not spec:
        return rates
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, val = item.partition("=")
        if not sep or key.strip() not in rates:
            raise EdgeseqError(f"--faults: {item!r} is not KIND=RATE with KIND one of {', '.join(FAULT_KINDS)}")
        try:
            rate = float(val)
        except ValueError:
            raise EdgeseqError(f"--faults: rate {val!r} of {key} is not a number") from None
        if not 0.0 <= rate <= 1.0:
            raise EdgeseqError(f"--faults: rate of {key} must be within [0, 1] (a probability per frame), got {rate}")
        rates[key.strip()] = rate
    return rates


def load_source(spec: str, *, frame_samples: int | None = None) -> Source:
    kind, sep, where = spec.partition(":")
    if not sep or kind not in ("mitdb", "hbedb"):
        raise EdgeseqError(f"--source {spec!r}: expected mitdb:DIR/RECORD or hbedb:FILE")
    if kind == "mitdb":
        return _mitdb_source(Path(where), frame_samples or 10)
    return _hbedb_source(Path(where), frame_samples or 1)


def _mitdb_source(path: Path, frame_samples: int) -> Source:
    from ..data.mitdb import load_record

    rec = load_record(path.parent, path.name, annotations=False)  # validates, one-line errors
    import wfdb

    h = wfdb.rdheader(str(path))
    ch = list(h.sig_name).index(rec.lead)
    gain, base = float(h.adc_gain[ch]), float(h.baseline[ch])
    # load_record gave (d - baseline) / gain in mV: the ADC counts come back exactly.
    counts = np.round(rec.signal * gain + base).astype(np.int16).reshape(-1, 1)
    return Source(f"mitdb:{path}", counts, rec.fs, [1.0 / gain], [-base / gain], "mV", P.FORMAT_CODES["int16"],
                  f"emulated-ad8232-{path.name}", frame_samples, [rec.lead])


def _hbedb_source(path: Path, frame_samples: int) -> Source:
    from ..data.hbedb import load_trial
    from ..preprocess.balance import CORNERS

    if not path.is_file():
        raise EdgeseqError(f"hbedb trial {path} not found")
    # BDS/data/BDS00001.txt belongs to the data set rooted at BDS/; a user's trial CSV sits in its root.
    root = path.parent.parent if path.parent.name == "data" else path.parent
    trial = load_trial(root, path.stem, fs=100.0)
    counts = np.round(trial.forces / NEWTON_PER_COUNT).astype(np.int32)
    return Source(f"hbedb:{path}", counts, trial.fs, [NEWTON_PER_COUNT] * 4, [0.0] * 4, "N", P.FORMAT_CODES["int32"],
                  f"emulated-hx711x4-{path.stem}", frame_samples, list(CORNERS))


class _Pty:
    """A pseudo-terminal pair whose device end is linked at ``path`` (the port the host opens)."""

    MARK_SPEED = termios.B50  # any host that opens the port sets its own speed over this

    def __init__(self, path: Path):
        self.path = path
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        attrs = termios.tcgetattr(self.slave)
        attrs[4] = attrs[5] = self.MARK_SPEED
        termios.tcsetattr(self.slave, termios.TCSANOW, attrs)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(os.ttyname(self.slave), tmp)
        os.replace(tmp, path)

    def host_opened(self) -> bool:
        return termios.tcgetattr(self.slave)[4] != self.MARK_SPEED

    def unread(self) -> int:
        """Bytes written that the host has not read yet."""
        import fcntl
        import struct

        return struct.unpack("i", fcntl.ioctl(self.slave, termios.FIONREAD, b"\0\0\0\0"))[0]

    def close(self) -> None:
        try:
            if self.path.is_symlink() and os.readlink(self.path) == os.ttyname(self.slave):
                self.path.unlink()
        except OSError:
            pass
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


class Emulator:
    """Streams ``source`` on a pty linked at ``link`` at ``speed`` x real time (``None`` = as fast
    as the host reads), with ``faults`` (rates per frame) drawn from ``seed``.

    Binary mode waits for the host's ``START`` (after every reconnect too), answers it with
    ``INFO`` and streams; text mode prints one sample per line, as a plain Arduino sketch does,
    from the moment the host opens the port.
    """

    def __init__(self, source: Source, link, *, speed: float | None = 1.0, faults: dict | None = None,
                 seed: int = 0, duration_s: float | None = None, text: bool = False, outage_s: float = 0.5,
                 heartbeat_s: float = 1.0, connect_timeout_s: float = 60.0, loop: bool = False, log=None):
        self.src = source
        self.link = Path(link)
        self.speed = speed
        self.rates = {k: 0.0 for k in FAULT_KINDS} | (faults or {})
        self.rng = random.Random(seed)
        n = len(source.counts)
        if duration_s is not None:
            want = int(round(duration_s * source.sample_rate))
            if loop and want > n:
                # Played again from its start, as a device streaming for hours would.
                source.counts = np.tile(source.counts, (-(-want // n), 1))
                n = len(source.counts)
            n = min(n, want)
        self.n_samples = n
        self.text = text
        self.outage_s = outage_s
        self.heartbeat_every = max(1, int(round(heartbeat_s * source.sample_rate)))
        self.connect_timeout_s = connect_timeout_s
        self.log = log or (lambda msg: print(f"emulate: {msg}", file=sys.stderr, flush=True))
        self.seq = 0
        self.injected = {k: 0 for k in FAULT_KINDS}
        self.frames = self.sample_frames = self.samples_sent = self.outage_frames = 0
        self.host_frames: dict[str, int] = {}
        self.predictions_received = 0
        self.last_prediction: tuple | None = None
        self._received = FrameDecoder()
        # Host-visible bookkeeping: for every intact transmission, (seq, first_index, n_samples).
        self._intact: list[tuple[int, int, int]] = []
        self._frame_samples: dict[int, tuple[int, int]] = {}  # seq (unwrapped) -> (first, n) of samples
        self._clean_boundary = True
        self._pty: _Pty | None = None
        self._streaming = False
        self._t0 = 0.0

    # ---- wire ---------------------------------------------------------------------------------
    def _frame(self, typ: int, payload: bytes = b"", ts: int = 0, channels: int = 0, fmt: int = 0) -> tuple[int, bytes]:
        seq = self.seq
        self.seq += 1
        self.frames += 1
        return seq, P.encode_frame(P.Frame(typ, seq & 0xFFFF, ts & 0xFFFFFFFF, channels, fmt, payload))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._pty.master, view)
            except BlockingIOError:
                select.select([], [self._pty.master], [], 0.1)
                continue
            view = view[n:]
            self._poll_host(0)

    def _send(self, seq: int, wire: bytes, *, faults: bool = True) -> None:
        """One frame through the fault injector, with the bookkeeping of what the host can see."""
        r = self.rates if faults else {}
        rng = self.rng
        if r.get("garbage") and rng.random() < r["garbage"]:
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 65)))
            self.injected["garbage"] += 1
            self._write(junk)
            self._clean_boundary = junk[-1] == 0
        if r.get("drop") and rng.random() < r["drop"]:
            self.injected["drop"] += 1
            return
        sent, intact = wire, True
        if r.get("truncate") and rng.random() < r["truncate"]:
            self.injected["truncate"] += 1
            sent, intact = wire[:rng.randrange(1, len(wire) - 1)], False
        elif r.get("bitflip") and rng.random() < r["bitflip"]:
            self.injected["bitflip"] += 1
            pos = rng.randrange(len(wire) * 8)
            b = bytearray(wire)
            b[pos // 8] ^= 1 << (pos % 8)
            sent, intact = bytes(b), False
        self._transmit(seq, sent, intact)
        if r.get("dup") and rng.random() < r["dup"]:
            self.injected["dup"] += 1
            self._transmit(seq, wire, True)

    def _transmit(self, seq: int, data: bytes, intact: bool) -> None:
        if intact and self._clean_boundary and seq >= 0:
            self._intact.append(seq)
        self._write(data)
        self._clean_boundary = data[-1] == 0

    # ---- host to device -----------------------------------------------------------------------
    def _poll_host(self, timeout: float) -> None:
        if self._pty is None:
            return
        while True:
            ready, _, _ = select.select([self._pty.master], [], [], timeout)
            if not ready:
                return
            try:
                data = os.read(self._pty.master, 4096)
            except OSError:
                return
            if not data:
                return
            for f in self._received.feed(data):
                name = f.type_name
                self.host_frames[name] = self.host_frames.get(name, 0) + 1
                if f.type == P.START:
                    self._streaming = True
                    self._send_info()
                elif f.type == P.STOP:
                    self._streaming = False
                elif f.type == P.PREDICTION:
                    self.predictions_received += 1
                    try:
                        self.last_prediction = P.parse_prediction(f)
                    except P.ProtocolError:
                        pass
            timeout = 0

    def _send_info(self) -> None:
        s = self.src
        seq, wire = self._frame(P.INFO, P.info_payload(s.device_id, s.sample_rate, s.scale, s.offset, s.units),
                                self._now_us(), s.counts.shape[1], s.sample_format)
        self._send(seq, wire)

    def _now_us(self, index: int | None = None) -> int:
        i = self._index if index is None else index
        return int(round(i * 1e6 / self.src.sample_rate))

    # ---- connection ---------------------------------------------------------------------------
    def _connect(self) -> None:
        self._pty = _Pty(self.link)
        self._received.reset()
        self._clean_boundary = True
        self._streaming = False
        deadline = time.monotonic() + self.connect_timeout_s
        while time.monotonic() < deadline:
            if self.text:
                if self._pty.host_opened():
                    # pyserial flushes the input right after configuring the port: let it.
                    time.sleep(0.2)
                    self._streaming = True
                    return
                time.sleep(0.01)
            else:
                self._poll_host(0.05)
                if self._streaming:
                    return
        raise EdgeseqError(f"no host opened {self.link} within {self.connect_timeout_s:g} s "
                           f"(run `edgeseq serve --port {self.link} --bundle ...`)")

    def _drain(self, limit_s: float = 5.0) -> None:
        """Wait until the host has read everything written (so a disconnect loses nothing in flight)."""
        # The kernel moves bytes from the master to the slave's read queue asynchronously, so an
        # empty queue once is not proof: it has to stay empty for a while.
        deadline = time.monotonic() + limit_s
        quiet_since = None
        while time.monotonic() < deadline:
            if self._pty.unread():
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > 0.05:
                return
            self._poll_host(0.005)

    def _disconnect(self) -> None:
        self.injected["disconnect"] += 1
        self._drain()
        self._pty.close()
        self._pty = None
        time.sleep(0.05)

    # ---- streaming ----------------------------------------------------------------------------
    def run(self) -> dict:
        s = self.src
        fs, k, ch = s.sample_rate, s.frame_samples, s.counts.shape[1]
        self._index = 0
        t_start = time.perf_counter()
        self.log(f"streaming {s.name} ({self.n_samples / fs:.0f} s, {ch} ch at {fs:g} Hz) on {self.link}; "
                 f"waiting for the host")
        self._connect()
        self._t0 = time.perf_counter()
        next_hb = self.heartbeat_every
        try:
            while self._index < self.n_samples:
                if self.rates["disconnect"] and self.rng.random() < self.rates["disconnect"]:
                    self._disconnect()
                    self._skip_outage()
                    self._connect()  # even at the end: the final heartbeat must reach the host
                i0 = self._index
                i1 = min(i0 + k, self.n_samples)
                self._pace(i1)
                self._poll_host(0)
                if not self._streaming:  # the host sent STOP: wait for it to start again
                    self._connect_wait()
                if self.text:
                    self._send_text(s.counts[i0:i1])
                else:
                    seq, wire = self._frame(P.SAMPLES, P.samples_payload(i0, s.counts[i0:i1], s.sample_format),
                                            self._now_us(i0), ch, s.sample_format)
                    self._frame_samples[seq] = (i0, i1 - i0)
                    self.sample_frames += 1
                    self._send(seq, wire)
                self.samples_sent += i1 - i0
                self._index = i1
                if not self.text and self._index >= next_hb:
                    next_hb += self.heartbeat_every
                    seq, wire = self._frame(P.HEARTBEAT, P.heartbeat_payload(self._index), self._now_us())
                    self._send(seq, wire)
            if not self.text:
                # The last heartbeat goes out clean after a lone delimiter, so the host can count
                # samples lost at the very end.
                self._write(P.DELIMITER)
                self._clean_boundary = True
                seq, wire = self._frame(P.HEARTBEAT, P.heartbeat_payload(self._index), self._now_us())
                self._send(seq, wire, faults=False)
            self._drain()
            self._poll_host(0.3)  # the host's last predictions
        finally:
            if self._pty is not None:
                self._pty.close()
                self._pty = None
        return self.report(time.perf_counter() - t_start)

    def _connect_wait(self) -> None:
        deadline = time.monotonic() + self.connect_timeout_s
        while not self._streaming and time.monotonic() < deadline:
            self._poll_host(0.05)
        if not self._streaming:
            raise EdgeseqError("the host stopped the stream and did not start it again")

    def _skip_outage(self) -> None:
        """While unplugged the device keeps sampling; those frames never reach anyone."""
        k = self.src.frame_samples
        end = min(self.n_samples, self._index + max(1, int(round(self.outage_s * self.src.sample_rate))))
        while self._index < end:
            i1 = min(self._index + k, self.n_samples)
            seq, _ = self._frame(P.SAMPLES)
            self._frame_samples[seq] = (self._index, i1 - self._index)
            self.sample_frames += 1
            self.outage_frames += 1
            self.samples_sent += i1 - self._index
            self._index = i1
        if self.speed:
            time.sleep(self.outage_s / self.speed)

    def _pace(self, upto: int) -> None:
        if not self.speed:
            return
        due = self._t0 + upto / self.src.sample_rate / self.speed
        while True:
            wait = due - time.perf_counter()
            if wait <= 0:
                return
            self._poll_host(min(wait, 0.05))

    def _send_text(self, counts: np.ndarray) -> None:
        for row in counts:
            line = (",".join(str(int(v)) for v in row) + "\n").encode()
            self._send(-1, line)

    # ---- report -------------------------------------------------------------------------------
    def expected(self) -> dict:
        """What the host must count, from the first frame it can see."""
        seqs = self._intact
        if not seqs:
            return {"frames": 0, "duplicates": 0, "seq_gaps": 0, "lost_frames": 0,
                    "lost_samples": self.samples_sent}
        dups = sum(1 for a, b in zip(seqs, seqs[1:]) if a == b)
        uniq = sorted(set(seqs))
        gaps = sum(1 for a, b in zip(uniq, uniq[1:]) if b != a + 1)
        lost_frames = sum(b - a - 1 for a, b in zip(uniq, uniq[1:]))
        got = set(uniq)
        # Every sample of a frame the host could not receive intact is lost, from index 0 (the
        # host counts from the device's power-up, PROTOCOL.md section 3), so the host's
        # samples + lost_samples equals ``samples`` sent.
        lost_samples = sum(n for q, (_, n) in self._frame_samples.items() if q not in got)
        return {"frames": len(seqs), "duplicates": dups, "seq_gaps": gaps, "lost_frames": lost_frames,
                "lost_samples": lost_samples}

    def report(self, elapsed: float) -> dict:
        out = {"source": self.src.name, "link": str(self.link), "mode": "text" if self.text else "binary",
               "sample_rate": self.src.sample_rate, "channels": self.src.channel_names,
               "frames": self.frames, "sample_frames": self.sample_frames, "samples": self.samples_sent,
               "faults": dict(self.injected), "outage_frames": self.outage_frames,
               "predictions_received": self.predictions_received, "host_frames": self.host_frames,
               "elapsed_s": round(elapsed, 3)}
        if not self.text:
            out["expected"] = self.expected()
        return out


def emulate(source: str, link: str, *, speed: str | float = "1", faults: str | None = None, seed: int = 0,
            duration_s: float | None = None, text: bool = False, frame_samples: int | None = None,
            outage_s: float = 0.5, connect_timeout_s: float = 60.0, loop: bool = False, log=None) -> dict:
    """``edgeseq emulate``: returns the report printed as one JSON line."""
    sp = _speed(speed)
    src = load_source(source, frame_samples=frame_samples)
    if src.frame_samples < 1 or src.frame_samples * src.counts.shape[1] * np.dtype(
            P.FORMATS[src.sample_format][1]).itemsize + 4 > P.MAX_PAYLOAD:
        raise EdgeseqError(f"--frame-samples {src.frame_samples} does not fit one frame "
                           f"(at most {P.MAX_PAYLOAD} payload bytes)")
    link = Path(link)
    if link.exists() and not link.is_symlink():
        raise EdgeseqError(f"--link {link} exists and is not a symlink: refusing to replace it")
    emu = Emulator(src, link, speed=sp, faults=parse_faults(faults), seed=seed, duration_s=duration_s,
                   text=text, outage_s=outage_s, connect_timeout_s=connect_timeout_s, loop=loop, log=log)
    return emu.run()


def _speed(speed) -> float | None:
    if str(speed).lower() == "max":
        return None
    try:
        v = float(speed)
    except ValueError:
        raise EdgeseqError(f"--speed must be a number or 'max', not {speed!r}") from None
    if v <= 0:
        raise EdgeseqError(f"--speed must be positive, got {v}")
    return v


"""``edgeseq serve``: sensor frames in, predictions out, live. Device side.

    link (bytes, reconnects) -> decoder (frames) -> tracker (samples, losses) -> pipeline (model)
         -> predictions: stdout, JSON lines, and a PREDICTION frame back to the device

A device that classifies its own beats (``ecg_ad8232`` in classify mode) sends PREDICTION frames
too: they are matched with the host's predictions by sample index (``agreement``), never fed to
the model.

Ends after ``duration_s``, at the end of a replayed recording, when the port has been gone for
``give_up_s``, on Ctrl-C, SIGTERM or SIGHUP; then prints one JSON summary line. Nothing is lost on the
way out: the pipeline is flushed, the JSON lines and the raw recording are flushed and closed.

A port that is not there is waited for (a board's USB device may appear after serve starts under
systemd), but never silently: one stderr line at the first failure, naming the serial ports that
do exist, repeated every ``WAITING_REPEAT_S``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from ..errors import EdgeseqError, StreamFailed
from ..outputs import Appender
from . import protocol as P
from .agreement import Agreement
from .decoder import FrameDecoder, TextLineDecoder
from .link import open_link, port_missing
from .pipelines import open_pipeline
from .tracker import StreamTracker, TextTracker


def _distinct_files(port: str, **outputs) -> None:
    """An output that is the port itself (a replayed recording) or the other output would be read
    back as it grows, or interleave two formats in one file: refused before anything is opened."""
    import os

    seen = {"--port": port}
    for name, path in outputs.items():
        if not path:
            continue
        for other, q in seen.items():
            try:
                same = os.path.samefile(path, q)
            except OSError:  # one of them does not exist yet
                same = os.path.abspath(path) == os.path.abspath(q)
            if same:
                raise EdgeseqError(f"--{name} {path} is the same file as {other}: give it a file of its own")
        seen[f"--{name}"] = path


class _Out:
    """Predictions to stdout (unless quiet) and to a JSON-lines file through ``outputs.Appender``:
    strict JSON (a NaN reaching it is a bug and fails loudly), flushed at least once a second, a
    full disk one line."""

    def __init__(self, path, quiet: bool, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stdout
        self.f = Appender(path, "predictions (--out)") if path else None

    def write(self, rec: dict) -> None:
        if self.f:
            self.f.write_json(rec)
        if not self.quiet:
            what = rec["label"] if rec.get("label") is not None else f"{rec['score']:.4g}"
            if rec.get("target"):
                what = f"{rec['target']} {what}"
            t = rec.get("device_time_s")
            p = f"  p={rec['score']:.2f}" if rec.get("label") is not None else ""
            if rec.get("device_label") is not None:
                p += f"  device={rec['device_label']}"
            trial = rec.get("trial")
            if trial:
                n = trial["windows"]
                p += (f"  trial {trial['label']} p={trial['score']:.2f}" if "label" in trial
                      else f"  trial {trial['score']:.4g}") + f" ({n} window{'s' * (n != 1)})"
            print(f"sample {rec['sample']:>9}  t={t:10.3f}s  {what:>6}{p}" if t is not None
                  else f"sample {rec['sample']:>9}  {what}{p}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.f:
            self.f.close()


class LatencyHistogram:
    """Latencies in a fixed log-spaced histogram (1 us to 1000 s, 100 bins per decade: quantiles
    within 2.4 %), so a service running for weeks keeps the same few kilobytes for p50/p99 instead
    of a list that grows with every prediction. The exact maximum is kept beside it."""

    LO, DECADES, PER_DECADE = -3.0, 9, 100

    def __init__(self):
        self.counts = np.zeros(self.DECADES * self.PER_DECADE + 2, dtype=np.int64)  # + under/overflow
        self.n = 0
        self.max = 0.0

    def add(self, ms: float) -> None:
        if not np.isfinite(ms):
            return
        self.n += 1
        self.max = max(self.max, ms)
        b = (np.log10(ms) - self.LO) * self.PER_DECADE if ms > 0 else -1.0
        self.counts[int(np.clip(np.floor(b) + 1, 0, len(self.counts) - 1))] += 1

    def quantile(self, q: float) -> float | None:
        if not self.n:
            return None
        k = int(np.searchsorted(np.cumsum(self.counts), q * self.n, side="left"))
        if k == 0:
            return 10 ** self.LO
        if k == len(self.counts) - 1:
            return self.max
        # Geometric middle of the bin, never above the largest latency seen.
        return min(self.max, 10 ** (self.LO + (k - 0.5) / self.PER_DECADE))


class Bridge:
    """One serving session; :meth:`run` returns the summary dict."""

    #: While the port cannot be opened, the line saying so comes again this often: a service
    #: waiting for a board that is never plugged in shows it in its journal, without a line per retry.
    WAITING_REPEAT_S = 30.0
    #: Samples arriving this many times faster than the device's clock (a replay, ``--speed max``)
    #: wait behind each other on the host: the summary says its latency is not a live figure.
    BACKLOG_FACTOR = 1.5

    def __init__(self, port: str, bundle, *, out=None, record=None, duration_s: float | None = None,
                 text: bool = False, rate: float | None = None, scale=None, offset=None,
                 channel: int | None = None, baudrate: int = 115200, give_up_s: float | None = None,
                 quiet: bool = False, threads: int = 1, window_s: float | None = None, hop_s: float | None = None,
                 send_predictions: bool = True, stream=None):
        self.port = port
        _distinct_files(port, out=out, record=record)
        self.pipeline = open_pipeline(bundle, threads=threads, channel=channel, window_s=window_s, hop_s=hop_s)
        self.text = text
        if text:
            if not rate:
                raise EdgeseqError("--text needs --rate (the sketch's sample rate in Hz)")
            self.decoder = TextLineDecoder()
            self.tracker = TextTracker(rate, 1.0 if scale is None else scale, 0.0 if offset is None else offset)
        else:
            if rate is not None:
                raise EdgeseqError("--rate applies to --text streams; a binary device announces its rate in INFO")
            self.decoder = FrameDecoder()
            self.tracker = StreamTracker()
        self.duration_s = duration_s
        self.send_predictions = send_predictions and not text
        self.out = _Out(out, quiet, stream)
        self._checked = False
        self._seq_out = 0
        self._last_start = 0.0
        self._anchor = (0, 0)  # (sample index, device time us) of the latest block
        self._next_index: int | None = None
        self._latency = LatencyHistogram()
        self._info_checked = None  # the INFO the pipeline was last checked against
        self._bad_at_index = 0  # decoder's bad frames when the device last told us an index
        self._agreement = Agreement()  # device PREDICTION frames against the host's labels
        self.link = open_link(port, baudrate=baudrate, on_connect=self._on_connect, record=record,
                              give_up_s=give_up_s)
        self.ended: str | None = None
        self._t0 = time.perf_counter()
        self._waiting_said_at: float | None = None  # when the "waiting for PORT" line last went out
        self._span = [None, None, 0]  # first and latest block arrival, samples after the first block

    # ---- host to device ---------------------------------------------------------------------
    def _send(self, typ: int, payload: bytes = b"") -> None:
        wire = P.encode_frame(P.Frame(typ, self._seq_out & 0xFFFF, 0, 0, 0, payload))
        self._seq_out += 1
        self.link.write(wire)

    def _on_connect(self, link) -> None:
        if not self.text:
            self._send(P.START)
            self._last_start = time.monotonic()

    # ---- loop -------------------------------------------------------------------------------
    def run(self) -> dict:
        """Serves until the end; the summary is returned, or attached to the ``EdgeseqError`` that
        ended the run (:class:`StreamFailed`) so the CLI prints it on the way out as well."""
        t0 = self._t0 = time.perf_counter()
        try:
            self._loop()
        except EdgeseqError as e:
            raise StreamFailed(str(e), self.summary(time.perf_counter() - t0)) from None
        s = self.summary(time.perf_counter() - t0)
        if self.link.connects == 0 and self.ended != "interrupted":
            # Waiting was asked for (--give-up, --duration) and nothing ever came: that is a failure.
            raise StreamFailed(f"never connected to {self.port}: {port_missing(self.port) or self.ended}", s)
        return s

    def _loop(self) -> None:
        pipe = self.pipeline
        if pipe.target is not None:
            self._status(f"{pipe.describe_target()}: a score per {pipe.window / pipe.sample_rate:g}-s window every "
                         f"{pipe.hop / pipe.sample_rate:g} s; 'trial' is the mean of this stream's windows so far")
        self.link.start()
        deadline = None if self.duration_s is None else time.monotonic() + self.duration_s
        try:
            while True:
                if deadline is not None and time.monotonic() >= deadline:
                    self.ended = "duration"
                    break
                item = self.link.get(timeout=0.05)
                if item is None:
                    self._maybe_ask_info()
                    self._say_waiting(time.perf_counter())
                    continue
                kind, data, arrival = item
                if kind == "error":
                    raise EdgeseqError(data)
                if kind == "end":
                    self.ended = data
                    break
                if kind == "connect":
                    self.decoder.reset()
                    self._status(f"{'re' if data > 1 else ''}connected to {self.port}")
                    continue
                self._bytes(data, arrival)
                self._maybe_ask_info()
        except KeyboardInterrupt:
            self.ended = "interrupted"
        finally:
            try:
                # Frames still waiting for an INFO, and indices announced but never received, are
                # counted lost now: the stream is over.
                self.tracker.finish()
                self._emit(self.pipeline.flush(), timed=False)
                if not self.text:
                    self._send(P.STOP)
            finally:
                self.link.close()
                self.out.close()

    def _status(self, msg: str) -> None:
        """Connection news on stderr (stdout carries the predictions and the summary)."""
        print(f"serve: {msg}", file=sys.stderr, flush=True)

    def _say_waiting(self, now: float) -> None:
        # At the first failed open of each outage, then every WAITING_REPEAT_S while it lasts: the
        # user should know why nothing happens, and a mistyped --port should not look like a hang.
        if self.link.connects > self.link.disconnects or not self.link.last_error:
            self._waiting_said_at = None
            return
        if self._waiting_said_at is not None and now - self._waiting_said_at < self.WAITING_REPEAT_S:
            return
        missing = port_missing(self.port)
        why = f"{missing}; waiting for it" if missing else f"waiting for {self.port} ({self.link.last_error})"
        give_up = getattr(self.link, "give_up_s", None)
        self._status(f"{why}, retrying with back-off"
                     + (f" up to --give-up {give_up:g} s" if give_up is not None else "")
                     + f" (this line again every {self.WAITING_REPEAT_S:g} s while it lasts)")
        self._waiting_said_at = now

    def _maybe_ask_info(self) -> None:
        # Samples but no INFO (it was lost, or the host joined mid-stream): ask again, at most 5/s.
        if (not self.text and self.tracker.needs_info and self.tracker.held_frames
                and time.monotonic() - self._last_start > 0.2):
            self._send(P.START)
            self._last_start = time.monotonic()

    def _bytes(self, data: bytes, arrival: float) -> None:
        if self.text:
            for values, lost in self.decoder.feed(data):
                if not self._checked and len(values):
                    self.pipeline.check_stream(self.tracker.sample_rate, values.shape[1], f"{self.port} (text lines)")
                    self._checked = True
                if self._checked:
                    for b in self.tracker.on_run(values, lost, arrival):
                        self._block(b)
            return
        frames = self.decoder.feed(data)
        for frame, bad_before in zip(frames, self.decoder.bad_before):
            blocks = self.tracker.on_frame(frame, arrival)
            for d in self.tracker.take_predictions():
                self._agreement.add_device(d.sample, d.label, d.score)
            if frame.type in (P.SAMPLES, P.HEARTBEAT):
                # Damaged frames before this one are covered by its index (or the held frame's, at
                # the end); only damage after the last such frame can hide samples for good.
                self._bad_at_index = bad_before
            info = self.tracker.info
            if info is not None and info is not self._info_checked:
                self._check_info(info)
            for b in blocks:
                self._block(b)

    def _check_info(self, info) -> None:
        """Every INFO that changes the stream is checked against the bundle like the first one:
        a device reconfigured mid-stream to another rate must not be classified as if it were not."""
        old, self._info_checked = self._info_checked, info
        shape = lambda i: (i.sample_rate, i.channels, i.sample_format)  # noqa: E731
        units = lambda i: (i.scale, i.offset, i.units)  # noqa: E731
        if old is not None and shape(old) == shape(info) and units(old) == units(info):
            return  # the same INFO again (a START repeats it): nothing changes
        if old is None or shape(old) != shape(info):
            self.pipeline.check_stream(info.sample_rate, info.channels, f"device {info.device_id!r} on {self.port}")
        if old is not None:
            # Filters and windows hold values of the old stream (in the old units, at the old
            # rate): what follows is a new one.
            self._emit(self.pipeline.restart())
        self._checked = True

    def _block(self, block) -> None:
        if self._next_index is not None and block.first_index < self._next_index:
            # The device restarted (its sample index went back): a new stream, fresh state.
            self._emit(self.pipeline.restart())
        self._next_index = block.first_index + len(block.samples)
        if len(block.samples):
            self._anchor = (block.first_index, block.device_time_us)
            span = self._span
            if span[0] is None:
                span[0] = block.arrival
            else:  # device seconds between the first block's arrival and this one's, lost ones too
                span[2] += len(block.samples) + block.lost_before
            span[1] = block.arrival
        self._emit(self.pipeline.feed(block))

    def _rate(self) -> float:
        """The stream's sample rate: the device's INFO, a --text stream's --rate, or the bundle's."""
        if getattr(self.tracker, "info", None) is not None:
            return self.tracker.info.sample_rate
        return self.pipeline.sample_rate or getattr(self.tracker, "sample_rate", 0.0)

    def _realtime(self) -> dict:
        """Device time over host time of the stream: about 1 live, far more for a replayed recording
        or ``emulate --speed max``, whose latency then includes the wait behind earlier samples."""
        first, last, n = self._span
        fs = self._rate()
        if first is None or last <= first or not n or not fs:
            return {"realtime_factor": None}
        f = n / fs / (last - first)
        out = {"realtime_factor": round(f, 1)}
        if f > self.BACKLOG_FACTOR:
            out["latency_note"] = (f"samples arrived {f:.0f}x faster than real time: latency includes queueing "
                                   f"backlog, not a live figure")
        return out

    def _emit(self, preds, timed: bool = True) -> None:
        """``timed``: the predictions were completed by a frame's arrival. Beats completed by the
        end of the stream (the final flush) waited for the link to close, not for the host: their
        latency would be the give-up wait, so it is neither recorded nor reported."""
        if not preds:
            return
        now_perf, now = time.perf_counter(), time.time()
        fs = self._rate()
        i0, t_us = self._anchor
        for p in preds:
            lat = (now_perf - p.arrival) * 1e3 if timed else None
            if timed:
                self._latency.add(lat)
            rec = {"sample": int(p.sample),
                   "device_time_s": round((t_us + (p.sample - i0) * 1e6 / fs) / 1e6, 6) if fs else None,
                   "host_time": round(now, 6), "label": p.label, "score": round(p.score, 6),
                   "latency_ms": None if lat is None else round(lat, 3)}
            if p.trial is not None:
                rec["target"], rec["trial"] = self.pipeline.target, p.trial
            if p.scores is not None and p.label is not None:
                rec["probabilities"] = dict(zip(self.pipeline.labels, p.scores))
            if not self.text:
                dev = self._agreement.add_host(int(p.sample), p.label, float(p.score))
                if dev is not None:  # the device's own label for this beat came first (the usual order)
                    rec["device_label"], rec["device_score"] = dev[0], round(dev[1], 6)
            self.out.write(rec)
            if self.send_predictions:
                lab = P.NO_LABEL if p.label_index is None else p.label_index
                self._send(P.PREDICTION, P.prediction_payload(int(p.sample), lab, float(p.score), p.label or ""))

    def summary(self, elapsed: float) -> dict:
        """Counts such that ``samples + lost_samples`` is every sample the device numbered up to the
        last index it announced: ``samples`` went into the model, ``lost_samples`` never arrived,
        arrived unreadable or non-finite, or overflowed the filters (``overflow_samples``); of them,
        ``lost_before_first`` were numbered before the first index seen (all of the device's past,
        for a host that joined a running stream).
        ``lost_unknown_frames`` are damaged frames after the last index the device announced:
        samples they carried (if any) cannot be counted, so the count is not claimed exact.
        ``device_predictions`` counts the device's own PREDICTION frames; ``agreement`` compares
        their labels with the host's for the same sample index (:class:`~.agreement.Agreement`), or
        is None when the device sent no label (binary streams only).
        ``realtime_factor``: the stream's device seconds per host second (``latency_note`` when the
        samples came faster than real time). A balance bundle adds its ``target`` and the ``trial``
        (the mean of every window, :meth:`~.pipelines.WindowPipeline.trial`)."""
        d, t, ps = self.decoder, self.tracker.summary(), self.pipeline.summary()
        over = int(ps.get("overflow_samples", 0))
        s = {"frames": getattr(d, "frames", getattr(d, "lines", 0)), "crc_errors": getattr(d, "crc_errors", 0),
             "seq_gaps": t["seq_gaps"], "lost_samples": t["lost_samples"] + t.get("lost_before_first", 0) + over, **ps,
             "nonfinite_samples": t.get("nonfinite_samples", 0)}
        if self.text:
            s.update(lines=d.lines, bad_lines=d.bad_lines, skipped_lines=d.skipped_lines)
        else:
            unknown = d.bad_frames - self._bad_at_index + (1 if d.pending_bytes else 0)
            s.update(framing_errors=d.framing_errors, lost_frames=t["lost_frames"], duplicates=t["duplicates"],
                     device_errors=t["device_errors"], payload_errors=t["payload_errors"], restarts=t["restarts"],
                     lost_before_first=t["lost_before_first"], lost_unknown_frames=max(0, unknown),
                     info_changes=t["info_changes"], unreadable_frames=t["unreadable_frames"],
                     unknown_frames=t["unknown_frames"], device_error_messages=t["device_error_messages"],
                     device_predictions=t["device_predictions"], agreement=self._agreement.summary())
        lat = self._latency
        p50, p99 = lat.quantile(0.5), lat.quantile(0.99)
        s.update(samples=t["samples"] - over, bytes=d.bytes, connects=self.link.connects,
                 disconnects=self.link.disconnects,
                 latency_ms={"p50": None if p50 is None else round(p50, 3),
                             "p99": None if p99 is None else round(p99, 3),
                             "max": round(lat.max, 3) if lat.n else None},
                 **self._realtime(), elapsed_s=round(elapsed, 3), ended=self.ended)
        return s


def serve(port: str, bundle, **kw) -> dict:
    """Run a bridge until it ends; returns the summary (the CLI prints it as one JSON line)."""
    if not Path(bundle).exists():
        raise EdgeseqError(f"bundle {bundle} not found")
    return Bridge(port, bundle, **kw).run()

"""``edgeseq serve``: sensor frames in, predictions out, live. Device side.

    link (bytes, reconnects) -> decoder (frames) -> tracker (samples, losses) -> pipeline (model)
         -> predictions: stdout, JSON lines, and a PREDICTION frame back to the device

Ends after ``duration_s``, at the end of a replayed recording, when the port has been gone for
``give_up_s``, on Ctrl-C or SIGTERM; then prints one JSON summary line. Nothing is lost on the
way out: the pipeline is flushed, the JSON lines and the raw recording are flushed and closed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import EdgeseqError
from . import protocol as P
from .decoder import FrameDecoder, TextLineDecoder
from .link import open_link
from .pipelines import open_pipeline
from .tracker import StreamTracker, TextTracker


class _Out:
    """Predictions to stdout (unless quiet) and to a JSON-lines file (line-buffered: a crash loses
    at most the line being written)."""

    def __init__(self, path, quiet: bool, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stdout
        self.f = None
        if path:
            try:
                self.f = open(path, "a", buffering=1)
            except OSError as e:
                raise EdgeseqError(f"cannot write predictions to {path}: {e.strerror}") from None

    def write(self, rec: dict) -> None:
        if self.f:
            self.f.write(json.dumps(rec) + "\n")
        if not self.quiet:
            what = rec["label"] if rec.get("label") is not None else f"{rec['score']:.4g}"
            t = rec.get("device_time_s")
            p = f"  p={rec['score']:.2f}" if rec.get("label") is not None else ""
            print(f"sample {rec['sample']:>9}  t={t:10.3f}s  {what:>6}{p}" if t is not None
                  else f"sample {rec['sample']:>9}  {what}{p}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.f:
            self.f.close()


class Bridge:
    """One serving session; :meth:`run` returns the summary dict."""

    def __init__(self, port: str, bundle, *, out=None, record=None, duration_s: float | None = None,
                 text: bool = False, rate: float | None = None, scale=None, offset=None,
                 channel: int | None = None, baudrate: int = 115200, give_up_s: float | None = None,
                 quiet: bool = False, threads: int = 1, window_s: float | None = None, hop_s: float | None = None,
                 send_predictions: bool = True, stream=None):
        self.port = port
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
        self._latency: list[float] = []
        self.link = open_link(port, baudrate=baudrate, on_connect=self._on_connect, record=record,
                              give_up_s=give_up_s)
        self.ended: str | None = None
        self._waiting_said = False

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
        t0 = time.perf_counter()
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
                    self._say_waiting(t0)
                    continue
                kind, data, arrival = item
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
                self._emit(self.pipeline.flush())
                if not self.text:
                    self._send(P.STOP)
            finally:
                self.link.close()
                self.out.close()
        return self.summary(time.perf_counter() - t0)

    def _status(self, msg: str) -> None:
        """Connection news on stderr (stdout carries the predictions and the summary)."""
        print(f"serve: {msg}", file=sys.stderr, flush=True)

    def _say_waiting(self, t0: float) -> None:
        # Once per disconnection, after a second: the user should know why nothing happens.
        if (self.link.connects == self.link.disconnects and not self._waiting_said
                and time.perf_counter() - t0 > 1.0 and self.link.last_error):
            self._status(f"waiting for {self.port} ({self.link.last_error}); retrying with back-off")
            self._waiting_said = True
        elif self.link.connects > self.link.disconnects:
            self._waiting_said = False

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
                    self._block(self.tracker.on_run(values, lost, arrival))
            return
        for frame in self.decoder.feed(data):
            blocks = self.tracker.on_frame(frame, arrival)
            if not self._checked and self.tracker.info is not None:
                info = self.tracker.info
                self.pipeline.check_stream(info.sample_rate, info.channels, f"device {info.device_id!r} on {self.port}")
                self._checked = True
            for b in blocks:
                self._block(b)

    def _block(self, block) -> None:
        if self._next_index is not None and block.first_index < self._next_index:
            # The device restarted (its sample index went back): a new stream, fresh state.
            self._emit(self.pipeline.restart())
        self._next_index = block.first_index + len(block.samples)
        if len(block.samples):
            self._anchor = (block.first_index, block.device_time_us)
        self._emit(self.pipeline.feed(block))

    def _emit(self, preds) -> None:
        if not preds:
            return
        now_perf, now = time.perf_counter(), time.time()
        fs = self.pipeline.sample_rate or getattr(self.tracker, "sample_rate", 0.0)
        if getattr(self.tracker, "info", None) is not None:
            fs = self.tracker.info.sample_rate
        i0, t_us = self._anchor
        for p in preds:
            lat = (now_perf - p.arrival) * 1e3
            self._latency.append(lat)
            rec = {"sample": int(p.sample),
                   "device_time_s": round((t_us + (p.sample - i0) * 1e6 / fs) / 1e6, 6) if fs else None,
                   "host_time": round(now, 6), "label": p.label, "score": round(p.score, 6),
                   "latency_ms": round(lat, 3)}
            if p.scores is not None and p.label is not None:
                rec["probabilities"] = dict(zip(self.pipeline.labels, p.scores))
            self.out.write(rec)
            if self.send_predictions:
                lab = P.NO_LABEL if p.label_index is None else p.label_index
                self._send(P.PREDICTION, P.prediction_payload(int(p.sample), lab, float(p.score), p.label or ""))

    def summary(self, elapsed: float) -> dict:
        d, t = self.decoder, self.tracker.summary()
        s = {"frames": getattr(d, "frames", getattr(d, "lines", 0)), "crc_errors": getattr(d, "crc_errors", 0),
             "seq_gaps": t["seq_gaps"], "lost_samples": t["lost_samples"],
             **self.pipeline.summary()}
        if self.text:
            s.update(lines=d.lines, bad_lines=d.bad_lines, skipped_lines=d.skipped_lines)
        else:
            s.update(framing_errors=d.framing_errors, lost_frames=t["lost_frames"], duplicates=t["duplicates"],
                     device_errors=t["device_errors"], payload_errors=t["payload_errors"], restarts=t["restarts"])
        lat = np.asarray(self._latency)
        s.update(samples=t["samples"], bytes=d.bytes, connects=self.link.connects, disconnects=self.link.disconnects,
                 latency_ms={"p50": round(float(np.percentile(lat, 50)), 3) if len(lat) else None,
                             "p99": round(float(np.percentile(lat, 99)), 3) if len(lat) else None},
                 elapsed_s=round(elapsed, 3), ended=self.ended)
        return s


def serve(port: str, bundle, **kw) -> dict:
    """Run a bridge until it ends; returns the summary (the CLI prints it as one JSON line)."""
    if not Path(bundle).exists():
        raise EdgeseqError(f"bundle {bundle} not found")
    return Bridge(port, bundle, **kw).run()

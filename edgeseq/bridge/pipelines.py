"""Where a stream of samples becomes predictions: the bundle's own preprocessing and model, run
live. Device side: numpy, edgeseq's preprocessing and a runtime.

A pipeline takes :class:`~edgeseq.bridge.tracker.Block` s (samples in physical units with the
count lost before them) and returns :class:`Prediction` s; a window that contains a lost sample
is never classified, only counted in ``windows_dropped``. ``PIPELINES`` maps a bundle's ``task``
to its pipeline, so a new task (balance scores) adds one entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bundle import read_manifest
from ..errors import EdgeseqError
from ..finite import UNLABELLED, decide
from .tracker import Block


@dataclass
class Prediction:
    sample: int  # absolute sample index the prediction refers to (R peak, or a window's last sample)
    label: str | None
    label_index: int | None
    score: float  # probability of ``label`` (softmax of the logits), or the regression value
    arrival: float  # perf_counter of the bytes that completed its input
    scores: list | None = None
    trial: dict | None = None  # balance: the trial so far (every window served), see WindowPipeline


#: What a balance bundle's ``target`` measures, for serve's lines (a user's own score column is
#: named by its column alone). The scale's range comes from the manifest's ``score_range``.
TARGET_NAMES = {"Best_T": "Mini-BESTest total", "Berg": "Berg Balance Scale", "BBS": "Berg Balance Scale",
                "condition": "standing condition", "vision": "eyes open or closed", "surface": "firm or foam surface"}


class _Base:
    channels = 1
    target: str | None = None  # a balance bundle's target: what each window's score is, and the trial's

    def __init__(self, bundle_path, *, channel: int | None = None):
        self.path = bundle_path
        self.manifest = read_manifest(bundle_path)
        self.sample_rate = float(self.manifest.get("sample_rate") or 0.0)
        self.labels = list(self.manifest.get("labels", []))
        self.channel = channel
        self.windows_dropped = 0
        self.predictions = 0
        self.nonfinite_outputs = 0  # beats/windows whose model output was NaN or infinite: counted, never labelled

    def check_stream(self, sample_rate: float, channels: int, where: str) -> None:
        """Refuse a stream that the model was not trained for, before any prediction."""
        if self.sample_rate and abs(sample_rate - self.sample_rate) > 1e-6 * self.sample_rate:
            raise EdgeseqError(f"{where} streams at {sample_rate:g} Hz, but bundle {self.path} was trained at "
                               f"{self.sample_rate:g} Hz: set the device's rate (or --rate for text lines) "
                               f"to {self.sample_rate:g}")
        if self.channel is not None:
            if not 0 <= self.channel < channels:
                raise EdgeseqError(f"--channel {self.channel}, but {where} sends {channels} channel(s)")
        elif channels != self.channels:
            raise EdgeseqError(f"{where} sends {channels} channel(s), bundle {self.path} needs {self.channels}"
                               + (" (pick one with --channel)" if self.channels == 1 else ""))

    def _pick(self, block: Block) -> np.ndarray:
        x = block.samples
        if self.channel is not None:
            return x[:, self.channel:self.channel + 1]
        return x

    def describe_target(self) -> str | None:
        """``Best_T (Mini-BESTest total, 0-28)``: the target, what it measures, its range."""
        if self.target is None:
            return None
        about = [TARGET_NAMES[self.target]] if self.target in TARGET_NAMES else []
        rng = self.manifest.get("score_range")
        if rng:
            about.append(f"{rng[0]:g}-{rng[1]:g}")
        elif self.labels:
            about.append(" / ".join(self.labels))
        return f"{self.target} ({', '.join(about)})" if about else self.target

    def summary(self) -> dict:
        return {"predictions": self.predictions, "windows_dropped": self.windows_dropped,
                "nonfinite_outputs": self.nonfinite_outputs}


class EcgPipeline(_Base):
    """Band-pass, streaming QRS detection, beat windows and RR features (exactly the training
    recipe, see :class:`edgeseq.preprocess.stream.EcgBeatStream`), then the beat classifier.

    A beat is classified once the next R peak is found (its post-RR interval needs it): about one
    RR interval plus the detector's fixed delay (0.97 s at 360 Hz) after the R peak.
    """

    channels = 1

    def __init__(self, bundle_path, *, threads: int = 1, channel: int | None = None, max_fill_s: float = 2.0):
        super().__init__(bundle_path, channel=channel)
        from ..preprocess.ecg import EcgPreprocessing
        from ..preprocess.qrs import QRSDetector
        from ..preprocess.stream import EcgBeatStream

        m = self.manifest
        self.prep = EcgPreprocessing.from_config(m["preprocessing"])
        self._detector_cfg = m["detector"]
        self._max_fill_s = max_fill_s
        self._logits = self._model(bundle_path, threads)
        self._make = lambda: EcgBeatStream(self.prep, QRSDetector.from_config(self._detector_cfg),
                                           max_fill_s=max_fill_s)
        self.stream = self._make()
        self._earlier = {"beats_detected": 0, "beats_unscored": 0, "stream_resets": 0, "overflow_samples": 0}
        self._base: int | None = None  # device index of the stream's sample 0
        self._last_arrival = 0.0

    @staticmethod
    def _model(path, threads):
        from ..runtime import load

        return load(path, task="ecg", threads=threads).logits  # exported, or the numpy interpreter

    def restart(self) -> list[Prediction]:
        """The device restarted its stream: close this one (its pending beat is lost) and begin anew."""
        out = self.flush()
        self._earlier = self._counts()
        self.stream = self._make()
        self._base = None
        return out

    def feed(self, block: Block) -> list[Prediction]:
        x = self._pick(block)[:, 0]
        if self._base is None:
            if not len(x):
                return []  # loss before the first sample: nothing to bridge yet
            self._base = block.first_index
            lost = 0
        else:
            lost = block.lost_before
        self._last_arrival = block.arrival
        return self._classify(self.stream.feed(x, lost_before=lost), block.arrival)

    def flush(self) -> list[Prediction]:
        if self._base is None:
            return []
        return self._classify(self.stream.flush(), self._last_arrival)

    def _classify(self, beats, arrival: float) -> list[Prediction]:
        if not beats:
            return []
        good = [b for b in beats if b.ok]
        self.windows_dropped += len(beats) - len(good)
        if not good:
            return []
        w = np.stack([b.window for b in good]).astype(np.float32)
        f = np.stack([b.rr for b in good]).astype(np.float32)
        with np.errstate(all="ignore"):
            z = np.asarray(self._logits(w, f), dtype=np.float64)
        k, p = decide(z)
        out = []
        for i, b in enumerate(good):
            if k[i] == UNLABELLED:
                self.nonfinite_outputs += 1
                continue
            out.append(Prediction(self._base + b.r, self.labels[int(k[i])], int(k[i]), float(p[i, k[i]]), arrival,
                                  [round(float(v), 4) for v in p[i]]))
        self.predictions += len(out)
        return out

    def summary(self) -> dict:
        return {**super().summary(), **self._counts()}

    def _counts(self) -> dict:
        """The beat counters of every stream so far (a device restart starts a new one)."""
        s, e = self.stream, self._earlier
        return {"beats_detected": e["beats_detected"] + s.beats_detected,
                "beats_unscored": e["beats_unscored"] + s.beats_unscored,
                "stream_resets": e["stream_resets"] + s.resets,
                "overflow_samples": e["overflow_samples"] + s.overflow_samples}


class WindowPipeline(_Base):
    """Fixed windows through a sequence model: a bundle from ``edgeseq.from_reservoirpy`` (raw
    samples in, the output at the window's last step, windows of ``window_s`` every ``hop_s``) or a
    balance bundle (four corner forces in; the bundle's own windows, COP and input scaling; the mean
    of the step outputs, which is what its readout was trained on). Exported or not. Windows
    holding a lost sample are dropped and counted.

    A balance stream is one trial: beside each window's output the pipeline keeps the trial's,
    the mean of the outputs of every window so far (the mean score, or the label of the mean
    decision values), which is how ``edgeseq cv balance`` scores a trial. A device restart does
    not start a new trial: serve cannot tell a rebooted board from a new subject."""

    def __init__(self, bundle_path, *, threads: int = 1, channel: int | None = None,
                 window_s: float | None = None, hop_s: float | None = None):
        super().__init__(bundle_path, channel=channel)
        m = self.manifest
        if not self.sample_rate:
            raise EdgeseqError(f"bundle {bundle_path} has no sample_rate: serving a stream needs one "
                               f"(pass sample_rate= to from_reservoirpy)")
        params = m["model"]["params"]
        self._mean_output = params.get("window_output") == "mean"
        if m["task"] == "balance":
            from ..preprocess.balance import BalancePreprocessing

            prep = BalancePreprocessing.from_config(m["preprocessing"])
            if window_s is not None or hop_s is not None:
                raise EdgeseqError("a balance bundle carries its own windows: drop --window/--hop")
            self.window, self.hop = prep.window, prep.hop
            self._inputs = lambda raw: prep.window_inputs(prep.cop(raw)[None])[0]
            self.channels = 4
            self.target = str(m.get("target") or "score")
        else:
            self.window = max(1, int(round((window_s or 1.0) * self.sample_rate)))
            self.hop = max(1, int(round((hop_s or window_s or 1.0) * self.sample_rate)))
            self._inputs = lambda raw: raw.astype(np.float32)
            self.channels = int(params["inputs"])
        from ..runtime import load

        model = load(bundle_path, threads=threads)  # exported, or the numpy interpreter
        if model.runtime["interface"] == "sequence":  # each window from the initial state
            self._run = lambda X: model.run(X.astype(np.float32), model.initial_state())
        else:  # a window model: one output per window
            self._run = lambda X: model.logits(X[None].astype(np.float32))
            self._mean_output = False
        if self.channel is not None and self.channels != 1:
            raise EdgeseqError(f"--channel picks one channel, but bundle {bundle_path} takes {self.channels}")
        self._trial_sum, self._trial_n = None, 0  # outputs of the trial's windows, summed
        self.restart()

    def restart(self) -> list[Prediction]:
        """A new stream: nothing buffered (windows never span a device restart)."""
        self._buf = np.zeros((0, self.channels))
        self._bad = np.zeros(0, bool)  # lost samples (placeholders) in _buf
        self._base: int | None = None  # device index of _buf[0]
        self._next_end = self.window  # end (exclusive, relative to _base) of the next window
        return []

    def feed(self, block: Block) -> list[Prediction]:
        x = self._pick(block)
        if self._base is None:
            if not len(x):
                return []
            self._base = block.first_index
        elif block.lost_before >= self.window:
            self._skip(block.lost_before)
        elif block.lost_before:
            # Placeholders keep the time axis; the mask keeps them out of every prediction.
            self._buf = np.concatenate([self._buf, np.zeros((block.lost_before, self.channels))])
            self._bad = np.concatenate([self._bad, np.ones(block.lost_before, bool)])
        self._buf = np.concatenate([self._buf, x])
        self._bad = np.concatenate([self._bad, np.zeros(len(x), bool)])
        out = []
        while self._next_end <= len(self._buf):
            s = self._next_end - self.window
            if self._bad[s:self._next_end].any():
                self.windows_dropped += 1
            else:
                with np.errstate(all="ignore"):
                    Y = np.asarray(self._run(self._inputs(self._buf[s:self._next_end])), dtype=np.float64)
                    y = Y.mean(axis=0) if self._mean_output else Y[-1]
                p = self._predict(np.atleast_1d(y), self._base + self._next_end - 1, block.arrival)
                if p is not None:
                    out.append(p)
            self._next_end += self.hop
        # Keep only what a future window can still use: memory stays bounded.
        # Never past the samples held: with a hop longer than the window, _base must stay the
        # index of _buf[0] (trimming further shifted every later window by the difference).
        keep = min(max(0, self._next_end - self.window), len(self._buf))
        if keep:
            self._buf, self._bad = self._buf[keep:], self._bad[keep:]
            self._base += keep
            self._next_end -= keep
        return out

    def _predict(self, y: np.ndarray, sample: int, arrival: float) -> Prediction | None:
        (k,), (p,) = decide(np.asarray(y, dtype=np.float64).reshape(1, -1))
        if k == UNLABELLED:
            self.nonfinite_outputs += 1
            return None
        self.predictions += 1
        trial = self._add_to_trial(y) if self.target is not None else None
        if self.labels:
            k = int(k)
            return Prediction(sample, self.labels[k], k, float(p[k]), arrival, [round(float(v), 4) for v in p], trial)
        return Prediction(sample, None, None, float(y[0]), arrival, [float(v) for v in y] if len(y) > 1 else None,
                          trial)

    def _add_to_trial(self, y: np.ndarray) -> dict:
        y = np.asarray(y, dtype=np.float64)
        self._trial_sum = y.copy() if self._trial_sum is None else self._trial_sum + y
        self._trial_n += 1
        return self.trial()

    def trial(self) -> dict | None:
        """The trial so far: ``{"score", "windows"}``, and ``"label"`` (``score`` its probability)
        for a classifier; None before the first window."""
        if not self._trial_n:
            return None
        mean = self._trial_sum / self._trial_n
        if not self.labels:
            return {"score": round(float(mean[0]), 6), "windows": self._trial_n}
        (k,), (p,) = decide(mean.reshape(1, -1))  # finite: every window added was
        return {"label": self.labels[int(k)], "score": round(float(p[k]), 6), "windows": self._trial_n}

    def summary(self) -> dict:
        s = super().summary()
        if self.target is not None:
            s.update(target=self.target, target_description=self.describe_target(), trial=self.trial())
        return s

    def _skip(self, gap: int) -> None:
        """A gap of at least a window: counted, never materialised (one CRC-valid frame can jump the
        index by 2^31). Every window on the hop grid that overlaps the gap is dropped now, by
        arithmetic -- including those that would only have completed with samples still to come;
        the buffer restarts at the first sample after the gap, on the same grid."""
        gap_end = len(self._buf) + gap  # relative to _base: the first sample after the gap
        # The first window end e on the grid with e - window >= gap_end lies past the gap.
        first_clean = self._next_end + max(0, -(-(gap_end + self.window - self._next_end) // self.hop)) * self.hop
        self.windows_dropped += (first_clean - self._next_end) // self.hop
        self._base += gap_end
        self._next_end = first_clean - gap_end
        self._buf = np.zeros((0, self.channels))
        self._bad = np.zeros(0, bool)

    def flush(self) -> list[Prediction]:
        return []


PIPELINES = {"ecg": EcgPipeline, "sequence": WindowPipeline, "balance": WindowPipeline}


def open_pipeline(bundle_path, **options):
    """The pipeline for a bundle's task; ``options`` that a pipeline does not take are ignored."""
    m = read_manifest(bundle_path)
    task = m.get("task")
    cls = PIPELINES.get(task)
    if cls is None:
        raise EdgeseqError(f"bundle {bundle_path}: no streaming pipeline for task {task!r} "
                           f"(known: {', '.join(sorted(PIPELINES))})")
    import inspect

    accepted = set(inspect.signature(cls.__init__).parameters)
    return cls(bundle_path, **{k: v for k, v in options.items() if k in accepted and v is not None})

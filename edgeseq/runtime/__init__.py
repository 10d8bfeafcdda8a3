"""Device-side runner of bundles: numpy and the standard library at import time; onnxruntime or a
TFLite interpreter is imported when an exported bundle is loaded, and a training bundle runs its
family's description on the numpy interpreter (``edgeseq/graph/numpy.py``).

    model = edgeseq.runtime.load("beats.onnx.bundle")
    labels = model.classify(windows, rr)       # a window model: each window from the zero state
    y, state = model.step(u)                   # one sample per stream, named states carried
    Y = model.run(X)                           # a sequence model: continues from model.state

Every model has a window file (one call per window or sequence, where its format has a form for
it) and a step file; the manifest's ``runtime`` section names their inputs and outputs, the
step's states (input ``k``, output ``k_out``) and its held inputs (given once per window, such as
a beat's rr features). A window model's step returns its output after ``window_length`` steps
from the initial state, None before; a sequence model's at every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import numpy as np

from ..bundle import load_bundle
from ..errors import EdgeseqError
from ..finite import decide


@dataclass(frozen=True)
class Backend:
    """Where a format runs: the backend class (imported on first use, so a board needs only its
    own runtime), the pip extra that installs that runtime on a board (``edgeseq deploy``), and
    whether the runtime takes a thread count (``threads``)."""

    module: str
    cls: str
    extra: str
    threaded: bool = False

    def load(self):
        return getattr(import_module(self.module, __package__), self.cls)


#: Runtime format -> backend. "numpy" is a training bundle (no ``runtime`` section), run on the
#: interpreter of its family's description; the others are ``edgeseq export`` formats.
BACKENDS = {
    "onnx": Backend(".onnx_backend", "OnnxBackend", "device", threaded=True),
    "tflite": Backend(".tflite_backend", "TFLiteBackend", "device-tflite", threaded=True),
    "c": Backend(".c_backend", "CBackend", "device-base"),  # built by the board's C compiler
    "numpy": Backend(".numpy_backend", "NumpyBackend", "device-base"),
}
FORMATS = tuple(k for k in BACKENDS if k != "numpy")


def format_of(manifest: dict) -> str:
    """The ``BACKENDS`` key a bundle runs on."""
    return manifest["runtime"]["format"] if "runtime" in manifest else "numpy"


def runtime_info(manifest: dict, threads: int = 1) -> dict:
    """Where a bundle runs: format, precision, threads (a training bundle: numpy float32)."""
    rt = manifest.get("runtime") or {}
    return {"format": format_of(manifest), "precision": rt.get("precision", "float32"), "threads": threads}


def runtime_label(manifest: dict, threads: int = 1, prefix: str = "runtime ") -> str:
    """``runtime_info`` in words: ``runtime onnx int8, 1 thread`` (threads only where the runtime
    takes a count)."""
    info = runtime_info(manifest, threads)
    text = f"{prefix}{info['format']} {info['precision']}"
    if BACKENDS[info["format"]].threaded:
        text += f", {threads} thread" + ("s" if threads != 1 else "")
    return text


_CHUNK = 1024  # windows per call: bounds memory whatever the batch


def _check(name: str, x, shape: tuple, free: str = "B") -> np.ndarray:
    """``x`` as given when it is float32 of ``shape`` (None = any, named ``free`` in the error),
    else a one-line error."""
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    want = "(" + ", ".join(free if s is None else str(s) for s in shape) + ")"
    if x.dtype != np.float32:
        raise EdgeseqError(f"{name} must be float32 of shape {want}, got {x.dtype} "
                           f"(convert with .astype(np.float32))")
    if x.ndim != len(shape) or any(s is not None and s != g for s, g in zip(shape, x.shape)):
        raise EdgeseqError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    return np.ascontiguousarray(x)


def _dims(spec: dict) -> tuple:
    return tuple(d if isinstance(d, int) else None for d in spec["shape"])


def contract(graphs: dict, interface: str) -> dict:
    """The runtime section's description of the window and step graphs of a family
    (``Family.describe``), the same for every format and for the numpy runtime."""
    def io(g, names):
        return {k: {"shape": [("B" if i == 0 else "T") if d is None else int(d) for i, d in enumerate(g.shapes[k])],
                    "dtype": "float32"} for k in names}

    from ..graph import Weight, macs

    w, s = graphs["window"], graphs["step"]
    state = [k for k in s.inputs if k + "_out" in s.outputs]
    stored = [v.q if isinstance(v, Weight) else v for v in w.consts.values() if np.ndim(v.q if isinstance(v, Weight) else v)]
    return {"interface": interface, "macs": {"model": macs(w), "step": macs(s)},
            "params": int(sum(np.size(v) for v in stored)), "nonzero_params": int(sum(np.count_nonzero(v) for v in stored)),
            "units": int(s.shapes[state[-1]][-1]), "inputs": io(w, w.inputs), "outputs": io(w, w.outputs),
            "step_inputs": io(s, s.inputs), "step_outputs": io(s, s.outputs), "state": state,
            "held": [k for k in s.inputs[1:] if k not in state],
            # a window model's step output is its window output after this many steps
            "window_length": None if interface == "sequence" else w.shapes[w.inputs[0]][1]}


class Model:
    """A bundle ready to run. ``manifest`` and ``labels`` are the bundle's; ``state`` the state
    the next :meth:`step` or :meth:`run` continues from (None: the initial state)."""

    def __init__(self, path: Path, manifest: dict, backend, initial: dict):
        self.path = Path(path)
        self.manifest = manifest
        self.labels = list(manifest["labels"])
        self.runtime = rt = manifest["runtime"] if "runtime" in manifest else backend.runtime
        self._backend = backend  # .run("model" | "step", feeds) -> {output name: array}
        self._initial = initial  # state name -> the value a run starts from (zeros if absent)
        self.state_names, self.held = list(rt["state"]), list(rt["held"])
        step_in = rt["step_inputs"]
        self.sample_input = next(iter(step_in))
        self._out = next(k for k in rt["step_outputs"] if not k.endswith("_out"))
        self._shapes = {k: _dims(v)[1:] for k, v in step_in.items()}
        self.window_length = rt.get("window_length")
        self.state: dict | None = None

    @property
    def sample_rate(self) -> float:
        return float(self.manifest["sample_rate"])

    def expect_stream(self, *, sample_rate: float) -> None:
        """Refuse a stream the model was not trained for, before any sample is classified."""
        if abs(float(sample_rate) - self.sample_rate) > 1e-6 * self.sample_rate:
            raise EdgeseqError(f"stream at {float(sample_rate):g} Hz, but bundle {self.path} was trained at "
                               f"{self.sample_rate:g} Hz: resample the stream first")

    # -- whole windows -------------------------------------------------------------------------
    def logits(self, *inputs) -> np.ndarray:
        """A window model's outputs for a batch of windows (inputs in the manifest's order, e.g.
        ``windows [B, T]`` and ``rr [B, F]`` for a beat classifier), each from the zero state."""
        if self.runtime["interface"] == "sequence":
            raise EdgeseqError(f"bundle {self.path} is a sequence model: call run(X)")
        spec = self.runtime["inputs"]
        if len(inputs) != len(spec):
            raise EdgeseqError(f"this model takes {len(spec)} inputs ({', '.join(spec)}), got {len(inputs)}")
        xs = {k: _check(k, x, _dims(spec[k])) for k, x in zip(spec, inputs)}
        n = len(next(iter(xs.values())))
        if any(len(x) != n for x in xs.values()):
            raise EdgeseqError(f"inputs {', '.join(spec)} differ in batch size: {[len(x) for x in xs.values()]}")
        name = next(iter(self.runtime["outputs"]))
        out = [self._backend.run("model", {k: x[i:i + _CHUNK] for k, x in xs.items()})[name]
               for i in range(0, n, _CHUNK)]
        return np.concatenate(out) if out else np.zeros((0, *_dims(self.runtime["outputs"][name])[1:]), np.float32)

    def classify(self, *inputs) -> np.ndarray:
        """Class index per window (or per step of a sequence, for :meth:`run`'s inputs); names in
        ``labels``; ``finite.UNLABELLED`` (-1) where the outputs are not finite."""
        if not self.labels:
            raise EdgeseqError(f"bundle {self.path} is a regression model (no labels)")
        z = self.run(*inputs) if self.runtime["interface"] == "sequence" else self.logits(*inputs)
        return decide(z)[0]

    # -- one sample at a time ----------------------------------------------------------------------
    def initial_state(self, batch: int = 1, **held) -> dict:
        """The state a run starts from, for ``batch`` streams, with the held inputs (``held``)."""
        missing = [k for k in self.held if k not in held]
        if missing:
            raise EdgeseqError(f"this model's step holds {', '.join(missing)} over a window: "
                               f"pass initial_state({', '.join(f'{k}=...' for k in missing)})")
        st = {k: np.ascontiguousarray(np.broadcast_to(self._initial.get(k, np.float32(0)),
                                                      (batch, *self._shapes[k])), np.float32)
              for k in self.state_names}
        st.update({k: _check(k, held[k], (batch, *self._shapes[k])) for k in self.held})
        st["steps"] = 0
        return st

    def reset(self) -> None:
        """Back to the initial state."""
        self.state = None

    def step(self, u, state: dict | None = None):
        """One sample ``u`` ``[B, D]`` per stream -> ``(y or None, state)``, from ``state`` (else
        the model's own, else the initial state); the new state is kept for the next call."""
        u = _check(self.sample_input, u, (None, *self._shapes[self.sample_input]))
        if state is None:
            state = self.state if self.state is not None else self.initial_state(len(u))
        feeds = {self.sample_input: u}
        for k in self.state_names + self.held:
            feeds[k] = _check(k, state[k], (len(u), *self._shapes[k]))
        outs = self._backend.run("step", feeds)
        new = {**{k: outs[k + "_out"] for k in self.state_names}, **{k: state[k] for k in self.held},
               "steps": int(state.get("steps", 0)) + 1}
        self.state = new
        y = outs[self._out]
        return (y if self.window_length in (None, new["steps"]) else None), new

    def run(self, X, state: dict | None = None) -> np.ndarray:
        """A sequence model over ``X`` ``(T, D)`` float32 -> ``(T, O)``, from ``state`` (else the
        model's own, as reservoirpy's ``run`` continues; :meth:`reset` restarts); keeps the end
        state, so a stream fed in chunks equals one run over it."""
        if self.runtime["interface"] != "sequence":
            raise EdgeseqError(f"bundle {self.path} classifies whole windows: call logits() or classify()")
        D = self._shapes[self.sample_input][0]
        x = _check("X", X, (None, D), free="T")
        if not np.isfinite(x).all():
            raise EdgeseqError("X contains NaN or infinite values")
        if state is None:
            state = self.state if self.state is not None else self.initial_state(1)
        if not len(x):
            return np.zeros((0, *_dims(self.runtime["step_outputs"][self._out])[1:]), np.float32)
        if self.runtime.get("model"):
            feeds = {"x": x[None], **{k: _check(k, state[k], (1, *self._shapes[k])) for k in self.state_names}}
            outs = self._backend.run("model", feeds)
            self.state = {**{k: outs[k + "_out"] for k in self.state_names}, "steps": int(state.get("steps", 0)) + len(x)}
            return outs[self._out][0]
        ys = []
        for t in range(len(x)):  # a format with no window form for any length: the step, looped
            y, state = self.step(x[t:t + 1], state)
            ys.append(y)
        return np.concatenate(ys)


def runtime_section(root: Path, manifest: dict) -> dict:
    """The manifest's ``runtime`` section, checked: a known format, and model files that the
    manifest lists with a hash (so ``load_bundle`` has verified them)."""
    rt = manifest["runtime"]
    fmt = rt.get("format")
    if fmt not in FORMATS:
        raise EdgeseqError(f"bundle {root}: runtime format {fmt!r} is not supported (known: {', '.join(FORMATS)})")
    if "interface" not in rt:
        raise EdgeseqError(f"bundle {root} was exported by an older edgeseq: export its training bundle again")
    for name in (rt.get("model"), rt.get("step"), (rt.get("c") or {}).get("header")):  # what a backend opens
        if name and name not in manifest["files"]:
            raise EdgeseqError(f"bundle {root}: {name} is not listed with a hash in the manifest")
    for key in ("inputs", "outputs") if rt.get("model") else ():  # what the window file is checked against
        if key not in rt:
            raise EdgeseqError(f"bundle {root}: manifest.json: runtime: {key!r} is a required property "
                               f"(it names what {rt['model']} takes and gives)")
    if rt.get("model") and rt.get("window_length") not in (None, _dims(next(iter(rt["inputs"].values())))[1]):
        raise EdgeseqError(f"bundle {root}: runtime window_length {rt['window_length']} is not the window "
                           f"model's input length")
    # the names Model feeds and reads: the step's sample input first, then its states and held inputs
    ins, outs = list(rt["step_inputs"]), list(rt["step_outputs"])
    missing = [f"input {k!r}" for k in rt["state"] + rt["held"] if k not in ins[1:]] + \
              [f"output {k + '_out'!r}" for k in rt["state"] if k + "_out" not in outs] + \
              ([] if any(not k.endswith("_out") for k in outs) else ["an output that is not a state"])
    if missing:
        raise EdgeseqError(f"bundle {root}: manifest.json: runtime: the step has no {', '.join(missing)} "
                           f"(state {rt['state']}, held {rt['held']})")
    return rt


def load(path, *, task: str | None = None, threads: int = 1, ort_options: dict | None = None) -> Model:
    """Verify every file's hash (``load_bundle``) and open the bundle: an exported one on its
    format's runtime, a training one on the numpy interpreter of its family's description.
    ``task`` refuses a bundle of another task. ``ort_options`` (ONNX bundles): onnxruntime session
    options over the board default (``onnx_backend.BOARD_OPTIONS``), e.g.
    ``{"enable_cpu_mem_arena": True}``: faster big batches, at the cost of the memory it keeps."""
    root = Path(path)
    bundle = load_bundle(root, task=task)
    m = bundle.manifest
    if format_of(m) == "numpy":
        backend = BACKENDS["numpy"].load()(m, bundle.arrays)
        return Model(root, m, backend, backend.initial)
    rt = runtime_section(root, m)
    if ort_options is not None and rt["format"] != "onnx":
        raise EdgeseqError(f"bundle {root} is {rt['format']}: onnxruntime options apply to ONNX bundles only")
    extra = {"options": ort_options} if ort_options is not None else {}
    return Model(root, m, BACKENDS[rt["format"]].load()(root, rt, threads=threads, **extra), dict(bundle.arrays))

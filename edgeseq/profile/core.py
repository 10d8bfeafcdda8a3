"""Measurements behind ``edgeseq profile`` (see the package docstring)."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..bundle import load_bundle, read_manifest
from ..models import family
from ..errors import EdgeseqError

RUNTIMES = ("onnx", "tflite", "tflm", "numpy", "c")
#: Rows of the comparison table: (label, path into the result, unit).
METRICS = (
    ("window p50", ("latency_us", "window", "p50"), "us"),
    ("window p99", ("latency_us", "window", "p99"), "us"),
    ("window max", ("latency_us", "window", "max"), "us"),
    ("step p50", ("latency_us", "step", "p50"), "us"),
    ("step p99", ("latency_us", "step", "p99"), "us"),
    ("windows/s", ("throughput", "windows_per_s"), ""),
    ("windows/s batched", ("throughput", "batched_windows_per_s"), ""),
    ("samples/s streaming", ("throughput", "samples_per_s"), ""),
    ("model size", ("size_bytes",), "B"),
    ("parameters", ("params",), ""),
    ("MACs/step", ("macs_per_step",), ""),
    ("MACs/window", ("macs_per_window",), ""),
    ("peak RSS", ("peak_rss_bytes",), "B"),
    ("RSS due to model", ("model_rss_bytes",), "B"),
    ("ORT peak in use", ("ort_memory", "peak_in_use_bytes"), "B"),
    ("TFLM arena", ("arena_bytes",), "B"),
    ("efficiency", ("efficiency",), "%"),
)


# ---- what the bundle is --------------------------------------------------------------------

def _window_shape(m: dict, root: Path, window_steps: int | None) -> tuple[int, int, int]:
    """(steps per window, inputs per step, raw samples per window)."""
    if m["task"] == "ecg":
        from ..preprocess.ecg import EcgPreprocessing

        p = EcgPreprocessing.from_config(m["preprocessing"])
        return p.window_length, 1, p.pre + p.post
    params = m["model"]["params"]
    D = int(params["inputs"])
    if m["task"] == "balance":
        from ..preprocess.balance import BalancePreprocessing

        p = BalancePreprocessing.from_config(m["preprocessing"])
        return p.steps, D, p.window
    T = int(window_steps or 100)
    return T, D, T


def model_stats(rt: dict, steps: int) -> dict:
    """Parameters (every stored weight, dense as exported), nonzeros, and multiply-accumulates per
    step and per window, as the family's description counts them (``runtime.contract``); a
    sequence model's window is ``steps`` steps."""
    macs = rt["macs"]
    window = macs["step"] * steps if rt["interface"] == "sequence" else macs["model"]
    return {"params": rt["params"], "nonzero_params": rt["nonzero_params"], "units": rt["units"],
            "macs_per_step": macs["step"], "macs_per_window": window}


def _files(root: Path, m: dict) -> dict:
    rt = m.get("runtime")
    names = [rt[k] for k in ("model", "step") if rt and rt.get(k)] if rt else \
        [m["model"].get("weights", "weights.npz")]
    return {n: (root / n).stat().st_size for n in names}


# ---- runners: one window, one step ----------------------------------------------------------

def _random(spec: dict, steps: int, rng) -> np.ndarray:
    """An input of one window (batch 1, ``steps`` for a dynamic time axis): rr-like values around 1
    for held side features, signal-like values otherwise."""
    shape = [1 if d == "B" else steps if d == "T" else int(d) for d in spec["shape"]]
    return rng.normal(0, 0.3, shape).astype(np.float32)


class _Runner:
    batched = None  # (callable running a batch of windows, its size), when the model takes one

    def __init__(self, root: Path, m: dict, runtime: str, threads: int, steps: int, D: int):
        rng = np.random.default_rng(0)
        if runtime == "tflm":
            self._tflm(root, m, steps, rng)
            return
        from ..runtime import load

        model = load(root, threads=threads)
        rt = model.runtime
        self.rt = rt
        held = {k: np.abs(_random(rt["step_inputs"][k], steps, rng)) + 0.5 for k in model.held}
        state = model.initial_state(1, **held)
        u = _random(rt["step_inputs"][model.sample_input], steps, rng)
        self.step = lambda: model.step(u, state)
        if rt["interface"] == "sequence":
            X = rng.normal(0, 0.5, (steps, D)).astype(np.float32)
            self.window = lambda: model.run(X, state)
            return
        xs = [np.abs(_random(v, steps, rng)) + 0.5 if k in held else _random(v, steps, rng)
              for k, v in rt["inputs"].items()]
        self.window = lambda: model.logits(*xs)
        big = [np.repeat(x, 256, 0) for x in xs]
        self.batched = (lambda: model.logits(*big), 256)

    def _tflm(self, root: Path, m: dict, steps: int, rng):
        """Every input of the window and step files, in file order, through tflite-micro."""
        from .tflm import open_tflm

        self.rt = rt = m["runtime"]
        for key, attr in (("model", "window"), ("step", "step")):
            if not rt.get(key):
                continue
            it = open_tflm(root / rt[key])
            feed = [rng.normal(0, 0.3, tuple(d["shape"])).astype(d.get("dtype", np.float32)) for d in it.inputs]

            def call(it=it, feed=feed):
                for i, x in enumerate(feed):
                    it.set_input(x, i)
                it.invoke()
                return it.get_output(0)

            setattr(self, attr, call)
        if not rt.get("model"):  # a sequence of steps: the window is the step looped
            step = self.step
            self.window = lambda: [step() for _ in range(steps)]


def _import_runtime(runtime: str) -> None:
    try:
        if runtime == "onnx":
            import onnxruntime  # noqa: F401
        elif runtime == "tflite":
            from ..runtime.tflite_backend import _interpreter_class

            _interpreter_class()
        elif runtime == "tflm":
            import tflite_micro  # noqa: F401
    except ImportError:
        pass  # the runner says which package is missing, in one line


def _stats_us(ns: np.ndarray) -> dict:
    us = ns / 1e3
    return {"p50": float(np.percentile(us, 50)), "p90": float(np.percentile(us, 90)),
            "p99": float(np.percentile(us, 99)), "max": float(us.max()), "mean": float(us.mean()), "n": int(len(us))}


def _time(fn, n: int, warmup: int) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = np.empty(n, np.int64)
    clock = time.perf_counter_ns
    for i in range(n):
        t = clock()
        fn()
        out[i] = clock() - t
    return out


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return _peak_rss_bytes()


def _peak_rss_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r if sys.platform == "darwin" else r * 1024)


# ---- machine -----------------------------------------------------------------------------------

def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__}


_PEAK = {}
_PEAK_SCRIPT = r"""
import time, numpy as np
n = 512
a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32); b = a.T.copy()
a @ b
best = min((lambda: (lambda t: (a @ b, time.perf_counter() - t)[1])(time.perf_counter()))() for _ in range(20))
print(n ** 3 / best)
"""


def matmul_peak_macs(threads: int = 1) -> float:
    """Best float32 512x512 matmul rate of numpy's BLAS with ``threads`` threads, in MAC/s: a
    subprocess, because BLAS fixes its thread count when numpy is imported."""
    if threads not in _PEAK:
        env = {**os.environ, **{k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                         "MKL_NUM_THREADS")}}
        out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT], capture_output=True, text=True, env=env,
                             timeout=120)
        _PEAK[threads] = float(out.stdout.strip()) if out.returncode == 0 else float("nan")
    return _PEAK[threads]


# ---- onnxruntime's own memory profile --------------------------------------------------------

def ort_memory(path: Path, feed: dict, threads: int, runs: int = 5) -> dict:
    """Peak bytes in use and arena held, from onnxruntime's profiler over a few runs, and the
    initializer bytes its nodes read."""
    from ..runtime.onnx_backend import open_session

    with tempfile.TemporaryDirectory(prefix="edgeseq_ort_prof_") as d:
        s = open_session(path, threads, profile_prefix=str(Path(d) / "ort"))
        names = [i.name for i in s.get_inputs()]
        for _ in range(runs):
            s.run(None, {k: feed[k] for k in names})
        events = json.loads(Path(s.end_profiling()).read_text())
    peak = held = 0
    params = {}
    for e in events:
        a = e.get("args") or {}
        if "mem_in_use_peak" in a:
            peak = max(peak, int(a["mem_in_use_peak"]))
        if "mem_arena_held" in a:
            held = max(held, int(a["mem_arena_held"]))
        if "parameter_size" in a and "node_index" in a:
            params[a["node_index"]] = int(a["parameter_size"])
    return {"peak_in_use_bytes": peak, "arena_held_bytes": held, "node_parameter_bytes": sum(params.values())}


# ---- the profile ---------------------------------------------------------------------------------

#: Set in the child process that runs tflite-micro (see ``_tflm_in_child``).
TFLM_CHILD_ENV = "EDGESEQ_TFLM_CHILD"


def _tflm_in_child(root: Path, threads: int, n: int, arena: bool, window_steps: int | None,
                   timeout_s: float = 3600.0) -> dict:
    """The whole tflite-micro profile in a child process. tflite-micro, given a damaged or hostile
    .tflite, may abort or segfault instead of raising; in-process that kills edgeseq with a signal
    (even after the arena search's own subprocess had failed cleanly), here it becomes one line."""
    import signal

    cmd = [sys.executable, "-m", "edgeseq", "profile", str(root), "--runtime", "tflm", "--threads", str(threads),
           "--n", str(n), "--json", "-"] + ([] if arena else ["--no-arena"]) \
        + (["--window-steps", str(window_steps)] if window_steps else [])
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                           env={**os.environ, TFLM_CHILD_ENV: "1"})
    except subprocess.TimeoutExpired:
        raise EdgeseqError(f"tflite-micro did not finish profiling {root} within {timeout_s:g} s") from None
    if r.returncode < 0:
        try:
            name = signal.Signals(-r.returncode).name
        except ValueError:
            name = f"signal {-r.returncode}"
        raise EdgeseqError(f"tflite-micro crashed ({name}) running {root}: its .tflite is damaged or not a model "
                           f"tflite-micro can run")
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        if last.startswith("edgeseq: error: "):  # the child's own one line
            raise EdgeseqError(last.removeprefix("edgeseq: error: "))
        raise EdgeseqError(f"tflite-micro failed profiling {root}: {last[:300]}")
    try:
        return json.loads(r.stdout)
    except ValueError:
        raise EdgeseqError(f"tflite-micro profile of {root} printed no result") from None


def profile_bundle(path, *, runtime: str | None = None, threads: int = 1, n: int = 1000, warmup: int = 50,
                   arena: bool = True, window_steps: int | None = None) -> dict:
    root = Path(path)
    m = read_manifest(root)
    family(m)  # a task and model this edgeseq knows, else one line
    rt = m.get("runtime")
    fmt = rt["format"] if rt else "numpy"
    runtime = runtime or fmt
    if runtime not in RUNTIMES:
        raise EdgeseqError(f"--runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    allowed = {"onnx": ("onnx",), "tflite": ("tflite", "tflm"), "numpy": ("numpy",), "c": ("c",)}[fmt]
    if runtime not in allowed:
        raise EdgeseqError(f"bundle {root} is {fmt}: it runs on {' or '.join(allowed)}, not {runtime}"
                           + ("; export it first (edgeseq export)" if fmt == "numpy" else ""))
    if n < 10:
        raise EdgeseqError(f"--n must be at least 10 calls, got {n}")
    load_bundle(root)  # hashes checked before anything is timed
    if runtime == "tflm" and os.environ.get(TFLM_CHILD_ENV) != "1":
        return _tflm_in_child(root, threads, n, arena, window_steps)
    steps, D, samples = _window_shape(m, root, window_steps)
    _import_runtime(runtime)  # the runtime library's own footprint is not the model's
    rss0 = _rss_bytes()
    runner = _Runner(root, m, runtime, threads, steps, D)
    lat_w = _time(runner.window, n, warmup)
    lat_s = _time(runner.step, max(n, 10), warmup)
    batched = None
    if runner.batched:
        fn, b = runner.batched
        t = _time(fn, 5, 1)
        batched = b / (np.median(t) / 1e9)
    rss1 = _rss_bytes()
    stats = model_stats(runner.rt, steps)
    files = _files(root, m)
    w, s = _stats_us(lat_w), _stats_us(lat_s)
    fs = float(m.get("sample_rate") or 0.0)
    peak = matmul_peak_macs(threads)
    out = {
        "bundle": str(root), "task": m["task"], "runtime": runtime,
        "precision": runner.rt["precision"],
        "threads": int(threads), "n": int(n), "warmup": int(warmup),
        "window": {"steps": steps, "inputs": D, "samples": samples, "sample_rate": fs},
        "latency_us": {"window": w, "step": s},
        "throughput": {"windows_per_s": 1e6 / w["mean"], "steps_per_s": 1e6 / s["mean"],
                       # one step per new sample when a device runs the reservoir as samples arrive
                       "samples_per_s": 1e6 / s["mean"] * (samples / steps),
                       "batched_windows_per_s": batched},
        # what a device loads to classify windows (the step file where it is the only one, as in a
        # TFLite sequence model); the step model (if any) is listed in files
        "size_bytes": int(files[rt.get("model") or rt["step"]] if rt else sum(files.values())), "files": files,
        **stats,
        "peak_rss_bytes": _peak_rss_bytes(), "model_rss_bytes": int(max(rss1 - rss0, 0)),
        "ort_memory": None, "arena_bytes": None, "arena": None,
        "peak_macs_per_s": peak,
        "efficiency": (stats["macs_per_window"] / (w["p50"] / 1e6)) / peak if peak == peak else None,
        "machine": machine(),
        "latency_samples_us": {"window": (lat_w / 1e3).round(2).tolist(), "step": (lat_s / 1e3).round(2).tolist()},
    }
    if runtime == "onnx":
        rng = np.random.default_rng(0)
        out["ort_memory"] = ort_memory(root / rt["model"], {k: _random(v, steps, rng) for k, v in rt["inputs"].items()},
                                       threads)
    if arena and runtime in ("tflite", "tflm"):
        from .tflm import arena_search

        out["arena"] = {k: arena_search(root / rt[k]) for k in ("model", "step") if rt.get(k)}
        sizes = [a["bytes"] for a in out["arena"].values() if a.get("bytes")]
        out["arena_bytes"] = max(sizes) if sizes else None
    return out


# ---- tables -------------------------------------------------------------------------------------

def _get(res: dict, path: tuple):
    v = res
    for k in path:
        if not isinstance(v, dict) or v.get(k) is None:
            return None
        v = v[k]
    return v


def _fmt(v, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "%":
        return f"{100 * v:.1f}%"
    if unit == "B":
        return f"{v / 1024:.1f} kB" if v < 10 * 1024 ** 2 else f"{v / 1024 ** 2:.1f} MB"
    if unit == "us":
        return f"{v:.1f} us"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def format_table(res: dict) -> str:
    lines = [f"{res['bundle']}: {res['task']} on {res['runtime']} ({res['precision']}), {res['threads']} thread(s), "
             f"{res['n']} calls; window = {res['window']['steps']} steps"]
    for label, path, unit in METRICS:
        lines.append(f"  {label:22}{_fmt(_get(res, path), unit):>14}")
    lines.append(f"  machine: {res['machine']['cpu']}, matmul peak {res['peak_macs_per_s'] / 1e9:.1f} GMAC/s "
                 f"on {res['threads']} thread(s)")
    return "\n".join(lines)


def format_compare(results: list[dict]) -> str:
    names = [Path(r["bundle"]).name + f" ({r['runtime']})" for r in results]
    w = max(14, *(len(n) + 2 for n in names))
    lines = [f"{'':22}" + "".join(f"{n:>{w}}" for n in names)]
    for label, path, unit in METRICS:
        vals = [_get(r, path) for r in results]
        if all(v is None for v in vals):
            continue
        lines.append(f"{label:22}" + "".join(f"{_fmt(v, unit):>{w}}" for v in vals))
    return "\n".join(lines)


def compare(paths, *, runtime: str | None = None, threads: int = 1, n: int = 1000, arena: bool = True,
            progress=None) -> list[dict]:
    """Each bundle profiled in a fresh interpreter, so one model's memory does not count for the next."""
    results = []
    for i, p in enumerate(paths):
        cmd = [sys.executable, "-m", "edgeseq", "profile", str(p), "--threads", str(threads), "--n", str(n),
               "--json", "-"]
        if runtime:
            cmd += ["--runtime", runtime]
        if not arena:
            cmd.append("--no-arena")
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise EdgeseqError(f"profiling {p} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
        results.append(json.loads(r.stdout))
        if progress:
            progress(i + 1, len(paths), note=Path(p).name)
    return results

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
from ..errors import EdgeseqError

RUNTIMES = ("onnx", "tflite", "tflm", "numpy")
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

def _manifest_kind(m: dict) -> str:
    if m.get("task") == "ecg":
        return "ecg"
    if m.get("task") in ("sequence", "balance"):
        return "sequence"
    raise EdgeseqError(f"no profile for task {m.get('task')!r} bundles (known: ecg, balance, sequence)")


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


def _neural_stats(m: dict, arrays: dict, steps: int) -> dict:
    """LSTM/TCN: the core's MACs every step, the head's once per window."""
    kind = m["model"]["kind"]
    names = [k for k in arrays if k.startswith(("lstm_", "tcn_", "head_"))]
    params = sum(int(np.size(arrays[k])) for k in names)
    nonzero = sum(int(np.count_nonzero(arrays[k])) for k in names)
    # every weight matrix of the core is used once per step (TCN: all K taps of every block)
    core = sum(int(np.size(arrays[k])) for k in names
               if k.startswith(("lstm_Wih", "lstm_Whh", "tcn_W", "tcn_P")))
    head = int(np.size(arrays["head_W1"]) + np.size(arrays["head_W2"]))
    width = arrays["lstm_Whh0"].shape[1] if kind == "lstm" else arrays["tcn_W0"].shape[0]
    return {"params": params, "nonzero_params": nonzero, "units": int(width), "macs_per_step": core,
            "macs_per_window": steps * core + head}


def model_stats(m: dict, arrays: dict, steps: int) -> dict:
    """Parameters (every weight the runtime multiplies or adds, dense as exported), nonzeros, and
    multiply-accumulates per step and per window."""
    if m["model"].get("kind") in ("lstm", "tcn"):
        return _neural_stats(m, arrays, steps)
    W, Win, Wout = arrays["W"], arrays["Win"], arrays["Wout"]
    N = W.shape[0]
    params = sum(int(np.size(arrays[k])) for k in ("W", "Win", "bias", "Wout", "bout") if k in arrays)
    nonzero = sum(int(np.count_nonzero(arrays[k])) for k in ("W", "Win", "bias", "Wout", "bout") if k in arrays)
    reservoir = N * N + N * Win.shape[1]
    if m["task"] == "ecg":
        step, window = reservoir, steps * reservoir + Wout.size  # one readout per beat
    else:
        step = reservoir + Wout.size  # the sequence graph reads out at every step
        window = steps * step
    return {"params": params, "nonzero_params": nonzero, "units": int(N), "macs_per_step": int(step),
            "macs_per_window": int(window)}


def _files(root: Path, m: dict) -> dict:
    rt = m.get("runtime")
    names = [rt[k] for k in ("model", "step") if rt and rt.get(k)] if rt else \
        [m["model"].get("weights", "weights.npz")]
    return {n: (root / n).stat().st_size for n in names}


# ---- runners: one window, one step ----------------------------------------------------------

class _Runner:
    batched = None  # callable running a batch of windows, when the model takes one

    def __init__(self, root: Path, m: dict, runtime: str, threads: int, steps: int, D: int):
        rng = np.random.default_rng(0)
        self.ecg = m["task"] == "ecg"
        if self.ecg:
            F = len(m["preprocessing"].get("rr_features", [])) or 9
            w, r = rng.normal(0, 0.3, (1, steps)).astype(np.float32), rng.uniform(0.5, 1.5, (1, 9)).astype(np.float32)
            self.F = F
            if runtime == "numpy":
                from ..models import model_class

                b = load_bundle(root, task="ecg")
                est = model_class(m["model"]["kind"]).from_arrays(m["model"]["params"], b.arrays)
                self.window = lambda: est.decision_function(w, r)
                if hasattr(est, "stream"):  # LSTM/TCN: one sample through the step form
                    stream, u1 = est.stream(1), np.array([[0.1]], np.float32)
                    self.step = lambda: stream.push(u1)
                else:
                    W, Win, bias, lr = est.W_.astype(np.float32), est.Win_.astype(np.float32), \
                        est.bias_.astype(np.float32), np.float32(est.lr)
                    x = np.zeros(W.shape[0], np.float32)
                    u = np.concatenate([[0.1], np.ones(Win.shape[1] - 1)]).astype(np.float32)
                    self.step = lambda: (1 - lr) * x + lr * np.tanh(W @ x + Win @ u + bias)
                wb, rb = np.repeat(w, 256, 0), np.repeat(r, 256, 0)
                self.batched = (lambda: est.decision_function(wb, rb), 256)
            elif runtime == "tflm":
                self._tflm_ecg(root, m, w, r)
            else:
                from ..runtime import load

                model = load(root, task="ecg", threads=threads)
                u = np.array([[0.1]], np.float32)
                self.window = lambda: model.logits(w, r)
                if hasattr(model, "initial_state"):  # LSTM/TCN: named states kept by the model
                    self.step = lambda: model.step(u)
                else:
                    c = np.ones((1, model._K or 4), np.float32)
                    self.step = lambda: model.step(u, c)
                wb, rb = np.repeat(w, 256, 0), np.repeat(r, 256, 0)
                self.batched = (lambda: model.logits(wb, rb), 256)
        else:
            X = rng.normal(0, 0.5, (steps, D)).astype(np.float32)
            if runtime == "numpy":
                from ..runtime.sequence import SequenceReference

                run = SequenceReference.from_bundle(root, dtype=np.float32).run
            elif runtime == "tflm":
                run = self._tflm_sequence(root, m, D)
            else:
                from ..runtime import load

                run = load(root, threads=threads).run
            self.window = lambda: run(X)
            self.step = lambda: run(X[:1])

    def _tflm_ecg(self, root, m, w, r):
        from .tflm import open_tflm

        rt = m["runtime"]
        it = open_tflm(root / rt["model"])
        order = [w if tuple(d["shape"])[-1] == w.shape[1] else r for d in it.inputs]

        def window():
            for i, x in enumerate(order):
                it.set_input(x, i)
            it.invoke()
            return it.get_output(0)

        self.window = window
        st = open_tflm(root / rt["step"])
        # an integer input is a ring-buffer position (TCN): 0 is valid
        feed = [np.full(tuple(d["shape"]), 0.1 if np.dtype(d.get("dtype", np.float32)).kind == "f" else 0,
                        d.get("dtype", np.float32)) for d in st.inputs]

        def step():
            for i, x in enumerate(feed):
                st.set_input(x, i)
            st.invoke()
            return st.get_output(0)

        self.step = step

    def _tflm_sequence(self, root, m, D):
        from .tflm import open_tflm

        it = open_tflm(root / m["runtime"]["model"])
        shapes = [tuple(d["shape"]) for d in it.inputs]
        x_i = next(i for i, s in enumerate(shapes) if s[-1] == D)
        s_i = 1 - x_i
        N = shapes[s_i][-1]
        outs = [tuple(d["shape"]) for d in it.outputs]
        so_i = next(i for i, s in enumerate(outs) if s[-1] == N)
        y_i = 1 - so_i if len(outs) > 1 else 0

        def run(X):
            s = np.zeros((1, N), np.float32)
            Y = []
            for t in range(len(X)):
                it.set_input(X[t:t + 1], x_i)
                it.set_input(s, s_i)
                it.invoke()
                s = it.get_output(so_i).copy()
                Y.append(it.get_output(y_i).copy())
            return np.concatenate(Y)

        return run


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
    kind = _manifest_kind(m)
    rt = m.get("runtime")
    fmt = rt["format"] if rt else "numpy"
    runtime = runtime or fmt
    if runtime not in RUNTIMES:
        raise EdgeseqError(f"--runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    allowed = {"onnx": ("onnx",), "tflite": ("tflite", "tflm"), "numpy": ("numpy",)}[fmt]
    if runtime not in allowed:
        raise EdgeseqError(f"bundle {root} is {fmt}: it runs on {' or '.join(allowed)}, not {runtime}"
                           + ("; export it first (edgeseq export)" if fmt == "numpy" else ""))
    if n < 10:
        raise EdgeseqError(f"--n must be at least 10 calls, got {n}")
    bundle = load_bundle(root)  # hashes checked before anything is timed
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
    stats = model_stats(m, bundle.arrays, steps)
    files = _files(root, m)
    w, s = _stats_us(lat_w), _stats_us(lat_s)
    fs = float(m.get("sample_rate") or 0.0)
    peak = matmul_peak_macs(threads)
    out = {
        "bundle": str(root), "task": m["task"], "runtime": runtime,
        "precision": (rt or {}).get("precision", "float64" if fmt == "numpy" and m["model"].get("kind") == "esn"
                                   else "float32"),
        "threads": int(threads), "n": int(n), "warmup": int(warmup),
        "window": {"steps": steps, "inputs": D, "samples": samples, "sample_rate": fs},
        "latency_us": {"window": w, "step": s},
        "throughput": {"windows_per_s": 1e6 / w["mean"], "steps_per_s": 1e6 / s["mean"],
                       # one step per new sample when a device runs the reservoir as samples arrive
                       "samples_per_s": 1e6 / s["mean"] * (samples / steps),
                       "batched_windows_per_s": batched},
        # what a device loads to classify windows; the step model (if any) is listed in files
        "size_bytes": int(files[rt["model"]] if rt else sum(files.values())), "files": files,
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
        if kind == "ecg":
            feed = {"window": rng.normal(0, 0.3, (1, steps)).astype(np.float32),
                    "rr": np.ones((1, runner.F), np.float32)}
        else:
            feed = {"x": rng.normal(0, 0.5, (steps, D)).astype(np.float32)}
        out["ort_memory"] = ort_memory(root / rt["model"], feed, threads)
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

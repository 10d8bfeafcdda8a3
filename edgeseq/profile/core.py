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
#: Rows of the tables: (label, path into the result, unit). Byte counts in one binary unit per
#: quantity, named in the label: KiB (1,024 bytes) for files and arenas, MiB for process memory.
METRICS = (
    ("window p50 (us)", ("latency_us", "window", "p50"), "us"),
    ("window p99 (us)", ("latency_us", "window", "p99"), "us"),
    ("window max (us)", ("latency_us", "window", "max"), "us"),
    ("step p50 (us)", ("latency_us", "step", "p50"), "us"),
    ("step p99 (us)", ("latency_us", "step", "p99"), "us"),
    ("windows/s", ("throughput", "windows_per_s"), ""),
    ("windows/s batched", ("throughput", "batched_windows_per_s"), ""),
    ("batch (windows/call)", ("batch",), ""),
    ("samples/s streaming", ("throughput", "samples_per_s"), ""),
    ("model size (KiB)", ("size_bytes",), "KiB"),
    ("parameters", ("params",), ""),
    ("MACs/step", ("macs_per_step",), ""),
    ("MACs/window", ("macs_per_window",), ""),
    ("peak RSS (MiB)", ("peak_rss_bytes",), "MiB"),
    ("RSS due to model (MiB)", ("model_rss_bytes",), "MiB"),
    ("ORT peak in use (KiB)", ("ort_memory", "peak_in_use_bytes"), "KiB"),
    ("TFLM arena (KiB)", ("arena_bytes",), "KiB"),
    ("efficiency", ("efficiency",), "%"),
)
#: The RSS breakdown (MiB): what each stage of the profile added, then what backs the pages at
#: the end (``rss_parts``). ``model_rss_bytes`` is load + first calls + timed calls: what the model
#: costs a device that runs one window at a time.
RSS_STAGES = (("baseline", "python, numpy, edgeseq"), ("runtime_import", "+ runtime library import"),
              ("model_load", "+ model load (sessions)"), ("first_calls", "+ first window and step"),
              ("runs", "+ timed calls"), ("batched", "+ batched run"))
RSS_ROWS = tuple((label, ("rss", "stages", key), "MiB") for key, label in RSS_STAGES) + (
    ("= RSS at the end", ("rss", "end", "rss"), "MiB"),
    ("  anonymous", ("rss", "end", "anonymous"), "MiB"),
    ("  runtime library pages", ("rss", "end", "runtime_library"), "MiB"),
    ("  other file pages", ("rss", "end", "other_files"), "MiB"),
    ("  threads", ("rss", "end", "threads"), ""),
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


def _feed(specs: dict, held, steps: int, rng) -> dict:
    """One window's inputs by name: rr-like positive values around 1 for the ``held`` ones."""
    return {k: np.abs(_random(v, steps, rng)) + 0.5 if k in held else _random(v, steps, rng)
            for k, v in specs.items()}


class _Runner:
    batched = None  # (callable running a batch of windows, its size), when the model takes one

    def __init__(self, root: Path, m: dict, runtime: str, threads: int, steps: int, D: int, batch: int = 256,
                 ort_options: dict | None = None):
        rng = np.random.default_rng(0)
        if runtime == "tflm":
            self._tflm(root, m, steps, rng)
            return
        from ..runtime import load

        model = load(root, threads=threads, ort_options=ort_options)
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
        xs = list(_feed(rt["inputs"], held, steps, rng).values())
        self.window = lambda: model.logits(*xs)
        big = [np.repeat(x, batch, 0) for x in xs]
        self.batched = (lambda: model.logits(*big), batch)

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


#: Runtime -> substrings of the paths of its shared libraries (``rss_parts``'s runtime_library).
RUNTIME_LIBRARIES = {"onnx": ("onnxruntime",), "tflite": ("ai_edge_litert", "tflite_runtime"),
                     "tflm": ("tflite_micro",), "c": ("edgeseq/c/",), "numpy": ()}


def rss_parts(runtime: str | None = None) -> dict | None:
    """This process's resident memory by what backs it, in bytes, from ``/proc/self/smaps`` (None
    where there is none: not Linux). ``anonymous``: every page no file backs (heap, arenas, thread
    stacks, Python objects and arrays, the vdso) and the library pages written at load
    (relocations); ``runtime_library``: the
    runtime's shared-library pages mapped and touched (``RUNTIME_LIBRARIES``), ``other_files``:
    every other file's (the interpreter, numpy's libraries, libc...). File pages not written are
    clean: shared with other processes and dropped under memory pressure, unlike anonymous ones.
    ``peak``: the highest RSS of the process so far; ``threads``: its thread count."""
    try:
        with open("/proc/self/smaps") as f:
            text = f.read()
    except OSError:
        return None
    tokens = RUNTIME_LIBRARIES.get(runtime or "", ())
    out = {"rss": 0, "anonymous": 0, "runtime_library": 0, "other_files": 0, "threads": None, "peak": None}
    path = ""
    for line in text.splitlines():
        head, _, rest = line.partition(":")
        if " " in head:  # a mapping's first line: address range, permissions, ..., path
            parts = line.split(None, 5)
            path = parts[5] if len(parts) > 5 else ""
            continue
        if head in ("Rss", "Anonymous"):
            b = int(rest.split()[0]) * 1024
            out["rss"] += b if head == "Rss" else 0
            if path.startswith("/"):  # a file's pages; those written (relocations) count as anonymous
                out["runtime_library" if any(t in path for t in tokens) else "other_files"] += \
                    b if head == "Rss" else -b
    out["anonymous"] = out["rss"] - out["runtime_library"] - out["other_files"]
    try:
        with open("/proc/self/status") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
        out["threads"] = int(status["Threads"])
        out["peak"] = int(status["VmHWM"].split()[0]) * 1024  # the highest RSS so far
    except (OSError, KeyError, ValueError):
        pass
    return out


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

def _ort_trace(path: Path, feed: dict, threads: int, runs: int, options: dict | None) -> list:
    """onnxruntime's profiler events (Chrome trace) of a session of its own over ``runs`` runs."""
    from ..runtime.onnx_backend import open_session

    with tempfile.TemporaryDirectory(prefix="edgeseq_ort_prof_") as d:
        s = open_session(path, threads, profile_prefix=str(Path(d) / "ort"), options=options)
        names = [i.name for i in s.get_inputs()]
        for _ in range(runs):
            s.run(None, {k: feed[k] for k in names})
        try:
            return json.loads(Path(s.end_profiling()).read_text())
        except (OSError, ValueError) as exc:
            raise EdgeseqError(f"onnxruntime's profile of {path} could not be read: {exc}") from None


def ort_memory(path: Path, feed: dict, threads: int, runs: int = 5, options: dict | None = None) -> dict:
    """Peak bytes in use and arena held, from onnxruntime's profiler over a few runs, and the
    initializer bytes its nodes read. Its session has the arena on whatever ``options`` say: only
    the arena counts bytes in use (without it the profiler reports zeros)."""
    events = _ort_trace(path, feed, threads, runs, {**(options or {}), "enable_cpu_mem_arena": True})
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


#: --ort-profile: profiled calls per model after warm-up ones. A window of the ECG ESN is a Scan
#: of 126 steps, about 1,000 events a call: a few dozen calls give stable shares in a few MB.
ORT_PROFILE_RUNS, ORT_PROFILE_WARMUP, ORT_PROFILE_TOP = 20, 5, 10


def ort_ops(events: list, skip_runs: int = 0) -> dict:
    """Time per op type and per node from onnxruntime's profiler ``events``, over the runs after
    the first ``skip_runs``. A node's time is its self time: a Scan's or Loop's body runs as nodes
    of their own inside its span, so the loop node keeps only the time outside them, and the
    shares add up to the kernels' part of the model's time; the rest is the executor's own."""
    runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])[skip_runs:]
    if not runs:
        return {"runs": 0, "model_us_per_run": None, "kernels_share": None, "ops": [], "nodes": []}
    start = runs[0]["ts"]
    nodes = sorted((e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")
                    and e["ts"] >= start), key=lambda e: (e.get("tid"), e["ts"], -e["dur"]))
    self_us = [float(e["dur"]) for e in nodes]
    stack: list = []  # indices of the nodes whose span holds the current one (same thread)
    for i, e in enumerate(nodes):
        while stack and (nodes[stack[-1]].get("tid") != e.get("tid")
                         or nodes[stack[-1]]["ts"] + nodes[stack[-1]]["dur"] <= e["ts"]):
            stack.pop()
        if stack:
            self_us[stack[-1]] -= e["dur"]
        stack.append(i)
    total = float(sum(r["dur"] for r in runs))
    by_op, by_node = {}, {}
    for e, t in zip(nodes, self_us):
        op = (e.get("args") or {}).get("op_name", "?")
        name = e["name"].removesuffix("_kernel_time")
        a = by_op.setdefault(op, [0.0, set()])
        a[0] += t
        a[1].add(name)
        b = by_node.setdefault(name, [0.0, op, 0])
        b[0] += t
        b[2] += 1
    n = len(runs)
    ops = [{"op": k, "us_per_run": v[0] / n, "share": v[0] / total, "nodes": len(v[1])}
           for k, v in sorted(by_op.items(), key=lambda kv: -kv[1][0])]
    top = [{"node": k, "op": v[1], "us_per_run": v[0] / n, "share": v[0] / total, "calls_per_run": v[2] / n}
           for k, v in sorted(by_node.items(), key=lambda kv: -kv[1][0])[:ORT_PROFILE_TOP]]
    return {"runs": n, "model_us_per_run": total / n, "kernels_share": sum(self_us) / total, "ops": ops,
            "nodes": top}


def ort_profile_of(root: Path, rt: dict, steps: int, threads: int, options: dict | None) -> dict:
    """``ort_ops`` of the window model and of the step model, each in a profiled session of its
    own (``ORT_PROFILE_RUNS`` calls after ``ORT_PROFILE_WARMUP``)."""
    out = {}
    for key, what, spec in (("model", "window", "inputs"), ("step", "step", "step_inputs")):
        if not rt.get(key):
            continue
        feed = _feed(rt[spec], rt["held"], steps, np.random.default_rng(0))
        events = _ort_trace(root / rt[key], feed, threads, ORT_PROFILE_WARMUP + ORT_PROFILE_RUNS, options)
        out[what] = ort_ops(events, skip_runs=ORT_PROFILE_WARMUP)
    return out


# ---- the profile ---------------------------------------------------------------------------------

#: Set in the child process that runs tflite-micro (see ``_tflm_in_child``).
TFLM_CHILD_ENV = "EDGESEQ_TFLM_CHILD"


def _tflm_in_child(root: Path, threads: int, n: int, arena: bool, window_steps: int | None,
                   timeout_s: float = 3600.0, warmup: int = 50) -> dict:
    """The whole tflite-micro profile in a child process. tflite-micro, given a damaged or hostile
    .tflite, may abort or segfault instead of raising; in-process that kills edgeseq with a signal
    (even after the arena search's own subprocess had failed cleanly), here it becomes one line."""
    import signal

    cmd = [sys.executable, "-m", "edgeseq", "profile", str(root), "--runtime", "tflm", "--threads", str(threads),
           "--n", str(n), "--warmup", str(warmup), "--json", "-"] + ([] if arena else ["--no-arena"]) \
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
                   batch: int = 256, arena: bool = True, window_steps: int | None = None, ort_profile: bool = False,
                   ort_options: dict | None = None, progress=None) -> dict:
    """The profile of the bundle at ``path`` (see the package docstring). ``batch``: windows per
    call of the batched throughput; ``ort_profile``: onnxruntime's per-op times (ONNX only);
    ``ort_options``: session options over the runtime's board default (ONNX only);
    ``progress(done, total, note=...)`` is called after each stage."""
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
    if runtime != "onnx" and (ort_profile or ort_options is not None):
        raise EdgeseqError(f"--ort-profile and --ort-arena are onnxruntime's: bundle {root} runs on {runtime}")
    if n < 10:
        raise EdgeseqError(f"--n must be at least 10 calls, got {n}")
    if warmup < 0 or batch < 1:
        raise EdgeseqError(f"--warmup must be >= 0 and --batch >= 1, got {warmup} and {batch}")
    load_bundle(root)  # hashes checked before anything is timed
    if runtime == "tflm" and os.environ.get(TFLM_CHILD_ENV) != "1":
        return _tflm_in_child(root, threads, n, arena, window_steps, warmup=warmup)
    stages = ["load", "window calls", "step calls", "batched calls", "matmul peak"] \
        + (["onnxruntime memory"] if runtime == "onnx" else []) + (["per-op profile"] if ort_profile else []) \
        + (["tflite-micro arena"] if arena and runtime in ("tflite", "tflm") else [])
    done = iter(range(1, len(stages) + 1))

    def tick():
        i = next(done)
        if progress:
            progress(i, len(stages), note=stages[i - 1])

    steps, D, samples = _window_shape(m, root, window_steps)
    mem = {"baseline": _rss_bytes()}
    _import_runtime(runtime)  # the runtime library's own footprint is not the model's
    mem["runtime_import"] = _rss_bytes()
    runner = _Runner(root, m, runtime, threads, steps, D, batch, ort_options)
    mem["model_load"] = _rss_bytes()
    runner.window()
    runner.step()
    mem["first_calls"] = _rss_bytes()
    tick()
    lat_w = _time(runner.window, n, warmup)
    tick()
    lat_s = _time(runner.step, max(n, 10), warmup)
    mem["runs"] = _rss_bytes()
    tick()
    batched = None
    if runner.batched:
        fn, b = runner.batched
        t = _time(fn, 5, 1)
        batched = b / (np.median(t) / 1e9)
    mem["batched"] = _rss_bytes()
    tick()
    parts = rss_parts(runtime)
    keys = [k for k, _ in RSS_STAGES]
    rss = {"unit": "bytes", "stages": {k: int(mem[k] - (mem[keys[i - 1]] if i else 0)) for i, k in enumerate(keys)},
           "end": parts or {"rss": int(mem["batched"])}}
    stats = model_stats(runner.rt, steps)
    files = _files(root, m)
    w, s = _stats_us(lat_w), _stats_us(lat_s)
    fs = float(m.get("sample_rate") or 0.0)
    peak = matmul_peak_macs(threads)
    tick()
    options = None
    if runtime == "onnx":
        from ..runtime.onnx_backend import resolve_options

        options = resolve_options(threads, ort_options)
    out = {
        "bundle": str(root), "task": m["task"], "runtime": runtime,
        "precision": runner.rt["precision"],
        "threads": int(threads), "n": int(n), "warmup": int(warmup), "batch": runner.batched[1] if batched else None,
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
        "peak_rss_bytes": _peak_rss_bytes(),
        "model_rss_bytes": int(max(sum(rss["stages"][k] for k in ("model_load", "first_calls", "runs")), 0)),
        "rss": rss, "ort_options": options,
        "ort_memory": None, "ort_profile": None, "arena_bytes": None, "arena": None,
        "peak_macs_per_s": peak,
        "efficiency": (stats["macs_per_window"] / (w["p50"] / 1e6)) / peak if peak == peak else None,
        "machine": machine(),
        "latency_samples_us": {"window": (lat_w / 1e3).round(2).tolist(), "step": (lat_s / 1e3).round(2).tolist()},
    }
    if runtime == "onnx":
        rng = np.random.default_rng(0)
        out["ort_memory"] = ort_memory(root / rt["model"], {k: _random(v, steps, rng) for k, v in rt["inputs"].items()},
                                       threads, options=ort_options) if rt.get("model") else None
        tick()
    if ort_profile:
        out["ort_profile"] = ort_profile_of(root, rt, steps, threads, ort_options)
        tick()
    if arena and runtime in ("tflite", "tflm"):
        from .tflm import arena_search

        out["arena"] = {k: arena_search(root / rt[k]) for k in ("model", "step") if rt.get(k)}
        sizes = [a["bytes"] for a in out["arena"].values() if a.get("bytes")]
        out["arena_bytes"] = max(sizes) if sizes else None
        tick()
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
    """A number in the unit its row names (``METRICS``): no unit suffix, so a column never mixes
    kB with MB."""
    if v is None:
        return "-"
    if unit == "%":
        return f"{100 * v:.1f}%"
    if unit in ("KiB", "MiB"):
        return f"{v / (1024 if unit == 'KiB' else 1024 ** 2):,.1f}"
    if unit == "us":
        return f"{v:,.1f}"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _ops_lines(res: dict) -> list[str]:
    """The per-op profile, with the profiled call's time beside the unprofiled p50: onnxruntime's
    profiler costs microseconds per node event, so a model of many small nodes (a Scan's body, run
    every step) reads slower under it; the shares still say where the time goes."""
    lines = []
    for what, p in res["ort_profile"].items():
        if not p.get("runs"):
            continue
        p50 = _get(res, ("latency_us", what, "p50"))
        lines.append(f"  onnxruntime ops, {what} model: {p['runs']} profiled calls of {p['model_us_per_run']:,.1f} us"
                     + (f" (unprofiled p50 {p50:,.1f} us)" if p50 else "") + "; self time per call, share:")
        for o in p["ops"][:ORT_PROFILE_TOP]:
            nodes = f"{o['nodes']} node" + ("s" if o["nodes"] != 1 else "")
            lines.append(f"    {o['op']:24}{o['us_per_run']:>12,.1f} us{100 * o['share']:>8.1f}%  ({nodes})")
        lines.append(f"    {'(outside kernels)':24}{(1 - p['kernels_share']) * p['model_us_per_run']:>12,.1f} us"
                     f"{100 * (1 - p['kernels_share']):>8.1f}%")
    return lines


W = 28  # label column


def format_table(res: dict) -> str:
    lines = [f"{res['bundle']}: {res['task']} on {res['runtime']} ({res['precision']}), {res['threads']} thread(s), "
             f"{res['n']} calls after {res.get('warmup', 50)} warm-up; window = {res['window']['steps']} steps"]
    for label, path, unit in METRICS:
        lines.append(f"  {label:{W}}{_fmt(_get(res, path), unit):>14}")
    if res.get("rss"):
        lines.append("  RSS (MiB), added by each stage, then what backs it at the end:")
        for label, path, unit in RSS_ROWS:
            lines.append(f"  {label:{W}}{_fmt(_get(res, path), unit):>14}")
    if res.get("ort_profile"):
        lines += _ops_lines(res)
    lines.append(f"  machine: {res['machine']['cpu']}, matmul peak {res['peak_macs_per_s'] / 1e9:.1f} GMAC/s "
                 f"on {res['threads']} thread(s)")
    return "\n".join(lines)


def format_compare(results: list[dict]) -> str:
    names = [Path(r["bundle"]).name + f" ({r['runtime']})" for r in results]
    w = max(14, *(len(n) + 2 for n in names))
    lines = [f"{'':{W}}" + "".join(f"{n:>{w}}" for n in names)]
    for rows, head in ((METRICS, None), (RSS_ROWS, "RSS (MiB), added by each stage, then what backs it at the end:")):
        if head and any(r.get("rss") for r in results):
            lines.append(head)
        for label, path, unit in rows:
            vals = [_get(r, path) for r in results]
            if all(v is None for v in vals):
                continue
            lines.append(f"{label:{W}}" + "".join(f"{_fmt(v, unit):>{w}}" for v in vals))
    for name, r in zip(names, results):
        if r.get("ort_profile"):
            lines += [f"{name}:", *_ops_lines(r)]
    return "\n".join(lines)


def compare(paths, *, runtime: str | None = None, threads: int = 1, n: int = 1000, arena: bool = True,
            progress=None, warmup: int = 50, batch: int = 256, ort_profile: bool = False,
            ort_arena: bool = False) -> list[dict]:
    """Each bundle profiled in a fresh interpreter, so one model's memory does not count for the next."""
    results = []
    for i, p in enumerate(paths):
        cmd = [sys.executable, "-m", "edgeseq", "profile", str(p), "--threads", str(threads), "--n", str(n),
               "--warmup", str(warmup), "--batch", str(batch), "--json", "-"]
        cmd += (["--ort-profile"] if ort_profile else []) + (["--ort-arena"] if ort_arena else [])
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

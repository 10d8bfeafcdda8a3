"""What onnxruntime's resident memory is made of, and which session options shrink it without
costing latency: each setting in a fresh interpreter, the default ECG ESN exported float and int8.

    python tools/bench/ort_memory.py F.onnx Q.onnx [--n 1000] [--rounds 3]

Per setting and bundle, one child process measures the RSS (``edgeseq.profile.core.rss_parts``:
anonymous, onnxruntime's library pages, other files) after numpy and edgeseq, after ``import
onnxruntime``, after opening the window and step sessions, after the first window and step call,
after N more of each, and after one batch of 256 and of 1,024 windows (``evaluate`` runs chunks
of 1,024); and the latency p50/p99 of the window and step calls (one ``RunOptions`` per call, as
``guard.Watchdog`` does, without its timer thread). Settings run in turn ``--rounds`` times; the
medians over rounds are kept, as the machine is shared. Written to ``results/ort_memory.json``.

The bundles: ``edgeseq train ecg --data ../shared/data/mitdb --out B`` then ``edgeseq export B
--format onnx [--int8 --calibration ../shared/data/mitdb --records 101,106,119,208] --out ...``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results"

#: edgeseq's session options before this benchmark (onnxruntime's defaults but one thread each).
BEFORE = {"enable_cpu_mem_arena": True, "enable_mem_pattern": True, "intra_op_num_threads": 1,
          "inter_op_num_threads": 1, "execution_mode": "sequential", "graph_optimization_level": "all",
          "session.intra_op.allow_spinning": "1", "session.inter_op.allow_spinning": "1"}
NO_SPIN = {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}
#: (name, base, session options over the base, extra) per setting. base "before": BEFORE; "board":
#: the runtime's board default (``onnx_backend.BOARD_OPTIONS``). extra: run-level or process-wide
#: settings (an arena shrunk after every run; one arena for all sessions, grown by what is asked).
SETTINGS = (
    ("before (arena on)", "before", {}, {}),
    ("arena off", "before", {"enable_cpu_mem_arena": False}, {}),
    ("mem pattern off", "before", {"enable_mem_pattern": False}, {}),
    ("arena + pattern off", "before", {"enable_cpu_mem_arena": False, "enable_mem_pattern": False}, {}),
    ("arena shrunk per run", "before", {}, {"run_config": {"memory.enable_memory_arena_shrinkage": "cpu:0"}}),
    ("shared arena, exact growth", "before", {"session.use_env_allocators": "1"}, {"env_arena": True}),
    ("threads default (0/0)", "before", {"intra_op_num_threads": 0, "inter_op_num_threads": 0}, {}),
    ("threads 0/0, no spinning", "before", {"intra_op_num_threads": 0, "inter_op_num_threads": 0, **NO_SPIN}, {}),
    ("no spinning", "before", NO_SPIN, {}),
    ("parallel mode", "before", {"execution_mode": "parallel"}, {}),
    ("opt disable", "before", {"graph_optimization_level": "disable"}, {}),
    ("opt basic", "before", {"graph_optimization_level": "basic"}, {}),
    ("opt extended", "before", {"graph_optimization_level": "extended"}, {}),
    ("board default", "board", {}, {}),
    ("board + arena (--ort-arena)", "board", {"enable_cpu_mem_arena": True}, {}),
)
BATCHES = (256, 1024)


# ---- the child: one setting, one bundle --------------------------------------------------------

def _feeds(spec: dict, held: list, rng, batch: int = 1) -> dict:
    out = {}
    for k, v in spec.items():
        shape = [batch if d == "B" else int(d) for d in v["shape"]]
        x = rng.normal(0, 0.3, shape).astype(np.float32)
        out[k] = np.abs(x) + 0.5 if k in held else x
    return out


def child(bundle: str, base: str, options: dict, extra: dict, n: int) -> dict:
    from edgeseq.bundle import read_manifest
    from edgeseq.profile.core import _stats_us, rss_parts

    root = Path(bundle)
    rt = read_manifest(root)["runtime"]
    rss = {"numpy + edgeseq": rss_parts("onnx")}
    import onnxruntime as ort

    rss["import onnxruntime"] = rss_parts("onnx")
    from edgeseq.runtime.onnx_backend import BOARD_OPTIONS, open_session, resolve_options

    if extra.get("env_arena"):  # kSameAsRequested (1): the arena grows by each request, not by doubling
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, 1, -1, -1))
    overrides = {**(BOARD_OPTIONS if base == "board" else BEFORE), **options}
    sessions = {k: open_session(root / rt[k], 1, options=overrides) for k in ("model", "step")}
    rss["sessions open"] = rss_parts("onnx")
    rng = np.random.default_rng(0)
    held = rt["held"]
    feeds = {"model": _feeds(rt["inputs"], held, rng), "step": _feeds(rt["step_inputs"], held, rng)}

    def call(which, f):
        ro = ort.RunOptions()
        for k, v in extra.get("run_config", {}).items():
            ro.add_run_config_entry(k, v)
        return sessions[which].run(None, f, ro)

    for k in ("model", "step"):
        call(k, feeds[k])
    rss["first calls"] = rss_parts("onnx")
    lat = {}
    for k in ("model", "step"):
        for _ in range(50):
            call(k, feeds[k])
        t = np.empty(n, np.int64)
        for i in range(n):
            t0 = time.perf_counter_ns()
            call(k, feeds[k])
            t[i] = time.perf_counter_ns() - t0
        s = _stats_us(t)
        lat["window" if k == "model" else "step"] = {"p50": s["p50"], "p99": s["p99"]}
    rss[f"{n} calls each"] = rss_parts("onnx")
    batched = {}
    for b in BATCHES:
        f = _feeds(rt["inputs"], held, rng, b)
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            call("model", f)
            best = min(best, time.perf_counter() - t0)
        batched[str(b)] = best / b * 1e6
        rss[f"batch {b}"] = rss_parts("onnx")
    so = sessions["model"].get_session_options()
    return {"rss": rss, "latency_us": lat, "batched_us_per_window": batched,
            "options": resolve_options(1, overrides), "arena_in_session": so.enable_cpu_mem_arena}


def child_paired(bundle: str, n: int) -> dict:
    """Latency of BEFORE against the board default in one process, calls interleaved (the order
    swapped every call), so a busy machine slows both alike: the comparison the separate processes
    above cannot make to a few percent. ``n`` windows and ``10 n`` steps (a step is ~40x cheaper,
    and its p99 needs the calls)."""
    from edgeseq.bundle import read_manifest
    from edgeseq.profile.core import _stats_us
    from edgeseq.runtime.onnx_backend import BOARD_OPTIONS, open_session

    import onnxruntime as ort

    root = Path(bundle)
    rt = read_manifest(root)["runtime"]
    sets = {"before": BEFORE, "board": BOARD_OPTIONS}
    sessions = {(s, k): open_session(root / rt[k], 1, options=o) for s, o in sets.items() for k in ("model", "step")}
    rng = np.random.default_rng(0)
    feeds = {"model": _feeds(rt["inputs"], rt["held"], rng), "step": _feeds(rt["step_inputs"], rt["held"], rng)}
    out = {s: {} for s in sets}
    for k in ("model", "step"):
        calls = n if k == "model" else 10 * n
        t = {s: np.empty(calls, np.int64) for s in sets}
        order = list(sets)
        for i in range(-50, calls):  # 50 warm-up calls each
            for s in order:
                t0 = time.perf_counter_ns()
                sessions[s, k].run(None, feeds[k], ort.RunOptions())
                if i >= 0:
                    t[s][i] = time.perf_counter_ns() - t0
            order.reverse()
        for s in sets:
            st = _stats_us(t[s])
            out[s]["window" if k == "model" else "step"] = {"p50": st["p50"], "p99": st["p99"]}
    return out


# ---- the parent --------------------------------------------------------------------------------

def _median(values):
    return float(np.median(values))


def _merge(runs: list[dict]) -> dict:
    """Medians over rounds of every number (latency, RSS parts, batched time)."""
    first = runs[0]
    out = {"options": first["options"], "rounds": len(runs)}
    out["latency_us"] = {w: {q: _median([r["latency_us"][w][q] for r in runs]) for q in ("p50", "p99")}
                         for w in first["latency_us"]}
    out["batched_us_per_window"] = {b: _median([r["batched_us_per_window"][b] for r in runs])
                                    for b in first["batched_us_per_window"]}
    out["rss"] = {stage: {k: int(_median([r["rss"][stage][k] for r in runs])) for k in parts}
                  for stage, parts in first["rss"].items()}
    return out


def _table(rows: list[dict], bundle: str) -> str:
    mib = 2 ** 20
    stages = list(rows[0]["rss"])
    head = (f"{'setting':28}" + "".join(f"{s[:14]:>15}" for s in stages)
            + f"{'anon':>7}{'ortlib':>7}{'thr':>4}{'peak@N':>8}{'peak':>7}{'win p50/p99':>14}{'step p50/p99':>14}"
            + f"{'B256':>7}{'B1024':>7}")
    lines = [f"{bundle}: RSS in MiB after each stage (anon/ortlib/threads: at the end; peak@N: the highest RSS "
             f"before the batches, peak: at the end); latency in us (B256/B1024: us per window in batches)", head]
    for r in rows:
        end = r["rss"][stages[-1]]
        lat, b = r["latency_us"], r["batched_us_per_window"]
        lines.append(f"{r['setting']:28}" + "".join(f"{r['rss'][s]['rss'] / mib:15.1f}" for s in stages)
                     + f"{end['anonymous'] / mib:7.1f}{end['runtime_library'] / mib:7.1f}{end['threads']:4d}"
                     + f"{r['rss'][stages[-3]]['peak'] / mib:8.1f}{end['peak'] / mib:7.1f}"
                     + f"{lat['window']['p50']:>7.0f}/{lat['window']['p99']:<6.0f}"
                     + f"{lat['step']['p50']:>7.1f}/{lat['step']['p99']:<6.1f}"
                     + f"{b['256']:7.0f}{b['1024']:7.0f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundles", nargs="*")
    ap.add_argument("--n", type=int, default=1000, help="timed calls of each kind (default 1000)")
    ap.add_argument("--rounds", type=int, default=3, help="passes over the settings (default 3)")
    ap.add_argument("--only", help="setting names separated by semicolons (default: all)")
    ap.add_argument("--out", default=str(OUT / "ort_memory.json"))
    ap.add_argument("--paired-rounds", type=int, default=5,
                    help="processes timing before against the board default, interleaved (default 5)")
    ap.add_argument("--child", nargs=3, metavar=("BUNDLE", "SETTING", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--child-paired", nargs=2, metavar=("BUNDLE", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_paired:
        print(json.dumps(child_paired(args.child_paired[0], int(args.child_paired[1]))))
        return
    if args.child:
        name, n = args.child[1], int(args.child[2])
        _, base, options, extra = next(s for s in SETTINGS if s[0] == name)
        print(json.dumps(child(args.child[0], base, options, extra, n)))
        return
    import onnxruntime

    from edgeseq.profile.core import machine

    settings = [s for s in SETTINGS if not args.only or s[0] in args.only.split(";")]
    raw = {b: {s[0]: [] for s in settings} for b in args.bundles}
    for rnd in range(args.rounds):
        for name, *_ in settings:
            for b in args.bundles:
                r = subprocess.run([sys.executable, __file__, "--child", b, name, str(args.n)], capture_output=True,
                                   text=True, timeout=600)
                if r.returncode != 0:
                    sys.exit(f"{name} on {b} failed: {r.stderr.strip()[-2000:]}")
                raw[b][name].append(json.loads(r.stdout))
            print(f"round {rnd + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
    results = {}
    for b in args.bundles:
        rows = [{"setting": name, **_merge(raw[b][name])} for name, *_ in settings]
        results[Path(b).name] = rows
        print(_table(rows, Path(b).name) + "\n")
    paired = {}
    for b in args.bundles:
        runs = []
        for _ in range(args.paired_rounds):
            r = subprocess.run([sys.executable, __file__, "--child-paired", b, str(args.n)], capture_output=True,
                               text=True, timeout=600)
            if r.returncode != 0:
                sys.exit(f"paired timing of {b} failed: {r.stderr.strip()[-2000:]}")
            runs.append(json.loads(r.stdout))
        med = {s: {w: {q: _median([x[s][w][q] for x in runs]) for q in ("p50", "p99")} for w in ("window", "step")}
               for s in ("before", "board")}
        med["board_over_before"] = {w: {q: med["board"][w][q] / med["before"][w][q] for q in ("p50", "p99")}
                                    for w in ("window", "step")}
        paired[Path(b).name] = {**med, "rounds": len(runs)}
        print(f"{Path(b).name}: paired latency, board default over before: "
              + ", ".join(f"{w} p50 {v['p50']:.3f} p99 {v['p99']:.3f}" for w, v in med["board_over_before"].items()))
    Path(args.out).write_text(json.dumps(
        {"command": "python tools/bench/ort_memory.py " + " ".join(sys.argv[1:]),
         "machine": machine(), "versions": {"onnxruntime": onnxruntime.__version__},
         "n": args.n, "rounds": args.rounds, "batches": list(BATCHES), "before": BEFORE,
         "bundles": results, "paired": paired}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

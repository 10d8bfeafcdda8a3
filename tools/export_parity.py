"""Export parity: record what today's exporters output on real data; check a later export against it.

The export code (edgeseq/export/) is to be redesigned, and the redesign must not change what the
exported bundles compute. ``record`` trains five source bundles once (ECG ESN, LSTM and TCN on all of
MIT-BIH DS1, a balance ESN for Best_T on hbedb, a reservoirpy ESN predicting the next ECG sample),
exports each with ``edgeseq export`` (ONNX and TFLite, float32 and --int8 where the CLI allows it),
runs every export through ``edgeseq.runtime.load`` on real inputs and keeps the outputs
(OUT/outputs/*.npz), sizes and int8 figures (OUT/baseline.json). ``check`` re-exports the same source
bundles with the code it runs in, runs the same inputs, prints one table and exits 0 when every rule
holds. Only surfaces that outlive the redesign are used: the ``train`` and ``export`` commands, and
``edgeseq.runtime.load(path)`` with ``.logits(windows, rr)`` or ``.run(X)`` on a freshly loaded model.

    PYTHONPATH=. python tools/export_parity.py record --data ../shared/data --out /work/baseline
    PYTHONPATH=. python tools/export_parity.py check --data ../shared/data --baseline /work/baseline
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

import edgeseq
from edgeseq.bundle import read_manifest
from edgeseq.metrics import confusion, report
from edgeseq.runtime import load

ROOT = Path(edgeseq.__file__).resolve().parents[1]  # the code under test: its CLI is the one we call
FORMATS, PRECISIONS = ("onnx", "tflite"), ("float32", "int8")
FLOAT_TOL, INT8_POINTS, SIZE_SHARE = 1e-5, 1.0, 0.35
#: source bundle -> (kind of inputs, `edgeseq train` arguments; None: fitted here with reservoirpy)
SOURCES = {
    "ecg-esn": ("ecg", ["ecg", "--model", "esn", "--data", "{mitdb}"]),
    "ecg-lstm": ("ecg", ["ecg", "--model", "lstm", "--data", "{mitdb}"]),
    "ecg-tcn": ("ecg", ["ecg", "--model", "tcn", "--data", "{mitdb}"]),
    "balance-esn": ("balance", ["balance", "--model", "esn", "--data", "{hbedb}", "--target", "Best_T"]),
    "rpy-esn": ("sequence", None),
}
RPY_TRAIN = ("101", 0, 20000)  # record, first and end sample (lead MLII, mV)
RPY_EXCERPTS = [("101", 20000, 30000), ("106", 0, 10000)]  # held out of the same record, another record
BATCH = 1024


def cli(*args) -> tuple[int, str]:
    """``python -m edgeseq ARGS`` of the code this script imports: (exit status, stderr)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    r = subprocess.run([sys.executable, "-m", "edgeseq", *map(str, args)], env=env, capture_output=True, text=True)
    return r.returncode, r.stderr.strip()


def train_sources(data: Path, bundles: Path) -> dict:
    """Train the source bundles that are not in ``bundles`` yet; seconds per bundle trained now."""
    seconds = {}
    for name, (_, argv) in SOURCES.items():
        out = bundles / f"{name}.bundle"
        if (out / "manifest.json").exists():
            continue
        t0 = time.perf_counter()
        print(f"training {name} ...", flush=True)
        if argv is None:
            fit_reservoirpy(data / "mitdb", out)
        else:
            rc, err = cli("train", *[a.format(mitdb=data / "mitdb", hbedb=data / "hbedb") for a in argv],
                          "--quiet", "--out", out)
            if rc:
                sys.exit(f"training {name} failed ({rc}):\n{err}")
        seconds[name] = round(time.perf_counter() - t0, 1)
        print(f"  {name}: {seconds[name]} s", flush=True)
    return seconds


def excerpt(mitdb: Path, record: str, a: int, b: int) -> np.ndarray:
    from edgeseq.data.mitdb import load_record

    return load_record(mitdb, record, annotations=False).signal[a:b].astype(np.float32).reshape(-1, 1)


def fit_reservoirpy(mitdb: Path, out: Path) -> None:
    from reservoirpy.nodes import Reservoir, Ridge

    from edgeseq.interop.reservoirpy import from_reservoirpy

    x = excerpt(mitdb, *RPY_TRAIN).astype(np.float64)
    model = Reservoir(100, lr=0.3, sr=0.9, seed=0) >> Ridge(ridge=1e-6)
    model.fit(x[:-1], x[1:])
    from_reservoirpy(model, out, sample_rate=360.0)


_INPUTS: dict = {}  # the three ECG sources share their beats (same preprocessing): read DS1 once


def inputs_of(kind: str, data: Path, source: Path) -> dict:
    """The real inputs an export of ``source`` is run on (arrays; ``labels`` = ECG reference)."""
    m = read_manifest(source)
    key = (kind, json.dumps(m.get("preprocessing"), sort_keys=True), m.get("target"))
    if key in _INPUTS:
        return _INPUTS[key]
    if kind == "ecg":
        from edgeseq.data.mitdb import select_records
        from edgeseq.preprocess.ecg import EcgPreprocessing
        from edgeseq.tasks.ecg import load_beats

        records = select_records(data / "mitdb")  # every DS1 record present
        b = load_beats(data / "mitdb", records, EcgPreprocessing.from_config(m["preprocessing"]), progress=False)
        inp = {"windows": b.windows.astype(np.float32), "rr": b.rr.astype(np.float32), "labels": b.labels}
    elif kind == "balance":
        from edgeseq.preprocess.balance import BalancePreprocessing
        from edgeseq.tasks.balance import load_windows

        prep = BalancePreprocessing.from_config(m["preprocessing"])
        inp = {"X": load_windows(data / "hbedb", prep, m["target"], progress=False).X.astype(np.float32)}
    else:
        inp = {f"{r}_{a}_{b}": excerpt(data / "mitdb", r, a, b) for r, a, b in RPY_EXCERPTS}
    _INPUTS[key] = inp
    return inp


def digest(arrays: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode() + str(arrays[k].shape).encode() + np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()


def run(path: Path, kind: str, inp: dict) -> dict:
    """Outputs of a freshly loaded exported bundle on ``inp``, float32."""
    model = load(path)
    if kind == "ecg":
        w, rr = inp["windows"], inp["rr"]
        return {"logits": np.concatenate([model.logits(w[i:i + BATCH], rr[i:i + BATCH])
                                          for i in range(0, len(w), BATCH)]).astype(np.float32)}
    # every window and excerpt from the initial state (reset: a no-op before runs carried state)
    if kind == "balance":
        return {"steps": np.stack([(model.reset(), model.run(x))[1] for x in inp["X"]]).astype(np.float32)}
    return {k: (model.reset(), model.run(x))[1].astype(np.float32) for k, x in inp.items()}


def figures(logits: np.ndarray, labels: np.ndarray, names: list) -> tuple[np.ndarray, dict]:
    """Predicted class per beat (-1 where the logits are not finite) and per-class Se/+P in %."""
    pred = np.where(np.isfinite(logits).all(axis=1), logits.argmax(axis=1), -1)
    got, k = pred >= 0, len(names)
    rep = report(confusion(labels[got], pred[got], k), names, missed=np.bincount(labels[~got], minlength=k))
    pct = lambda v: None if v is None else round(100 * v, 4)  # noqa: E731
    return pred, {c: {"se": pct(v["se"]), "ppv": pct(v["ppv"])} for c, v in rep["classes"].items()}


def gap(a: dict, b: dict) -> float:
    """Largest |difference| in points over every class's Se and +P (inf where one is undefined)."""
    d = [0.0 if a[c][m] is None and b[c][m] is None else
         float("inf") if a[c][m] is None or b[c][m] is None else abs(a[c][m] - b[c][m])
         for c in a for m in ("se", "ppv")]
    return round(max(d), 4)


def maxdiff(a: dict, b: dict) -> float:
    """max |a - b| over the output arrays (inf on a shape mismatch or a non-finite difference)."""
    out = 0.0
    for k in a:
        if k == "labels":
            continue
        if k not in b or a[k].shape != b[k].shape:
            return float("inf")  # not the same outputs at all
        d = np.abs(a[k].astype(np.float64) - b[k].astype(np.float64))
        out = max(out, float(d.max()) if d.size and np.isfinite(d).all() else float("inf") if d.size else 0.0)
    return out


def versus(kind: str, q: dict, f: dict, labels, names) -> dict:
    """int8 outputs ``q`` against float outputs ``f`` of the same family and format."""
    if kind == "ecg":
        pf, ff = figures(f["logits"], labels, names)
        pq, fq = figures(q["logits"], labels, names)
        return {"max_gap_points": gap(fq, ff), "agreement": float(np.mean(pq == pf)), "int8": fq, "float": ff}
    if kind == "balance":  # a window's score is the mean of its step outputs
        return {"max_score_diff": float(np.abs(q["steps"].mean(1) - f["steps"].mean(1)).max())}
    return {"max_y_diff": maxdiff(q, f)}


def export_all(data: Path, bundles: Path, work: Path) -> tuple[dict, dict, dict]:
    """Export every source both formats x both precisions into ``work`` and run the exports:
    (entries by export name, outputs by export name, inputs by source)."""
    entries, outputs, inputs = {}, {}, {}
    (work / "outputs").mkdir(parents=True, exist_ok=True)
    for src, (kind, _) in SOURCES.items():
        source = bundles / f"{src}.bundle"
        inputs[src] = inp = inputs_of(kind, data, source)
        names = list(read_manifest(source)["labels"])
        for fmt in FORMATS:
            for prec in PRECISIONS:
                name, out = f"{src}.{fmt}.{prec}", work / "exports" / f"{src}.{fmt}.{prec}.bundle"
                shutil.rmtree(out, ignore_errors=True)
                out.parent.mkdir(parents=True, exist_ok=True)
                e = entries[name] = {"source": src, "kind": kind, "format": fmt, "precision": prec}
                t0 = time.perf_counter()
                rc, err = cli("export", source, "--format", fmt, "--out", out,
                              *(["--int8", "--calibration", data / "mitdb"] if prec == "int8" else []))
                e["seconds_export"] = round(time.perf_counter() - t0, 1)
                if rc:
                    if prec == "float32":
                        sys.exit(f"export {name} failed ({rc}):\n{err}")
                    e.update(available=False, error=err.splitlines()[-1] if err else f"exit {rc}")
                    print(f"  {name}: not available ({e['error']})", flush=True)
                    continue
                files = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
                e.update(available=True, runtime_precision=read_manifest(out).get("runtime", {}).get("precision"),
                         files=files, bytes=sum(files.values()))
                t0 = time.perf_counter()
                outputs[name] = run(out, kind, inp)
                e["seconds_run"] = round(time.perf_counter() - t0, 1)
                extra = {"labels": inp["labels"]} if kind == "ecg" else {}
                np.savez(work / "outputs" / f"{name}.npz", **outputs[name], **extra)
                fl = f"{src}.{fmt}.float32"
                if prec == "int8":
                    e["share_of_float"] = round(e["bytes"] / entries[fl]["bytes"], 4)
                    e["vs_float"] = versus(kind, outputs[name], outputs[fl], inp.get("labels"), names)
                print(f"  {name}: {e['bytes']} bytes, export {e['seconds_export']} s, run {e['seconds_run']} s",
                      flush=True)
    return entries, outputs, inputs


def environment() -> dict:
    """Where the recorded outputs came from: the code's commit (and whether edgeseq/ differs from
    it) and the runtimes' versions (a new onnxruntime may move float outputs by rounding)."""
    git = lambda *a: subprocess.run(["git", "-C", ROOT, *a], capture_output=True, text=True).stdout.strip()  # noqa: E731
    vers = {p: metadata.version(p) for p in ("edgeseq", "numpy", "onnx", "onnxruntime", "ai-edge-litert",
                                             "torch", "reservoirpy")}
    return {"code": str(ROOT), "commit": git("rev-parse", "HEAD"), "python": sys.version.split()[0],
            "edgeseq_dirty": bool(git("status", "--porcelain", "--", "edgeseq")), "versions": vers}


def cmd_record(args) -> int:
    t0 = time.perf_counter()
    out = Path(args.out)
    (out / "bundles").mkdir(parents=True, exist_ok=True)
    trained = train_sources(Path(args.data), out / "bundles")
    t1 = time.perf_counter()
    entries, _, inputs = export_all(Path(args.data), out / "bundles", out)
    base = {"created": time.strftime("%Y-%m-%d %H:%M:%S"), "data": str(args.data), **environment(),
            "inputs": {s: {"sha256": digest(a), "shapes": {k: list(v.shape) for k, v in a.items()}}
                       for s, a in inputs.items()},
            "sequence_excerpts": RPY_EXCERPTS, "sequence_training": RPY_TRAIN,
            "seconds": {"train": trained, "train_total": round(t1 - t0, 1),
                        "export_and_run": round(time.perf_counter() - t1, 1),
                        "total": round(time.perf_counter() - t0, 1)},
            "exports": entries}
    (out / "baseline.json").write_text(json.dumps(base, indent=1) + "\n")
    print(f"baseline: {out / 'baseline.json'} ({base['seconds']['total']} s)")
    return 0


def cmd_check(args) -> int:
    t0 = time.perf_counter()
    bdir = Path(args.baseline)
    base = json.loads((bdir / "baseline.json").read_text())
    work = Path(args.work or tempfile.mkdtemp(prefix="export_parity_"))
    print(f"re-exporting {bdir / 'bundles'} with {ROOT} into {work}", flush=True)
    entries, outputs, inputs = export_all(Path(args.data), bdir / "bundles", work)
    old = lambda n: dict(np.load(bdir / "outputs" / f"{n}.npz"))  # noqa: E731
    fails, rows = [], []
    for src, recorded in base["inputs"].items():
        if digest(inputs[src]) != recorded["sha256"]:
            fails.append(f"{src}: inputs differ from the baseline's (preprocessing or data changed)")
    pairs = sorted({(e["source"], e["format"]) for e in base["exports"].values()},
                   key=lambda p: (list(SOURCES).index(p[0]), p[1]))
    for src, fmt in pairs:
        kind = SOURCES[src][0]
        fl, q8 = f"{src}.{fmt}.float32", f"{src}.{fmt}.int8"
        row = {"bundle": f"{src} {fmt}"}
        row["float"] = d = maxdiff(old(fl), outputs[fl])
        scale = max(1.0, max(float(np.abs(v).max()) for k, v in old(fl).items() if k != "labels"))
        if not d <= FLOAT_TOL * scale:  # float32 keeps ~7 digits: 1e-5 of the outputs' magnitude
            fails.append(f"{fl}: float outputs differ by {d:.3g} > {FLOAT_TOL:g} x {scale:.3g}")
        was = base["exports"].get(q8, {}).get("available", False)
        if not entries[q8]["available"]:
            row["int8"] = "n/a"
            if was or args.strict:
                fails.append(f"{q8}: int8 export not available ({entries[q8]['error']})"
                             + (" but the baseline has one" if was else " (--strict)"))
        else:
            v = entries[q8]["vs_float"]
            o = old(q8) if was else None
            if kind == "ecg":
                row.update(gap=v["max_gap_points"], agree=v["agreement"])
                if v["max_gap_points"] > INT8_POINTS:
                    fails.append(f"{q8}: per-class Se/+P {v['max_gap_points']:.2f} points from float > {INT8_POINTS:g}")
                if o is not None:
                    names = list(read_manifest(bdir / "bundles" / f"{src}.bundle")["labels"])
                    p_new, p_old = (figures(x["logits"], o["labels"], names)[0] for x in (outputs[q8], o))
                    row.update(agree_old=float(np.mean(p_new == p_old)), int8_old=maxdiff(o, outputs[q8]))
            else:
                row["int8_f"] = v.get("max_score_diff", v.get("max_y_diff"))
                if o is not None:
                    row["int8_old"] = maxdiff(o, outputs[q8])
            row["size"] = share = entries[q8]["share_of_float"]
            if args.strict and share > SIZE_SHARE:
                fails.append(f"{q8}: int8 bundle is {100 * share:.1f}% of float > {100 * SIZE_SHARE:g}% (--strict)")
        rows.append(row)
    print(table(rows))
    print(f"check took {time.perf_counter() - t0:.0f} s; outputs in {work}")
    for f in fails:
        print(f"FAIL {f}")
    print("PASS" if not fails else f"{len(fails)} rule(s) broken")
    return 0 if not fails else 1


def table(rows: list) -> str:
    """One line per family x format; '-' = not measured for this family, 'n/a' = no int8 export."""
    cols = [("bundle", "bundle", "{}"), ("float", "float max|d| vs old", "{:.3g}"),
            ("gap", "int8 Se/+P gap pts", "{:.2f}"), ("agree", "agree i8~f", "{:.3%}"),
            ("agree_old", "agree i8~old i8", "{:.3%}"), ("int8_f", "i8 max|d| vs f", "{:.4g}"),
            ("int8_old", "i8 max|d| vs old i8", "{:.3g}"), ("size", "i8 dir / f dir", "{:.1%}")]
    cells = [[h for _, h, _ in cols]]
    for r in rows:
        cells.append([fmt.format(r[k]) if k in r else "n/a" if r.get("int8") == "n/a" and k != "float" else "-"
                      for k, _, fmt in cols])
    widths = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in cells)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", required=True, type=Path, help="the shared data directory (mitdb/, hbedb/)")
    r = sub.add_parser("record", parents=[common], help="train the sources once, export, record outputs")
    r.add_argument("--out", required=True, help="baseline directory (its bundles/ are reused if present)")
    r.set_defaults(func=cmd_record)
    c = sub.add_parser("check", parents=[common], help="re-export the baseline's sources with this code, compare")
    c.add_argument("--baseline", required=True, help="directory written by record")
    c.add_argument("--work", help="where the new exports and outputs go (default: a new temporary directory)")
    c.add_argument("--strict", action="store_true",
                   help="also enforce int8 for every family and int8 bundle directories <= 35%% of float")
    c.set_defaults(func=cmd_check)
    args = p.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

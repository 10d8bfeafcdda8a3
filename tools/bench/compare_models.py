"""ESN against LSTM against TCN on MIT-BIH DS1: accuracy, training time, size, per-beat latency.

    python tools/bench/compare_models.py cv    [--models esn,lstm,tcn] [--folds 22]
    python tools/bench/compare_models.py build [--models esn,lstm,tcn] [--n 300]

``cv``: record-grouped K-fold cross-validation inside DS1 (no record in two folds, the same folds
for every model: they depend on the seed and the records' beat counts only), written to
``results/cv_ds1_<model>_<K>fold.json`` with the per-record table, the record-bootstrap 95%
intervals and the mean and worst fold. The default is 22 folds, leave-one-record-out: every model
is trained on 21 patients and scored on the one left out, so each fold is one patient and the
worst fold is the worst patient. Fewer folds (``--folds 5``) train fewer models but hold out
several patients at once, which reads as a different protocol from the literature's.

``build``: for each model, train on all of DS1 (wall time; per-epoch times for LSTM/TCN), export
float32 and int8 to ONNX and TFLite (file sizes), check the int8 exports against the float ones
on every DS1 beat (the export issue's rule: per-class Se and +P within 1 point, >= 99% same
label), and time one beat per call through ``edgeseq profile``'s measurement (one thread). Written
to ``results/models_ds1.json``. Timings are only comparable inside one run: run it on a quiet
machine (``machine`` records what it ran on).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "tools" / "bench" / "results"
LABELS = ("N", "S", "V", "F", "Q")


def machine() -> dict:
    from edgeseq.profile.core import machine as base

    out = base()
    try:
        import torch

        out["torch"] = torch.__version__
        out["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return out


def run_cv(args) -> None:
    from edgeseq.tasks import ecg

    for model in args.models:
        t0 = time.perf_counter()
        rep = ecg.cross_validate(args.data, model=model, folds=args.folds, seed=args.seed, progress=True)
        rep["command"] = (f"python tools/bench/compare_models.py cv --models {model} --folds {args.folds} "
                          f"--data {args.data_arg}")
        rep["machine"] = machine()
        out = RESULTS / f"cv_ds1_{model}_{args.folds}fold.json"
        out.write_text(json.dumps(rep, indent=1) + "\n")
        ci = (rep.get("ci95") or {}).get("accuracy")
        worst = ((rep.get("fold_summary") or {}).get("accuracy") or {}).get("min")
        print(f"{model}: accuracy {100 * rep['accuracy']:.2f}%"
              + (f" [{100 * ci[0]:.1f}-{100 * ci[1]:.1f}]" if ci else "")
              + (f", worst fold {100 * worst:.1f}%" if worst is not None else "")
              + f" in {time.perf_counter() - t0:.0f} s -> {out}", flush=True)


def _rule(ref: dict, got: dict) -> dict:
    """The export accuracy rule: per-class Se and +P of ``got`` within 1 point of ``ref``."""
    worst = 0.0
    for c in LABELS:
        for k in ("se", "ppv"):
            a, b = ref["classes"][c].get(k), got["classes"][c].get(k)
            if a is None or b is None or ref["classes"][c]["n"] == 0:
                continue
            worst = max(worst, abs(100 * (a - b)))
    return {"max_class_diff_points": round(worst, 3), "met": worst <= 1.0}


def run_build(args) -> None:
    from edgeseq.metrics import confusion, report
    from edgeseq.profile.core import profile_bundle
    from edgeseq.runtime import load
    from edgeseq.tasks import ecg
    from edgeseq.data.mitdb import select_records

    records = select_records(args.data, None)
    prep = ecg.EcgPreprocessing()
    beats = ecg.load_beats(args.data, records, prep, progress=False)
    out = {"command": f"python tools/bench/compare_models.py build --data {args.data_arg}"
                      + (f" --bundles {args.bundles}" if args.bundles else ""),
           "machine": machine(), "n_beats": int(len(beats.labels)), "models": {}}
    path = RESULTS / "models_ds1.json"
    float_pred = {}  # (model, format) -> labels of the float export, for its int8 export
    with tempfile.TemporaryDirectory(prefix="edgeseq_cmp_") as tmp:
        tmp = Path(tmp)
        for model in args.models:
            b = tmp / model
            if args.bundles:  # trained earlier on all of DS1 (e.g. by tools/export_parity.py record)
                b = Path(args.bundles) / f"ecg-{model}.bundle"
                info = json.loads((b / "manifest.json").read_text())["training"]
                train_s = info["seconds"]
            else:
                t0 = time.perf_counter()
                info = ecg.train(args.data, out=b, model=model, seed=args.seed, progress=True)
                train_s = time.perf_counter() - t0
            numpy = load(b)  # the description on the numpy interpreter
            ref_pred = numpy.classify(beats.windows, beats.rr)
            ref = report(confusion(beats.labels, ref_pred, len(LABELS)), LABELS)
            row = {"train_seconds": round(train_s, 1), "seconds_reading": info["seconds_reading"],
                   "n_params": int(numpy.runtime["params"]), "numpy_reference": _short(ref), "exports": {}}
            if "epochs" in info:
                row["epoch_seconds"] = [e["seconds"] for e in info["epochs"]]
                row["device"] = info["device"]
            for fmt in ("onnx", "tflite"):
                for int8 in (False, True):
                    name = f"{fmt}_{'int8' if int8 else 'float32'}"
                    x = tmp / f"{model}.{name}"
                    _export(b, x, fmt, int8, (args.data, records))
                    m = json.loads((x / "manifest.json").read_text())
                    pred = load(x).classify(beats.windows, beats.rr)
                    rep = report(confusion(beats.labels, pred, len(LABELS)), LABELS)
                    prof = profile_bundle(x, n=args.n, threads=1, arena=False)
                    e = {"bytes": (x / m["runtime"]["model"]).stat().st_size,
                         "dir_bytes": sum(f.stat().st_size for f in x.iterdir()), "figures": _short(rep),
                         "same_label_as_reference": float(np.mean(pred == ref_pred)),
                         "latency_us": {f"{k}_us": prof["latency_us"]["window"][k] for k in ("p50", "p90", "p99")},
                         "step_latency_us": {f"{k}_us": prof["latency_us"]["step"][k] for k in ("p50", "p99")}}
                    if int8:
                        fl = row["exports"][f"{fmt}_float32"]
                        e["rule_vs_float"] = _rule(fl["figures"], e["figures"])
                        e["same_label_as_float"] = float(np.mean(pred == float_pred[(model, fmt)]))
                        e["size_vs_float"] = round(e["bytes"] / fl["bytes"], 4)
                        e["dir_vs_float"] = round(e["dir_bytes"] / fl["dir_bytes"], 4)
                    else:
                        float_pred[(model, fmt)] = pred
                    row["exports"][name] = e
                    print(f"{model} {name}: {e['bytes']} bytes, p50 {e['latency_us']['p50_us']:.0f} us, "
                          f"accuracy {100 * rep['accuracy']:.2f}%" +
                          (f", rule {'met' if e['rule_vs_float']['met'] else 'NOT met'} "
                           f"({e['rule_vs_float']['max_class_diff_points']:.2f} points)" if int8 else ""), flush=True)
            out["models"][model] = row
            path.write_text(json.dumps(out, indent=1) + "\n")  # partial results survive a crash
    print(f"-> {path}")


def _short(rep: dict) -> dict:
    return {"accuracy": rep["accuracy"], "classes": {c: {k: rep["classes"][c].get(k) for k in ("se", "ppv", "n")}
                                                     for c in LABELS}}


def _export(src, dst, fmt, int8, calibration):
    """One exporter for every family (``edgeseq export``); the ESN's int8 ranges are fixed and
    its calibration data unused, the LSTM's and TCN's are calibrated on DS1 beats."""
    from edgeseq.export import export

    return export(src, dst, fmt=fmt, int8=int8, calibration=calibration if int8 else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["cv", "build"])
    ap.add_argument("--data", default="../shared/data/mitdb", help="MIT-BIH records (default: ../shared/data/mitdb, "
                    "run from the repository root)")
    ap.add_argument("--models", default="esn,lstm,tcn")
    ap.add_argument("--bundles", metavar="DIR", help="build: use DIR/ecg-<model>.bundle trained on all of DS1 "
                    "instead of training (tools/export_parity.py record writes them)")
    ap.add_argument("--folds", type=int, default=22,
                    help="record-grouped folds (default 22: leave-one-record-out over DS1's 22 records)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=300, help="single-beat calls timed per export")
    args = ap.parse_args()
    args.data_arg = args.data
    args.models = [m for m in args.models.split(",") if m]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (run_cv if args.step == "cv" else run_build)(args)


if __name__ == "__main__":
    main()

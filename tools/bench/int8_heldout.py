"""int8 against float on patients the model never saw: the export rule on held-out folds.

    python tools/bench/int8_heldout.py [--models esn] [--folds 22] [--data ../shared/data/mitdb]

``compare_models.py build`` checks the int8 exports on the beats the model was trained on; a board
meets patients it was not. Here, for each record-grouped fold (the folds of ``edgeseq cv``: 22 is
leave-one-record-out), a bundle is trained on the other records with ``edgeseq train``'s path,
exported four ways (ONNX and TFLite, float32 and int8, calibrated on its own training beats only),
and each export labels the held-out beats. Pooled over the folds, per export: the share of beats
whose int8 label equals the float label, and the largest gap in any class's Se or +P between int8
and float (the rule: >= 99.8% same label, every gap <= 1 point). Written to
``results/int8_heldout_<model>.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from compare_models import LABELS, RESULTS, ROOT, _export, _rule, _short, machine


def run(data: str, model: str, folds: int, seed: int) -> dict:
    from edgeseq.data.mitdb import select_records
    from edgeseq.metrics import confusion, report
    from edgeseq.runtime import load
    from edgeseq.tasks import ecg

    names = select_records(data, None)
    beats = ecg.load_beats(data, names, ecg.EcgPreprocessing(), progress=False)
    groups = ecg.record_folds(names, np.bincount(beats.record_index, minlength=len(names)), folds, seed)
    exports = [(fmt, int8) for fmt in ("onnx", "tflite") for int8 in (False, True)]
    conf = {e: np.zeros((len(LABELS), len(LABELS)), np.int64) for e in exports}
    same = {fmt: 0 for fmt, _ in exports}
    n_test = 0
    t0 = time.perf_counter()
    for k, group in enumerate(groups):
        test = np.isin(beats.record_index, [names.index(r) for r in group])
        train = [r for r in names if r not in group]
        calibration = (beats.windows[~test], beats.rr[~test])
        with tempfile.TemporaryDirectory(prefix="edgeseq_int8_") as tmp:
            b = Path(tmp) / "bundle"
            ecg.train(data, train, out=b, model=model, seed=seed, progress=False)
            labels = {}
            for fmt, int8 in exports:
                x = _export(b, Path(tmp) / f"{fmt}_{int8}", fmt, int8, calibration)
                labels[fmt, int8] = load(x).classify(beats.windows[test], beats.rr[test])
                conf[fmt, int8] += confusion(beats.labels[test], labels[fmt, int8], len(LABELS))
        for fmt in same:
            same[fmt] += int(np.sum(labels[fmt, True] == labels[fmt, False]))
        n_test += int(test.sum())
        print(f"fold {k + 1}/{len(groups)} ({','.join(group)}): " + ", ".join(
            f"{fmt} {100 * np.mean(labels[fmt, True] == labels[fmt, False]):.2f}% same" for fmt in same)
            + f"  [{time.perf_counter() - t0:.0f} s]", flush=True)
    out = {"command": f"python tools/bench/int8_heldout.py --models {model} --folds {folds} --data {data}",
           "machine": machine(), "model": model, "n_folds": len(groups), "n_beats": n_test, "formats": {}}
    for fmt in same:
        fl = _short(report(conf[fmt, False], LABELS))
        q = _short(report(conf[fmt, True], LABELS))
        rule = _rule(fl, q)
        rule["met"] = rule["met"] and same[fmt] >= 0.998 * n_test
        out["formats"][fmt] = {"float32": fl, "int8": q, "same_label": same[fmt] / n_test, "rule_vs_float": rule}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mitdb"))
    ap.add_argument("--models", default="esn")
    ap.add_argument("--folds", type=int, default=22)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    for model in args.models.split(","):
        out = run(args.data, model, args.folds, args.seed)
        path = RESULTS / f"int8_heldout_{model}.json"
        path.write_text(json.dumps(out, indent=1) + "\n")
        for fmt, r in out["formats"].items():
            rule = r["rule_vs_float"]
            print(f"{model} {fmt}: {100 * r['same_label']:.2f}% same label, largest class gap "
                  f"{rule['max_class_diff_points']:.2f} points ({'met' if rule['met'] else 'NOT met'})")
        print(f"-> {path}")


if __name__ == "__main__":
    main()

"""The ``edgeseq`` command line: train, evaluate, cross-validate, and a demo on shipped data.

A mistake in the user's input (path, record, bundle, option value) ends in one line on stderr and
exit status 2; only bugs show a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .checks import SEED, Parser, Range
from .errors import EdgeseqError, StreamFailed
from .outputs import check_target, dumps, write_json

SAMPLE_DIR = Path(__file__).resolve().parent / "data" / "sample"

# Option ranges, stated once. Upper bounds are generous but finite: a value past them is a typo,
# and one that is not refused here ends as a hang (--duration nan), an allocation that kills the
# process (--threads 100000) or a loop that never ends.
THREADS = Range(1, 256, integer=True)
SECONDS = Range(0, 10 * 365 * 86400, lo_open=True)  # a duration: positive, finite
WINDOW_S = Range(0, 3600, lo_open=True)
FINITE = Range()
FOLDS = Range(2, 10_000, integer=True)


def BYTES(text: str) -> int:  # noqa: N802 (an argparse type, named like the ranges above)
    """A memory size: bytes, or k/KiB (1024) or M/MiB (1024**2) of them: ``262144``, ``256k``."""
    import re

    m = re.fullmatch(r"\s*(\d{1,13})\s*(k|kb|kib|m|mb|mib)?\s*", text.lower())
    if not m or int(m.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"must be a size in bytes (e.g. 262144, 256k, 64KiB), got {text!r}")
    return int(m.group(1)) * {None: 1, "k": 1024, "kb": 1024, "kib": 1024}.get(m.group(2), 1024 ** 2)


class _Parser(Parser):
    """``checks.Parser`` that also refuses ``--opt=--``: argparse drops the ``--`` and hands the
    option an empty list without calling its ``type``, so no range would ever see it."""

    def parse_known_args(self, args=None, namespace=None):
        ns, extras = super().parse_known_args(args, namespace)
        for a in self._actions:
            value = getattr(ns, a.dest, None)
            if a.option_strings and a.type is not None and a.nargs is None and isinstance(value, list):
                self.error(f"argument {'/'.join(a.option_strings)}: expected one value")
        return ns, extras


def _speed(text: str) -> str:
    """``--speed``: ``max`` or a finite factor > 0 (NaN would make every frame due at once, or never)."""
    if text.strip().lower() == "max":
        return "max"
    try:
        Range(0, 1e6, lo_open=True).parse(text)
    except ValueError as exc:
        rule = str(exc).removeprefix("must be ")
        raise argparse.ArgumentTypeError(f"must be 'max' or {rule}, got {text!r}") from None
    return text


def _faults(text: str) -> str:
    """``--faults``: checked where it enters (rates finite in [0, 1]); the emulator reads the same text."""
    from .bridge.emulator import parse_faults

    try:
        parse_faults(text)
    except EdgeseqError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--faults: ")) from None
    return text


def _params(items: list[str] | None) -> dict:
    """``["units=200", "lr=0.5"]`` -> ``{"units": 200, "lr": 0.5}`` (JSON values, else strings)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise EdgeseqError(f"--param expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _beside(json_path, suffix: str) -> Path:
    path = Path(json_path)
    return path.with_name(path.stem + suffix)


def _check_outputs(json_path, *plot_suffixes) -> None:
    """``--json`` and the plots beside it checked before the work that fills them: an hour of
    cross-validation must not end in "cannot write" (the writers check again, atomically)."""
    if json_path is None:
        return
    check_target(json_path, "--json")
    for suffix in plot_suffixes:
        check_target(_beside(json_path, suffix), "plot")


def _publish(rep: dict, title: str, json_path: str | None, plot_title: str) -> None:
    """The table on stdout; with a JSON path, the figures there and the confusion plot beside them."""
    from .metrics import format_table

    print(format_table(rep, title))
    if not json_path:
        return
    from .plots import confusion_png

    path = write_json(json_path, rep, "--json")
    plot = confusion_png(rep, _beside(json_path, ".confusion.png"), plot_title)
    print(f"json: {path}\nplot: {plot}")


def _ecg_params(args) -> dict:
    """``--param`` read and checked against the ECG model family's ranges, and ``--out`` checked,
    before the "no --data given" note: a mistake is then the only line on stderr."""
    from .models import build

    params = _params(args.param)
    build("ecg", args.model, seed=args.seed, params=params)
    if getattr(args, "out", None) is not None:
        from .bundle import check_bundle_target

        check_bundle_target(args.out)
    return params


def _data_dir(args) -> Path:
    if args.data is None:
        print(f"no --data given: using the MIT-BIH excerpt shipped with edgeseq ({SAMPLE_DIR})",
              file=sys.stderr)
        return SAMPLE_DIR
    return Path(args.data)


def _balance_data(args) -> Path:
    if args.data is None:
        raise EdgeseqError("balance needs --data DIR: the hbedb data set (e.g. ../shared/data/hbedb) or a "
                           "directory in the CSV layout of edgeseq.data.hbedb")
    if args.target is None:
        raise EdgeseqError("balance needs --target: a score column (Best_T, Berg, ...), condition, vision or surface")
    return Path(args.data)


def cmd_train(args) -> int:
    from .data.mitdb import parse_records
    from .tasks import ecg

    if args.task == "balance":
        from .tasks import balance

        out = balance.train(_balance_data(args), target=args.target, out=args.out, model=args.model,
                            seed=args.seed, params=_params(args.param), progress=not args.quiet,
                            size=args.size, device=args.device, trials=parse_records(args.records))
        print(balance.format_training(out))
        print(f"bundle: {out}")
        return 0

    params = _ecg_params(args)
    records = parse_records(args.records)
    info = ecg.train(_data_dir(args), records, out=args.out, model=args.model,
                     seed=args.seed, params=params, include_paced=args.include_paced,
                     progress=not args.quiet, size=args.size, device=args.device)
    counts = " ".join(f"{k}={v}" for k, v in info["class_counts"].items())
    print(f"trained {args.model} on {len(info['records'])} records, {info['n_beats']} beats ({counts}) "
          f"in {info['seconds']:.1f} s")
    print(f"bundle: {info['bundle']}")
    return 0


def cmd_evaluate(args) -> int:
    from .data.mitdb import parse_records
    from .tasks import ecg

    from .bundle import read_manifest
    from .runtime import runtime_label

    manifest = read_manifest(args.bundle)  # before the --data note, so a mistake is the only line
    if manifest.get("task") in EVALUATORS:
        return EVALUATORS[manifest["task"]](args, manifest)
    _check_outputs(args.json, ".confusion.png")
    records = parse_records(args.records)
    beats = args.beats or "reference"
    rep = ecg.evaluate(args.bundle, _data_dir(args), records, beats=beats,
                       include_paced=args.include_paced, progress=not args.quiet)
    note = " (includes records the model was trained on: not an inter-patient figure)" \
        if rep["includes_training_records"] else ""
    _publish(rep, f"{Path(args.bundle).name} on {len(rep['records'])} records, {beats} beats, "
                  f"{runtime_label(manifest)}{note}",
             args.json, f"{Path(args.bundle).name}, {beats} beats")
    return 0


def _evaluate_balance(args, manifest) -> int:
    """``evaluate`` on a balance bundle: trials of the subjects it was not trained on, the table of
    ``cv balance``, and its JSON and plot with ``--json``."""
    from .data.mitdb import parse_records
    from .tasks import balance
    from .runtime import runtime_label

    for opt, given in (("--beats", args.beats is not None), ("--include-paced", args.include_paced)):
        if given:
            raise EdgeseqError(f"{opt} is for ECG bundles; {args.bundle} is a balance bundle")
    if args.data is None:
        raise EdgeseqError("evaluating a balance bundle needs --data DIR: the hbedb data set (e.g. "
                           "../shared/data/hbedb) or a directory in the CSV layout of edgeseq.data.hbedb")
    _check_outputs(args.json, ".confusion.png", ".subjects.png")
    rep = balance.evaluate(args.bundle, args.data, parse_records(args.records), progress=not args.quiet)
    note = " (includes subjects the model was trained on: not an inter-subject figure)" \
        if rep["includes_training_subjects"] else ""
    print(balance.format_report(rep, f"{Path(args.bundle).name}, {runtime_label(manifest)}{note}"))
    if args.json:
        from .plots import confusion_png, scores_png

        path = write_json(args.json, rep, "--json")
        title = f"{Path(args.bundle).name}, balance {rep['target']}, {rep['evaluation']}"
        if "accuracy" in rep:
            plot = confusion_png(rep, _beside(args.json, ".confusion.png"), title)
        elif "baseline" in rep and rep["mae"] is not None:
            plot = scores_png(rep, _beside(args.json, ".subjects.png"), title)
        else:
            plot = "none (the plot sets the model against the baseline, which needs the training trials)"
        print(f"json: {path}\nplot: {plot}")
    return 0


#: ``evaluate`` per bundle task other than ECG (the ECG path above is the default).
EVALUATORS = {"balance": _evaluate_balance}


def cmd_predict(args) -> int:
    """Labels for a record as the board computes them (``edgeseq.tasks.predict``)."""
    from .data.mitdb import parse_records
    from .tasks.predict import predict

    summary = predict(args.bundle, args.data, parse_records(args.records), out=args.out, plot=args.plot,
                      start_s=args.start, seconds=args.seconds, threads=args.threads, progress=not args.quiet)
    print(json.dumps(summary), flush=True)
    return 0


def cmd_compare(args) -> int:
    """Two bundles of one task on the same beats or trials, side by side (``edgeseq.tasks.compare``)."""
    from .data.mitdb import parse_records
    from .tasks.compare import compare, format_compare

    if args.json:
        check_target(args.json, "--json")
    rep = compare(*args.compare, args.data, parse_records(args.records), beats=args.beats,
                  include_paced=args.include_paced, progress=not args.quiet)
    print(format_compare(rep))
    if args.json:
        print(f"json: {write_json(args.json, rep, '--json')}")
    return 0


def cmd_cv(args) -> int:
    from .data.mitdb import parse_records
    from .tasks import ecg

    if args.task == "balance":
        return _cv_balance(args)

    _check_outputs(args.json, ".confusion.png")
    params = _ecg_params(args)
    records = parse_records(args.records)
    rep = ecg.cross_validate(_data_dir(args), records, model=args.model,
                             folds=args.folds, seed=args.seed, params=params,
                             include_paced=args.include_paced, progress=not args.quiet,
                             size=args.size, device=args.device)
    _publish(rep, f"{args.model}: record-grouped {rep['n_folds']}-fold cross-validation over "
                  f"{len(rep['records'])} records ({rep['seconds']:.1f} s)",
             args.json, f"{args.model}, {rep['n_folds']}-fold record-grouped CV")
    return 0


def _cv_balance(args) -> int:
    from .tasks import balance

    _check_outputs(args.json, ".confusion.png", ".subjects.png")
    rep = balance.cross_validate(_balance_data(args), target=args.target, model=args.model, seed=args.seed,
                                 params=_params(args.param), progress=not args.quiet,
                                 size=args.size, device=args.device)
    print(balance.format_report(rep))
    if args.json:
        from .plots import confusion_png, scores_png

        path = write_json(args.json, rep, "--json")
        title = f"{args.model}, balance {args.target}, leave-subject-out"
        plot = (confusion_png(rep, _beside(args.json, ".confusion.png"), title) if "accuracy" in rep
                else scores_png(rep, _beside(args.json, ".subjects.png"), title))
        print(f"json: {path}\nplot: {plot}")
    return 0


def cmd_export(args) -> int:
    from .bundle import check_bundle_target, read_manifest
    from .export import export
    from .models import family

    manifest = read_manifest(args.bundle)
    check_bundle_target(args.out)
    if "runtime" in manifest:
        raise EdgeseqError(f"bundle {args.bundle} is already exported ({manifest['runtime'].get('format')}); "
                           "export the training bundle it came from")
    calibration = None
    if args.int8 and args.calibration:
        calibration = Path(args.calibration)
        if family(manifest).interface == "beats":
            from .data.mitdb import parse_records, select_records

            calibration = (calibration, select_records(args.calibration, parse_records(args.records)))
    out = export(args.bundle, args.out, fmt=args.format, int8=args.int8, calibration=calibration,
                 progress=not args.quiet)
    files = read_manifest(out)["files"]
    sizes = ", ".join(f"{k} {v['bytes']:,} bytes" for k, v in files.items())
    print(f"exported {'int8' if args.int8 else 'float32'} {args.format} bundle: {out} ({sizes})")
    return 0


def cmd_demo(args) -> int:
    """Train on some shipped records, then run the streaming detector and the model on the others."""
    from .bundle import check_bundle_target
    from .data.mitdb import list_records
    from .tasks import ecg

    out = Path(args.out)
    names = list_records(SAMPLE_DIR)
    asked = [r.strip() for r in args.test_records.split(",") if r.strip()]
    unknown = [r for r in asked if r not in names]
    if unknown or not asked:
        raise EdgeseqError(f"--test-records: {', '.join(unknown) or 'none given'}: not among the shipped "
                           f"records ({', '.join(names)})")
    test = [r for r in names if r in asked]
    train = [r for r in names if r not in test]
    if not train:  # training on the test records and calling it inter-patient would be a lie
        raise EdgeseqError("--test-records holds every shipped record: leave some to train on")
    check_bundle_target(out / "ecg-esn.bundle")
    _check_outputs(out / "demo-evaluation.json", ".confusion.png")
    print(f"edgeseq demo: MIT-BIH excerpts shipped in {SAMPLE_DIR} (ODC-By 1.0, see ATTRIBUTION.md)")
    print(f"1/2 training an ESN on records {', '.join(train)}")
    info = ecg.train(SAMPLE_DIR, train, out=out / "ecg-esn.bundle", seed=args.seed, progress=True)
    print(f"    {info['n_beats']} beats in {info['seconds']:.1f} s -> {info['bundle']}")
    print(f"2/2 evaluating on unseen records {', '.join(test)}, beats found by the streaming detector")
    rep = ecg.evaluate(info["bundle"], SAMPLE_DIR, test, beats="detected", progress=True)
    _publish(rep, "\nresult (inter-patient, detected beats; a small demo, not a benchmark):",
             str(out / "demo-evaluation.json"), "demo: unseen records, detected beats")
    return 0


def cmd_tune(args) -> int:
    from .data.mitdb import parse_records
    from .tune import tune

    # The study, best.json and the plots go into --out: checked before the first trial.
    for name in ("best.json", "history.png", "importances.png"):
        check_target(Path(args.out) / name, "--out")
    from .tune.search import load_space

    load_space(args.space, args.model)  # like --out, before the --data note: a mistake is the only line
    records = parse_records(args.records)
    best = tune(args.model, _data_dir(args), args.space, trials=args.trials, folds=args.folds, out=args.out,
                records=records, address=args.address, gpus_per_trial=args.gpus_per_trial,
                jobs=args.jobs, metric=args.metric, seed=args.seed, train_best=args.train_best, quiet=args.quiet)
    if best["best_trial"] is None:
        print(f"no trial finished; study: {best['storage']}")
        return 0
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
    print(f"best: trial {best['best_trial']}, {best['metric']} {best['value']:.4f} ({params})")
    out = Path(args.out)
    print(f"best.json: {out / 'best.json'}")
    print(f"plots: {out / 'history.png'} {out / 'importances.png'}")
    if best.get("importances_note"):
        print(f"note: {best['importances_note']}")
    if "bundle" in best:
        print(f"bundle: {best['bundle']}")
    return 0


#: Options of train and cv that a task does not read, per command and task (refused, see
#: _task_command); TASK_EPILOG says the same to a reader of --help.
NOT_FOR_TASK = {"train": {"ecg": ("target",), "balance": ("include_paced",)},
                "cv": {"ecg": ("target",), "balance": ("records", "include_paced", "folds")}}
TASK_EPILOG = {
    "train": "which options go with which task:\n"
             "  ecg      --data DIR of WFDB records (default: the excerpt shipped with edgeseq),\n"
             "           --records LIST, --include-paced\n"
             "  balance  --data DIR and --target COLUMN (both required), --records (trial names)\n"
             "  both     --model, --size, --device, --seed, --param, --out, --quiet\n"
             "examples:\n"
             "  edgeseq train ecg --model esn --data ../shared/data/mitdb --out ecg.bundle\n"
             "  edgeseq train balance --model esn --data ../shared/data/hbedb --target Best_T --out best.bundle",
    "cv": "which options go with which task:\n"
          "  ecg      --data DIR of WFDB records (default: the excerpt shipped with edgeseq),\n"
          "           --records LIST, --include-paced, --folds K\n"
          "  balance  --data DIR and --target COLUMN (both required); one fold per subject\n"
          "  both     --model, --size, --device, --seed, --param, --json, --quiet\n"
          "examples:\n"
          "  edgeseq cv ecg --model esn --data ../shared/data/mitdb --folds 5 --json cv.json\n"
          "  edgeseq cv balance --model esn --data ../shared/data/hbedb --target condition --json bal.json",
}


def build_parser() -> argparse.ArgumentParser:
    from .models import kinds  # the registry's families: what --model offers

    p = _Parser(prog="edgeseq", description="Sequence models for physiological signals (ECG beats, balance-board "
                                            "trials): train on a laptop, export, run on a small device.",
                epilog="'edgeseq COMMAND --help' gives a command's options.")
    p.add_argument("--version", action="version", version=f"edgeseq {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, title="commands")

    def data_args(sp, records_help):
        sp.add_argument("--data", metavar="DIR",
                        help="ecg: directory of WFDB records (default: the excerpt shipped with edgeseq); "
                             "balance (required): the hbedb data set or a directory in its CSV layout")
        sp.add_argument("--records", metavar="LIST", help=records_help)
        sp.add_argument("--include-paced", action="store_true",
                        help="ecg only: allow paced records (102, 104, 107, 217), excluded by AAMI EC57 by default")
        sp.add_argument("--quiet", action="store_true", help="no progress lines on stderr")

    def model_args(sp):
        sp.add_argument("--model", default="esn", choices=sorted({*kinds("ecg"), *kinds("balance")}),
                        help="model family: esn (reservoir), lstm or tcn (PyTorch; default esn)")
        sp.add_argument("--size", choices=["small", "full"],
                        help="small (default: trains on a laptop CPU) or full (wider and deeper, for a GPU; "
                             "esn: 5000 units)")
        sp.add_argument("--device", choices=["cpu", "cuda", "auto"],
                        help="where training runs (default cpu); cuda falls back to the CPU with a message "
                             "when no GPU is present")
        sp.add_argument("--seed", type=SEED, default=0, help="seed of the reservoir and splits (default 0)")
        sp.add_argument("--param", action="append", metavar="KEY=VALUE",
                        help="model hyper-parameter, repeatable, e.g. --param units=200 --param lr=0.5")

    t = sub.add_parser("train", help="train a model and write a bundle", epilog=TASK_EPILOG["train"],
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train a model and write a bundle directory: ecg labels every heartbeat of "
                                   "an ECG\n(AAMI classes, from annotated WFDB records); balance scores "
                                   "balance-board trials\n(a clinical score or the standing condition, per "
                                   "window).")
    t.add_argument("task", choices=["ecg", "balance"], help="what to predict")
    t.add_argument("--target", metavar="COLUMN",
                   help="balance only (required): a score column (Best_T, Berg, ...), condition, vision or surface")
    data_args(t, "ecg: comma-separated record names (default: the DS1 records present in DIR); "
                 "balance: trial names (default: every trial)")
    model_args(t)
    t.add_argument("--out", required=True, metavar="BUNDLE", help="bundle directory to write")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="score a bundle on records",
                       description="Score a bundle on records: a table on stdout, JSON and a "
                                   "confusion-matrix PNG beside it with --json.")
    e.add_argument("bundle", metavar="BUNDLE", help="bundle directory")
    data_args(e, "comma-separated record names (default: the records in DIR the bundle was not "
                 "trained on, or all of them if there are none)")
    e.add_argument("--beats", choices=["reference", "detected"],
                   help="ECG: classify the annotated beats (default) or the beats the streaming detector finds")
    e.add_argument("--json", metavar="FILE", help="write the figures as JSON, and the plot beside it")
    e.set_defaults(func=cmd_evaluate)

    pd = sub.add_parser("predict", help="label a recording offline, as the board would",
                        description="Label every beat of a WFDB record (or every window of a balance trial) "
                                    "with the bundle's own streaming detector, preprocessing and runtime, as "
                                    "'edgeseq serve' does on the board; numpy, a runtime and the bundle only. "
                                    "A line per record and a JSON summary on stdout.")
    pd.add_argument("bundle", metavar="BUNDLE", help="bundle directory (exported or trained)")
    pd.add_argument("--data", required=True, metavar="DIR",
                    help="directory of WFDB records (ECG) or the balance data set (hbedb or CSV layout)")
    pd.add_argument("--records", required=True, metavar="LIST",
                    help="comma-separated record names (ECG) or trial names (balance)")
    pd.add_argument("--out", metavar="FILE.jsonl",
                    help="JSON lines: one per beat (record, sample, time_s, label, confidence, probabilities, "
                         "reference when the record is annotated) or per window and trial")
    pd.add_argument("--plot", metavar="FILE.png",
                    help="ECG: a rhythm strip on ECG paper with each beat's label and confidence (one file per "
                         "record: FILE.REC.png when there are several); needs matplotlib")
    pd.add_argument("--start", type=Range(0, 10 * 365 * 86400), metavar="S",
                    help="ECG --plot: start of the strip in seconds (default 0)")
    pd.add_argument("--seconds", type=Range(0, 300, lo_open=True), metavar="S",
                    help="ECG --plot: length of the strip (default 10 s; longer ones wrap in rows of 10 s, "
                         "at most 300 s)")
    pd.add_argument("--threads", type=THREADS, default=1, help="runtime threads (default 1)")
    pd.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    pd.set_defaults(func=cmd_predict)

    cm = sub.add_parser("compare", help="two bundles of one task on the same data, side by side",
                        description="Score two bundles of one task and label set (float and int8, two formats, "
                                    "two families) on the same beats or trials: per-class Se and +P (ECG) or "
                                    "MAE / accuracy (balance) of each and their difference, and how often "
                                    "they give the same label.")
    cm.add_argument("compare", nargs=2, metavar="BUNDLE", help="bundle A, then bundle B")
    cm.add_argument("--data", required=True, metavar="DIR",
                    help="directory of WFDB records (ECG) or the balance data set")
    cm.add_argument("--records", metavar="LIST",
                    help="records (ECG) or trials (balance); default: those bundle A was not trained on")
    cm.add_argument("--beats", choices=["reference", "detected"], default="reference",
                    help="ECG: the annotated beats (default) or the beats each bundle's detector finds")
    cm.add_argument("--include-paced", action="store_true", help="ECG: allow paced records in --records")
    cm.add_argument("--json", metavar="FILE", help="write both reports and the agreement as JSON")
    cm.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    cm.set_defaults(func=cmd_compare)

    c = sub.add_parser("cv", help="cross-validation grouped by patient (ECG records, balance subjects)",
                       epilog=TASK_EPILOG["cv"],
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Cross-validation grouped by patient: ecg is record-grouped K-fold (no "
                                   "record in two\nfolds); balance is leave-one-subject-out, against a "
                                   "sway-feature baseline.")
    c.add_argument("task", choices=["ecg", "balance"], help="what to predict")
    c.add_argument("--target", metavar="COLUMN",
                   help="balance only (required): a score column (Best_T, Berg, ...), condition, vision or surface")
    data_args(c, "ecg only: comma-separated record names (default: the DS1 records present in DIR)")
    model_args(c)
    c.add_argument("--folds", type=FOLDS, metavar="K",
                   help="ecg only: number of folds (default: one per record, i.e. leave-one-record-out)")
    c.add_argument("--json", metavar="FILE", help="write the figures as JSON, and the plot beside it")
    c.set_defaults(func=cmd_cv)

    x = sub.add_parser("export", help="export a bundle for a device runtime",
                       description="Export a trained bundle to a deployable bundle (manifest, model "
                                   "file, hashes) that evaluate and edgeseq.runtime accept.")
    x.add_argument("bundle", metavar="BUNDLE", help="trained bundle directory")
    x.add_argument("--format", choices=["onnx", "tflite", "c"], default="onnx",
                   help="model format (default onnx; c: a C99 library for a microcontroller or the host)")
    x.add_argument("--int8", action="store_true",
                   help="int8 weights per channel; the activations the model family marks at int8/int16, "
                        "their ranges calibrated on real inputs")
    x.add_argument("--calibration", metavar="DIR", help="int8 calibration data: WFDB records (ECG), the balance "
                   "data set (balance), a .npy of inputs (sequence; only for unbounded activations)")
    x.add_argument("--records", metavar="LIST",
                   help="calibration records (default: the DS1 records present in DIR)")
    x.add_argument("--out", required=True, metavar="OUT", help="exported bundle directory to write")
    x.add_argument("--quiet", action="store_true", help="no calibration progress lines on stderr")
    x.set_defaults(func=cmd_export)

    d = sub.add_parser("demo", help="train and evaluate on the shipped MIT-BIH excerpt",
                       description="End to end on data shipped with edgeseq: train an ESN on some "
                                   "records, evaluate it on the others with the streaming detector.")
    # In the current directory, where the user looks for it (the README runs the demo from the
    # repository root, whose .gitignore lists /edgeseq-demo/), not in a temporary directory.
    d.add_argument("--out", default="edgeseq-demo", metavar="DIR",
                   help="output directory (default: edgeseq-demo in the current directory)")
    d.add_argument("--test-records", default="208,209", metavar="LIST",
                   help="records held out for evaluation (default 208,209)")
    d.add_argument("--seed", type=SEED, default=0, help="seed (default 0)")
    d.set_defaults(func=cmd_demo)

    pr = sub.add_parser("profile", help="latency, throughput, size and memory of a bundle",
                        description="Profile a bundle on this machine (or on a board over ssh): per-call "
                                    "latency of one window and one step (p50/p90/p99/max), throughput, size, "
                                    "parameters, MACs, peak RSS, onnxruntime memory, the tflite-micro arena, "
                                    "efficiency against the measured matmul peak.")
    pr.add_argument("bundle", nargs="?", metavar="BUNDLE", help="bundle directory (exported, or trained: numpy)")
    pr.add_argument("--compare", nargs="+", metavar="B", help="profile these bundles side by side (one table)")
    pr.add_argument("--runtime", choices=["onnx", "tflite", "tflm", "numpy", "c"],
                    help="default: the bundle's own format (tflm runs a TFLite bundle on tflite-micro)")
    pr.add_argument("--threads", type=THREADS, default=1, help="runtime threads (default 1)")
    pr.add_argument("--n", type=Range(10, 1_000_000, integer=True), default=1000,
                    help="timed calls of each kind (default 1000)")
    pr.add_argument("--window-steps", type=Range(1, 100_000, integer=True), metavar="T",
                    help="window length of a sequence bundle (default 100)")
    pr.add_argument("--no-arena", action="store_true", help="skip the tflite-micro arena search")
    pr.add_argument("--warmup", type=Range(0, 1_000_000, integer=True), default=50, metavar="N",
                    help="untimed calls of each kind before the timed ones (default 50)")
    pr.add_argument("--batch", type=Range(1, 65_536, integer=True), default=256, metavar="B",
                    help="windows per call of the batched throughput (default 256)")
    pr.add_argument("--ort-profile", action="store_true",
                    help="onnxruntime's per-op profile: time per op type and node, top ops with their share "
                         "(ONNX bundles)")
    pr.add_argument("--ort-arena", action="store_true",
                    help="run onnxruntime with its CPU memory arena (the runtime's board default has none: faster "
                         "big batches, but the arena keeps what the largest batch needed)")
    pr.add_argument("--json", metavar="FILE", help="write the figures as JSON ('-' = stdout, nothing else printed)")
    pr.add_argument("--plot", metavar="FILE.png", help="latency histogram and CDF")
    pr.add_argument("--ssh", metavar="USER@HOST",
                    help="profile on that board: copy, run there, bring the JSON back")
    pr.add_argument("--remote-python", default="python3", metavar="CMD",
                    help="python on the board (default python3)")
    pr.add_argument("--ssh-config", metavar="FILE", help="--ssh: ssh config file (ssh -F): port, identity, known_hosts")
    pr.add_argument("--target", metavar="MCU",
                    help="build a C bundle (front end + model) for this microcontroller (cortex-m4) and run it "
                         "in an emulator: flash, RAM, instructions per beat and per second of signal")
    pr.add_argument("--data", metavar="DIR", help="--target: WFDB records (default: the excerpts shipped with edgeseq)")
    pr.add_argument("--record", default="208", metavar="NAME", help="--target: the record to stream (default 208)")
    pr.add_argument("--seconds", type=Range(1, 86_400), default=300.0, metavar="S",
                    help="--target: seconds of the record (default 300)")
    pr.add_argument("--flash", type=BYTES, metavar="BYTES", help="--target: flash budget (e.g. 256k); over it: exit 2")
    pr.add_argument("--ram", type=BYTES, metavar="BYTES", help="--target: RAM budget (e.g. 64k); over it: exit 2")
    pr.set_defaults(func=cmd_profile)

    sv = sub.add_parser("serve", help="run a bundle live on a serial stream",
                        description="Read sensor frames (firmware_bridge/PROTOCOL.md) or plain text lines "
                                    "from a serial port, run the bundle's preprocessing and model on the "
                                    "stream, print predictions; one JSON summary line on exit. A device that "
                                    "classifies its own beats (PREDICTION frames) is compared with the host: "
                                    "'agreement' in the summary, device_label per prediction in --out.")
    sv.add_argument("--port", required=True, metavar="PORT",
                    help="serial port (e.g. /dev/ttyACM0, or the --link of edgeseq emulate); a regular file "
                         "replays a raw stream recorded with --record")
    sv.add_argument("--bundle", required=True, metavar="BUNDLE", help="bundle directory (exported or trained)")
    sv.add_argument("--out", metavar="FILE.jsonl", help="append one JSON line per prediction")
    sv.add_argument("--record", metavar="RAW", help="append the raw byte stream, as received, to this file")
    sv.add_argument("--duration", type=SECONDS, metavar="S",
                    help="stop after S seconds (default: run until Ctrl-C)")
    sv.add_argument("--baud", type=Range(50, 100_000_000, integer=True), default=115200,
                    help="baud rate (default 115200)")
    sv.add_argument("--text", action="store_true",
                    help="plain text lines, one sample per line (e.g. an Arduino sketch's Serial.println)")
    sv.add_argument("--rate", type=Range(0, 1_000_000, lo_open=True), metavar="HZ",
                    help="sample rate of a --text stream")
    sv.add_argument("--scale", type=FINITE, metavar="K",
                    help="--text: physical value = raw * K + OFFSET (default 1)")
    sv.add_argument("--offset", type=FINITE, metavar="B", help="--text: see --scale (default 0)")
    sv.add_argument("--channel", type=Range(0, 255, integer=True), metavar="C",
                    help="use channel C of a multi-channel stream")
    sv.add_argument("--window", type=WINDOW_S, metavar="S", help="window length for window models (default 1 s)")
    sv.add_argument("--hop", type=WINDOW_S, metavar="S", help="window hop for window models (default: --window)")
    sv.add_argument("--give-up", type=SECONDS, metavar="S",
                    help="exit when the port has been gone for S seconds (status 2 if it never connected); "
                         "default: wait for it, saying so on stderr every 30 s")
    sv.add_argument("--threads", type=THREADS, default=1, help="runtime threads (default 1)")
    sv.add_argument("--quiet", action="store_true", help="no prediction lines on stdout (summary only)")
    sv.set_defaults(func=cmd_serve)

    em = sub.add_parser("emulate", help="emulate a sensor device on a pseudo-terminal",
                        description="Stream a real recording over a pseudo-terminal, framed as the firmware "
                                    "does, with seeded fault injection; one JSON line on exit of what was "
                                    "sent and injected.")
    em.add_argument("--source", required=True, metavar="SRC", help="mitdb:DIR/RECORD or hbedb:FILE")
    em.add_argument("--link", required=True, metavar="PATH",
                    help="where to link the device end (the host's --port)")
    em.add_argument("--speed", type=_speed, default="1", metavar="1|10|max", help="x real time, or max (default 1)")
    em.add_argument("--faults", type=_faults, metavar="SPEC",
                    help="rates per frame, e.g. bitflip=1e-3,drop=1e-3,dup=1e-4,garbage=1e-4,truncate=1e-4,"
                         "disconnect=1e-5")
    em.add_argument("--seed", type=SEED, default=0, help="seed of the fault draws (default 0)")
    em.add_argument("--duration", type=SECONDS, metavar="S",
                    help="stream only the first S seconds of the recording")
    em.add_argument("--text", action="store_true", help="print text lines instead of frames")
    em.add_argument("--loop", action="store_true", help="repeat the recording until --duration is reached")
    em.add_argument("--frame-samples", type=Range(1, 100_000, integer=True), metavar="N",
                    help="samples per frame (default 10 for ECG, 1 for the balance board)")
    em.add_argument("--outage", type=Range(0, 3600), default=0.5, metavar="S",
                    help="device time lost per disconnect (default 0.5 s)")
    em.add_argument("--wait", type=Range(0, 7 * 86400), default=60.0, metavar="S",
                    help="how long to wait for the host to open the port (default 60 s)")
    em.set_defaults(func=cmd_emulate)

    tu = sub.add_parser("tune", help="hyper-parameter search over record-grouped cross-validation",
                        description="Search hyper-parameters with Optuna (TPE): each trial is a record-grouped "
                                    "K-fold cross-validation, pruned fold by fold once it cannot beat the best. "
                                    "The study is kept in OUT/study.journal; the same command with more "
                                    "--trials continues it.")
    tu.add_argument("task", choices=["ecg"], help="what to predict")
    tu.add_argument("--model", default="esn", choices=kinds("ecg"), help="model family (default esn)")
    tu.add_argument("--data", metavar="DIR", help="directory of WFDB records (default: the shipped excerpt)")
    tu.add_argument("--records", metavar="LIST",
                    help="comma-separated record names (default: the DS1 records in DIR)")
    tu.add_argument("--space", default="default", metavar="SPACE.json|default",
                    help='JSON: name -> {"type": "int"|"float", "low", "high"[, "log", "step"]} or '
                         '{"type": "categorical", "choices": [...]}; default: the family\'s built-in space')
    tu.add_argument("--trials", type=Range(1, 1_000_000, integer=True), required=True, metavar="N",
                    help="finished or pruned trials the study should hold (a resumed study runs the rest)")
    tu.add_argument("--folds", type=FOLDS, default=5, metavar="K",
                    help="record-grouped folds per trial (default 5)")
    tu.add_argument("--out", required=True, metavar="DIR", help="study, best.json and plots go here")
    tu.add_argument("--address", metavar="ray://HOST:PORT|HOST:PORT|auto",
                    help="run trials on this Ray cluster (default: processes on this machine)")
    tu.add_argument("--gpus-per-trial", type=Range(0, 1024), default=0, metavar="G",
                    help="GPUs per Ray trial (with --address; trials then train on cuda)")
    tu.add_argument("--jobs", type=Range(1, 4096, integer=True), metavar="J",
                    help="trials at once (default: this machine's cores; with --address: as many as the "
                         "cluster fits)")
    tu.add_argument("--metric", default="sveb_veb", metavar="NAME",
                    help="per-fold score to maximise: sveb_veb (default: mean of SVEB and VEB Se and +P), "
                         "accuracy, sveb_f1, veb_f1")
    tu.add_argument("--seed", type=SEED, default=0, help="seed of the models, folds and sampler (default 0)")
    tu.add_argument("--train-best", action="store_true",
                    help="train the best trial's hyper-parameters on all the records into OUT/best.bundle")
    tu.add_argument("--quiet", action="store_true", help="no line per trial on stderr")
    tu.set_defaults(func=cmd_tune)

    kg = sub.add_parser("keygen", help="make an Ed25519 key pair for signing bundles",
                        description="Write a new secret key to KEY (mode 0600) and its public key to KEY.pub; "
                                    "never overwrites a key.")
    kg.add_argument("--out", required=True, metavar="KEY", help="secret key file to write (KEY.pub beside it)")
    kg.set_defaults(func=cmd_keygen)

    sg = sub.add_parser("sign", help="sign a bundle with a secret key",
                        description="Check a bundle fully, then write its signature.json: Ed25519 over the "
                                    "manifest and every file. Commands given --trust KEY.pub accept only "
                                    "bundles signed so.")
    sg.add_argument("bundle", metavar="BUNDLE", help="bundle directory")
    sg.add_argument("--key", required=True, metavar="KEY", help="secret key file (edgeseq keygen)")
    sg.set_defaults(func=cmd_sign)

    dp = sub.add_parser("deploy", help="install edgeseq and a bundle on a board over ssh, self-check, activate",
                        description="From this machine to a board in one command: build the wheel, copy it and "
                                    "the bundle over ssh into a new release, install it in a venv with the "
                                    "runtime the bundle needs, self-check on the board (hashes, --trust, "
                                    "latency), switch ~/edgeseq/current, and with --service run it as a "
                                    "systemd user service. A failed deploy leaves the previous one running.")
    dp.add_argument("host", metavar="[USER@]HOST", help="the board, as ssh names it")
    dp.add_argument("bundle", nargs="?", metavar="BUNDLE", help="bundle directory to deploy")
    dp.add_argument("--port", metavar="PORT", help="--service: the board's serial port (e.g. /dev/ttyACM0)")
    dp.add_argument("--venv", metavar="PATH", help="venv on the board (default ~/edgeseq/venv; relative: to the "
                    "board's home)")
    dp.add_argument("--service", action="store_true",
                    help="install and (re)start a systemd user service running edgeseq serve on --port")
    dp.add_argument("--trust", metavar="KEY.pub", help="the board accepts the bundle only if signed by this key "
                    "(the key is copied; the service checks it too)")
    dp.add_argument("--ssh-config", metavar="FILE", help="ssh config file (ssh -F): port, identity, known_hosts")
    dp.add_argument("--wheel", metavar="FILE", help="install this edgeseq wheel instead of building one")
    dp.add_argument("--status", action="store_true", help="show the board's current release and service state")
    dp.add_argument("--logs", action="store_true", help="show the service's journal")
    dp.add_argument("-n", "--lines", type=Range(1, 100_000, integer=True), default=50,
                    help="--logs: lines (default 50)")
    dp.set_defaults(func=cmd_deploy)
    for name in ("evaluate", "export", "profile", "serve", "predict", "compare"):
        _bundle_command(sub.choices[name])
    for name in NOT_FOR_TASK:
        _task_command(sub.choices[name], NOT_FOR_TASK[name])
    return p


def cmd_keygen(args) -> int:
    from .signing import key_id, keygen, read_public_key

    secret, public = keygen(args.out)
    print(f"secret key: {secret} (keep it private)\npublic key: {public} (id {key_id(read_public_key(public))}; "
          f"give it to --trust)")
    return 0


def cmd_sign(args) -> int:
    from .signing import sign

    print(f"signature: {sign(args.bundle, args.key)}")
    return 0


def cmd_deploy(args) -> int:
    from . import deploy as dp

    if args.status or args.logs:
        given = [o for o, v in (("BUNDLE", args.bundle), ("--port", args.port), ("--venv", args.venv),
                                ("--service", args.service), ("--trust", args.trust), ("--wheel", args.wheel),
                                ("--status and --logs", args.status and args.logs)) if v]
        if given:
            raise EdgeseqError(f"deploy {'--status' if args.status else '--logs'} takes only the host "
                               f"(and --ssh-config{'' if args.status else ', -n'}), not {given[0]}")
        if args.status:
            print(dp.format_status(args.host, dp.status(args.host, ssh_config=args.ssh_config)))
        else:
            sys.stdout.write(dp.logs(args.host, args.lines, ssh_config=args.ssh_config))
        return 0
    if not args.bundle:
        raise EdgeseqError("deploy needs [USER@]HOST BUNDLE (or --status / --logs HOST)")
    dp.deploy(args.host, args.bundle, port=args.port, venv=args.venv, service=args.service, trust=args.trust,
              ssh_config=args.ssh_config, wheel=args.wheel)
    return 0


def _bundle_command(sp) -> None:
    """Process-wide rules for a command that loads bundles: ``--trust KEY.pub`` (set once, for this
    process and the edgeseq processes it starts, every bundle read must be signed by that key; the
    bundles named on the command line are checked before any work, so a refusal comes first, also
    for --ssh), and a TFLite run that exceeds its time bound ends the command with one line."""
    sp.add_argument("--trust", metavar="KEY.pub",
                    help="accept only bundles signed by this public key (edgeseq keygen, edgeseq sign)")
    func = sp.get_default("func")

    def run(args):
        from .runtime.guard import exit_on_hang

        exit_on_hang()
        if args.trust:
            from .bundle import require_signature, verify_bundle

            require_signature(args.trust)
            for b in [vars(args).get("bundle"), *(vars(args).get("compare") or [])]:
                if b:
                    verify_bundle(b)
        return func(args)

    sp.set_defaults(func=run)


def _task_command(sp, not_for: dict) -> None:
    """``train``/``cv``: an option the chosen task does not read (``--target`` with ecg, ``--folds``
    with cv balance) is refused before any work: dropped silently, it would look obeyed."""
    func = sp.get_default("func")

    def run(args):
        for dest in not_for.get(args.task, ()):
            if getattr(args, dest) not in (None, False):
                raise EdgeseqError(f"--{dest.replace('_', '-')} does not apply to '{args.command} {args.task}' "
                                   f"(see edgeseq {args.command} --help)")
        return func(args)

    sp.set_defaults(func=run)


def _exit_on_sigterm(on_signal=None) -> None:
    """SIGTERM and SIGHUP (a closed terminal, systemd's reload) end a serve/emulate run like
    Ctrl-C: flushed outputs and a summary line, never a death without one. ``on_signal(name)``
    is told which signal came, before the interrupt."""
    import signal

    def handler(signum, frame):
        if on_signal is not None:
            on_signal(signal.Signals(signum).name)
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is None:
            continue
        try:
            signal.signal(sig, handler)
        except ValueError:  # not the main thread (tests calling main() from a thread)
            pass


def _profile_target(args) -> int:
    from .profile.target import format_target, profile_target

    if args.compare or args.ssh or not args.bundle:
        raise EdgeseqError("--target profiles one C bundle on this machine: give BUNDLE, without --compare or --ssh")
    if args.json and args.json != "-":
        check_target(args.json, "--json")
    res = profile_target(args.bundle, target=args.target, data=args.data, record=args.record,
                         seconds=args.seconds, flash=args.flash, ram=args.ram)
    if args.json == "-":
        print(dumps(res))
        return 0
    print(format_target(res))
    if args.json:
        print(f"json: {write_json(args.json, res, '--json', indent=1)}")
    return 0


def cmd_profile(args) -> int:
    from . import profile as prof

    if args.target:
        return _profile_target(args)
    for opt in ("data", "flash", "ram"):
        if getattr(args, opt) is not None:
            raise EdgeseqError(f"--{opt} goes with --target (a microcontroller profile)")

    if args.compare and args.bundle:
        raise EdgeseqError("give either BUNDLE or --compare A B ..., not both")
    if not args.compare and not args.bundle:
        raise EdgeseqError("profile needs a BUNDLE (or --compare A B ...)")
    to_stdout = args.json == "-"
    if args.json and not to_stdout:
        check_target(args.json, "--json")
    if args.plot:
        check_target(args.plot, "--plot")
    if args.ssh:
        from .ssh import check_host

        check_host(args.ssh)
    elif args.ssh_config:
        raise EdgeseqError("--ssh-config goes with --ssh USER@HOST")
    if args.compare:
        if args.ssh:
            raise EdgeseqError("--ssh profiles one bundle at a time")
        from .progress import Progress

        results = prof.compare(args.compare, runtime=args.runtime, threads=args.threads, n=args.n,
                               arena=not args.no_arena, warmup=args.warmup, batch=args.batch,
                               ort_profile=args.ort_profile, ort_arena=args.ort_arena,
                               progress=Progress("profiling", len(args.compare), enabled=not to_stdout))
        payload = {"compare": results}
        text = prof.format_compare(results)
    elif args.ssh:
        from .profile.remote import profile_remote

        extra = ["--threads", str(args.threads), "--n", str(args.n)]
        extra += ["--runtime", args.runtime] if args.runtime else []
        extra += ["--no-arena"] if args.no_arena else []
        extra += ["--window-steps", str(args.window_steps)] if args.window_steps else []
        extra += ["--warmup", str(args.warmup), "--batch", str(args.batch)]
        extra += (["--ort-profile"] if args.ort_profile else []) + (["--ort-arena"] if args.ort_arena else [])
        results = [profile_remote(args.ssh, args.bundle, extra, python=args.remote_python, config=args.ssh_config)]
        payload, text = results[0], f"on {args.ssh}:\n" + prof.format_table(results[0])
    else:
        from .progress import Progress

        results = [prof.profile_bundle(args.bundle, runtime=args.runtime, threads=args.threads, n=args.n,
                                       arena=not args.no_arena, window_steps=args.window_steps,
                                       warmup=args.warmup, batch=args.batch, ort_profile=args.ort_profile,
                                       ort_options={"enable_cpu_mem_arena": True} if args.ort_arena else None,
                                       progress=Progress("profile", 1, enabled=not to_stdout, every=True))]
        payload, text = results[0], prof.format_table(results[0])
    if to_stdout:
        print(dumps(payload))
        return 0
    print(text)
    if args.json:
        print(f"json: {write_json(args.json, payload, '--json', indent=1)}")
    if args.plot:
        from .plots import latency_png

        print(f"plot: {latency_png(results, args.plot)}")
    return 0


def cmd_serve(args) -> int:
    from .bridge.serve import serve

    got = {}
    _exit_on_sigterm(lambda name: got.setdefault("signal", name))
    try:
        summary = serve(args.port, args.bundle, out=args.out, record=args.record, duration_s=args.duration,
                        text=args.text, rate=args.rate, scale=args.scale, offset=args.offset,
                        channel=args.channel, baudrate=args.baud, give_up_s=args.give_up, quiet=args.quiet,
                        threads=args.threads, window_s=args.window, hop_s=args.hop)
    except StreamFailed as e:
        # A run that failed after it started still reports what it counted (stdout), then the
        # one-line error (stderr, exit 2).
        print(json.dumps(e.summary), flush=True)
        raise
    if got.get("signal"):
        summary["ended"] = f"signal {got['signal']}"
    print(json.dumps(summary), flush=True)
    return 0


def cmd_emulate(args) -> int:
    from .bridge.emulator import emulate

    _exit_on_sigterm()
    report = emulate(args.source, args.link, speed=args.speed, faults=args.faults, seed=args.seed,
                     duration_s=args.duration, text=args.text, frame_samples=args.frame_samples,
                     outage_s=args.outage, connect_timeout_s=args.wait, loop=args.loop)
    print(json.dumps(report), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # a pipe's buffered output fails here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        # stdout's reader went away (`edgeseq predict ... | head -1`): nobody is left to read a
        # traceback; stdout goes to /dev/null so the interpreter's final flush does not raise again
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _main(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # a bad option (one line already printed) or --help/--version
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return args.func(args)
    except EdgeseqError as exc:
        print(f"edgeseq: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        extra = {"scipy": "train", "wfdb": "train", "reservoirpy": "train", "matplotlib": "train",
                 "onnx": "export", "onnxruntime": "export", "serial": "device", "torch": "torch",
                 "optuna": "tune", "ray": "tune"}.get(exc.name)
        if extra:
            from .errors import install_hint

            print(f"edgeseq: error: '{args.command}' needs {exc.name}, part of the '{extra}' extra: "
                  f"{install_hint(extra)}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("edgeseq: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The CLI contract: subcommands, JSON layout, plots, and one-line errors with exit status 2."""

import json
import subprocess
import sys

import pytest

from edgeseq.bundle import WEIGHTS
from edgeseq.cli import main

LABELS = ["N", "S", "V", "F", "Q"]


def _check_report(rep):
    assert rep["task"] == "ecg" and rep["labels"] == LABELS
    conf = rep["confusion"]
    assert len(conf) == 5 and all(len(row) == 5 for row in conf)
    assert 0 <= rep["accuracy"] <= 1
    for lab in LABELS:
        c = rep["classes"][lab]
        assert set(c) == {"se", "ppv", "n"}
        for k in ("se", "ppv"):
            assert c[k] is None or 0 <= c[k] <= 1
    assert sum(rep["classes"][lab]["n"] for lab in LABELS) == rep["n_beats"]


@pytest.mark.parametrize("cmd", [[], ["train"], ["evaluate"], ["cv"], ["demo"]])
def test_help_on_every_subcommand(cmd):
    out = subprocess.run([sys.executable, "-m", "edgeseq", *cmd, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: edgeseq" in out.stdout


def test_train_then_evaluate_reference_and_detected(tmp_path, sample, capsys):
    bundle = tmp_path / "m.bundle"
    assert main(["train", "ecg", "--model", "esn", "--data", str(sample), "--records", "119,201,223",
                 "--out", str(bundle), "--seed", "3", "--param", "units=60", "--quiet"]) == 0
    assert "trained esn on 3 records" in capsys.readouterr().out
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["task"] == "ecg" and manifest["sample_rate"] == 360.0 and manifest["lead"] == "MLII"
    assert manifest["model"]["params"]["units"] == 60 and manifest["model"]["params"]["seed"] == 3
    assert manifest["training"]["records"] == ["119", "201", "223"]
    assert manifest["preprocessing"]["sos"] and manifest["detector"]["sos"]

    ref_json = tmp_path / "ref.json"
    assert main(["evaluate", str(bundle), "--data", str(sample), "--records", "208",
                 "--json", str(ref_json), "--quiet"]) == 0
    rep = json.loads(ref_json.read_text())
    _check_report(rep)
    assert rep["beats"] == "reference" and "detection" not in rep
    assert rep["classes"]["V"]["n"] > 300 and rep["classes"]["F"]["n"] > 100
    assert (tmp_path / "ref.confusion.png").stat().st_size > 10_000

    det_json = tmp_path / "det.json"
    assert main(["evaluate", str(bundle), "--data", str(sample), "--records", "208",
                 "--beats", "detected", "--json", str(det_json), "--quiet"]) == 0
    det = json.loads(det_json.read_text())
    _check_report(det)
    d = det["detection"]
    assert d["se"] > 0.99 and d["ppv"] > 0.99
    # Every reference beat is counted, detected or not: beat count equals the reference count.
    assert det["n_beats"] == d["n_reference"] >= rep["n_beats"]
    assert (tmp_path / "det.confusion.png").exists()


def test_evaluate_defaults_to_unseen_records(small_bundle, sample, tmp_path):
    out = tmp_path / "e.json"
    assert main(["evaluate", str(small_bundle), "--data", str(sample), "--json", str(out), "--quiet"]) == 0
    rep = json.loads(out.read_text())
    assert not set(rep["records"]) & {"119", "201", "223"} and not rep["includes_training_records"]


def test_cv_is_record_grouped(sample, tmp_path):
    out = tmp_path / "cv.json"
    assert main(["cv", "ecg", "--model", "esn", "--data", str(sample), "--folds", "3",
                 "--param", "units=40", "--json", str(out), "--quiet"]) == 0
    rep = json.loads(out.read_text())
    _check_report(rep)
    assert rep["n_folds"] == 3 and len(rep["folds"]) == 3
    seen = [r for f in rep["folds"] for r in f["records"]]
    assert sorted(seen) == sorted(set(seen)) == sorted(rep["records"])  # no record in two folds
    assert sum(f["n_beats"] for f in rep["folds"]) == rep["n_beats"]
    assert (tmp_path / "cv.confusion.png").exists()


def _run(args):
    return subprocess.run([sys.executable, "-m", "edgeseq", *args], capture_output=True, text=True)


def _one_line_error(proc, pattern):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeseq: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    import re
    assert re.search(pattern, lines[0]), lines[0]


def test_error_missing_data_directory(tmp_path):
    _one_line_error(_run(["train", "ecg", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "b"),
                          "--quiet"]), "does not exist")


def test_error_directory_without_records(tmp_path):
    _one_line_error(_run(["cv", "ecg", "--data", str(tmp_path), "--quiet"]), "no WFDB records")


def test_error_unknown_record(sample, tmp_path):
    _one_line_error(_run(["train", "ecg", "--data", str(sample), "--records", "119,999",
                          "--out", str(tmp_path / "b"), "--quiet"]), "record 999 not found")


def test_error_altered_bundle(small_bundle, sample, tmp_path):
    import shutil

    bad = tmp_path / "altered.bundle"
    shutil.copytree(small_bundle, bad)
    data = bytearray((bad / WEIGHTS).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / WEIGHTS).write_bytes(bytes(data))
    _one_line_error(_run(["evaluate", str(bad), "--data", str(sample), "--quiet"]), "does not match its sha256")


def test_error_corrupt_header(sample, small_bundle, tmp_path):
    import shutil

    for ext in ("hea", "dat", "atr"):
        shutil.copy(sample / f"208.{ext}", tmp_path / f"208.{ext}")
    (tmp_path / "208.hea").write_text("208 1 abc 216000\n")
    _one_line_error(_run(["evaluate", str(small_bundle), "--data", str(tmp_path), "--quiet"]),
                    r"208.*header")


def test_error_bad_param(sample, tmp_path):
    _one_line_error(_run(["train", "ecg", "--data", str(sample), "--records", "119", "--param", "units",
                          "--out", str(tmp_path / "b"), "--quiet"]), "KEY=VALUE")
    _one_line_error(_run(["train", "ecg", "--data", str(sample), "--records", "119", "--param", "colour=1",
                          "--out", str(tmp_path / "b"), "--quiet"]), "hyper-parameter")


def test_error_sample_rate_too_low(small_bundle, tmp_path):
    import numpy as np
    import wfdb

    sig = np.sin(np.linspace(0, 300, 6000))[:, None]
    wfdb.wrsamp("100", fs=50, units=["mV"], sig_name=["MLII"], p_signal=sig, fmt=["16"], write_dir=str(tmp_path))
    wfdb.wrann("100", "atr", np.array([100, 200, 300]), symbol=["N", "N", "N"], write_dir=str(tmp_path))
    _one_line_error(_run(["evaluate", str(small_bundle), "--data", str(tmp_path), "--quiet"]),
                    r"record 100: sample rate 50 Hz .* below")


def test_error_truncated_signal(sample, small_bundle, tmp_path):
    import shutil

    for ext in ("hea", "dat", "atr"):
        shutil.copy(sample / f"208.{ext}", tmp_path / f"208.{ext}")
    (tmp_path / "208.dat").write_bytes((sample / "208.dat").read_bytes()[:1000])
    _one_line_error(_run(["evaluate", str(small_bundle), "--data", str(tmp_path), "--beats", "detected",
                          "--quiet"]), r"record 208: .*208\.dat")


def test_train_out_never_deletes_a_directory_edgeseq_did_not_write(tmp_path, sample):
    """Issue 13's repro: a project with its own manifest.json keeps its src/."""
    app = tmp_path / "app"
    (app / "src").mkdir(parents=True)
    (app / "manifest.json").write_text("{}")
    (app / "src" / "main.js").write_text("x")
    proc = _run(["train", "ecg", "--data", str(sample), "--records", "106", "--param", "units=20", "--out", str(app),
                 "--quiet"])
    _one_line_error(proc, r"refusing to replace .*app: it is not a bundle edgeseq wrote")
    assert (app / "src" / "main.js").read_text() == "x" and (app / "manifest.json").read_text() == "{}"


def test_export_over_its_own_source_is_refused(tmp_path, small_bundle):
    import shutil

    b = shutil.copytree(small_bundle, tmp_path / "b.bundle")
    before = {p.name: p.read_bytes() for p in b.iterdir()}
    proc = _run(["export", str(b), "--format", "onnx", "--out", str(b)])
    _one_line_error(proc, r"is the bundle being exported")
    assert {p.name: p.read_bytes() for p in b.iterdir()} == before


# ---- issue 16: help that shows every command, task-specific options, the demo's output ----------

def _subcommands():
    import argparse

    from edgeseq.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices, {a.dest: a.help for a in sub._choices_actions}


def test_top_level_help_lists_every_command_with_its_line():
    """Derived from the parser: a command added without a help line (argparse then hides it from
    the list under metavar COMMAND) fails here."""
    import re

    choices, helps = _subcommands()
    assert set(helps) == set(choices) and all(helps.values()), set(choices) - {k for k, v in helps.items() if v}
    out = _run(["--help"])
    assert out.returncode == 0
    for name, text in helps.items():
        first = re.escape(" ".join(text.split()[:3]))
        assert re.search(rf"^\s+{name}\s+{first}", out.stdout, re.M), (name, out.stdout)


@pytest.mark.parametrize("command", ["train", "cv"])
def test_train_and_cv_help_say_which_options_go_with_which_task(command, capsys, tmp_path):
    from edgeseq.cli import NOT_FOR_TASK

    choices, _ = _subcommands()
    sp = choices[command]
    text = sp.format_help()
    epilog = text.split("which options go with which task:")[1]
    rows = {ln.split()[0] for ln in epilog.split("examples:")[0].splitlines() if ln.startswith("  ")
            and not ln.startswith("   ")}
    assert rows == {"ecg", "balance", "both"}, rows
    # Every option of the command is placed in the table (a new one cannot be left out of it) ...
    opts = {s for a in sp._actions for s in a.option_strings if s.startswith("--") and s != "--help"}
    assert opts and all(o in epilog.split("examples:")[0] for o in opts), [o for o in opts if o not in epilog]
    # ... and one the task does not read is refused, not dropped.
    values = {"target": ["Best_T"], "records": ["101"], "folds": ["3"], "include_paced": []}
    for task, dests in NOT_FOR_TASK[command].items():
        for dest in dests:
            out = ["--out", str(tmp_path / "b")] if command == "train" else []
            assert main([command, task, "--data", str(tmp_path), f"--{dest.replace('_', '-')}", *values[dest],
                         *out, "--quiet"]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert err == [f"edgeseq: error: --{dest.replace('_', '-')} does not apply to '{command} {task}' "
                           f"(see edgeseq {command} --help)"], err


def test_demo_writes_where_git_ignores_it():
    """The demo's default output lands in the current directory; run from the repository root (as
    the README does) it is ignored by git, so the demo leaves ``git status`` clean."""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    choices, _ = _subcommands()
    out = Path(choices["demo"].get_default("out"))
    assert not out.is_absolute()
    for name in ("demo-evaluation.json", "demo-evaluation.confusion.png", "ecg-esn.bundle/manifest.json"):
        r = subprocess.run(["git", "-C", str(root), "check-ignore", "-q", str(out / name)], capture_output=True)
        assert r.returncode == 0, (name, r.stderr)


def test_mcu_sizes_are_printed_in_bytes():
    """One size unit in the CLI's messages: bytes (export prints them so, and the budget error)."""
    from edgeseq.profile.target import format_target

    text = format_target({"target": "cortex-m4", "record": "208", "seconds": 300, "beats": 400,
                          "flash_bytes": 88102, "ram_bytes": 49254,
                          "sizes": {"text": 80000, "rodata": 8000, "data": 102, "ram_static": 47000,
                                    "stack_high_water": 2254},
                          "instructions_per_second": 1e6, "frontend_instructions_per_second": 5e5,
                          "instructions_per_beat": 1234, "instructions_per_beat_max": 2000, "matches_host": True,
                          "beats_match_python": True, "logits_max_diff": 0.0})
    assert "flash 88,102 bytes" in text and "RAM   49,254 bytes" in text
    assert "KiB" not in text and "kB" not in text


def test_a_reader_that_stops_early_ends_quietly(tmp_path):
    """``edgeseq predict ... | head -1``: the pipe closes under the writer; exit 141 (as a shell
    reports SIGPIPE), no traceback on stderr. keygen: a command that prints, in milliseconds."""
    import os
    import subprocess
    import sys

    r, w = os.pipe()
    os.close(r)  # the reader is gone before the first byte
    p = subprocess.run([sys.executable, "-m", "edgeseq", "keygen", "--out", str(tmp_path / "k")], stdout=w,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    os.close(w)
    assert p.returncode == 141, p.stderr
    assert p.stderr == "", p.stderr

"""Property tests over hostile inputs (issue 13): mutated WFDB headers of a real record, mutated
balance CSVs made from a real hbedb trial, and random values for every numeric CLI option and
``--param``. For every example edgeseq either gives a correct, finite answer or refuses with one
line (``EdgeseqError`` / exit status 2); any other exception, or a NaN getting through, fails."""

import argparse
import contextlib
import io
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from edgeseq.errors import EdgeseqError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "edgeseq" / "data" / "sample"
HBEDB = ROOT.parent / "shared" / "data" / "hbedb"
FAST = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                     HealthCheck.too_slow], derandomize=True)

#: Values that have broken parsers before: non-finite, huge, negative, empty, not a number.
NASTY = ["nan", "NaN", "inf", "-inf", "Infinity", "1e308", "-1e308", "1e-308", "0", "-0", "-1", "1.5",
         "99999999999999999999", "", " ", "abc", "0x10", "1e3", "360/mV", "(1)", "-", "--", "1,2", "\t"]
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.integers(min_value=-10**25, max_value=10**25).map(str))
values = st.one_of(st.sampled_from(NASTY), numbers, st.text(max_size=12))


def _one_line(msg: str):
    event("refused")
    assert msg and "\n" not in msg.strip(), repr(msg)


# ------------------------------------------------------------------------------------ WFDB headers

@pytest.fixture(scope="module")
def short_record(tmp_path_factory):
    """The first 20 s of shipped record 119, written as a WFDB record of its own (small, so each
    example reads fast), annotations included."""
    import wfdb

    d = tmp_path_factory.mktemp("rec")
    n = 7200
    rec = wfdb.rdrecord(str(SAMPLE / "119"), sampto=n, physical=False)
    ann = wfdb.rdann(str(SAMPLE / "119"), "atr", sampto=n - 1)
    wfdb.wrsamp("119", fs=rec.fs, units=rec.units, sig_name=rec.sig_name, d_signal=rec.d_signal,
                fmt=rec.fmt, adc_gain=rec.adc_gain, baseline=rec.baseline, write_dir=str(d))
    wfdb.wrann("119", "atr", ann.sample, ann.symbol, write_dir=str(d), fs=rec.fs)
    return d


header_edit = st.one_of(
    st.tuples(st.just("token"), st.integers(0, 1), st.integers(0, 9), values),
    st.tuples(st.just("drop_line"), st.integers(0, 1)),
    st.tuples(st.just("truncate"), st.integers(0, 120)),
    st.tuples(st.just("append"), values),
)


def _mutate_header(text: str, edits) -> str:
    lines = text.splitlines()
    for e in edits:
        if e[0] == "token" and lines:
            line = lines[min(e[1], len(lines) - 1)].split(" ")
            line[min(e[2], len(line) - 1)] = e[3]
            lines[min(e[1], len(lines) - 1)] = " ".join(line)
        elif e[0] == "drop_line" and lines:
            del lines[min(e[1], len(lines) - 1)]
        elif e[0] == "truncate":
            joined = "\n".join(lines)[: e[1]]
            lines = joined.splitlines()
        elif e[0] == "append":
            lines.append(e[1])
    return "\n".join(lines) + "\n"


@settings(FAST, max_examples=300)
@given(edits=st.lists(header_edit, min_size=1, max_size=3))
def test_mutated_header_reads_or_refuses(short_record, tmp_path_factory, edits):
    from edgeseq.data.mitdb import load_record

    d = tmp_path_factory.mktemp("hea", numbered=True)
    for ext in ("dat", "atr"):
        shutil.copy(short_record / f"119.{ext}", d / f"119.{ext}")
    (d / "119.hea").write_text(_mutate_header((short_record / "119.hea").read_text(), edits))
    try:
        rec = load_record(d, "119", fs=360.0, lead="MLII")
    except EdgeseqError as exc:
        _one_line(str(exc))
        return
    assert rec.signal.ndim == 1 and len(rec.signal) > 0 and np.isfinite(rec.signal).all()
    assert rec.fs == 360.0 and math.isfinite(rec.source_fs) and rec.source_fs > 0
    assert len(rec.beat_samples) == len(rec.beat_labels)
    if len(rec.beat_samples):
        assert rec.beat_samples.min() >= 0 and rec.beat_samples.max() < len(rec.signal)


# ------------------------------------------------------------------------------------ balance CSVs

@pytest.fixture(scope="module")
def board_dir(tmp_path_factory):
    """A user balance-board directory made from real hbedb trial BDS00001: 10 s of corner forces at
    100 Hz, with its subject, condition and Best_T."""
    if not (HBEDB / "BDS" / "data" / "BDS00001.txt").is_file():
        pytest.skip(f"hbedb not found at {HBEDB}")
    from edgeseq.data.hbedb import load_info
    from edgeseq.preprocess.balance import CORNERS, corner_forces

    raw = np.loadtxt(HBEDB / "BDS" / "data" / "BDS00001.txt", skiprows=1)[:1000]
    F = corner_forces(raw[:, 3], raw[:, 7], raw[:, 8])
    d = tmp_path_factory.mktemp("board")
    rows = ["time_s," + ",".join(CORNERS)] + [",".join(repr(float(v)) for v in (t, *f)) for t, f in zip(raw[:, 0], F)]
    (d / "BDS00001.csv").write_text("\n".join(rows) + "\n")
    info = load_info(HBEDB)["BDS00001"]
    (d / "trials.csv").write_text("trial,subject,vision,surface,Best_T\n"
                                  f"BDS00001,{info['subject']},{info['vision']},{info['surface']},{info['Best_T']}\n")
    return d


csv_edit = st.one_of(
    st.tuples(st.just("cell"), st.sampled_from(["signal", "info"]), st.integers(0, 999), st.integers(0, 5),
              st.one_of(st.sampled_from(["NaN", "nan", "1e308", "-1e308", "inf", "", "abc", "0", "-5"]), values)),
    st.tuples(st.just("ragged"), st.sampled_from(["signal", "info"]), st.integers(0, 999), st.booleans()),
    st.tuples(st.just("drop_column"), st.sampled_from(["signal", "info"]), st.integers(0, 5)),
    st.tuples(st.just("drop_line"), st.sampled_from(["signal", "info"]), st.integers(0, 999)),
)


def _mutate_csv(text: str, e) -> str:
    lines = text.splitlines()
    if e[0] == "cell":
        i = min(e[2], len(lines) - 1)
        cells = lines[i].split(",")
        cells[min(e[3], len(cells) - 1)] = e[4]
        lines[i] = ",".join(cells)
    elif e[0] == "ragged":
        i = min(e[2], len(lines) - 1)
        cells = lines[i].split(",")
        lines[i] = ",".join(cells + ["1.0"] if e[3] else cells[:-1])
    elif e[0] == "drop_column":
        lines = [",".join(c for j, c in enumerate(ln.split(",")) if j != e[2]) for ln in lines]
    elif e[0] == "drop_line":
        del lines[min(e[2], len(lines) - 1)]
    return "\n".join(lines) + "\n"


@settings(FAST, max_examples=300)
@given(edits=st.lists(csv_edit, min_size=1, max_size=3))
def test_mutated_balance_csv_loads_or_refuses(board_dir, tmp_path_factory, edits):
    from edgeseq.data.hbedb import load_trials
    from edgeseq.preprocess.balance import BalancePreprocessing

    d = tmp_path_factory.mktemp("csv", numbered=True)
    files = {"signal": "BDS00001.csv", "info": "trials.csv"}
    texts = {k: (board_dir / f).read_text() for k, f in files.items()}
    for e in edits:
        texts[e[1]] = _mutate_csv(texts[e[1]], e)
    for k, f in files.items():
        (d / f).write_text(texts[k])
    try:
        trials = load_trials(d, target="Best_T", progress=False)
        prep = BalancePreprocessing()
        for t in trials:  # the centre of pressure: a division by the total force
            assert np.isfinite(prep.cop(t.forces)).all()
    except EdgeseqError as exc:
        _one_line(str(exc))
        return
    for t in trials:
        assert t.forces.ndim == 2 and t.forces.shape[1] == 4 and len(t.forces) > 0
        assert np.isfinite(t.forces).all()
        assert all(math.isfinite(v) for v in t.scores.values()) and math.isfinite(t.scores["Best_T"])


# ------------------------------------------------------------------------------------ CLI options

_BASE = {
    "train": ["train", "ecg", "--out", "b"], "cv": ["cv", "ecg"], "demo": ["demo"],
    "profile": ["profile", "b"], "tune": ["tune", "ecg", "--trials", "1", "--out", "t"],
    "serve": ["serve", "--port", "p", "--bundle", "b"], "emulate": ["emulate", "--source", "s", "--link", "l"],
}
OPTIONS = [("train", "--seed"), ("cv", "--seed"), ("cv", "--folds"), ("demo", "--seed"),
           ("profile", "--threads"), ("profile", "--n"), ("profile", "--window-steps"),
           ("tune", "--trials"), ("tune", "--folds"), ("tune", "--gpus-per-trial"), ("tune", "--jobs"),
           ("tune", "--seed"), ("serve", "--duration"), ("serve", "--give-up"), ("serve", "--rate"),
           ("serve", "--window"), ("serve", "--hop"), ("serve", "--threads"), ("serve", "--baud"),
           ("serve", "--channel"), ("serve", "--scale"), ("serve", "--offset"), ("emulate", "--speed"),
           ("emulate", "--seed"), ("emulate", "--duration"), ("emulate", "--frame-samples"),
           ("emulate", "--outage"), ("emulate", "--wait"), ("emulate", "--faults")]


def _parse(argv):
    from edgeseq.cli import build_parser

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            return build_parser().parse_args(argv), None
        except SystemExit as exc:
            assert exc.code == 2, exc.code
            return None, err.getvalue()


@settings(FAST, max_examples=1000)
@given(which=st.sampled_from(OPTIONS), value=values)
def test_option_values_parse_or_refuse(which, value):
    cmd, opt = which
    if cmd == "emulate" and opt == "--faults":
        value = f"drop={value}"
    args, err = _parse(_BASE[cmd] + [f"{opt}={value}"])
    if args is None:
        _one_line(err)
        assert opt in err and "Traceback" not in err
        return
    got = getattr(args, opt.lstrip("-").replace("-", "_"))
    if opt == "--faults":
        from edgeseq.bridge.emulator import parse_faults

        assert all(math.isfinite(r) and 0 <= r <= 1 for r in parse_faults(got).values())
    elif opt == "--speed":
        assert got == "max" or (math.isfinite(float(got)) and float(got) > 0)
    else:
        assert isinstance(got, (int, float)) and math.isfinite(got)
        if opt not in ("--scale", "--offset"):
            assert got >= 0


PARAMS = {"esn": ["units", "lr", "sr", "input_scaling", "rc_connectivity", "input_connectivity", "bias_scaling",
                  "ridge", "class_weight_power", "class_weight_cap", "seed", "batch_size", "rr_inputs", "dtype"],
          "lstm": ["hidden", "layers", "head", "epochs", "batch_size", "learning_rate", "weight_decay", "threads"],
          "tcn": ["channels", "blocks", "kernel", "epochs", "learning_rate"]}
PARAM_CASES = [(k, p) for k, ps in PARAMS.items() for p in ps]
json_values = st.one_of(values, st.just("[1,NaN]"), st.just("[[3,1e308]]"), st.just("null"), st.just("true"))


@settings(FAST, max_examples=600)
@given(which=st.sampled_from(PARAM_CASES), value=json_values)
def test_param_values_are_checked(which, value):
    """``--param`` as the CLI reads it, then the family's declared ranges: refused in one line, or
    every accepted number finite."""
    from edgeseq.cli import _params
    from edgeseq.models import model_class

    kind, name = which
    try:
        params = _params([f"{name}={value}"])
        est = model_class(kind)().set_params(**params)
    except EdgeseqError as exc:
        _one_line(str(exc))
        return
    got = est.get_params()[name]
    flat = np.asarray(got if got is not None else [], dtype=object).ravel()
    for v in flat:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            assert math.isfinite(v)


def test_argparse_namespace_types_are_numbers():
    """The defaults themselves pass the ranges (a default outside its own range would be a bug)."""
    for cmd, base in _BASE.items():
        args, err = _parse(base)
        assert args is not None, err
        assert isinstance(args, argparse.Namespace)

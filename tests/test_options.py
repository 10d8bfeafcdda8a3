"""Hostile option values and output paths (issue 13): every one ends in one line on stderr and exit
status 2 -- no traceback, no hang, no silent clamp, no "success" over NaN -- and the non-finite and
empty-data cases of training and scoring."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeseq.cli import main
from edgeseq.errors import EdgeseqError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "edgeseq" / "data" / "sample"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _one_line(err: str, *needles):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert "error" in lines[0], err
    for n in needles:
        assert n in lines[0], err
    return lines[0]


def _in_process(argv, capsys, *needles):
    assert main(argv) == 2
    return _one_line(capsys.readouterr().err, *needles)


def _subprocess(argv, *needles, timeout=60):
    r = subprocess.run([sys.executable, "-m", "edgeseq", *argv], capture_output=True, text=True,
                       env=ENV, timeout=timeout, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, (r.returncode, r.stderr)
    return _one_line(r.stderr, *needles)


# --------------------------------------------------------------------------- option values

_BASE = {
    "train": ["train", "ecg", "--data", str(SAMPLE), "--out", "/nonexistent-dir-never-written/b"],
    "evaluate": ["evaluate", "/nonexistent-bundle"],
    "cv": ["cv", "ecg", "--data", str(SAMPLE)],
    "export": ["export", "/nonexistent-bundle", "--out", "/nonexistent-dir-never-written/x"],
    "demo": ["demo", "--out", "/nonexistent-dir-never-written/d"],
    "profile": ["profile", "/nonexistent-bundle"],
    "tune": ["tune", "ecg", "--trials", "1", "--out", "/nonexistent-dir-never-written/t"],
    "serve": ["serve", "--port", "/nonexistent-port", "--bundle", "/nonexistent-bundle"],
    "emulate": ["emulate", "--source", "mitdb:/nonexistent/100", "--link", "/nonexistent-dir/link"],
}

#: (sub-command, option, bad values): every numeric option of every sub-command.
BAD = [
    ("train", "--seed", ["-1", "1.5", "nan", "abc", "99999999999"]),
    ("cv", "--seed", ["-1"]),
    ("cv", "--folds", ["0", "1", "-1", "nan", "2.5"]),
    ("demo", "--seed", ["-1", "inf"]),
    ("profile", "--threads", ["100000", "0", "-1", "nan"]),
    ("profile", "--n", ["3", "nan", "-5", "1e12"]),
    ("profile", "--window-steps", ["0", "-1", "nan"]),
    ("tune", "--trials", ["0", "nan"]),
    ("tune", "--folds", ["0", "1"]),
    ("tune", "--gpus-per-trial", ["nan", "-1", "inf"]),
    ("tune", "--jobs", ["0", "-3"]),
    ("tune", "--seed", ["-1"]),
    ("serve", "--duration", ["nan", "0", "-1", "inf"]),
    ("serve", "--give-up", ["nan", "-1", "inf"]),
    ("serve", "--rate", ["nan", "0", "-360", "inf"]),
    ("serve", "--window", ["nan", "-1", "0"]),
    ("serve", "--hop", ["nan", "-1", "0"]),
    ("serve", "--threads", ["100000", "0"]),
    ("serve", "--baud", ["0", "-9600", "nan"]),
    ("serve", "--channel", ["-1", "nan", "1.5"]),
    ("serve", "--scale", ["nan", "inf"]),
    ("serve", "--offset", ["nan", "-inf"]),
    ("emulate", "--speed", ["nan", "0", "-1", "inf", "fast"]),
    ("emulate", "--faults", ["drop=nan", "drop=2", "bitflip=-0.1", "drop=inf", "melt=0.1", "drop"]),
    ("emulate", "--seed", ["-1"]),
    ("emulate", "--duration", ["nan", "-1"]),
    ("emulate", "--frame-samples", ["0", "-1", "nan"]),
    ("emulate", "--outage", ["nan", "-1"]),
    ("emulate", "--wait", ["nan", "-1"]),
]
CASES = [(cmd, opt, v) for cmd, opt, vals in BAD for v in vals]


@pytest.mark.parametrize("cmd,opt,value", CASES, ids=[f"{c}{o}={v}" for c, o, v in CASES])
def test_bad_option_value_is_one_line(cmd, opt, value, capsys):
    """Parsing refuses the value before the command runs (so serve/emulate cannot hang on it)."""
    from edgeseq.cli import build_parser

    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(_BASE[cmd] + [f"{opt}={value}"])
    assert exc.value.code == 2
    _one_line(capsys.readouterr().err, opt)


@pytest.mark.parametrize("argv", [["serve", "--duration", "nan"], ["serve", "--give-up", "nan"],
                                  ["emulate", "--duration", "nan"], ["emulate", "--speed", "nan"]])
def test_nan_durations_end_at_once(argv):
    """These used to run forever; under the timeout, the whole process must answer exit 2."""
    cmd = argv[0]
    _subprocess(_BASE[cmd] + argv[1:], argv[1], timeout=30)


@pytest.mark.parametrize("param", ["units=1000000", "units=0", "units=-5", "units=2.5", "units=abc",
                                   "rc_connectivity=0", "input_connectivity=0", "lr=NaN", "lr=5", "lr=0",
                                   "sr=1e308", "sr=Infinity", "sr=-1", "ridge=-1", "batch_size=0",
                                   "input_scaling=[1,NaN,1,1,1]", "dtype=float16"])
def test_bad_esn_param_is_one_line_before_any_work(param, capsys, tmp_path):
    name = param.split("=")[0]
    _in_process(["train", "ecg", "--data", str(SAMPLE), "--records", "119", "--out", str(tmp_path / "b"),
                 "--param", param, "--quiet"], capsys, name)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("model,param", [("lstm", "hidden=0"), ("lstm", "learning_rate=NaN"),
                                         ("lstm", "epochs=-1"), ("tcn", "kernel=0"), ("tcn", "threads=100000")])
def test_bad_neural_param_is_one_line(model, param, capsys, tmp_path):
    _in_process(["train", "ecg", "--model", model, "--data", str(SAMPLE), "--records", "119",
                 "--out", str(tmp_path / "b"), "--param", param, "--quiet"], capsys, param.split("=")[0])


def test_too_sparse_reservoir_is_one_line(capsys, tmp_path):
    _in_process(["train", "ecg", "--data", str(SAMPLE), "--records", "119", "--out", str(tmp_path / "b"),
                 "--param", "units=20", "--param", "rc_connectivity=1e-9", "--quiet"], capsys, "reservoir")


# --------------------------------------------------------------------------- output paths

@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    from edgeseq.tasks import ecg

    out = tmp_path_factory.mktemp("opts") / "tiny.bundle"
    ecg.train(SAMPLE, ["119", "201"], out=out, seed=1, params={"units": 30}, progress=False)
    return out


def _bad_targets(tmp_path):
    d = tmp_path / "adir"
    d.mkdir()
    f = tmp_path / "afile"
    f.write_text("mine\n")
    return {"directory": (str(d), "directory"), "/dev/full": ("/dev/full", "not a regular file"),
            "under a file": (str(f / "x.json"), "regular file")}


@pytest.mark.parametrize("what", ["directory", "/dev/full", "under a file"])
def test_evaluate_json_bad_target(what, tiny_bundle, tmp_path, capsys):
    target, msg = _bad_targets(tmp_path)[what]
    _in_process(["evaluate", str(tiny_bundle), "--data", str(SAMPLE), "--records", "208", "--quiet",
                 "--json", target], capsys, "--json", msg)
    assert (tmp_path / "afile").read_text() == "mine\n"


@pytest.mark.parametrize("task", ["ecg", "balance"])
@pytest.mark.parametrize("what", ["directory", "/dev/full", "under a file"])
def test_cv_json_bad_target_before_the_work(task, what, tmp_path, capsys, monkeypatch):
    import edgeseq.tasks.balance as balance
    import edgeseq.tasks.ecg as ecg

    def no_work(*a, **k):
        raise AssertionError("cross-validation ran before its output path was checked")

    monkeypatch.setattr(ecg if task == "ecg" else balance, "cross_validate", no_work)
    target, msg = _bad_targets(tmp_path)[what]
    data = ["--data", str(SAMPLE)] if task == "ecg" else ["--data", str(tmp_path), "--target", "Best_T"]
    _in_process(["cv", task, *data, "--quiet", "--json", target], capsys, "--json", msg)


@pytest.mark.parametrize("opt", ["--json", "--plot"])
@pytest.mark.parametrize("what", ["directory", "/dev/full", "under a file"])
def test_profile_outputs_bad_target(opt, what, tiny_bundle, tmp_path, capsys):
    target, msg = _bad_targets(tmp_path)[what]
    _in_process(["profile", str(tiny_bundle), "--n", "10", opt, target], capsys, opt, msg)


def test_profile_plot_on_dev_full_was_exit_0(tiny_bundle):
    """The report's case, end to end: it used to print a plot path and exit 0."""
    _subprocess(["profile", str(tiny_bundle), "--n", "10", "--plot", "/dev/full"], "--plot", timeout=120)


def test_outputs_into_a_missing_directory_are_created(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "e.json"
    assert main(["evaluate", str(tiny_bundle), "--data", str(SAMPLE), "--records", "208", "--quiet",
                 "--json", str(out)]) == 0
    assert out.is_file() and out.with_name("e.confusion.png").is_file()
    plot = tmp_path / "p" / "lat.png"
    js = tmp_path / "p" / "prof.json"
    assert main(["profile", str(tiny_bundle), "--n", "10", "--no-arena", "--json", str(js), "--plot", str(plot)]) == 0
    assert plot.stat().st_size > 0 and js.stat().st_size > 0


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into read-only directories, so chmod cannot make one here")
def test_outputs_into_a_read_only_directory(tiny_bundle, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        _in_process(["evaluate", str(tiny_bundle), "--data", str(SAMPLE), "--records", "208", "--quiet",
                     "--json", str(ro / "e.json")], capsys, "permission")
        _in_process(["profile", str(tiny_bundle), "--n", "10", "--plot", str(ro / "p.png")], capsys, "permission")
    finally:
        ro.chmod(0o700)


def test_train_out_not_a_bundle_is_refused_before_training(tmp_path, capsys, monkeypatch):
    """Used to be refused only by write_bundle, after the whole training run."""
    import edgeseq.tasks.ecg as ecg

    out = tmp_path / "project"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")

    def no_work(*a, **k):
        raise AssertionError("beats were read before --out was checked")

    monkeypatch.setattr(ecg, "load_beats", no_work)
    _in_process(["train", "ecg", "--data", str(SAMPLE), "--records", "119", "--out", str(out), "--quiet"],
                capsys, "refusing to replace")
    assert (out / "notes.txt").read_text() == "mine\n"


def test_export_out_not_a_bundle_is_refused_before_export(tiny_bundle, tmp_path, capsys, monkeypatch):
    import edgeseq.export

    def no_work(*a, **k):
        raise AssertionError("exported before --out was checked")

    monkeypatch.setattr(edgeseq.export, "export", no_work)
    out = tmp_path / "project"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    _in_process(["export", str(tiny_bundle), "--out", str(out)], capsys, "refusing to replace")
    assert (out / "notes.txt").read_text() == "mine\n"


def test_profile_ssh_option_injection_is_refused(tiny_bundle, tmp_path, capsys):
    marker = tmp_path / "pwned"
    _in_process(["profile", str(tiny_bundle), f"--ssh=-oProxyCommand=touch {marker}"], capsys, "--ssh")
    assert not marker.exists()
    from edgeseq.profile.remote import commands

    c = commands("pi@board", "/x/b", "/tmp/edgeseq-profile.abc", [])
    for cmd in c.values():
        assert "--" in cmd and cmd.index("--") < next(i for i, a in enumerate(cmd) if "pi@board" in a)


# --------------------------------------------------------------------------- non-finite training

def test_esn_refuses_non_finite_training_data():
    from edgeseq.models.esn import ESNClassifier

    rng = np.random.default_rng(0)
    w, rr, y = rng.normal(size=(50, 30)).astype(np.float32), np.abs(rng.normal(size=(50, 9))) + 0.5, np.arange(50) % 2
    w[7, 3] = np.nan
    with pytest.raises(EdgeseqError, match="training beat windows"):
        ESNClassifier(units=20).fit(w, y, rr, n_classes=2)
    w[7, 3] = 0
    rr[3, 1] = np.inf
    with pytest.raises(EdgeseqError, match="RR features"):
        ESNClassifier(units=20).fit(w, y, rr, n_classes=2)


def test_esn_refuses_non_finite_states_and_weights():
    """States that overflowed (or a readout that did) never become a bundle labelling everything N."""
    from edgeseq.models.esn import ESNClassifier

    rng = np.random.default_rng(0)
    feats, rr, y = rng.normal(size=(40, 20)), np.ones((40, 9)), np.arange(40) % 2
    feats[5, 5] = np.nan
    with pytest.raises(EdgeseqError, match="reservoir states"):
        ESNClassifier(units=10).fit_readout(feats, y, rr, n_classes=2)
    huge = 1e308 * rng.choice([-1.0, 1.0], feats.shape)  # finite, but the readout overflows
    with pytest.raises(EdgeseqError, match="ESN readout"):
        ESNClassifier(units=10).fit_readout(huge, y, rr, n_classes=2)


def test_window_esn_refuses_a_score_of_1e308():
    from edgeseq.models.esn_window import ESNWindowModel

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 20, 4)), rng.uniform(0, 28, 30)
    y[4] = 1e308
    with pytest.raises(EdgeseqError, match="readout"):
        ESNWindowModel(units=20).fit(X, y)
    with pytest.raises(EdgeseqError, match="training windows"):
        ESNWindowModel(units=20).fit(np.where(X > 2, np.nan, X), rng.uniform(0, 28, 30))


def test_predict_leaves_non_finite_logits_unlabelled():
    from edgeseq.finite import UNLABELLED
    from edgeseq.models.esn import ESNClassifier

    est = ESNClassifier(units=10)
    est.decision_function = lambda X, side=None: np.array([[0.0, 1.0], [np.nan, 0.0], [np.inf, 0.0]])
    assert est.predict(None, None).tolist() == [1, UNLABELLED, UNLABELLED]


def test_evaluate_counts_nan_outputs_as_unlabelled_never_normal(tiny_bundle, monkeypatch):
    """A model whose every logit is NaN used to score as 'all N', a plausible accuracy."""
    import edgeseq.tasks.ecg as ecg
    from edgeseq.runtime import Model

    # evaluate runs every bundle through the runtime (a training one: its description in numpy)
    monkeypatch.setattr(Model, "logits", lambda self, w, rr: np.full((len(w), 5), np.nan, np.float32))
    rep = ecg.evaluate(tiny_bundle, SAMPLE, ["208"], progress=False)
    assert rep["n_scored"] == 0 and rep["unlabelled"] == rep["n_beats"] > 0
    assert rep["accuracy"] is None
    assert np.asarray(rep["confusion"]).sum() == 0 and sum(rep["missed"]) == rep["n_beats"]


def test_cv_counts_nan_outputs_as_unlabelled(monkeypatch):
    import edgeseq.tasks.ecg as ecg
    from edgeseq.models.esn import ESNClassifier

    real = ESNClassifier.decision_function_from_features

    def half_nan(self, features, side=None):
        z = real(self, features, side)
        z[::2] = np.nan
        return z

    monkeypatch.setattr(ESNClassifier, "decision_function_from_features", half_nan)
    rep = ecg.cross_validate(SAMPLE, ["119", "201", "223"], params={"units": 20}, progress=False)
    assert rep["unlabelled"] > 0 and np.asarray(rep["confusion"]).sum() == rep["n_beats"] - rep["unlabelled"]


# --------------------------------------------------------------------------- empty and flat records

def _record_without_beats(root: Path, name="208"):
    """A real record whose .atr holds only rhythm annotations: a valid file, no beat."""
    import wfdb

    root.mkdir(parents=True, exist_ok=True)
    for ext in ("hea", "dat"):
        shutil.copy(SAMPLE / f"{name}.{ext}", root / f"{name}.{ext}")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        wfdb.wrann(name, "atr", np.array([10, 5000]), np.array(["+", "+"]), aux_note=["(N", "(AFL"], fs=360)
    finally:
        os.chdir(cwd)
    return root


def test_cv_with_a_record_without_beats(tmp_path, capsys):
    d = _record_without_beats(tmp_path / "recs")
    for r in ("119", "201"):
        for ext in ("hea", "dat", "atr"):
            shutil.copy(SAMPLE / f"{r}.{ext}", d / f"{r}.{ext}")
    _in_process(["cv", "ecg", "--data", str(d), "--records", "119,201,208", "--param", "units=20", "--quiet"],
                capsys, "208", "no usable beats")


def test_export_int8_calibration_without_beats(neural_bundles, tmp_path, capsys):
    """A TCN's int8 ranges are calibrated on data (the ESN's are fixed: it reads none). --quiet:
    without it the records read before the data prove empty have their progress line."""
    d = _record_without_beats(tmp_path / "cal")
    _in_process(["export", str(neural_bundles["tcn"]), "--int8", "--calibration", str(d), "--records", "208",
                 "--out", str(tmp_path / "x8"), "--quiet"], capsys, "--calibration", "no usable beats")
    assert not (tmp_path / "x8").exists()


def test_flat_record_scores_no_accuracy(tiny_bundle, tmp_path, capsys):
    """Detected beats on a flat signal: no beat found, every reference beat missed, no accuracy."""
    d = tmp_path / "flat"
    d.mkdir()
    for ext in ("hea", "atr"):
        shutil.copy(SAMPLE / f"208.{ext}", d / f"208.{ext}")
    (d / "208.dat").write_bytes(bytes((SAMPLE / "208.dat").stat().st_size))
    js = tmp_path / "flat.json"
    assert main(["evaluate", str(tiny_bundle), "--data", str(d), "--records", "208", "--beats", "detected",
                 "--quiet", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "no beats scored" in out and not any(ln.startswith("accuracy ") for ln in out.splitlines())
    import json

    rep = json.loads(js.read_text())
    assert rep["accuracy"] is None and rep["n_scored"] == 0 and sum(rep["missed"]) == rep["n_beats"] > 0


def test_demo_refuses_unknown_or_all_test_records(capsys, tmp_path):
    _in_process(["demo", "--out", str(tmp_path / "d"), "--test-records", "999"], capsys, "--test-records", "999")
    everything = ",".join(p.stem for p in sorted(SAMPLE.glob("*.hea")))
    _in_process(["demo", "--out", str(tmp_path / "d"), "--test-records", everything], capsys, "--test-records")
    _in_process(["demo", "--out", str(tmp_path / "d"), "--test-records", ","], capsys, "--test-records")
    assert not (tmp_path / "d").exists()


# --------------------------------------------------------------------------- RR intervals at a gap

def test_rr_interval_ending_at_a_peak_near_a_gap_is_unscored():
    """A real record, 40 samples lost starting 10 samples after one R peak (the rest of its QRS):
    that peak's position rests on half a complex, so the previous beat's post-RR is a guess and the
    beat must come back not ok. It used to be classified: its interval holds no filled sample."""
    from edgeseq.data.mitdb import load_record
    from edgeseq.preprocess.ecg import EcgPreprocessing
    from edgeseq.preprocess.qrs import QRSDetector
    from edgeseq.preprocess.stream import EcgBeatStream

    prep = EcgPreprocessing()
    rec = load_record(SAMPLE, "119", fs=prep.sample_rate, lead=prep.lead)
    x = rec.signal
    # Offline detection on the clean signal; a beat in the middle.
    det = QRSDetector(prep.sample_rate)
    peaks = np.concatenate([det.process(x), det.flush()]).astype(np.int64)
    k = len(peaks) // 2
    r_k = int(peaks[k])
    a, n = r_k + 10, 40
    s = EcgBeatStream(prep, QRSDetector(prep.sample_rate))
    beats = []
    for i in range(0, a, 500):
        beats += s.feed(x[i:min(i + 500, a)])
    beats += s.feed(x[a + n:a + n + 500], lost_before=n)
    for i in range(a + n + 500, len(x), 500):
        beats += s.feed(x[i:i + 500])
    beats += s.flush()
    by_r = {b.r: b for b in beats}
    prev = int(peaks[k - 1])
    assert prev in by_r  # the beat before the gap: its window is clear of it
    assert prev + prep.post < a  # ... so only its post-RR interval can make it unscored
    assert not by_r[prev].ok and "next RR" in by_r[prev].reason
    # Offline, the same rule through prep.beats(filled=...)
    filled = np.zeros(len(x), bool)
    filled[a:a + n] = True
    _, _, idx = prep.beats(x, peaks, filled=filled)
    kept = set(peaks[idx].tolist())
    assert prev not in kept and r_k not in kept and int(peaks[k - 2]) in kept


@pytest.mark.parametrize("what", ["under a file", "a file", "best.json a directory"])
def test_tune_out_is_checked_before_the_study(what, tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("mine\n")
    out = {"under a file": f / "sub", "a file": f, "best.json a directory": tmp_path / "t"}[what]
    if what == "best.json a directory":
        (out / "best.json").mkdir(parents=True)
    _in_process(["tune", "ecg", "--data", str(SAMPLE), "--trials", "1", "--out", str(out), "--quiet"],
                capsys, "--out")
    assert f.read_text() == "mine\n"


def test_train_out_under_a_regular_file(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("mine\n")
    _in_process(["train", "ecg", "--data", str(SAMPLE), "--records", "119", "--out", str(f / "b"), "--quiet"],
                capsys, str(f))
    assert f.read_text() == "mine\n"


@pytest.mark.parametrize("argv", [["train", "ecg", "--param", "units=0"], ["cv", "ecg", "--param", "lr=NaN"],
                                  ["evaluate", "/nonexistent-bundle"]])
def test_mistake_without_data_is_the_only_stderr_line(argv, tmp_path, capsys):
    """Without --data a note names the shipped excerpt; a mistake found before reading it must
    not come after that note (two lines on stderr)."""
    if argv[0] == "train":
        argv = argv + ["--out", str(tmp_path / "b")]
    _in_process(argv, capsys)


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_tune_space_that_is_not_a_small_file_is_one_line(tmp_path, special):
    """A space file that is a device or a FIFO would block the read forever."""
    if special == "fifo":
        special = str(tmp_path / "fifo")
        os.mkfifo(special)
    _subprocess(["tune", "ecg", "--space", special, "--trials", "1", "--out", str(tmp_path / "t")],
                "space file", "regular JSON file", timeout=30)
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("argv", [
    ["train", "ecg", "--records", "", "--out", "OUT"],
    ["train", "ecg", "--records", ",,,", "--out", "OUT"],
    ["cv", "ecg", "--records", " "],
])
def test_an_empty_record_list_is_not_the_default_set(tmp_path, argv):
    """``--records "$R"`` with R unset must not silently train or test on every record."""
    _subprocess([str(tmp_path / "b") if a == "OUT" else a for a in argv], "--records", "names no record")
    assert not (tmp_path / "b").exists()


def test_an_empty_out_is_refused_before_training(tmp_path):
    _subprocess(["train", "ecg", "--records", "106", "--out", ""], "bundle path is empty")


def test_evaluate_on_a_directory_without_manifest_is_the_only_line(tmp_path):
    _subprocess(["evaluate", str(SAMPLE)], "has no manifest.json")


def test_cv_folds_above_the_records_is_refused_before_reading_them():
    """One line, and no 'reading records' progress before it."""
    _subprocess(["cv", "ecg", "--data", str(SAMPLE), "--records", "106,118", "--folds", "5"],
                "--folds must be between 2 and the number of records (2), not 5")

"""Balance trials: hbedb force-platform files and user balance-board CSVs as corner forces, resampling, errors."""

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from edgeseq.data.hbedb import (CONDITIONS, Trial, dataset_root, list_trials, load_info, load_trial,
                                load_trials, resample_uniform)
from edgeseq.errors import EdgeseqError
from edgeseq.preprocess.balance import CORNERS, cop_from_corners, corner_forces

HBEDB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hbedb"
#: Three trials of different subjects and conditions, made into board recordings by ``_write_csv_dir``.
CSV_SOURCES = ("BDS00001", "BDS00050", "BDS00150")


@pytest.fixture(scope="module")
def hbedb() -> Path:
    if not (HBEDB / "BDS" / "BDSinfo.txt").is_file():
        pytest.skip(f"hbedb not found at {HBEDB}")
    return HBEDB


def _raw(name):
    return np.loadtxt(HBEDB / "BDS" / "data" / f"{name}.txt", skiprows=1)


def _jittered_times(t0, t1, rng, rate=90.0, jitter=0.3):
    """Timestamps of a Bluetooth board: ~``rate`` Hz, each step off by up to +-``jitter`` of a period."""
    steps = (1 + rng.uniform(-jitter, jitter, int((t1 - t0) * rate * 1.5))) / rate
    t = t0 + np.concatenate([[0.0], np.cumsum(steps)])
    return t[t <= t1]


def _write_signal(path, t, forces, header=("time_s",) + CORNERS):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for ti, row in zip(t, forces):
            w.writerow([repr(float(ti))] + [repr(float(v)) for v in row])


def _write_csv_dir(root: Path, seconds=20.0, seed=0) -> Path:
    """A user CSV directory made FROM hbedb: the first ``seconds`` of three trials as corner forces at
    jittered ~90 Hz times (linear interpolation of the 100 Hz platform forces), plus trials.csv."""
    rng = np.random.default_rng(seed)
    info = load_info(HBEDB)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in CSV_SOURCES:
        raw = _raw(name)
        t, F = raw[:, 0], corner_forces(raw[:, 3], raw[:, 7], raw[:, 8])
        keep = t <= t[0] + seconds
        t, F = t[keep], F[keep]
        tj = _jittered_times(t[0], t[-1], rng)
        Fj = np.column_stack([np.interp(tj, t, F[:, j]) for j in range(4)])
        _write_signal(root / f"{name}.csv", tj, Fj)
        r = info[name]
        rows.append([name, r["subject"], r["vision"].lower(), r["surface"], r["Best_T"]])
    with open(root / "trials.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trial", "subject", "vision", "surface", "Best_T"])
        w.writerows(rows)
    return root


@pytest.fixture
def csv_dir(hbedb, tmp_path) -> Path:
    return _write_csv_dir(tmp_path / "board")


# ------------------------------------------------------------------------------------------ hbedb


def test_corner_forces_reproduce_the_recorded_cop(hbedb):
    for name in ("BDS00001", "BDS00077", "BDS00200"):
        raw = _raw(name)
        trial = load_trial(hbedb, name)
        assert trial.forces.shape == (6000, 4) and trial.fs == 100.0 and trial.source_fs == 100.0
        np.testing.assert_allclose(cop_from_corners(trial.forces), raw[:, 7:9], rtol=0, atol=1e-9)
        np.testing.assert_allclose(trial.forces.sum(axis=1), raw[:, 3], rtol=1e-12)
        # already uniform at 100 Hz: the forces are the platform's, not resampled
        assert np.array_equal(trial.forces, corner_forces(raw[:, 3], raw[:, 7], raw[:, 8]))


def test_hbedb_trials_subjects_conditions_and_scores(hbedb):
    names = list_trials(hbedb)
    assert len(names) == 200 and names[0] == "BDS00001" and names[-1] == "BDS00200"
    assert list_trials(hbedb / "BDS") == names  # the BDS folder itself is accepted too
    assert dataset_root(hbedb) == dataset_root(hbedb / "BDS") == hbedb / "BDS"
    info = load_info(hbedb)
    assert len(info) == 1930
    rows = [info[n] for n in names]
    assert len({r["subject"] for r in rows}) == 17
    assert set(Counter(r["condition"] for r in rows)) == set(CONDITIONS)
    best = {}
    for r in rows:
        best.setdefault(r["subject"], set()).add(float(r["Best_T"]))
    assert all(len(v) == 1 and 21 <= v.pop() <= 27 for v in best.values())


def test_load_trials_with_a_score_target(hbedb):
    trials = load_trials(hbedb, ["BDS00001", "BDS00100"], fs=50.0, target="Best_T", progress=False)
    assert [t.name for t in trials] == ["BDS00001", "BDS00100"]
    for t in trials:
        assert isinstance(t, Trial) and t.forces.shape == (3000, 4) and t.fs == 50.0
        assert t.source_fs == 100.0 and 21 <= t.scores["Best_T"] <= 27
        assert t.condition in CONDITIONS and "Best_1" in t.scores and "Age" not in t.scores
    assert trials[0].subject == "1" and trials[0].condition == "Open/Firm"
    with pytest.raises(EdgeseqError, match=r"'Berg' is not a score column.*Best_T"):
        load_trials(hbedb, ["BDS00001"], target="Berg", progress=False)


def test_hbedb_bad_layouts(hbedb, tmp_path):
    with pytest.raises(EdgeseqError, match="does not exist"):
        list_trials(tmp_path / "nowhere")
    (tmp_path / "BDS" / "data").mkdir(parents=True)
    with pytest.raises(EdgeseqError, match="has no BDSinfo.txt"):
        list_trials(tmp_path)
    with pytest.raises(EdgeseqError, match="neither the hbedb data set"):
        list_trials(tmp_path / "BDS" / "data")
    with pytest.raises(EdgeseqError, match=r"trial BDS09999 not found .*data/BDS09999.txt"):
        load_trial(hbedb, "BDS09999")


# ------------------------------------------------------------------------------------- resampling


def test_resample_irregular_sine_matches_the_function():
    rng = np.random.default_rng(1)
    t = _jittered_times(0.3, 10.0, rng)
    x = np.sin(2 * np.pi * t)
    y = resample_uniform(t, x, 100.0)
    tu = t[0] + np.arange(len(y)) / 100.0
    assert len(y) == int((t[-1] - t[0]) * 100) + 1
    # linear interpolation error <= h^2 w^2 / 8 with h <= 1.3/90 s: 1.0e-3
    assert np.max(np.abs(y - np.sin(2 * np.pi * tu))) < 1.1e-3
    both = resample_uniform(t, np.column_stack([x, 2 * x]), 100.0)
    assert both.shape == (len(y), 2) and np.allclose(both[:, 1], 2 * y)


def test_decimation_does_not_alias():
    t = np.arange(1000) / 100.0
    fast = resample_uniform(t, np.sin(2 * np.pi * 40 * t), 50.0)  # 40 Hz would alias to 10 Hz
    slow = resample_uniform(t, np.sin(2 * np.pi * 5 * t), 50.0)
    naive = np.sin(2 * np.pi * 40 * t[::2])
    assert len(fast) == 500 and np.max(np.abs(naive)) > 0.9
    # away from the ends (the 111-tap filter spans ~28 output samples each side) the tone is gone; at the ends, where
    # the filter sees a reflected signal, it is still down more than tenfold
    assert np.max(np.abs(fast[60:-60])) < 1e-3 and np.max(np.abs(fast)) < 0.1
    tu = np.arange(500) / 50.0
    assert np.max(np.abs(slow[60:-60] - np.sin(2 * np.pi * 5 * tu)[60:-60])) < 1e-2


def test_resample_errors():
    t = np.arange(10) / 100.0
    with pytest.raises(EdgeseqError, match="not increasing at sample 5"):
        resample_uniform(np.r_[t[:5], t[4], t[6:]], t, 100.0)
    with pytest.raises(EdgeseqError, match=r"gap of 0\.71 s between sample 4"):
        resample_uniform(np.r_[t[:5], t[5:] + 0.7], t, 100.0)
    x = t.copy()
    x[3] = np.nan
    with pytest.raises(EdgeseqError, match="NaN or infinite at sample 3"):
        resample_uniform(t, x, 100.0)
    with pytest.raises(EdgeseqError, match="at least 2"):
        resample_uniform(t[:1], t[:1], 100.0)


# ------------------------------------------------------------------------------------ CSV layout


def test_csv_trials_equal_the_hbedb_trials_they_came_from(hbedb, csv_dir):
    names = list_trials(csv_dir)
    assert names == sorted(CSV_SOURCES)
    trials = load_trials(csv_dir, fs=100.0, target="Best_T", progress=False)
    for trial in trials:
        hb = load_trial(hbedb, trial.name)
        assert (trial.subject, trial.condition, trial.scores) == (hb.subject, hb.condition,
                                                                  {"Best_T": hb.scores["Best_T"]})
        assert 85 < trial.source_fs < 95
        n = len(trial.forces)
        assert 1990 <= n <= 2000
        ref = hb.forces[:n]
        # Each output sample is a convex combination of jittered samples within one board step
        # (< 1.3/90 s) of it, each a convex combination of platform samples one 100 Hz step apart:
        # all within +-2 samples. So the error is bounded by how far x moves within +-2 samples.
        padded = np.pad(ref, ((2, 2), (0, 0)), mode="edge")
        reach = np.max([np.abs(padded[2 + j:2 + j + n] - ref) for j in (-2, -1, 1, 2)], axis=0)
        assert np.all(np.abs(trial.forces - ref) <= reach + 1e-9)
        # and in practice sway is slow: the COP agrees to a fraction of a millimetre
        assert np.max(np.abs(cop_from_corners(trial.forces) - cop_from_corners(ref))) < 0.05


def test_csv_condition_column_and_case(hbedb, csv_dir):
    with open(csv_dir / "trials.csv", "w", newline="") as f:
        f.write("Trial,Subject,Condition,Berg\nBDS00001,1,open/firm,55\nBDS00050,5,Closed/Foam,\n")
    info = load_info(csv_dir)
    assert info["BDS00050"]["condition"] == "Closed/Foam" and info["BDS00001"]["vision"] == "Open"
    assert list_trials(csv_dir) == ["BDS00001", "BDS00050"]  # BDS00150 has no row: not listed
    t = load_trial(csv_dir, "BDS00001", fs=50.0)
    assert t.scores == {"Berg": 55.0} and t.forces.shape[1] == 4 and t.fs == 50.0
    with pytest.raises(EdgeseqError, match=r"trial BDS00050 \(subject 5\) has no numeric Berg"):
        load_trials(csv_dir, target="Berg", progress=False)
    with pytest.raises(EdgeseqError, match=r"trial BDS00150: no row in .*trials.csv"):
        load_trial(csv_dir, "BDS00150")


def _set_info(csv_dir, body):
    (csv_dir / "trials.csv").write_text("trial,subject,vision,surface,Best_T\n" + body)


def _edit(path, line, text):
    lines = path.read_text().splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")


def test_csv_bad_directories_and_rows(hbedb, csv_dir):
    (csv_dir / "trials.csv").rename(csv_dir / "info.csv")
    with pytest.raises(EdgeseqError, match="has no trials.csv"):
        list_trials(csv_dir)
    _set_info(csv_dir, "BDS00001,1,Open,Firm,25\n")
    with pytest.raises(EdgeseqError, match=r"trial nope not found in .*no nope.csv"):
        load_trial(csv_dir, "nope")
    _set_info(csv_dir, "BDS00001,1,Open,Carpet,25\n")
    with pytest.raises(EdgeseqError, match=r"trials.csv line 2 \(trial BDS00001\): surface 'Carpet' is not one"):
        list_trials(csv_dir)
    _set_info(csv_dir, "BDS00001,1,Squint,Firm,25\n")
    with pytest.raises(EdgeseqError, match="vision 'Squint' is not one of Open, Closed"):
        load_info(csv_dir)
    (csv_dir / "trials.csv").write_text("trial,vision,surface\nBDS00001,Open,Firm\n")
    with pytest.raises(EdgeseqError, match="header lacks column.*subject"):
        load_info(csv_dir)


def test_csv_bad_signal_files(hbedb, csv_dir):
    f = csv_dir / "BDS00001.csv"
    good = f.read_text()

    def fails(pattern):
        with pytest.raises(EdgeseqError, match=pattern):
            load_trial(csv_dir, "BDS00001")
        f.write_text(good)

    _edit(f, 1, "time_s,top_left,top_right,left,right")
    fails(r"BDS00001.csv: missing column\(s\) bottom_left, bottom_right")
    _edit(f, 7, "0.07,1,2,abc,4")
    fails(r"BDS00001.csv line 7: bottom_left is 'abc', not a number")
    _edit(f, 9, "0.09,1,nan,3,4")
    fails(r"BDS00001.csv line 9: top_right is 'nan' \(not a finite number\)")
    _edit(f, 11, "0.0,1,2,3,4")
    fails(r"BDS00001.csv: timestamps not increasing at sample 9 \(line 11\)")
    lines = good.splitlines()
    f.write_text("\n".join(lines[:100] + [f"{float(x.split(',')[0]) + 0.8!r}," + x.split(",", 1)[1]
                                          for x in lines[100:]]) + "\n")
    fails(r"BDS00001.csv: gap of 0\.8\d* s between sample 98 \(line 100\)")
    t = np.arange(200) / 10.0
    _write_signal(f, t, np.ones((200, 4)))
    fails(r"timestamps imply 10 Hz, too low for balance")

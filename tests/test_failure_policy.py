"""The three rules every command shares: one non-finite policy (``edgeseq.finite``), one output
writer (``edgeseq.outputs``) and one option validator (``edgeseq.checks``)."""

import argparse
import json
import os

import numpy as np
import pytest

from edgeseq import checks, finite, outputs
from edgeseq.errors import EdgeseqError


def test_decide_never_labels_a_non_finite_row():
    z = np.array([[0.0, 2.0, 1.0], [np.nan, 0.0, 0.0], [np.inf, 0.0, 0.0], [1e300, -1e300, 0.0]])
    k, p = finite.decide(z)
    assert k.tolist() == [1, finite.UNLABELLED, finite.UNLABELLED, 0]
    assert np.isnan(p[1]).all() and np.isnan(p[2]).all()
    assert np.allclose(p[[0, 3]].sum(axis=1), 1.0) and np.isfinite(p[[0, 3]]).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_require_finite_names_what_and_where(bad):
    x = np.zeros((3, 4))
    x[2, 1] = bad
    with pytest.raises(EdgeseqError, match=r"readout weights holds NaN or infinite values \(1 of 12\) at index \(2, 1\)"):
        finite.require_finite(x, "readout weights")
    assert finite.require_finite(np.ones(3), "x").shape == (3,)


def test_write_json_is_strict_and_atomic(tmp_path):
    p = tmp_path / "sub" / "r.json"
    outputs.write_json(p, {"a": 1.5})
    assert json.loads(p.read_text()) == {"a": 1.5}
    with pytest.raises(ValueError):
        outputs.write_json(p, {"a": float("nan")})
    assert json.loads(p.read_text()) == {"a": 1.5}  # the previous file is intact
    assert [f.name for f in p.parent.iterdir()] == ["r.json"]  # no temporary left behind


@pytest.mark.parametrize("case", ["directory", "device", "under_file", "fifo", "readonly"])
def test_write_refuses_targets_that_are_not_files(tmp_path, case):
    if case == "directory":
        target = tmp_path
    elif case == "device":
        target = "/dev/full"
    elif case == "under_file":
        (tmp_path / "f").write_text("keep")
        target = tmp_path / "f" / "r.json"
    elif case == "fifo":
        target = tmp_path / "pipe"
        os.mkfifo(target)
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only directories")
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = ro / "r.json"
    with pytest.raises(EdgeseqError) as err:
        outputs.write_json(target, {"a": 1})
    assert "\n" not in str(err.value) and str(target) in str(err.value)
    if case == "under_file":
        assert (tmp_path / "f").read_text() == "keep"


def test_appender_reports_a_full_disk(tmp_path):
    with pytest.raises(EdgeseqError, match="not a regular file"):
        outputs.Appender("/dev/full", "--out")
    a = outputs.Appender(tmp_path / "x.jsonl", "--out", flush_s=0)
    a.write_json({"label": "N"})
    with pytest.raises(ValueError):
        a.write_json({"score": float("nan")})
    a.close()
    assert (tmp_path / "x.jsonl").read_text() == '{"label": "N"}\n'


@pytest.mark.parametrize("rng,text,ok", [
    (checks.POSITIVE, "360", 360.0), (checks.POSITIVE, "nan", None), (checks.POSITIVE, "inf", None),
    (checks.POSITIVE, "0", None), (checks.POSITIVE, "-1", None), (checks.POSITIVE, "abc", None),
    (checks.POSITIVE_INT, "3", 3), (checks.POSITIVE_INT, "1e3", 1000), (checks.POSITIVE_INT, "2.5", None),
    (checks.POSITIVE_INT, "0", None), (checks.SEED, "-1", None), (checks.SEED, "7", 7),
    (checks.Range(0, 1, lo_open=True), "1", 1.0), (checks.Range(0, 1, lo_open=True), "0", None),
])
def test_range_accepts_inside_and_refuses_outside(rng, text, ok):
    if ok is None:
        with pytest.raises(argparse.ArgumentTypeError, match="must be"):
            rng(text)
    else:
        assert rng(text) == ok and type(rng(text)) is type(ok)


def test_check_params_names_the_parameter():
    spec = {"units": checks.Range(1, 20000, integer=True), "solver": ("ridge", "lstsq")}
    assert checks.check_params({"units": 200.0}, spec, "esn") == {"units": 200}
    for bad in [{"units": 0}, {"units": 2.5}, {"units": "abc"}, {"units": float("nan")}, {"solver": "x"},
                {"nope": 1}]:
        with pytest.raises(EdgeseqError, match="--param"):
            checks.check_params(bad, spec, "esn")


def test_a_trailing_slash_names_a_directory(tmp_path):
    with pytest.raises(EdgeseqError, match="names a directory"):
        outputs.check_target(str(tmp_path / "out") + "/", "--json")
    assert not (tmp_path / "out").exists()

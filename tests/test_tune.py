"""edgeseq tune: local search with resume, the pruning rule and its records, Ray Tune on a real
two-node cluster (and through Ray Client), and bad input as one line with exit status 2.

Small on purpose: a 20-40 unit ESN on six shipped 10-minute excerpts, 3 folds, a few trials. The
space's ``ridge`` choice of 1e9 makes a readout that calls every beat normal, so such trials
score 0 on every fold and are pruned after fold 2 of 3 (bound 1/3) once a normal trial (~0.5)
has finished.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from edgeseq.tune import tune  # noqa: E402
from edgeseq.tune.search import STUDY_NAME, BoundPruner, METRICS  # noqa: E402

RECORDS = ["106", "118", "119", "201", "208", "223"]
SPACE = {"units": {"type": "int", "low": 20, "high": 40},
         "ridge": {"type": "categorical", "choices": [0.01, 1e9]}}
LINE = re.compile(r"^trial \d+ (finished: \d\.\d{4} \(best \d\.\d{4}, trial \d+\)"
                  r"|pruned after fold \d/3: bound \d\.\d{4} < best \d\.\d{4})$")
COMPLETE, PRUNED = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED


def load(out):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(out / "study.journal")))
    return optuna.load_study(study_name=STUDY_NAME, storage=storage)


def cli(*args, timeout=300):
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "edgeseq.cli", *map(str, args)], capture_output=True, text=True,
                         timeout=timeout)
    return res, time.perf_counter() - t0


def tune_args(sample, space_file, out, trials, *extra):
    return ("tune", "ecg", "--model", "esn", "--data", sample, "--records", ",".join(RECORDS), "--space",
            space_file, "--trials", trials, "--folds", 3, "--out", out, *extra)


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps(SPACE))
    return path


def snapshot(study):
    return [(t.number, t.state, t.params, t.value, t.intermediate_values) for t in study.trials]


# -- local mode --------------------------------------------------------------------------------
def test_local_search_writes_results_prints_a_line_per_trial_and_resumes(sample, space_file, tmp_path):
    out = tmp_path / "study"
    res, _ = cli(*tune_args(sample, space_file, out, 4, "--jobs", 2))
    assert res.returncode == 0, res.stderr
    lines = [l for l in res.stderr.splitlines() if l.startswith("trial ")]
    assert len(lines) == 4 and all(LINE.match(l) for l in lines), res.stderr
    study = load(out)
    assert len(study.trials) == 4 and all(t.state in (COMPLETE, PRUNED) for t in study.trials)
    assert "running 4 more on 2 local process(es)" in res.stderr
    # Not checked: how many trials each worker ran (a worker slow to start may find the counter spent).
    best = json.loads((out / "best.json").read_text())
    done = [t for t in study.trials if t.state == COMPLETE]
    top = max(done, key=lambda t: t.value)
    assert (best["best_trial"], best["value"], best["params"]) == (top.number, top.value, top.params)
    assert best["fold_values"] == [top.intermediate_values[k] for k in range(3)]
    assert best["value"] == pytest.approx(np.mean(best["fold_values"]))
    assert best["metric"] == "sveb_veb" and best["settings"]["folds"] == 3
    for name in ("history.png", "importances.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / name).stat().st_size > 5000
    assert f"best: trial {top.number}" in res.stdout

    before = snapshot(study)
    res, _ = cli(*tune_args(sample, space_file, out, 6, "--jobs", 2))
    assert res.returncode == 0, res.stderr
    assert "holds 4 trial(s), running 2 more" in res.stderr
    after = snapshot(load(out))
    assert len(after) == 6 and after[:4] == before  # earlier trials untouched, none rerun
    assert sorted(int(l.split()[1]) for l in res.stderr.splitlines() if LINE.match(l)) == [4, 5]


def test_resume_with_another_objective_is_refused(sample, space_file, tmp_path):
    out = tmp_path / "study"
    tune("esn", sample, str(space_file), trials=1, folds=3, out=out, records=RECORDS, jobs=1, quiet=True)
    res, _ = cli(*tune_args(sample, space_file, out, 2, "--metric", "accuracy"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert res.stderr.startswith("edgeseq: error:") and "different metric" in res.stderr
    assert len(load(out).trials) == 1


def test_importances_note_with_one_finished_trial(sample, space_file, tmp_path):
    best = tune("esn", sample, str(space_file), trials=1, folds=3, out=tmp_path, records=RECORDS, jobs=1,
                quiet=True)
    assert best["importances"] is None and "at least 2 finished trials" in best["importances_note"]
    assert (tmp_path / "importances.png").stat().st_size > 1000


# -- pruning -----------------------------------------------------------------------------------
def test_bound_rule():
    rule = BoundPruner(n_folds=3)
    assert rule.bound([0.0, 0.0]) == pytest.approx(1 / 3)
    v = rule.verdict([0.0, 0.0], best=0.5)
    assert v == {"after_fold": 2, "n_folds": 3, "bound": pytest.approx(1 / 3), "best": 0.5}
    assert rule.verdict([0.0], best=0.5) is None  # 2/3 could still beat 0.5
    assert rule.verdict([0.0, 0.0], best=1 / 3) is None  # equal is not below
    assert rule.verdict([0.0, 0.0, 0.0], best=0.9) is None  # finished: complete, never pruned
    assert rule.verdict([0.0, 0.0], best=None) is None  # nothing finished yet


def test_pruner_on_a_hand_built_study():
    study = optuna.create_study(direction="maximize", pruner=BoundPruner(n_folds=4))
    good = study.ask()
    for k, s in enumerate([0.6, 0.5, 0.7, 0.6]):
        good.report(s, k)
    study.tell(good, 0.6)
    bad = study.ask()
    bad.report(0.2, 0)  # bound (0.2 + 3) / 4 = 0.8: may still win
    assert not bad.should_prune()
    bad.report(0.0, 1)  # (0.2 + 2) / 4 = 0.55 < 0.6
    assert bad.should_prune()
    assert study.pruner.last[bad.number]["bound"] == pytest.approx(0.55)


def test_pruned_trials_are_recorded_with_their_fold_values(sample, space_file, tmp_path):
    # One process, seed 0: the same trials every run; 2 of these 5 draw ridge=1e9 after a finished one.
    tune("esn", sample, str(space_file), trials=5, folds=3, out=tmp_path, records=RECORDS, jobs=1, seed=0,
         quiet=True)
    study = load(tmp_path)
    pruned = [t for t in study.trials if t.state == PRUNED]
    done = [t for t in study.trials if t.state == COMPLETE]
    assert pruned and done
    for t in pruned:
        assert t.params["ridge"] == 1e9
        assert t.intermediate_values == {0: 0.0, 1: 0.0}  # stopped after fold 2 of 3
        v = t.user_attrs["pruned"]
        assert v["after_fold"] == 2 and v["bound"] < v["best"]
        assert v["best"] == max(d.value for d in done if d.number < t.number)
    for t in done:
        assert sorted(t.intermediate_values) == [0, 1, 2]
        assert t.value == pytest.approx(np.mean(list(t.intermediate_values.values())))


# -- Ray ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster():
    """A real Ray cluster on this machine: a head without CPUs (so no trial runs there), two
    worker nodes of one CPU each told apart by a custom resource, and a Ray Client server."""
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        client_port = s.getsockname()[1]
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "ray_client_server_port": client_port})
    try:
        workers = [cluster.add_node(num_cpus=1, resources={name: 1}) for name in ("node_a", "node_b")]
        cluster.wait_for_nodes()
        cluster.client_address = f"ray://127.0.0.1:{client_port}"
        cluster.worker_ids = {n.node_id for n in workers}
        yield cluster
    finally:
        cluster.shutdown()


def test_ray_trials_spread_over_nodes_recorded_and_reproducible(sample, space_file, tmp_path, ray_cluster, capsys):
    from edgeseq.tasks import ecg

    # A local first trial sets the best to beat; the cluster continues the same study.
    tune("esn", sample, str(space_file), trials=1, folds=3, out=tmp_path, records=RECORDS, jobs=1, quiet=True)
    best = tune("esn", sample, str(space_file), trials=7, folds=3, out=tmp_path, records=RECORDS,
                address=ray_cluster.address)
    err = capsys.readouterr().err
    assert len([l for l in err.splitlines() if LINE.match(l)]) == 6, err
    study = load(tmp_path)
    ray_trials = study.trials[1:]
    assert len(ray_trials) == 6 and all(t.state in (COMPLETE, PRUNED) for t in ray_trials)
    assert {t.user_attrs["node_id"] for t in ray_trials} == ray_cluster.worker_ids  # both nodes, not the head
    pruned = [t for t in ray_trials if t.state == PRUNED]
    assert pruned, "no ridge=1e9 trial drawn: the seed no longer exercises pruning"
    for t in pruned:
        assert t.intermediate_values == {0: 0.0, 1: 0.0} and t.user_attrs["pruned"]["after_fold"] == 2
    for t in study.trials:
        if t.state == COMPLETE:
            assert sorted(t.intermediate_values) == [0, 1, 2]
            assert t.value == pytest.approx(np.mean(list(t.intermediate_values.values())))

    top = study.trials[best["best_trial"]]
    rep = ecg.cross_validate(sample, RECORDS, model="esn", folds=3, seed=0, params=top.params, progress=False)
    assert [METRICS["sveb_veb"](f) for f in rep["folds"]] == best["fold_values"]  # exactly
    assert rep["confusion"] == top.user_attrs["pooled"]["confusion"]
    assert [f["confusion"] for f in rep["folds"]] == [f["confusion"] for f in top.user_attrs["folds"]]


def test_ray_client_address_runs_the_driver_on_the_cluster(sample, space_file, tmp_path, ray_cluster):
    best = tune("esn", sample, str(space_file), trials=2, folds=3, out=tmp_path, records=RECORDS,
                address=ray_cluster.client_address, quiet=True)
    study = load(tmp_path)  # the journal came back from the cluster
    assert len(study.trials) == 2 and best["best_trial"] is not None
    assert {t.user_attrs["node_id"] for t in study.trials} <= ray_cluster.worker_ids


# -- bad input ---------------------------------------------------------------------------------
BAD_SPACES = {
    "unknown": ({"untis": {"type": "int", "low": 10, "high": 20}}, "unknown esn hyper-parameter 'untis'"),
    "empty range": ({"units": {"type": "int", "low": 50, "high": 50}}, "empty range"),
    "empty choices": ({"class_weight": {"type": "categorical", "choices": []}}, "non-empty 'choices'"),
    "wrong type": ({"lr": {"type": "float", "low": "a", "high": 1}}, "finite numbers"),
    "reserved": ({"seed": {"type": "int", "low": 0, "high": 9}}, "--seed sets it"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPACES))
def test_bad_space_is_one_line(case, sample, tmp_path):
    space, message = BAD_SPACES[case]
    path = tmp_path / "space.json"
    path.write_text(json.dumps(space))
    res, _ = cli(*tune_args(sample, path, tmp_path / "out", 2))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith("edgeseq: error:") and message in res.stderr
    assert not (tmp_path / "out").exists()  # nothing started


def test_non_json_space_file(sample, tmp_path):
    path = tmp_path / "space.json"
    path.write_text("{units: 3")
    res, _ = cli(*tune_args(sample, path, tmp_path / "out", 2))
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert res.stderr.startswith(f"edgeseq: error: space file {path} is not JSON")


def test_fewer_records_than_folds(sample, space_file, tmp_path):
    res, _ = cli("tune", "ecg", "--data", sample, "--records", "106,118", "--space", space_file, "--trials", 2,
                 "--folds", 3, "--out", tmp_path / "out", "--address", "ray://127.0.0.1:1")
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert res.stderr.startswith("edgeseq: error: --folds must be between 2 and the number of records")
    assert not (tmp_path / "out").exists()  # refused before Ray was contacted


def test_unreachable_address_fails_fast(sample, space_file, tmp_path):
    res, seconds = cli(*tune_args(sample, space_file, tmp_path / "out", 2, "--address", "ray://127.0.0.1:1"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith("edgeseq: error: cannot reach the Ray cluster at ray://127.0.0.1:1")
    assert seconds < 30

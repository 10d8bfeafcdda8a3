"""``edgeseq profile``: the figures it reports are the bundle's (parameters, MACs, sizes), its
latencies are ordered percentiles of real calls, the tflite-micro arena is the smallest that runs,
and the ssh path works end to end (against a real SSH server on loopback: tests/sshd.py)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeseq.cli import main
from edgeseq.export import export
from edgeseq.profile import profile_bundle
from edgeseq.profile.remote import commands

KEYS = {"latency_us", "size_bytes", "params", "macs_per_step", "peak_rss_bytes", "arena_bytes"}


@pytest.fixture(scope="module")
def bundles(small_bundle, tmp_path_factory, sample):
    from edgeseq.tasks import ecg

    d = tmp_path_factory.mktemp("profile")
    _, prep, _ = ecg.load_model(small_bundle)
    beats = ecg.load_beats(sample, ["119", "201"], prep, progress=False)
    cal = (beats.windows[::10].astype(np.float32), beats.rr[::10].astype(np.float32))
    out = {"numpy": small_bundle,
           "onnx": export(small_bundle, d / "f.onnx", fmt="onnx"),
           "onnx8": export(small_bundle, d / "q.onnx", fmt="onnx", int8=True, calibration=cal)}
    if importlib.util.find_spec("ai_edge_litert") is not None:
        out["tflite8"] = export(small_bundle, d / "q.tflite", fmt="tflite", int8=True, calibration=cal)
    return out


def _check(res, bundle, trained):
    """The figures are the model's: parameters and MACs follow from the training bundle's arrays
    (and, for an exported bundle, are the ones its manifest records)."""
    assert KEYS <= set(res)
    for what in ("window", "step"):
        lat = res["latency_us"][what]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    arrays = np.load(Path(trained) / "weights.npz")
    N, K, T = arrays["W"].shape[0], arrays["Win"].shape[1], 126
    # the recurrent product each step; the constant (rr) inputs and the readout once
    fixed = N * (K - 1) + arrays["Wout"].size
    assert res["macs_per_step"] == N * N + fixed  # a step reads out, so a stream can stop anywhere
    assert res["macs_per_window"] == T * N * N + fixed
    weights = sum(arrays[k].size for k in ("W", "Win", "bias", "Wout", "bout"))
    assert weights <= res["params"] <= weights + 16  # + the few constants of the rr transform
    rt = json.loads((Path(bundle) / "manifest.json").read_text()).get("runtime")
    if rt:
        assert res["params"] == rt["params"] and res["macs_per_window"] == rt["macs"]["model"]
    assert res["peak_rss_bytes"] > res["model_rss_bytes"] >= 0
    assert 0 < res["efficiency"] < 1


@pytest.mark.parametrize("kind", ["numpy", "onnx", "onnx8"])
def test_profile_reports_the_bundles_own_figures(bundles, kind):
    res = profile_bundle(bundles[kind], n=50, warmup=5)
    _check(res, bundles[kind], bundles["numpy"])
    manifest = json.loads((Path(bundles[kind]) / "manifest.json").read_text())
    assert res["runtime"] == ("numpy" if kind == "numpy" else "onnx")
    assert res["precision"] == ("int8" if kind == "onnx8" else "float32")
    if kind != "numpy":
        assert res["size_bytes"] == (Path(bundles[kind]) / manifest["runtime"]["model"]).stat().st_size
        assert res["ort_memory"]["peak_in_use_bytes"] > 0
        assert res["throughput"]["batched_windows_per_s"] > res["throughput"]["windows_per_s"]


def test_tflite_arena_is_the_smallest_that_runs(bundles):
    pytest.importorskip("tflite_micro")
    pytest.importorskip("ai_edge_litert")
    from edgeseq.profile.tflm import _try

    res = profile_bundle(bundles["tflite8"], n=30, warmup=3)
    _check(res, bundles["tflite8"], bundles["numpy"])
    model = Path(bundles["tflite8"]) / "model.tflite"
    a = res["arena"]["model"]
    assert a["bytes"] == res["arena_bytes"] or res["arena"]["step"]["bytes"] == res["arena_bytes"]
    assert _try(model, a["bytes"])[0]
    assert not _try(model, a["bytes"] - 2 * a["resolution"])[0]
    # the same bundle on tflite-micro itself gives the same logits as on LiteRT
    tflm = profile_bundle(bundles["tflite8"], runtime="tflm", n=10, warmup=2, arena=False)
    assert tflm["runtime"] == "tflm" and tflm["latency_us"]["window"]["p50"] > 0


@pytest.fixture(scope="module")
def sequence_bundles(tmp_path_factory):
    """A reservoirpy model (input to the readout too) as a training bundle and exported."""
    pytest.importorskip("reservoirpy")
    from reservoirpy.nodes import Input, Reservoir, Ridge

    from edgeseq.interop import from_reservoirpy

    d = tmp_path_factory.mktemp("profile_seq")
    x = np.stack([np.sin(np.linspace(0, 40, 400)), np.cos(np.linspace(0, 25, 400))], axis=1)
    data = Input()
    res, ro = Reservoir(30, lr=0.5, seed=1), Ridge(ridge=1e-4)
    model = data >> res >> ro & data >> ro
    model.fit(x[:-1], x[1:, :1])
    src = from_reservoirpy(model, d / "seq.bundle", sample_rate=50)
    out = {"numpy": src, "onnx": export(src, d / "seq.onnx", fmt="onnx")}
    if importlib.util.find_spec("ai_edge_litert") is not None:
        out["tflite"] = export(src, d / "seq.tflite", fmt="tflite")
    return out


@pytest.mark.parametrize("kind", ["numpy", "onnx", "tflite"])
def test_profile_of_a_sequence_model(sequence_bundles, kind):
    """A sequence model's window is --window-steps steps of its step; a TFLite one has only the
    step file, which is then what a device loads."""
    if kind not in sequence_bundles:
        pytest.skip("no TFLite export here (needs ai-edge-litert)")
    b = sequence_bundles[kind]
    res = profile_bundle(b, n=20, warmup=2, window_steps=40, arena=False)
    assert res["task"] == "sequence" and res["runtime"] == kind and res["window"]["steps"] == 40
    N, D, O = 30, 2, 1
    assert res["macs_per_step"] == N * N + N * D + N * O + D * O  # recurrent, input, readout of state and input
    assert res["macs_per_window"] == 40 * res["macs_per_step"]
    assert res["units"] == N
    lat = res["latency_us"]
    assert 0 < lat["step"]["p50"] < lat["window"]["p50"]  # a window is 40 steps
    if kind != "numpy":
        m = json.loads((Path(b) / "manifest.json").read_text())
        rt = m["runtime"]
        assert res["params"] == rt["params"]
        assert res["size_bytes"] == (Path(b) / (rt.get("model") or rt["step"])).stat().st_size
        assert set(res["files"]) == {k for k in m["files"] if k != "weights.npz"}


def test_cli_json_plot_and_compare(bundles, tmp_path, capsys):
    out, png = tmp_path / "p.json", tmp_path / "p.png"
    assert main(["profile", str(bundles["onnx8"]), "--n", "30", "--json", str(out), "--plot", str(png)]) == 0
    res = json.loads(out.read_text())
    assert set(res["latency_us"]["window"]) >= {"p50", "p90", "p99", "max"}
    assert png.stat().st_size > 10_000
    capsys.readouterr()
    assert main(["profile", "--compare", str(bundles["onnx"]), str(bundles["onnx8"]), "--n", "20"]) == 0
    table = capsys.readouterr().out
    assert "f.onnx (onnx)" in table and "q.onnx (onnx)" in table and "window p99" in table
    assert main(["profile", str(bundles["onnx"]), "--n", "20", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["runtime"] == "onnx"


def test_profile_errors(bundles, capsys):
    cases = [(["profile", str(bundles["onnx"]), "--runtime", "tflite"], "runs on onnx, not tflite"),
             (["profile", str(bundles["numpy"]), "--runtime", "onnx"], "export it first"),
             (["profile"], "needs a BUNDLE"),
             (["profile", str(bundles["onnx"]), "--n", "3"], "argument --n: must be an integer >= 10")]
    for args, msg in cases:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith(("edgeseq: error:", "edgeseq profile: error:")) and msg in err, err
        assert len(err.strip().splitlines()) == 1, err


def test_ssh_command_construction():
    c = commands("pi@board", "/x/my beats.onnx", "/tmp/edgeseq-profile.abc", ["--n", "100"])
    assert c["copy"][-1].startswith("sh -c ") and "mktemp -d /tmp/edgeseq-profile.XXXXXX" in c["copy"][-1]
    assert 'tar -xf - -C "$d"' in c["copy"][-1]
    assert c["profile"][-1] == ("python3 -m edgeseq profile '/tmp/edgeseq-profile.abc/my beats.onnx' --n 100 "
                                "--json -")
    assert "BatchMode=yes" in c["profile"] and c["cleanup"][-1] == "rm -rf /tmp/edgeseq-profile.abc"
    # Nothing after "--" is read as an option, so a host can never smuggle one in.
    for cmd in c.values():
        assert cmd.index("--") == cmd.index("pi@board") - 1


def test_ssh_profile_end_to_end(bundles, loopback_board):
    """Over a real SSH server on loopback with the system ssh and --ssh-config: the copy (a tar on
    the connection), the board's profile (this interpreter's edgeseq, --remote-python), the JSON
    coming back and the cleanup all happen for real."""
    made = set(Path("/tmp").glob("edgeseq-profile.*"))
    r = subprocess.run([sys.executable, "-m", "edgeseq", "profile", "--ssh", "board", str(bundles["onnx8"]),
                        "--ssh-config", str(loopback_board.config), "--n", "20", "--json", "-",
                        "--remote-python", sys.executable], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["host"] == "board" and res["runtime"] == "onnx" and res["latency_us"]["window"]["p50"] > 0
    remote = Path(res["bundle"])  # the board's copy, in its own temporary directory
    assert remote.name == Path(bundles["onnx8"]).name and remote.parent.name.startswith("edgeseq-profile.")
    assert not remote.parent.exists() and set(Path("/tmp").glob("edgeseq-profile.*")) == made  # cleaned up
    # a board whose host key is not the one known: ssh's own last line, one line, exit 2
    import asyncssh

    impostor = loopback_board.ssh_config("impostor", asyncssh.generate_private_key("ssh-ed25519"))
    r = subprocess.run([sys.executable, "-m", "edgeseq", "profile", "--ssh", "board", str(bundles["onnx8"]),
                        "--ssh-config", str(impostor)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("edgeseq: error: copying the bundle on board failed: Host key verification failed.")


# ---- board session options, RSS breakdown, --warmup/--batch, --ort-profile, progress, plots --------

def test_board_default_session_options_are_what_the_runtime_opens(bundles):
    """Every session edgeseq.runtime opens (window and step) carries BOARD_OPTIONS: read back from
    onnxruntime's own session, not from edgeseq's dict; ort_options is the one documented way out."""
    from edgeseq.errors import EdgeseqError
    from edgeseq.runtime import load
    from edgeseq.runtime.onnx_backend import BOARD_OPTIONS

    model = load(bundles["onnx8"])
    model.step(np.zeros((1, 1), np.float32), model.initial_state(1, rr=np.ones((1, 9), np.float32)))
    for which in ("model", "step"):
        so = model._backend._session(which).session.get_session_options()
        assert so.enable_cpu_mem_arena is False and BOARD_OPTIONS["enable_cpu_mem_arena"] is False
        assert so.enable_mem_pattern is True and so.intra_op_num_threads == 1 and so.inter_op_num_threads == 1
        assert str(so.execution_mode).endswith("ORT_SEQUENTIAL")
        assert str(so.graph_optimization_level).endswith("ORT_ENABLE_ALL")
        for key in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning"):
            assert so.get_session_config_entry(key) == "0"
        assert so.get_session_config_entry("session.disable_quant_qdq") == "1"
    arena = load(bundles["onnx"], ort_options={"enable_cpu_mem_arena": True})
    assert arena._backend._session("model").session.get_session_options().enable_cpu_mem_arena is True
    for bad, msg in (({"enable_cpu_mem_arena": "yes"}, "must be true or false"),
                     ({"graph_optimization_level": "max"}, "must be one of disable, basic"),
                     ({"arena": True}, "unknown onnxruntime option 'arena'")):
        with pytest.raises(EdgeseqError, match=msg):
            load(bundles["onnx"], ort_options=bad)
    with pytest.raises(EdgeseqError, match="apply to ONNX bundles only"):
        load(bundles["tflite8"] if "tflite8" in bundles else bundles["numpy"], ort_options={})


def test_rss_breakdown_warmup_batch_and_progress(bundles, tmp_path, capsys):
    """--warmup and --batch reach the measurement; the RSS stages add up to the process's RSS and the
    smaps parts to the RSS at the end; one unit per row, named in its label; a line per stage on
    stderr."""
    out = tmp_path / "p.json"
    io = subprocess.run([sys.executable, "-m", "edgeseq", "profile", str(bundles["onnx"]), "--n", "20", "--warmup", "0",
                         "--batch", "8", "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert io.returncode == 0, io.stderr
    res = json.loads(out.read_text())
    assert res["warmup"] == 0 and res["batch"] == 8 and res["ort_options"]["enable_cpu_mem_arena"] is False
    rss = res["rss"]
    stages, end = rss["stages"], rss["end"]
    assert list(stages) == ["baseline", "runtime_import", "model_load", "first_calls", "runs", "batched"]
    assert stages["baseline"] > 10 * 2 ** 20 and stages["runtime_import"] > 2 ** 20  # python+numpy; libonnxruntime
    assert res["model_rss_bytes"] == max(stages["model_load"] + stages["first_calls"] + stages["runs"], 0)
    if end.get("anonymous") is not None:  # Linux: from /proc/self/smaps
        assert end["rss"] == end["anonymous"] + end["runtime_library"] + end["other_files"]
        assert end["runtime_library"] > 2 ** 20  # onnxruntime's pages, touched
        assert abs(sum(stages.values()) - end["rss"]) < 16 * 2 ** 20
        assert end["peak"] >= end["rss"] and end["threads"] >= 1
    for label in ("model size (KiB)", "peak RSS (MiB)", "+ runtime library import", "runtime library pages"):
        assert label in io.stdout
    assert " kB" not in io.stdout and " MB" not in io.stdout  # no unlabelled or mixed units
    lines = [x for x in io.stderr.splitlines() if x.startswith("profile: ")]
    assert len(lines) == 6 and lines[-1].startswith("profile: 6/6 (100%)"), io.stderr
    assert main(["profile", str(bundles["onnx"]), "--batch", "0"]) == 2
    assert "--batch" in capsys.readouterr().err


def test_ort_ops_self_time_of_a_loop():
    """A Scan's body runs as nodes inside its span: the Scan keeps only its own time, and the
    shares of the profiled call add up with the time outside kernels."""
    from edgeseq.profile.core import ort_ops

    def node(name, op, ts, dur):
        return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "tid": 1, "args": {"op_name": op}}

    events = [{"name": "model_run", "ts": 0, "dur": 50},  # a warm-up call, skipped
              node("scan", "Scan", 1, 40), node("mm", "MatMul", 2, 30),
              {"name": "model_run", "ts": 100, "dur": 110},
              node("scan", "Scan", 100, 100), node("mm", "MatMul", 110, 20), node("mm", "MatMul", 140, 20),
              node("add", "Add", 200, 5)]
    p = ort_ops(events, skip_runs=1)
    ops = {o["op"]: o for o in p["ops"]}
    assert p["runs"] == 1 and p["model_us_per_run"] == 110
    assert ops["Scan"]["us_per_run"] == 60 and ops["MatMul"]["us_per_run"] == 40 and ops["Add"]["us_per_run"] == 5
    assert p["kernels_share"] == pytest.approx(105 / 110)
    assert p["nodes"][0] == {"node": "scan", "op": "Scan", "us_per_run": 60.0, "share": 60 / 110, "calls_per_run": 1.0}


def test_ort_profile_of_a_real_model(bundles, capsys):
    from edgeseq.profile import format_table

    res = profile_bundle(bundles["onnx8"], n=10, warmup=2, batch=4, arena=False, ort_profile=True)
    prof = res["ort_profile"]
    assert set(prof) == {"window", "step"}
    for what, p in prof.items():
        assert p["runs"] == 20 and p["model_us_per_run"] > 0 and 0 < p["kernels_share"] <= 1
        assert sum(o["share"] for o in p["ops"]) == pytest.approx(p["kernels_share"])
        assert p["ops"] == sorted(p["ops"], key=lambda o: -o["us_per_run"])
    window_ops = {o["op"] for o in prof["window"]["ops"]}
    assert {"Scan", "MatMul", "Tanh"} <= window_ops  # the reservoir's loop and its body
    assert "onnxruntime ops, window model" in format_table(res)
    assert main(["profile", str(bundles["numpy"]), "--ort-profile"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgeseq: error: --ort-profile") and "runs on numpy" in err and len(err.splitlines()) == 1


def test_int8_calibration_progress(small_bundle, sample, tmp_path, capsys):
    export(small_bundle, tmp_path / "c", fmt="c", int8=True, calibration=(sample, ["119"]), progress=True)
    err = capsys.readouterr().err
    assert "reading records: 1/1" in err and "int8 calibration (batches): 3/3 (100%)" in err, err


def _labels_apart(fig):
    """No two visible tick labels of one axis overlap once drawn: level ones by their boxes, turned
    ones (parallel lines of text) by their distance across the text, against its height."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t for t in axis.get_ticklabels(which="both") if t.get_visible() and t.get_text()]
            turned = [t.get_rotation() % 180 for t in labels if t.get_rotation() % 180]
            if turned:
                xs = sorted(ax.transData.transform((x, 0))[0] for x in axis.get_majorticklocs())
                height = max(t.get_fontsize() for t in labels) * fig.dpi / 72
                gap = min(np.diff(xs)) * np.sin(np.radians(turned[0]))
                assert gap > height, (gap, height)
                continue
            boxes = [t.get_window_extent(r) for t in labels]
            for i, a in enumerate(boxes):
                assert not any(a.overlaps(b) for b in boxes[i + 1:]), [t.get_text() for t in labels]


def test_plots_keep_tick_labels_apart(tmp_path, monkeypatch):
    """A latency range under two decades (where matplotlib labels its minor ticks, 2x10^2,
    3x10^2...) and a confusion matrix of many long class names: no label overlaps another."""
    import edgeseq.plots as plots

    drawn = []

    def check(fig, path, **kw):
        _labels_apart(fig)
        drawn.append(path)
        return Path(path)

    monkeypatch.setattr(plots, "save_figure", check)
    rng = np.random.default_rng(0)
    res = [{"bundle": f"b{i}", "runtime": "onnx", "latency_samples_us": {
        "window": rng.uniform(900, 6000, 200).tolist(), "step": rng.uniform(35, 700, 200).tolist()}} for i in range(4)]
    plots.latency_png(res, tmp_path / "l.png")
    k = 9
    rep = {"labels": [f"eyes closed, foam surface {i}" for i in range(k)], "accuracy": 0.5,
           "confusion": (rng.integers(0, 500, (k, k)) + 3000 * np.eye(k, dtype=int)).tolist()}
    plots.confusion_png(rep, tmp_path / "c.png")
    plots.confusion_png({**rep, "labels": ["Open/Firm", "Open/Foam", "Closed/Firm", "Closed/Foam"],
                         "confusion": rep["confusion"][:4]}, tmp_path / "c4.png")
    assert len(drawn) == 3

"""``edgeseq profile``: the figures it reports are the bundle's (parameters, MACs, sizes), its
latencies are ordered percentiles of real calls, the tflite-micro arena is the smallest that runs,
and the ssh path works end to end (against stand-in ssh/scp that run locally: no sshd here)."""

import importlib.util
import json
import os
import stat
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
    assert c["copy"][-2:] == ["/x/my beats.onnx", "pi@board:/tmp/edgeseq-profile.abc/"]
    assert c["profile"][-1] == ("python3 -m edgeseq profile '/tmp/edgeseq-profile.abc/my beats.onnx' --n 100 "
                                "--json -")
    assert "BatchMode=yes" in c["profile"] and c["cleanup"][-1] == "rm -rf /tmp/edgeseq-profile.abc"
    # Nothing after "--" is read as an option, so a host can never smuggle one in.
    for cmd in c.values():
        assert cmd.index("--") < cmd.index("pi@board" if "pi@board" in cmd else cmd[-2])


def test_ssh_profile_end_to_end_with_local_stand_ins(bundles, tmp_path):
    """ssh and scp replaced by scripts that run the same commands locally: the copy, the remote
    profile, the JSON coming back and the cleanup all happen for real."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    (bin_dir / "ssh").write_text(f"""#!/bin/sh
# ssh [-o opt]... -- host command
while [ "$1" = "-o" ]; do shift 2; done
[ "$1" = "--" ] && shift
shift
echo "ssh $*" >> {log}
exec sh -c "$*"
""")
    (bin_dir / "scp").write_text(f"""#!/bin/sh
while [ "$1" = "-o" ]; do shift 2; done
[ "$1" = "-q" ] && shift
[ "$1" = "-r" ] && shift
[ "$1" = "--" ] && shift
echo "scp $1 $2" >> {log}
exec cp -r "$1" "${{2#*:}}"
""")
    for f in ("ssh", "scp"):
        (bin_dir / f).chmod((bin_dir / f).stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    r = subprocess.run([sys.executable, "-m", "edgeseq", "profile", "--ssh", "pi@board", str(bundles["onnx8"]),
                        "--n", "20", "--json", "-", "--remote-python", sys.executable],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["host"] == "pi@board" and res["runtime"] == "onnx" and res["latency_us"]["window"]["p50"] > 0
    calls = log.read_text().splitlines()
    assert calls[0].startswith("ssh mktemp -d") and calls[1].startswith("scp ")
    assert "-m edgeseq profile /tmp/edgeseq-profile." in calls[2] and calls[3].startswith("ssh rm -rf /tmp/edgeseq")
    remote = calls[3].split()[-1]
    assert not Path(remote).exists()  # cleaned up

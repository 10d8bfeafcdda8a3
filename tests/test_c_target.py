"""C bundles beyond parity (tests/test_parity.py): the host runtime's build cache and its errors,
what a non-finite input becomes, and the whole ECG pipeline (C front end + int8 model) built for a
Cortex-M4 and run in an emulator on a real recording (``edgeseq profile --target``)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from edgeseq import runtime
from edgeseq.errors import EdgeseqError
from edgeseq.export import export

pytest.importorskip("unicorn")
pytest.importorskip("ziglang")


def _cli(*args, env=None):
    r = subprocess.run([sys.executable, "-m", "edgeseq", *map(str, args)], capture_output=True, text=True, env=env)
    return r.returncode, r.stdout, r.stderr


@pytest.fixture(scope="module")
def beats(small_bundle, sample):
    from edgeseq.preprocess.ecg import EcgPreprocessing
    from edgeseq.tasks.ecg import load_beats

    prep = EcgPreprocessing.from_config(runtime.load(small_bundle).manifest["preprocessing"])
    b = load_beats(sample, ["208"], prep, progress=False)
    return b.windows[:300].astype(np.float32), b.rr[:300].astype(np.float32)


@pytest.fixture(scope="module")
def c_bundles(small_bundle, beats, tmp_path_factory):
    root = tmp_path_factory.mktemp("c")
    return {"int8": export(small_bundle, root / "int8", fmt="c", int8=True, calibration=beats),
            "float32": export(small_bundle, root / "float", fmt="c"),
            "onnx": export(small_bundle, root / "onnx", fmt="onnx")}


def test_the_library_is_built_once_per_source_and_compiler(c_bundles, beats, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESEQ_CACHE_DIR", str(tmp_path / "cache"))
    first = runtime.load(c_bundles["int8"]).logits(*beats)
    libs = list((tmp_path / "cache").rglob("libmodel.so"))
    assert len(libs) == 1
    stamp = libs[0].stat().st_mtime_ns
    again = runtime.load(c_bundles["int8"]).logits(*beats)
    assert libs[0].stat().st_mtime_ns == stamp  # found in the cache, not rebuilt
    np.testing.assert_array_equal(first, again)


def test_a_missing_compiler_is_one_line(c_bundles, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESEQ_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(EdgeseqError, match="does not run") as e:
        runtime.load(c_bundles["int8"])
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("precision", ["int8", "float32"])
def test_a_non_finite_input_never_becomes_a_label(c_bundles, beats, precision):
    w, rr = beats[0][:4].copy(), beats[1][:4].copy()
    w[1, 7] = np.nan
    rr[2, 0] = np.inf
    m = runtime.load(c_bundles[precision])
    z = m.logits(w, rr)
    assert np.isnan(z[1]).all() and np.isnan(z[2]).all() and np.isfinite(z[[0, 3]]).all()
    assert list(m.classify(w, rr)[[1, 2]]) == [-1, -1]
    # a stepped window: the state a NaN reached stays NaN, as in the other runtimes
    state = m.initial_state(4, rr=rr)
    for t in range(w.shape[1]):
        y, state = m.step(w[:, t:t + 1], state)
    assert np.isnan(y[1]).all() and np.isfinite(y[0]).all()


def test_a_model_the_c_form_has_no_kernel_for_is_refused(tmp_path):
    from edgeseq.export.c import float_program, to_c
    from edgeseq.graph import Graph, fixed

    g = Graph("odd")
    x = g.input("u", 3)
    g.output(g.mean(g.reshape(x, 3, 1), name="y"))
    with pytest.raises(fixed.Unsupported, match="'mean'"):
        fixed.lower(g, {"u": 1.0})
    with pytest.raises(fixed.Unsupported, match="'mean'"):
        to_c(float_program(g, {}), int8=False, window_length=None, graph=g)


def test_the_ecg_pipeline_runs_on_a_cortex_m4(c_bundles, tmp_path):
    out = tmp_path / "m4.json"
    rc, stdout, stderr = _cli("profile", c_bundles["int8"], "--target", "cortex-m4", "--seconds", "20",
                              "--json", out)
    assert rc == 0, stderr
    r = json.loads(out.read_text())
    assert {"flash_bytes", "ram_bytes", "instructions_per_beat", "instructions_per_second", "matches_host"} <= set(r)
    # 20 s of record 208 (V-rich, about 1.7 beats a second): the C front end finds the Python's
    # beats and the emulated model gives the host C library's logits, bit for bit
    assert r["beats"] >= 20 and r["beats_match_python"] and r["matches_host"] and r["logits_max_diff"] == 0
    assert 0 < r["flash_bytes"] <= 256 * 1024 and 0 < r["ram_bytes"] <= 64 * 1024
    assert r["sizes"]["stack_high_water"] > 0 and r["ram_bytes"] > r["sizes"]["ram_static"]
    # a 60-unit reservoir: far under the 20 M instructions a second of the budget
    assert 0 < r["instructions_per_beat"] and r["instructions_per_second"] < 20e6
    assert r["instructions_per_second"] > r["frontend_instructions_per_second"] > 0
    assert "flash" in stdout or "cortex-m4" in stdout


@pytest.mark.parametrize("bundle,args,says", [
    ("onnx", [], "runs a C bundle"),
    ("float32", [], "libm"),
    ("int8", ["--flash", "16k"], "over the budget"),
    ("int8", ["--ram", "1k"], "over the budget"),
    ("int8", ["--target", "cortex-m0"], "unknown MCU target"),
])
def test_profile_target_refuses_in_one_line(c_bundles, bundle, args, says):
    target = [] if "--target" in args else ["--target", "cortex-m4"]
    rc, _, stderr = _cli("profile", c_bundles[bundle], *target, *args, "--seconds", "5")
    assert rc == 2 and says in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_the_function_tables_stay_within_their_measured_error():
    """The int8 C form has no libm: tanh and sigmoid from one Q15 table, log from a log2 table.
    Their error (tools/bench/fixed_tables.py) is under one step of the int16 state grid."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("fixed_tables", Path(__file__).parents[1] / "tools/bench/fixed_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    r = mod.measure()
    assert r["tanh_max_abs_error"] < 4e-5 and r["sigmoid_max_abs_error"] < 2.5e-5 and r["ln_max_abs_error"] < 3e-6

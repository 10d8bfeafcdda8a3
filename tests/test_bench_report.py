"""tools/bench/report.py renders BENCHMARKS.md from the result JSONs (no timing here)."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "tools" / "bench" / "results"


def _report():
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "tools" / "bench" / "report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _stats(p50, p99):
    return {"n": 10, "warmup": 5, "mean_us": p50, "p50_us": p50, "p90_us": p50, "p99_us": p99, "max_us": p99}


def _synthetic(tmp_path: Path) -> Path:
    m = {"cpu": "Test CPU", "cores": 2, "platform": "Linux", "python": "3.11", "numpy": "2.4",
         "scipy": "1.17", "reservoirpy": "0.4.2"}
    esn_speed = {"machine": m, "states": {
        "n_seq": 10, "steps": 126, "units": 300, "reservoirpy_run_s": 6.0, "reservoirpy_run_all_cores_s": 7.0,
        "reservoirpy_loop_s": 4.0, "reservoirpy_fastest_s": 4.0, "batched_float64_s": 1.0,
        "batched_float32_s": 0.5, "ratio_float64": 4.0, "ratio_float32": 8.0,
        "max_abs_diff_float64": 1e-15, "max_abs_diff_float32": 1e-7}}
    per_beat = {"edgeseq_onnx_int8": _stats(100.0, 800.0), "edgeseq_onnx_float": _stats(90.0, 700.0),
                "edgeseq_numpy": _stats(110.0, 900.0),
                "reservoirpy_step_loop_sparse": _stats(2500.0, 3000.0),
                "reservoirpy_run_sparse": _stats(2000.0, 2400.0)}
    per_beat["reservoirpy_step_loop"] = {**per_beat["reservoirpy_step_loop_sparse"], "W": "sparse"}
    per_beat["reservoirpy_run"] = {**per_beat["reservoirpy_run_sparse"], "W": "sparse"}
    beat = {"machine": m, "versions": {"onnxruntime": "1.32.0", "edgeseq": "0.1.0"},
            "command": "python tools/bench/beat_inference.py --n-beats 10",
            "bundle": {"source": "test", "model": "esn", "units": 300, "inputs": 5, "int8_onnx_bytes": 105000},
            "beats": {"n": 10, "window": 126, "seed": 0, "from": "10 beats"}, "per_beat": per_beat,
            "batched": {"edgeseq_onnx_int8": {"batch": 256, "passes": 3, "beats_per_s": 5000.0}},
            "ratios": {"reservoirpy_step_loop_vs_int8_p50": 25.0, "reservoirpy_step_loop_vs_int8_p99": 3.8,
                       "reservoirpy_step_loop_vs_int8_mean": 25.0, "reservoirpy_run_vs_int8_p50": 20.0,
                       "reservoirpy_run_vs_int8_p99": 3.0, "reservoirpy_run_vs_int8_mean": 20.0},
            "targets": {"speedup_vs_reservoirpy": {"target": 10.0, "basis": "p50", "ratio": 20.0, "met": True},
                        "p99_under_1ms": {"target_us": 1000.0, "p99_us": 800.0, "met": True}}}
    cls = {c: {"se": 0.5, "ppv": 0.25, "n": 1} for c in "NSVFQ"}
    cv = {"task": "ecg", "n_beats": 50977, "accuracy": 0.94, "classes": cls, "model": {"kind": "esn"}}
    d = tmp_path / "results"
    d.mkdir()
    for name, data in (("esn_speed", esn_speed), ("beat_inference", beat), ("cv_ds1_esn", cv)):
        (d / f"{name}.json").write_text(json.dumps(data))
    return d


def test_render_synthetic(tmp_path):
    rep = _report()
    text = rep.render(rep.load_results(_synthetic(tmp_path)))
    for head in ("## Machine", "## (a) ESN reservoir states", "## (b) Per-beat inference",
                 "## (c) Model comparison", "## (d) Serial bridge"):
        assert head in text
    assert "| reservoirpy `run`, all sequences in one call | 6.000 | 12.0x faster | 6.0x faster |" in text
    assert "float32 **8.0x**" in text
    assert "| `step` loop over the 126 samples (CSR W) | 25.0x | 3.8x | 25.0x |" in text
    assert "**20.0x** (p50): **met**" in text and "int8 p99 **800 us**: **met**" in text
    assert "| ESN | 50,977 | **94.0** | 50.0/25.0 |" in text
    assert "| LSTM | not run |" in text and "| TCN | not run |" in text
    assert "`python tools/bench/beat_inference.py --n-beats 10`" in text
    assert "No results yet: run `python tools/bench/bridge.py" in text  # no bridge.json here
    assert rep.render(rep.load_results(tmp_path / "results")) == text  # deterministic


def test_committed_results_render_and_benchmarks_md_is_current():
    rep = _report()
    results = rep.load_results(RESULTS)
    text = rep.render(results)
    assert "## (a)" in text and "## (c)" in text
    if "beat_inference" in results:
        r = results["beat_inference"]["ratios"]["reservoirpy_run_vs_int8_p50"]
        assert f"{r:.1f}x" in text
    if "bridge" in results:
        assert f"{results['bridge']['ecg']['replay']['x_real_time']:.0f}x real time" in text
    # BENCHMARKS.md is what report.py makes of the committed JSONs: rerun it after a benchmark.
    assert (ROOT / "BENCHMARKS.md").read_text() == text


def test_designs_and_heldout_int8_sections(tmp_path):
    """ecg_designs.json and int8_heldout_*.json each render as their own table, not as 'other files';
    a design row written before the per-patient figures shows '-' there."""
    rep = _report()
    d = _synthetic(tmp_path)
    cls = {c: {"se": 0.5, "ppv": 0.25} for c in "NSVFQ"}
    fs = {"accuracy": {"mean": 0.9, "min": 0.6, "worst_fold": 2, "n_folds": 22}}
    designs = {"protocol": "leave-one-record-out inside DS1 (22 folds), pooled", "rows": {
        "a": {"design": "design A", "accuracy": 0.94, "classes": cls, "fold_summary": fs, "command": "edgeseq cv a"},
        "b": {"design": "design B", "accuracy": 0.93, "classes": cls, "command": "python b"}}}
    short = {"accuracy": 0.9, "classes": {c: {"se": 0.5, "ppv": 0.5, "n": 3} for c in "NSVFQ"}}
    heldout = {"command": "python tools/bench/int8_heldout.py --models esn", "model": "esn", "n_folds": 22,
               "n_beats": 50977, "formats": {
                   "onnx": {"float32": short, "int8": short, "same_label": 0.9991,
                            "rule_vs_float": {"max_class_diff_points": 0.42, "met": True}},
                   "tflite": {"float32": short, "int8": short, "same_label": 0.9950,
                              "rule_vs_float": {"max_class_diff_points": 1.5, "met": False}}}}
    text = _render(rep, d, {"ecg_designs": designs, "int8_heldout_esn": heldout})
    assert "| design A | 94.00 | 90.0 / 60.0 | 50.0 / 25.0 | 50.0 / 25.0 | `edgeseq cv a` |" in text
    assert "| design B | 93.00 | - |" in text
    assert "| ESN | 22 | 50,977 | onnx | 99.91 | 0.42 | met |" in text
    assert "| ESN | 22 | 50,977 | tflite | 99.50 | 1.50 | not met |" in text
    assert "## Other result files" not in text


def _render(rep, d, results: dict) -> str:
    """BENCHMARKS.md's text for these result JSONs (``{file stem: content}``) written to ``d``."""
    for stem, data in results.items():
        (d / f"{stem}.json").write_text(json.dumps(data))
    return rep.render(rep.load_results(d))


def test_c_runtime_rows_and_c_targets_section(tmp_path):
    """The C runtime's per-beat row and targets, and c_targets.json as its own per-family table."""
    rep = _report()
    d = _synthetic(tmp_path)
    beat = json.loads((d / "beat_inference.json").read_text())
    beat["per_beat"]["edgeseq_c_int8"] = _stats(50.0, 400.0)
    beat["ratios"].update({"reservoirpy_step_loop_vs_c_int8_p50": 50.0, "reservoirpy_step_loop_vs_c_int8_p99": 7.5,
                           "onnx_int8_vs_c_int8_p50": 2.0, "onnx_int8_vs_c_int8_p99": 2.0})
    beat["targets"].update({
        "c_p99_under_1ms": {"target_us": 1000.0, "p99_us": 400.0, "met": True},
        "c_speedup_vs_reservoirpy_step_loop": {"target": 10.0, "basis": "p50", "ratio": 50.0, "ratio_p99": 7.5,
                                               "met": True},
        "c_faster_than_onnx_int8": {"basis": "p50", "ratio": 2.0, "ratio_p99": 2.0, "met": True}})
    beat["load_average_at_start"] = [1.5, 1.2, 1.1]
    beat["other_processes_active"] = True
    sizes = {"text": 35654, "rodata": 52448, "data": 0, "bss": 46680, "flash_bytes": 88102, "ram_static": 46680,
             "stack_high_water": 2532}
    prof = {"record": "208", "seconds": 300.0, "flash_bytes": 88102, "ram_bytes": 49212, "sizes": sizes,
            "beats": 516, "instructions_per_second": 19.08e6, "frontend_instructions_per_second": 3.25e6,
            "instructions_per_beat": 9202536.0, "instructions_per_beat_max": 9204142, "matches_host": True}
    fam = {"n_beats": 50977, "profile": prof,
           "c_vs_onnx_int8": {"same_label": 0.99998, "beats_differing": 1, "max_abs_logit_diff": 1.4},
           "c_vs_float": {"same_label": 0.9986, "beats_differing": 70, "max_abs_logit_diff": 2.0},
           "model_c_sizes": {"text": 4658, "rodata": 52068, "data": 0, "bss": 6112, "model_c_source_bytes": 437046},
           "targets": {"agreement_vs_onnx_int8": {"target": 0.999, "value": 0.99998, "met": True},
                       "flash": {"target_bytes": 262144, "value": 88102, "met": True},
                       "ram": {"target_bytes": 65536, "value": 49212, "met": True},
                       "instructions_per_second": {"target": 20e6, "value": 19.08e6, "met": True},
                       "matches_host": {"value": True, "met": True}},
           "all_met": True}
    big = {**fam, "profile": {**prof, "instructions_per_second": 31e6},
           "targets": {**fam["targets"], "instructions_per_second": {"target": 20e6, "value": 31e6, "met": False}},
           "all_met": False}
    ct = {"command": "python tools/bench/c_targets.py --bundles B", "target": "cortex-m4", "record": "208",
          "seconds": 300.0, "toolchain": "ziglang cc", "calibration_records": ["101"], "targets": {"flash": "<= 256 KiB"},
          "models": {"esn": fam, "lstm": big}, "load_average_at_start": [0.5, 0.5, 0.5]}
    text = _render(rep, d, {"beat_inference": beat, "c_targets": ct})
    for want in ("| edgeseq int8 C runtime (`model.c` via ctypes) | 50 | 50 | 400 | 400 |",
                 "C p99 **400 us** (p50 50 us): **met**",
                 "**50.0x** (p50; p99 7.5x): **met**",
                 "ONNX int8 / C **2.00x** (p50; p99 2.00x): **met**",
                 "another process was active",
                 "## C export: Cortex-M4 budget and agreement with int8 ONNX",
                 "`python tools/bench/c_targets.py --bundles B`",
                 "| flash (text + rodata + data) | 86.0 KiB (88,102 B) | <= 256.0 KiB: **met** |",
                 "| instructions per second of ECG (front end) | 31.00 M (3.25 M) | <= 20 M: **not met** |",
                 "| C label = int8 ONNX label, 50,977 DS1 beats | 99.998% (1 differ;",
                 "| ESN | 35,654 | 52,448 | 0 | 46,680 | 2,532 | 4,658 | 52,068 | 0 | 6,112 | 437,046 |",
                 "ESN **yes**, LSTM **no**"):
        assert want in text, want
    assert "## Other result files" not in text

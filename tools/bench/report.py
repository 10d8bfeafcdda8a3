"""Write BENCHMARKS.md from the JSON results in tools/bench/results/.

    python tools/bench/report.py [--results tools/bench/results] [--out BENCHMARKS.md]

Deterministic: the same JSONs give the same file byte for byte (no clock is read here). Each
section names the command that produced its JSON: the ``command`` the JSON recorded, else the
command that writes that file (marked as not recorded).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "tools" / "bench" / "results"
OUT = ROOT / "BENCHMARKS.md"

# For JSONs that do not record their own command line.
KNOWN_COMMANDS = {
    "esn_speed": "python tools/bench/esn_speed.py --data ../shared/data/mitdb --json tools/bench/results/esn_speed.json",
    "beat_inference": "python tools/bench/beat_inference.py",
    "cv_ds1_esn": "edgeseq cv ecg --model esn --data ../shared/data/mitdb --json tools/bench/results/cv_ds1_esn.json",
    "models_ds1": "python tools/bench/compare_models.py build",
    "bridge": "python tools/bench/bridge.py --ecg-bundle BUNDLE",
    "qrs_ds1": "python tools/bench/qrs_ds1.py --data ../shared/data/mitdb --json tools/bench/results/qrs_ds1.json",
    "c_targets": "python tools/bench/c_targets.py --bundles DIR",
}
MODELS = ("esn", "lstm", "tcn")
SECTION_FILES = {"esn_speed", "beat_inference", "bridge", "qrs_ds1", "profile_ecg", "models_ds1", "ort_memory",
                 "ecg_designs", "export_forms", "c_targets"}  # cv_ds1_* and int8_heldout_* too
PREFIXED = ("cv_ds1_", "int8_heldout_")
PER_BEAT_ROWS = (
    ("edgeseq_c_int8", "edgeseq int8 C runtime (`model.c` via ctypes)"),
    ("edgeseq_onnx_int8", "edgeseq int8 ONNX runtime"),
    ("edgeseq_onnx_float", "edgeseq float ONNX runtime"),
    ("edgeseq_numpy", "edgeseq numpy reference (`decision_function`)"),
    ("reservoirpy_step_loop_dense", "reservoirpy `step` loop, dense W"),
    ("reservoirpy_step_loop_sparse", "reservoirpy `step` loop, CSR W"),
    ("reservoirpy_run_dense", "reservoirpy `run`, dense W"),
    ("reservoirpy_run_sparse", "reservoirpy `run`, CSR W"),
)


def load_results(results_dir) -> dict[str, dict]:
    """``{file stem: parsed JSON}`` for every ``*.json`` in ``results_dir``, in name order."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(Path(results_dir).glob("*.json"))}


def command(name: str, data: dict) -> str:
    if data.get("command"):
        cmd = data["command"]
        return f"`{cmd}`" if cmd.startswith(("python", "edgeseq")) else f"`python {cmd}`"
    if name in KNOWN_COMMANDS:
        return f"`{KNOWN_COMMANDS[name]}` (not recorded in the JSON; the command that writes this file)"
    return "(not recorded in the JSON)"


def pct(x) -> str:
    return f"{100 * x:.1f}"


def ratio(x) -> str:
    return f"{x:.1f}x"


def us(x) -> str:
    return f"{x:,.0f}"


def kb(n) -> str:
    return f"{n / 1000:.0f} kB"


def kib(n) -> str:
    return f"{n / 1024:.1f} KiB"


def met(x) -> str:
    return "met" if x else "not met"


def machine_of(data: dict) -> dict:
    """The JSON's machine description in one vocabulary (older JSONs use other key names)."""
    m = dict(data.get("machine") or {})
    out = {"cpu": m.get("cpu", m.get("processor")), "cores": m.get("cores", m.get("cpu_count")),
           "platform": m.get("platform"), "python": m.get("python"), "numpy": m.get("numpy"),
           "scipy": m.get("scipy"), "reservoirpy": m.get("reservoirpy")}
    out.update(data.get("versions") or {})
    return out


def section_machine(results: dict) -> list[str]:
    cols = ("cpu", "cores", "platform", "python", "numpy", "scipy", "reservoirpy", "onnxruntime", "edgeseq")
    rows = []
    for name, data in results.items():
        m = machine_of(data)
        if not any(m.get(c) for c in cols):
            rows.append(f"| `{name}.json` | " + " | ".join(["not recorded"] + [""] * (len(cols) - 1)) + " |")
        else:
            rows.append(f"| `{name}.json` | " + " | ".join("" if m.get(c) is None else str(m[c]) for c in cols) + " |")
    return ["## Machine and package versions", "",
            "As each JSON recorded them (a blank: that JSON does not say).", "",
            "| results | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|", *rows, ""]


def section_states(results: dict) -> list[str]:
    lines = ["## (a) ESN reservoir states: edgeseq batched against reservoirpy `run`", ""]
    d = results.get("esn_speed")
    if not d:
        return lines + [f"No results yet: run {command('esn_speed', {})}.", ""]
    s = d["states"]
    lines += [f"Command: {command('esn_speed', d)}", "",
              f"The same reservoir ({s['units']} units) and the same {s['n_seq']:,} DS1 beat windows of "
              f"{s['steps']} steps, in one run. Ratio = reservoirpy time / edgeseq time.", "",
              "| way | seconds | edgeseq float32 is | edgeseq float64 is |", "|---|---:|---:|---:|"]
    ways = (("reservoirpy `run`, all sequences in one call", "reservoirpy_run_s"),
            ("reservoirpy `run`, all sequences, `workers=-1`", "reservoirpy_run_all_cores_s"),
            ("reservoirpy `run` called per sequence", "reservoirpy_loop_s"))
    for label, key in ways:
        if key in s:
            lines.append(f"| {label} | {s[key]:.3f} | {ratio(s[key] / s['batched_float32_s'])} faster | "
                         f"{ratio(s[key] / s['batched_float64_s'])} faster |")
    lines += [f"| edgeseq batched float32 | {s['batched_float32_s']:.3f} | | |",
              f"| edgeseq batched float64 | {s['batched_float64_s']:.3f} | | |", "",
              f"Against reservoirpy's fastest way ({s['reservoirpy_fastest_s']:.3f} s): float32 "
              f"**{ratio(s['ratio_float32'])}**, float64 **{ratio(s['ratio_float64'])}**. States: float64 within "
              f"{s['max_abs_diff_float64']:.1e} of reservoirpy's, float32 within {s['max_abs_diff_float32']:.1e}."]
    if "train" in d:
        t = d["train"]
        lines += ["", f"Training the default ESN on {t['n_beats']:,} beats of {t['records']} DS1 records: "
                      f"{t['seconds']:.1f} s, of which {t['seconds_reading']:.1f} s reading and filtering."]
    return lines + [""]


def section_per_beat(results: dict) -> list[str]:
    lines = ["## (b) Per-beat inference: edgeseq runtime against reservoirpy on the same reservoir", ""]
    d = results.get("beat_inference")
    if not d:
        return lines + [f"No results yet: run {command('beat_inference', {})}.", ""]
    b, pb, bt = d["beats"], d["per_beat"], d.get("batched", {})
    e8 = pb["edgeseq_onnx_int8"]
    th = d.get("threads", {})
    lines += [f"Command: {command('beat_inference', d)}", "",
              f"{b['n']:,} DS1 beat windows of {b['window']} samples (drawn with seed {b['seed']} from "
              f"{b['from']}), the same for every way; {d['bundle'].get('source', '')}, "
              f"{d['bundle']['units']} units, {d['bundle']['inputs']} reservoir inputs. One core: onnxruntime "
              f"{th.get('onnxruntime_intra_op', 1)} intra-op thread, OMP/MKL/OPENBLAS_NUM_THREADS="
              f"{th.get('OMP_NUM_THREADS', '1')}. One beat per call, `(window, rr) -> logits`, after "
              f"{e8['warmup']} warm-up calls; the ways take turns over blocks of "
              f"{d.get('timing', {}).get('block', '?')} beats.", "",
              "| way | p50 us | p90 us | p99 us | max us | reservoirpy / int8 (p50) |",
              "|---|---:|---:|---:|---:|---:|"]
    for key, label in PER_BEAT_ROWS:
        if key in pb:
            s = pb[key]
            r = ratio(s["p50_us"] / e8["p50_us"]) if key.startswith("reservoirpy") else ""
            lines.append(f"| {label} | {us(s['p50_us'])} | {us(s['p90_us'])} | {us(s['p99_us'])} | "
                         f"{us(s['max_us'])} | {r} |")
    rt = d["ratios"]
    lines += ["", "Ratios, reservoirpy time / edgeseq int8 time (reservoirpy with its faster W for each way):", "",
              "| reservoirpy way | p50 | p99 | mean |", "|---|---:|---:|---:|"]
    for how, label in (("step_loop", "`step` loop over the 126 samples"), ("run", "one `run` call")):
        w = pb.get(f"reservoirpy_{how}", {}).get("W", "")
        lines.append(f"| {label} ({'CSR' if w == 'sparse' else w} W) | {ratio(rt[f'reservoirpy_{how}_vs_int8_p50'])} | "
                     f"{ratio(rt[f'reservoirpy_{how}_vs_int8_p99'])} | {ratio(rt[f'reservoirpy_{how}_vs_int8_mean'])} |")
    tg = d["targets"]
    sp, p99 = tg["speedup_vs_reservoirpy"], tg["p99_under_1ms"]
    lines += ["", "Targets for the int8 ONNX runtime:", "",
              f"- per-beat ESN inference at least {sp['target']:g}x faster than reservoirpy on the same reservoir: "
              f"**{ratio(sp['ratio'])}** ({sp['basis']}): **{'met' if sp['met'] else 'not met'}**;",
              f"- p99 under {p99['target_us'] / 1000:g} ms on one core: int8 p99 **{us(p99['p99_us'])} us**: "
              f"**{'met' if p99['met'] else 'not met'}**."]
    if "edgeseq_c_int8" in pb and "c_p99_under_1ms" in tg:
        c8, cp, cs, cf = pb["edgeseq_c_int8"], tg["c_p99_under_1ms"], tg["c_speedup_vs_reservoirpy_step_loop"], \
            tg["c_faster_than_onnx_int8"]
        sl = pb.get("reservoirpy_step_loop", {})
        lines += ["", "Targets for the default ECG model through the host C runtime (int8 `model.c`, one core, one "
                      "beat per call), measured in the same run:", "",
                  f"- p99 under {cp['target_us'] / 1000:g} ms: C p99 **{us(cp['p99_us'])} us** (p50 "
                  f"{us(c8['p50_us'])} us): **{met(cp['met'])}**;",
                  f"- at least {cs['target']:g}x faster than reservoirpy's `step` loop on the same reservoir "
                  f"({'CSR' if sl.get('W') == 'sparse' else sl.get('W', '')} W, p50 {us(sl.get('p50_us', 0))} us): "
                  f"**{ratio(cs['ratio'])}** ({cs['basis']}; p99 {ratio(cs['ratio_p99'])}): **{met(cs['met'])}**;",
                  f"- faster than its own int8 ONNX export (p50 {us(e8['p50_us'])} us, p99 {us(e8['p99_us'])} us): "
                  f"ONNX int8 / C **{cf['ratio']:.2f}x** (p50; p99 {cf['ratio_p99']:.2f}x): **{met(cf['met'])}**."]
    if bt:
        lines += ["", f"Batched throughput, {next(iter(bt.values()))['batch']} beats per call (best of "
                      f"{next(iter(bt.values()))['passes']} passes):", "",
                  "| way | beats/s | us per beat |", "|---|---:|---:|"]
        for key, label in PER_BEAT_ROWS:
            if key in bt:
                lines.append(f"| {label} | {bt[key]['beats_per_s']:,.0f} | {us(1e6 / bt[key]['beats_per_s'])} |")
        if "reservoirpy_per_beat_mean_vs_int8_batched" in rt:
            lines += ["", f"Batched int8 against reservoirpy's mean time per beat (its faster way; a multi-sequence "
                          f"`run` is no faster, see (a)): **{ratio(rt['reservoirpy_per_beat_mean_vs_int8_batched'])}**."]
    sc = d.get("state_check")
    if sc:
        worst = max(sc["max_abs_diff"].values())
        lines += ["", f"- Checks before timing: reservoirpy's states (step loop and `run`, dense and CSR W) within "
                      f"{worst:.1e} of edgeseq's float64 states on {sc['beats']} beats (tolerance {sc['tolerance']:g})."]
    ag = d.get("agreement")
    if ag:
        same = ag["same_label_as_numpy"]
        rp_same = min(v for k, v in same.items() if k.startswith("reservoirpy"))
        rp_diff = max(v for k, v in ag["max_abs_logit_diff_vs_numpy"].items() if k.startswith("reservoirpy"))
        lines += [f"- Same label as the numpy reference: int8 {pct(same['edgeseq_onnx_int8'])}%, float ONNX "
                  f"{pct(same['edgeseq_onnx_float'])}%, reservoirpy {pct(rp_same)}% (max |logit diff| {rp_diff:.1e})."]
        if "c_int8_vs_onnx_int8" in ag:
            cv = ag["c_int8_vs_onnx_int8"]
            lines += [f"- int8 C: same label as the numpy reference {pct(same['edgeseq_c_int8'])}%, as int8 ONNX "
                      f"{pct(cv['same_label'])}% (max |logit diff| {cv['max_abs_logit_diff']:.1e})."]
    tm = d.get("timing", {})
    if "cpu_steal_share" in tm:
        lines += [f"- CPU time stolen by the hypervisor while timing: {100 * tm['cpu_steal_share']:.1f}%."]
    if "load_average_at_start" in d:
        la = d["load_average_at_start"]
        lines += [f"- Load average at start {la[0]:.2f}" + (": another process was active during the run (it slows "
                  "every way alike; the ratios are within this run)." if d.get("other_processes_active") else ".")]
    return lines + [""]


def section_c_targets(results: dict) -> list[str]:
    d = results.get("c_targets")
    if not d:
        return []
    tg = d["targets"]
    lines = ["## C export: Cortex-M4 budget and agreement with int8 ONNX", "",
             f"Command: {command('c_targets', d)}", "",
             f"Each family's trained DS1 bundle exported to int8 C and int8 ONNX (calibration on the "
             f"{len(d.get('calibration_records', []))} DS1 records). Agreement: every annotated DS1 beat classified "
             f"by the C bundle on the host (`edgeseq.runtime`) and by the int8 ONNX export. {d['target']}: "
             f"`edgeseq profile --target {d['target']}` over the first {d['seconds']:g} s of record {d['record']} "
             f"(front end + model + classify loop, {d.get('toolchain', '')}, in unicorn; instructions counted, not "
             "cycles). Targets: " + "; ".join(f"{k}: {v}" for k, v in tg.items()) + ".", ""]
    for kind, m in d["models"].items():
        p, t, a = m["profile"], m["targets"], m["c_vs_onnx_int8"]
        lines += [f"{kind.upper()}:", "", "| figure | value | target |", "|---|---:|---|",
                  f"| flash (text + rodata + data) | {kib(p['flash_bytes'])} ({p['flash_bytes']:,} B) | "
                  f"<= {kib(t['flash']['target_bytes'])}: **{met(t['flash']['met'])}** |",
                  f"| RAM (data + bss + stack) | {kib(p['ram_bytes'])} ({p['ram_bytes']:,} B) | "
                  f"<= {kib(t['ram']['target_bytes'])}: **{met(t['ram']['met'])}** |",
                  f"| instructions per second of ECG (front end) | {p['instructions_per_second'] / 1e6:.2f} M "
                  f"({p['frontend_instructions_per_second'] / 1e6:.2f} M) | <= "
                  f"{t['instructions_per_second']['target'] / 1e6:.0f} M: **{met(t['instructions_per_second']['met'])}** |",
                  f"| instructions per beat, model (max) | {p['instructions_per_beat']:,.0f} "
                  f"({p['instructions_per_beat_max']:,}) | |",
                  f"| beats in {p['seconds']:.0f} s of record {p['record']} | {p['beats']:,} | |",
                  f"| matches_host (beats as Python's, logits as host C's) | {p['matches_host']} | "
                  f"**{met(t['matches_host']['met'])}** |",
                  f"| C label = int8 ONNX label, {m['n_beats']:,} DS1 beats | {100 * a['same_label']:.3f}% "
                  f"({a['beats_differing']} differ; max \\|logit diff\\| {a['max_abs_logit_diff']:.2g}) | >= "
                  f"{100 * t['agreement_vs_onnx_int8']['target']:.1f}%: **{met(t['agreement_vs_onnx_int8']['met'])}** |",
                  f"| C label = float label (reference) | {100 * m['c_vs_float']['same_label']:.3f}% (max "
                  f"\\|logit diff\\| {m['c_vs_float']['max_abs_logit_diff']:.2g}) | |"]
        if "onnx_int8_vs_float" in m:
            o = m["onnx_int8_vs_float"]
            lines.append(f"| int8 ONNX label = float label (reference) | {100 * o['same_label']:.3f}% (max "
                         f"\\|logit diff\\| {o['max_abs_logit_diff']:.2g}) | |")
        lines.append("")
    lines += ["Sizes in bytes: the whole image (`edgeseq profile`'s sizes) and `model.c` alone (built for the same "
              "target with only `es_window` kept, less the startup code):", "",
              "| family | image text | rodata | data | bss | stack | model.c text | rodata | data | bss | model.c source |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, m in d["models"].items():
        s, c = m["profile"]["sizes"], m.get("model_c_sizes", {})
        cells = [f"{c[k]:,}" if k in c else "" for k in ("text", "rodata", "data", "bss", "model_c_source_bytes")]
        lines.append(f"| {kind.upper()} | {s['text']:,} | {s['rodata']:,} | {s['data']:,} | {s['bss']:,} | "
                     f"{s['stack_high_water']:,} | " + " | ".join(cells) + " |")
    la = d.get("load_average_at_start")
    lines += ["", "All targets met: " + ", ".join(f"{k.upper()} **{'yes' if m['all_met'] else 'no'}**"
                                                  for k, m in d["models"].items()) + "."]
    if la:
        lines += [f"Load average at start {la[0]:.2f}" + (" (another process active; nothing here is timed)."
                                                        if d.get("other_processes_active") else ".")]
    return lines + [""]


def _cv_runs(results: dict) -> dict:
    """``{n_folds: {kind: (file stem, data)}}`` of the DS1 cross-validation JSONs."""
    runs: dict = {}
    for name, data in results.items():
        if name.startswith("cv_ds1_"):
            kind = (data.get("model") or {}).get("kind", name[len("cv_ds1_"):].split("_")[0])
            runs.setdefault(int(data.get("n_folds", 22)), {})[kind] = (name, data)
    return runs


def _iv(iv, n_records=None) -> str:
    """`` [lo-hi]`` in %, or nothing where the JSON has no interval (older JSONs, or undefined)."""
    if not iv:
        return ""
    if n_records == 1:  # every replicate holding the class has the same one patient
        return " (1 record)"
    return f" [{100 * iv[0]:.1f}-{100 * iv[1]:.1f}]"


def _pct_or_dash(x) -> str:
    return "-" if x is None else pct(x)


def _cv_table(runs: dict, labels) -> list[str]:
    """Pooled Se/+P per model; with ``ci95`` in a JSON (written since the record bootstrap) the
    95% interval beside each figure; JSONs without it render as before."""
    out = ["| model | beats | accuracy % | " + " | ".join(f"{c} Se/+P" for c in labels) + " | CV time |",
           "|---" * (len(labels) + 4) + "|"]
    for kind in MODELS + tuple(sorted(k for k in runs if k not in MODELS)):
        if kind not in runs:
            out.append(f"| {kind.upper()} | not run |" + " |" * (len(labels) + 2))
            continue
        _, d = runs[kind]
        cls = d["classes"]
        ci = d.get("ci95") or {}
        if ci:
            cc = ci.get("classes", {})

            def cell(c):
                rec = cc.get(c, {}).get("records", {})
                return (f"{_pct_or_dash(cls[c]['se'])}{_iv(cc.get(c, {}).get('se'), rec.get('se'))} / "
                        f"{_pct_or_dash(cls[c]['ppv'])}{_iv(cc.get(c, {}).get('ppv'), rec.get('ppv'))}")
        else:
            def cell(c):
                return f"{_pct_or_dash(cls[c]['se'])}/{_pct_or_dash(cls[c]['ppv'])}"
        cells = [cell(c) if c in cls else "" for c in labels]
        took = f"{d['seconds']:,.0f} s" if "seconds" in d else ""
        out.append(f"| {kind.upper()} | {d['n_beats']:,} | **{pct(d['accuracy'])}**{_iv(ci.get('accuracy'))} | "
                   + " | ".join(cells) + f" | {took} |")
    return out


def _fold_table(runs: dict, labels) -> list[str]:
    """Mean and worst fold per model, for the JSONs that carry ``fold_summary``; none: no table."""
    have = [k for k in MODELS + tuple(sorted(k for k in runs if k not in MODELS))
            if k in runs and runs[k][1].get("fold_summary")]
    if not have:
        return []

    def mm(x, key):
        return "-" if not x else pct(x[key])

    out = ["| model | accuracy % mean / worst | " + " | ".join(f"{c} worst Se/+P" for c in labels) + " |",
           "|---" * (len(labels) + 2) + "|"]
    for kind in have:
        fs = runs[kind][1]["fold_summary"]
        cells = [f"{mm(fs[c]['se'], 'min')}/{mm(fs[c]['ppv'], 'min')}" if c in fs else "" for c in labels]
        out.append(f"| {kind.upper()} | {mm(fs['accuracy'], 'mean')} / {mm(fs['accuracy'], 'min')} | "
                   + " | ".join(cells) + " |")
    return out


def _ci_note(runs: dict) -> list[str]:
    cis = [d["ci95"] for _, d in runs.values() if d.get("ci95")]
    if not cis:
        return []
    c = cis[0]
    return [f"In brackets: 95% interval from a bootstrap over the {c.get('n_units', '?')} records (patients), "
            f"{c.get('n_boot', '?')} replicates; records, not beats, are resampled because the beats of one "
            "patient are not independent. \"(1 record)\": all beats of the class are in one record, so no "
            "interval can be drawn.", ""]


def section_models(results: dict) -> list[str]:
    lines = ["## (c) Model comparison: ESN, LSTM, TCN", ""]
    labels = ("N", "S", "V", "F", "Q")
    runs = _cv_runs(results)
    for k in sorted(runs, reverse=True):
        what = "leave-one-record-out" if k == 22 else f"record-grouped {k}-fold"
        lines += [f"DS1 {what} cross-validation (22 records, one patient each; no record in two folds), "
                  "per-class Se/+P in %:", "", *_cv_table(runs[k], labels), "", *_ci_note(runs[k])]
        folds = _fold_table(runs[k], labels)
        if folds:
            lines += [f"Mean and worst of the {k} folds (a fold without beats of a class, or without "
                      "predictions of it, is left out of that figure), in %:", "", *folds, ""]
        for kind in sorted(runs[k]):
            name, d = runs[k][kind]
            lines.append(f"- {kind.upper()} (`{name}.json`): {command(name, d)}")
        lines.append("")
    if not runs:
        lines += ["No cross-validation results yet: run `python tools/bench/compare_models.py cv`.", ""]
    md = results.get("models_ds1")
    if md:
        lines += [f"Trained on all {md['n_beats']:,} DS1 beats, exported, and scored on the same beats (so "
                  "intra-patient: this compares formats, not patients). Latency: one beat per call, one thread, "
                  "`edgeseq profile`'s window timing. Rule: every per-class Se and +P of the int8 export within "
                  "1 point of its float export.", "",
                  f"Command: {command('models_ds1', md)}", "",
                  "| model | parameters | training | int8 ONNX window file (vs float; whole bundle) | "
                  "int8 TFLite window file (vs float; whole bundle) | "
                  "ONNX float / int8 p50 us | TFLite float / int8 p50 us | int8 rule ONNX / TFLite | "
                  "same label int8 vs float ONNX / TFLite |",
                  "|---|---:|---:|---:|---:|---:|---:|---|---:|"]
        for kind in MODELS:
            r = md["models"].get(kind)
            if not r:
                continue
            e = r["exports"]
            oq, tq = e["onnx_int8"], e["tflite_int8"]

            def dirs(x):  # whole bundle directories, where the results have them
                return f"; {100 * x['dir_vs_float']:.0f}%" if "dir_vs_float" in x else ""

            def rule(x):
                return f"{'met' if x['rule_vs_float']['met'] else 'NOT met'} ({x['rule_vs_float']['max_class_diff_points']:.2f})"

            lines.append(
                f"| {kind.upper()} | {r['n_params']:,} | {r['train_seconds']:.0f} s | {kb(oq['bytes'])} "
                f"({100 * oq['size_vs_float']:.0f}%{dirs(oq)}) | {kb(tq['bytes'])} ({100 * tq['size_vs_float']:.0f}%{dirs(tq)}) | "
                f"{us(e['onnx_float32']['latency_us']['p50_us'])} / {us(oq['latency_us']['p50_us'])} | "
                f"{us(e['tflite_float32']['latency_us']['p50_us'])} / {us(tq['latency_us']['p50_us'])} | "
                f"{rule(oq)} / {rule(tq)} | {pct(oq['same_label_as_float'])} / {pct(tq['same_label_as_float'])} |")
        lines.append("")
    return lines


def designs_table(rows: dict) -> list[str]:
    """One line per ECG design of ``ecg_designs.json``: pooled figures, the mean and worst patient
    (``-`` for rows written before the per-patient figures), and the command that gives the row."""
    out = ["| design | accuracy % | per patient: mean / worst | SVEB Se / +P | VEB Se / +P | command |",
           "|---|---:|---|---|---|---|"]
    for r in rows.values():
        c = r["classes"]
        acc = (r.get("fold_summary") or {}).get("accuracy")
        per = f"{pct(acc['mean'])} / {pct(acc['min'])}" if acc else "-"
        out.append(f"| {r['design']} | {100 * r['accuracy']:.2f} | {per} | {pct(c['S']['se'])} / {pct(c['S']['ppv'])} | "
                   f"{pct(c['V']['se'])} / {pct(c['V']['ppv'])} | `{r['command']}` |")
    return out


def section_designs(results: dict) -> list[str]:
    d = results.get("ecg_designs")
    if not d:
        return []
    return ["## ECG designs against the inter-patient targets", "",
            f"Every row: {d['protocol']}; targets accuracy >= 95, SVEB Se >= 80 and +P >= 50, VEB Se >= 93 "
            "and +P >= 90. Per patient: the mean and the worst of the 22 held-out records' accuracies.", "",
            "Command: `python tools/bench/ecg_designs.py` (each row's own command below)", "",
            *designs_table(d["rows"]), ""]


def section_int8_heldout(results: dict) -> list[str]:
    runs = {n: d for n, d in results.items() if n.startswith("int8_heldout_")}
    if not runs:
        return []
    lines = ["## int8 against float on held-out patients", "",
             "Each fold's bundle trained on the other records, exported four ways (int8 calibrated on its own "
             "training beats), and run on the held-out record's beats; pooled over the folds. Rule: >= 99.8% "
             "of beats keep the float label and every per-class Se and +P within 1 point.", "",
             "| model | folds | beats | format | same label as float % | largest class gap (points) | rule |",
             "|---|---:|---:|---|---:|---:|---|"]
    for name, d in runs.items():
        for fmt, r in d["formats"].items():
            rule = r["rule_vs_float"]
            lines.append(f"| {d['model'].upper()} | {d['n_folds']} | {d['n_beats']:,} | {fmt} | "
                         f"{100 * r['same_label']:.2f} | {rule['max_class_diff_points']:.2f} | "
                         f"{'met' if rule['met'] else 'not met'} |")
    lines.append("")
    lines += [f"- `{n}.json`: `{d['command']}`" for n, d in runs.items()]
    return lines + [""]


def section_bridge(results: dict) -> list[str]:
    lines = ["## (d) Serial bridge", ""]
    d = results.get("bridge")
    if not d:
        return lines + [f"No results yet: run {command('bridge', {})}.", ""]
    e, b = d["ecg"], d["balance"]
    lines += [f"Command: {command('bridge', d)}", "",
              "One core (one onnxruntime thread); latency from a frame's arrival to its prediction with the "
              "emulator at 10x real time.", "",
              "| stream | path | throughput | latency p50 / p99 |", "|---|---|---:|---:|"]
    if "replay" in e:
        lines.append(f"| ECG ({e['replay']['stream_s'] / 60:.0f} min, {e['replay']['predictions']:,} beats) | "
                     f"replay of the wire bytes | {e['replay']['x_real_time']:.0f}x real time | |")
    if "pty_max" in e:
        lat = e.get("latency_10x", {}).get("latency_ms", {})
        lines.append(f"| | live over a pty, emulator at max speed | {e['pty_max']['x_real_time']:.0f}x real time | "
                     + (f"{lat['p50']:.1f} ms / {lat['p99']:.1f} ms |" if lat else " |"))
    if "replay" in b:
        lines.append(f"| balance ({b['replay']['stream_s'] / 60:.0f} min looped, {b['replay']['frames']:,} frames) | "
                     f"replay | {b['replay']['frames_per_s']:,} frames/s | |")
    if "pty_max" in b:
        lat = b.get("latency_10x", {}).get("latency_ms", {})
        lines.append(f"| | live over a pty | {b['pty_max']['frames_per_s']:,} frames/s | "
                     + (f"{lat['p50']:.1f} ms / {lat['p99']:.1f} ms |" if lat else " |"))
    return lines + [""]


def profile_table(rows: list[dict]) -> list[str]:
    """The ``edgeseq profile --compare`` figures as a markdown table (also used in README)."""
    names = [f"{Path(r['bundle']).name}" for r in rows]
    out = ["| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(rows)]

    def row(label, fn):
        out.append(f"| {label} | " + " | ".join(fn(r) for r in rows) + " |")

    row("window p50 / p99 (us)", lambda r: f"{r['latency_us']['window']['p50']:,.0f} / {r['latency_us']['window']['p99']:,.0f}")
    row("step p50 / p99 (us)", lambda r: f"{r['latency_us']['step']['p50']:.1f} / {r['latency_us']['step']['p99']:.1f}")
    row("windows/s, one per call / batched", lambda r: f"{r['throughput']['windows_per_s']:,.0f} / "
        f"{r['throughput']['batched_windows_per_s']:,.0f}")
    row("model file", lambda r: kb(r["size_bytes"]))
    row("parameters / MACs per step", lambda r: f"{r['params']:,} / {r['macs_per_step']:,}")
    row("peak RSS / due to the model", lambda r: f"{r['peak_rss_bytes'] / 2**20:.0f} / {r['model_rss_bytes'] / 2**20:.0f} MiB")
    row("onnxruntime peak in use", lambda r: kb(r["ort_memory"]["peak_in_use_bytes"]) if r.get("ort_memory") else "-")
    row("tflite-micro arena", lambda r: kb(r["arena_bytes"]) if r.get("arena_bytes") else "-")
    row("efficiency (MAC/s over matmul peak)", lambda r: f"{100 * r['efficiency']:.1f}%")
    return out


def section_profile(results: dict) -> list[str]:
    p = results.get("profile_ecg")
    if not p:
        return []
    peak = p["compare"][0]["peak_macs_per_s"]
    return ["## `edgeseq profile`: the default ECG ESN's four exports", "", f"Command: `{p['command']}`", "",
            f"One thread; 1,000 timed calls of each kind after 50 warm-up calls; each bundle in its own "
            f"interpreter. Matmul peak of this machine on one thread: {peak / 1e9:.1f} GMAC/s (float32 512x512).",
            "", *profile_table(p["compare"]), ""]


def section_ort_memory(results: dict) -> list[str]:
    """``tools/bench/ort_memory.py``: onnxruntime's RSS by stage and by what backs it, and the
    latency, for each session setting; the board default's row in bold."""
    d = results.get("ort_memory")
    if not d:
        return []
    mib = 2 ** 20
    n = d["n"]
    lines = ["## onnxruntime's memory: what it is made of, and the session options", "",
             f"Command: {command('ort_memory', d)}", "",
             f"Each setting and bundle in a fresh interpreter, one thread; RSS in MiB (1,048,576 bytes) after each "
             f"stage: numpy and edgeseq imported, `import onnxruntime`, the window and step sessions opened, the first "
             f"call of each, {n:,} more of each (the latency, after 50 warm-up calls); then one batch of 256 and one "
             f"of 1,024 windows (`evaluate` runs chunks of 1,024). anon / lib: at the end of the single calls, pages "
             f"no file backs / onnxruntime's library pages (clean, shared, droppable). Medians of {d['rounds']} "
             f"rounds. The runtime's board default (`runtime/onnx_backend.py` `BOARD_OPTIONS`) in bold; 'before' is "
             f"edgeseq's setting until then (onnxruntime's defaults, one thread).", ""]
    for bundle, rows in d["bundles"].items():
        stages = list(rows[0]["rss"])
        single, b1024 = stages[4], stages[6]
        lines += [f"`{bundle}`:", "",
                  "| setting | numpy + edgeseq | + import | + sessions | + first calls | = after single calls "
                  "(anon / lib) | after B=1,024 (peak) | window p50 / p99 (us) | step p50 / p99 (us) | "
                  "us per window at B=256 / 1,024 |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            m = r["rss"]
            name = f"**{r['setting']}**" if r["setting"] == "board default" else r["setting"]
            lat, b = r["latency_us"], r["batched_us_per_window"]
            lines.append(
                f"| {name} | {m[stages[0]]['rss'] / mib:.1f} | {(m[stages[1]]['rss'] - m[stages[0]]['rss']) / mib:.1f} "
                f"| {(m[stages[2]]['rss'] - m[stages[1]]['rss']) / mib:.1f} "
                f"| {(m[stages[3]]['rss'] - m[stages[2]]['rss']) / mib:.1f} "
                f"| {m[single]['rss'] / mib:.1f} ({m[single]['anonymous'] / mib:.1f} / "
                f"{m[single]['runtime_library'] / mib:.1f}) "
                f"| {m[b1024]['rss'] / mib:.0f} ({m[b1024]['peak'] / mib:.0f}) "
                f"| {lat['window']['p50']:,.0f} / {lat['window']['p99']:,.0f} "
                f"| {lat['step']['p50']:.1f} / {lat['step']['p99']:.1f} | {b['256']:,.0f} / {b['1024']:,.0f} |")
        lines.append("")
    if d.get("paired"):
        rounds = next(iter(d["paired"].values()))["rounds"]
        lines += [f"Latency of the board default against 'before' in one process, calls interleaved so that a busy "
                  f"machine slows both alike (medians of {rounds} processes of {n:,} window and {10 * n:,} step "
                  f"calls each; the rows above, "
                  f"from separate processes, differ by tens of percent between identical settings):", "",
                  "| bundle | window p50 / p99 (us), before | board default | ratio | step p50 / p99 (us), before "
                  "| board default | ratio |", "|---|---:|---:|---:|---:|---:|---:|"]
        for bundle, p in d["paired"].items():
            cells = []
            for w, fmt in (("window", ",.0f"), ("step", ".1f")):
                r = p["board_over_before"][w]
                cells += [f"{p['before'][w]['p50']:{fmt}} / {p['before'][w]['p99']:{fmt}}",
                          f"{p['board'][w]['p50']:{fmt}} / {p['board'][w]['p99']:{fmt}}",
                          f"{r['p50']:.2f} / {r['p99']:.2f}"]
            lines.append(f"| `{bundle}` | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def section_export_forms(results: dict) -> list[str]:
    d = results.get("export_forms")
    if not d:
        return []
    tm, models = d["timing"], "; ".join(f"{k.upper()} {v}" for k, v in d["models"].items())
    lines = ["## Export forms: the loop forms each lowering could take", "",
             f"Command: {command('export_forms', d)}", "",
             f"What the export's form choices rest on (`export/onnx.py`, `export/tflite.py`). Models: {models}. "
             f"One thread, each file opened as edgeseq's runtime opens it. B=1: the forms of one model, precision "
             f"and format take turns call by call, median and p90 of {tm['runs']:,} calls after {tm['warmup']} "
             f"warm-up calls; B={tm['batch']}: best of {tm['batch_passes']} calls, per window. **Bold**: the form "
             "edgeseq exports. |diff|: the largest distance of the outputs from the description's on the numpy "
             "interpreter (int8: its integer form), over the largest output.", "",
             f"| model | precision | format | form | file | B=1 p50 / p90 us | B={tm['batch']} us/window | \\|diff\\| |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    for r in d["rows"]:
        form = f"**{r['form']}**" if r["exported"] else r["form"]
        lines.append(f"| {r['model'].upper()} | {r['precision']} | {r['format']} | {form} | {r['bytes'] / 1000:.1f} kB "
                     f"| {us(r['p50_us'])} / {us(r['p90_us'])} | {us(r['batched_us_per_window'])} | "
                     f"{r['max_abs_diff'] / max(r['max_abs_output'], 1e-30):.0e} |")
    return lines + [""]


def section_other(results: dict) -> list[str]:
    lines = []
    q = results.get("qrs_ds1")
    if q:
        p = q["pooled"]
        lines += ["## Streaming QRS detection over DS1", "", f"Command: {command('qrs_ds1', q)}", "",
                  f"Se **{100 * p['se']:.2f}%**, +P **{100 * p['ppv']:.2f}%** over {p['n_ref']:,} reference beats "
                  f"({p['fn']} missed, {p['fp']} false), {1000 * q['window_s']:.0f} ms matching window; "
                  f"fixed delay {q['delay_ms'] / 1000:.2f} s.", ""]
    rest = [n for n in results if n not in SECTION_FILES and not n.startswith(PREFIXED)]
    if rest:
        lines += ["## Other result files", ""]
        lines += [f"- `{n}.json`: {command(n, results[n])}" for n in rest] + [""]
    return lines


def render(results: dict) -> str:
    """BENCHMARKS.md's text from ``{file stem: parsed JSON}``."""
    lines = ["# Benchmarks", "",
             "Generated by `python tools/bench/report.py` from the JSON files in `tools/bench/results/`; "
             "do not edit by hand. Each section names the command that wrote its JSON.", ""]
    for part in (section_machine, section_states, section_per_beat, section_models, section_designs,
                 section_int8_heldout, section_bridge, section_profile, section_ort_memory, section_c_targets,
                 section_export_forms,
                 section_other):
        lines += part(results)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    Path(args.out).write_text(render(load_results(args.results)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

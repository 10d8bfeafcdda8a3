"""The C export against its targets, per model family: agreement with the int8 ONNX export on all
DS1 beats, and the Cortex-M4 figures of ``edgeseq profile --target`` (issue 15).

    python tools/bench/c_targets.py --bundles /work/baseline/bundles [--models esn,lstm,tcn]
                                    [--data ../shared/data/mitdb] [--record 208] [--seconds 300]
                                    [--json tools/bench/results/c_targets.json]

For each family, the trained bundle ``DIR/ecg-<family>.bundle`` is exported twice, as
``edgeseq export --int8 --calibration DATA`` would (calibration on the DS1 records present in
``--data``): int8 C (``--format c``) and int8 ONNX. Then:

- every annotated beat of those DS1 records is classified by the C bundle (``edgeseq.runtime.load``:
  the system compiler, ctypes), by the int8 ONNX export and by the source bundle (float, numpy
  interpreter): the share of beats where C's label equals ONNX int8's (target >= 99.9%) and the
  largest |logit difference|; C against float for reference;
- ``edgeseq.profile.target.profile_target`` over the first ``--seconds`` of ``--record``: front end
  + model built for a Cortex-M4 (zig) and run in unicorn. Targets: flash <= 256 KiB, RAM <= 64 KiB,
  <= 20 M instructions per second of ECG (front end and model); ``matches_host``: the emulated
  beats and logits equal the host's bit for bit;
- the sizes of ``model.c`` alone, built for the same target with only ``es_window`` kept (minus the
  startup code every image has), beside the whole pipeline's.

kB in the targets is 1024 bytes, as microcontroller flash and RAM sizes are counted. Instruction
counts are deterministic; nothing here is timed (export and classify seconds are for information).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "tools" / "bench" / "results"
TARGETS = {"agreement_vs_onnx_int8": 0.999, "flash_bytes": 256 * 1024, "ram_bytes": 64 * 1024,
           "instructions_per_second": 20e6}


def model_sizes(c_bundle: Path, work: Path, target: str) -> dict:
    """Section sizes of the bundle's ``model.c`` alone for ``target`` (``es_window`` and what it
    reaches), less those of an image holding only the startup code."""
    from edgeseq.profile import mcu

    rt = json.loads((c_bundle / "manifest.json").read_text())["runtime"]
    elf = mcu.build([c_bundle / rt["step"]], work / "model.elf", include_dirs=[c_bundle], target=target,
                    keep=["es_window"])
    empty = work / "empty.c"
    empty.write_text("int es_empty(void) { return 0; }\n")
    base = mcu.sizes(mcu.build([empty], work / "empty.elf", target=target, keep=["es_empty"]))
    have = mcu.sizes(elf)
    out = {k: int(have[k] - base[k]) for k in have}
    out["startup_bytes_excluded"] = int(base["flash_bytes"])
    out["model_c_source_bytes"] = (c_bundle / rt["step"]).stat().st_size
    out["arena_bytes"] = int(rt.get("c", {}).get("arena_bytes", 0))
    return out


def agreement(a: np.ndarray, b: np.ndarray) -> dict:
    same = a.argmax(1) == b.argmax(1)
    return {"same_label": float(same.mean()), "beats_differing": int((~same).sum()),
            "max_abs_logit_diff": float(np.abs(a - b).max())}


def run_family(kind: str, bundle: Path, beats, data: str, records: list[str], args, tmp: Path) -> dict:
    from edgeseq import runtime
    from edgeseq.export import export
    from edgeseq.profile.target import profile_target

    out: dict = {"bundle": str(bundle)}
    t0 = time.perf_counter()
    c = export(bundle, tmp / f"{kind}.c.bundle", fmt="c", int8=True, calibration=(Path(data), records))
    out["export_c_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    onnx = export(bundle, tmp / f"{kind}.onnx.bundle", fmt="onnx", int8=True, calibration=(Path(data), records))
    out["export_onnx_int8_s"] = round(time.perf_counter() - t0, 1)
    print(f"{kind}: exported int8 C in {out['export_c_s']} s, int8 ONNX in {out['export_onnx_int8_s']} s", flush=True)

    w, rr = beats.windows, beats.rr
    logits, secs = {}, {}
    for name, path in (("c_int8", c), ("onnx_int8", onnx), ("float", bundle)):
        m = runtime.load(path, threads=1)
        t0 = time.perf_counter()
        logits[name] = np.concatenate([m.logits(w[i:i + 1024], rr[i:i + 1024]) for i in range(0, len(w), 1024)])
        secs[name] = round(time.perf_counter() - t0, 1)
    out["classify_all_beats_s"] = secs
    out["n_beats"] = int(len(w))
    out["c_vs_onnx_int8"] = agreement(logits["c_int8"], logits["onnx_int8"])
    out["c_vs_float"] = agreement(logits["c_int8"], logits["float"])
    out["onnx_int8_vs_float"] = agreement(logits["onnx_int8"], logits["float"])
    out["accuracy"] = {k: float((v.argmax(1) == beats.labels).mean()) for k, v in logits.items()}
    print(f"{kind}: C vs ONNX int8 on {len(w):,} beats: {100 * out['c_vs_onnx_int8']['same_label']:.3f}% same label "
          f"({out['c_vs_onnx_int8']['beats_differing']} differ), max |logit diff| "
          f"{out['c_vs_onnx_int8']['max_abs_logit_diff']:.3g}; C vs float {100 * out['c_vs_float']['same_label']:.3f}%",
          flush=True)

    t0 = time.perf_counter()
    prof = profile_target(c, target=args.target, data=data, record=args.record, seconds=args.seconds)
    out["profile_s"] = round(time.perf_counter() - t0, 1)
    prof["bundle"] = f"{kind}.c.bundle (exported here from {bundle})"
    out["profile"] = prof
    out["model_c_sizes"] = model_sizes(c, tmp, args.target)
    print(f"{kind}: {args.target} flash {prof['flash_bytes']:,} B, RAM {prof['ram_bytes']:,} B, "
          f"{prof['instructions_per_second'] / 1e6:.2f} M instr/s, {prof['instructions_per_beat']:,.0f} instr/beat, "
          f"matches_host {prof['matches_host']} [{out['profile_s']} s]", flush=True)

    ag = out["c_vs_onnx_int8"]["same_label"]
    out["targets"] = {
        "agreement_vs_onnx_int8": {"target": TARGETS["agreement_vs_onnx_int8"], "value": ag,
                                   "met": bool(ag >= TARGETS["agreement_vs_onnx_int8"])},
        "flash": {"target_bytes": TARGETS["flash_bytes"], "value": prof["flash_bytes"],
                  "met": bool(prof["flash_bytes"] <= TARGETS["flash_bytes"])},
        "ram": {"target_bytes": TARGETS["ram_bytes"], "value": prof["ram_bytes"],
                "met": bool(prof["ram_bytes"] <= TARGETS["ram_bytes"])},
        "instructions_per_second": {"target": TARGETS["instructions_per_second"],
                                    "value": prof["instructions_per_second"],
                                    "met": bool(prof["instructions_per_second"] <= TARGETS["instructions_per_second"])},
        "matches_host": {"value": bool(prof["matches_host"]), "met": bool(prof["matches_host"])},
    }
    out["all_met"] = all(t["met"] for t in out["targets"].values())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundles", required=True, help="directory of trained ecg-<family>.bundle")
    ap.add_argument("--models", default="esn,lstm,tcn")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mitdb"))
    ap.add_argument("--record", default="208")
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--target", default="cortex-m4")
    ap.add_argument("--json", default=str(RESULTS / "c_targets.json"))
    args = ap.parse_args()

    import onnxruntime

    import edgeseq
    from edgeseq.data.mitdb import select_records
    from edgeseq.profile import mcu
    from edgeseq.profile.core import machine
    from edgeseq.tasks import ecg

    load = os.getloadavg()
    res: dict = {"command": " ".join(["python", *sys.argv]), "machine": machine(),
                 "versions": {"edgeseq": edgeseq.__version__, "onnxruntime": onnxruntime.__version__},
                 "toolchain": " ".join(mcu.toolchain()[-2:]),
                 "load_average_at_start": [round(x, 2) for x in load],
                 "other_processes_active": bool(load[0] > 1.0),
                 "targets": {"agreement_vs_onnx_int8": "C label = int8 ONNX label on >= 99.9% of all DS1 beats",
                             "flash": "<= 256 KiB (262,144 bytes): text + rodata + data of front end + model",
                             "ram": "<= 64 KiB (65,536 bytes): data + bss + measured stack high water",
                             "instructions_per_second": "<= 20 M instructions per second of ECG, front end + model",
                             "matches_host": "emulated beats and logits equal the host's bit for bit"},
                 "record": args.record, "seconds": args.seconds, "target": args.target, "models": {}}
    if load[0] > 1.0:
        print(f"load average {load[0]:.2f} at start: another process is active (no timing figure is a target here)")
    records = select_records(args.data)
    res["calibration_records"] = records
    beat_cache: dict = {}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeseq_c_targets_") as tmp:
        for kind in args.models.split(","):
            bundle = Path(args.bundles) / f"ecg-{kind}.bundle"
            _, prep, _ = ecg.load_model(bundle)
            key = json.dumps(prep.config(), sort_keys=True)
            if key not in beat_cache:
                beat_cache[key] = ecg.load_beats(args.data, records, prep, progress=False)
            res["models"][kind] = run_family(kind, bundle, beat_cache[key], args.data, records, args, Path(tmp))
            Path(args.json).write_text(json.dumps(res, indent=1) + "\n")  # what is done so far
    res["run_seconds"] = round(time.perf_counter() - t_all, 1)
    res["all_met"] = all(m["all_met"] for m in res["models"].values())
    Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    for kind, m in res["models"].items():
        print(f"{kind}: " + ", ".join(f"{k} {'met' if t['met'] else 'NOT met'}" for k, t in m["targets"].items()))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

"""The C ECG front end (firmware_bridge/src/edgeseq_ecg.c) against the Python stream on MIT-BIH DS1.

    python tools/bench/ecg_frontend_c.py [--data DIR] [--bundle B] [--records R ...] [--json FILE]

Per record: beats from ``EcgBeatStream`` and from the C front end, whether their R-peak indices
are identical, and the largest |window| and |rr| differences. The C takes float32 samples (the
device's type), so the Python is run twice: on those same float32 values (the parity of the two
implementations) and on the record's float64 samples as read (what the host stream sees).
The configuration is the bundle's (``--bundle``) or the default ECG preprocessing and detector,
compiled in through ``edgeseq.export.c_frontend``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from edgeseq.export.c_frontend import frontend_config, frontend_config_header  # noqa: E402
from edgeseq.preprocess.ecg import EcgPreprocessing  # noqa: E402
from edgeseq.preprocess.qrs import QRSDetector  # noqa: E402
from edgeseq.preprocess.stream import EcgBeatStream  # noqa: E402

DS1 = "101 106 108 109 112 114 115 116 118 119 122 124 201 203 205 207 208 209 215 220 223 230".split()
FW = ROOT / "firmware_bridge"
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2"]
INTERVAL = slice(0, 7)  # the RR columns: functions of the R-peak positions alone
TEMPLATE = slice(7, 9)  # template_corr, template_log_gain: of the windows


from qrs_ds1 import cpu_model  # noqa: E402 (one description of the machine for the bench tools)


def default_manifest(fs: float = 360.0) -> dict:
    """The sections a training bundle's manifest holds (``edgeseq.tasks.ecg.train``)."""
    prep = EcgPreprocessing(sample_rate=fs)
    return {"preprocessing": prep.config(), "detector": QRSDetector(prep.sample_rate).config()}


def build(workdir: Path, manifest: dict, cc: str = "cc") -> Path:
    """``ecg_run`` compiled with the strict flags against ``manifest``'s generated config."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    hdr = workdir / "edgeseq_ecg_config.h"
    hdr.write_text(frontend_config_header(manifest, source="tools/bench/ecg_frontend_c.py"))
    exe = workdir / "ecg_run"
    cmd = [cc, *CFLAGS, f'-DES_ECG_CONFIG_FILE="{hdr}"', f"-I{FW / 'src'}", str(FW / "tests" / "ecg_run.c"),
           str(FW / "src" / "edgeseq_ecg.c"), "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"compiling the C front end failed:\n{' '.join(cmd)}\n{r.stderr}")
    return exe


def run_c(exe: Path, x: np.ndarray, workdir: Path) -> tuple[np.ndarray, dict, float]:
    """Beats (structured: r, w, rr), the driver's counters and the C wall time in seconds."""
    src, dst = Path(workdir) / "samples.f32", Path(workdir) / "beats.bin"
    np.asarray(x, dtype="<f4").tofile(src)
    t0 = time.perf_counter()
    r = subprocess.run([str(exe), str(src), str(dst)], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise RuntimeError(f"ecg_run failed: {r.stderr.strip()}")
    info = {k: int(v) for k, v in (line.split() for line in r.stdout.splitlines())}
    dt = np.dtype([("r", "<u4"), ("w", "<f4", info["window"]), ("rr", "<f4", info["features"])])
    return np.fromfile(dst, dtype=dt), info, wall


def run_python(manifest: dict, x: np.ndarray, chunk: int = 65536) -> tuple[list, dict, float]:
    stream = EcgBeatStream(EcgPreprocessing.from_config(manifest["preprocessing"]),
                           QRSDetector.from_config(manifest["detector"]))
    t0 = time.perf_counter()
    beats = []
    for i in range(0, len(x), chunk):
        beats += stream.feed(x[i:i + chunk])
    beats += stream.flush()
    return beats, stream.counters(), time.perf_counter() - t0


def compare(py_beats: list, c_beats: np.ndarray) -> dict:
    """Beat counts, identical R peaks, and the largest differences when they are identical."""
    ok = [b for b in py_beats if b.ok]  # the C never returns a beat the model must not see
    r_py = np.array([b.r for b in ok], dtype=np.int64)
    r_c = c_beats["r"].astype(np.int64)
    same = len(r_py) == len(r_c) and bool(np.all(r_py == r_c))
    out = {"beats_python": len(r_py), "beats_c": len(r_c), "identical_positions": same,
           "not_ok_python": len(py_beats) - len(ok)}
    if same and len(ok):
        w = np.abs(np.array([b.window for b in ok], dtype=np.float64) - c_beats["w"])
        rr = np.abs(np.array([b.rr for b in ok], dtype=np.float64) - c_beats["rr"])
        out.update(max_window_diff=float(w.max()), windows_differing=int(np.count_nonzero(w.max(axis=1))),
                   max_rr_diff=float(rr.max()), max_interval_diff=float(rr[:, INTERVAL].max()),
                   max_template_diff=float(rr[:, TEMPLATE].max()),
                   max_rr_diff_by_feature=[float(v) for v in rr.max(axis=0)])
    else:
        sp, sc = set(r_py.tolist()), set(r_c.tolist())
        out.update(only_python=sorted(sp - sc)[:20], only_c=sorted(sc - sp)[:20])
    return out


def cc_version(cc: str) -> str:
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def main(argv=None) -> int:
    from edgeseq.data.mitdb import load_record

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mitdb")
    ap.add_argument("--bundle", type=Path, help="take the configuration from this bundle's manifest")
    ap.add_argument("--records", nargs="*", help="subset of DS1 (default: all present)")
    ap.add_argument("--json", type=Path, default=ROOT / "tools" / "bench" / "results" / "ecg_frontend_c.json")
    ap.add_argument("--cc", default="cc")
    args = ap.parse_args(argv)

    manifest = (json.loads((args.bundle / "manifest.json").read_text()) if args.bundle else default_manifest())
    recs = [r for r in (args.records or DS1) if (args.data / f"{r}.hea").exists()]
    if not recs:
        print(f"no DS1 records found in {args.data}", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        exe = build(Path(tmp), manifest, args.cc)
        print(f"{'rec':>4} {'beats py':>8} {'beats C':>7} {'same r':>6} {'|dwin|':>9} {'|drr|':>9}"
              f" | float64 input: {'same r':>6} {'|dwin|':>9} {'|drr|':>9}")
        for rec in recs:
            x = load_record(args.data, rec, fs=float(manifest["preprocessing"]["sample_rate"])).signal
            x32 = x.astype(np.float32)
            c_beats, info, c_wall = run_c(exe, x32, Path(tmp))
            py32, counters, py_wall = run_python(manifest, x32.astype(np.float64))
            py64, _, _ = run_python(manifest, x)
            same = compare(py32, c_beats)
            f64 = compare(py64, c_beats)
            same.update(record=rec, samples=len(x), beats_detected_python=counters["beats_detected"],
                        beats_detected_c=info["beats_detected"], c_wall_s=c_wall, python_wall_s=py_wall,
                        float64_input=f64)
            rows.append(same)

            def cols(d):
                if not d["identical_positions"]:
                    return f"{'no':>6} {'-':>9} {'-':>9}"
                return f"{'yes':>6} {d['max_window_diff']:>9.2g} {d['max_rr_diff']:>9.2g}"

            print(f"{rec:>4} {same['beats_python']:>8} {same['beats_c']:>7} {cols(same)} |                "
                  f"{cols(f64)}")
    n_same = sum(r["identical_positions"] for r in rows)
    n_same64 = sum(r["float64_input"]["identical_positions"] for r in rows)
    agg = lambda key, rs: max((r[key] for r in rs if r["identical_positions"]), default=None)  # noqa: E731
    f64rows = [r["float64_input"] for r in rows]
    summary = {
        "records": len(rows), "identical_positions": n_same, "identical_positions_float64_input": n_same64,
        "beats": sum(r["beats_c"] for r in rows),
        "max_window_diff": agg("max_window_diff", rows), "max_interval_diff": agg("max_interval_diff", rows),
        "max_template_diff": agg("max_template_diff", rows),
        "float64_input": {"max_window_diff": agg("max_window_diff", f64rows),
                          "max_interval_diff": agg("max_interval_diff", f64rows),
                          "max_template_diff": agg("max_template_diff", f64rows)},
        "c_s_per_hour_of_ecg": 3600 * sum(r["c_wall_s"] for r in rows)
        / (sum(r["samples"] for r in rows) / float(manifest["preprocessing"]["sample_rate"])),
        "state_bytes": info["state_bytes"],
    }
    print(f"identical R peaks: {n_same}/{len(rows)} records (same float32 input), {n_same64}/{len(rows)} "
          f"(Python on the float64 samples); {summary['beats']} beats")
    print(f"max |window diff| {summary['max_window_diff']:.3g}, max |interval feature diff| "
          f"{summary['max_interval_diff']:.3g}, max |template feature diff| {summary['max_template_diff']:.3g}; "
          f"C state {summary['state_bytes']} bytes")
    out = {
        "command": "python tools/bench/ecg_frontend_c.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "summary": summary,
        "records": rows,
        "config": {k: v for k, v in frontend_config(manifest).items() if k not in ("sos", "det_sos")},
        "machine": dict(processor=platform.processor() or cpu_model(), platform=platform.platform(),
                        python=platform.python_version(), numpy=np.__version__, cpu_count=os.cpu_count(),
                        cc=cc_version(args.cc), cflags=" ".join(CFLAGS)),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

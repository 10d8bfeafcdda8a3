"""Beat-detection benchmark of the streaming QRS detector on the MIT-BIH DS1 records.

    python tools/bench/qrs_ds1.py [--data DIR] [--chunk N] [--json FILE]

Scoring follows ANSI/AAMI EC57: one-to-one matching within +-150 ms against the AAMI beat
annotations; ventricular flutter/fibrillation episodes ('[' .. ']', record 207) are excluded;
paced records (102 104 107 217) are not part of DS1 and are never scored.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edgeseq.preprocess.qrs import BEAT_SYMBOLS, QRSDetector, score, vf_episodes  # noqa: E402

DS1 = "101 106 108 109 112 114 115 116 118 119 122 124 201 203 205 207 208 209 215 220 223 230".split()
PACED = {"102", "104", "107", "217"}


def load(data: Path, rec: str):
    import wfdb

    sig = wfdb.rdrecord(str(data / rec))
    # Lead 0 is MLII in every DS1 record but 114, where the leads are swapped.
    lead = sig.sig_name.index("MLII") if "MLII" in sig.sig_name else 0
    ann = wfdb.rdann(str(data / rec), "atr")
    sym = np.array(ann.symbol)
    ref = ann.sample[np.isin(sym, list(BEAT_SYMBOLS))]
    return sig.p_signal[:, lead], float(sig.fs), ref, vf_episodes(ann.symbol, ann.sample), sig.sig_name[lead]


def cpu_model() -> str:
    # platform.processor() is empty on most Linux systems.
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def run_record(x, fs, chunk, **params):
    det = QRSDetector(fs, **params)
    parts = [det.process(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    parts.append(det.flush())
    return np.concatenate(parts), det


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mitdb")
    ap.add_argument("--chunk", type=int, default=65536, help="samples per process() call")
    ap.add_argument("--json", type=Path, help="write results here")
    ap.add_argument("--records", nargs="*", help="subset of DS1 (default: all present)")
    args = ap.parse_args(argv)

    recs = [r for r in (args.records or DS1) if r not in PACED and (args.data / f"{r}.hea").exists()]
    if not recs:
        print(f"no DS1 records found in {args.data}", file=sys.stderr)
        return 2
    rows, tot, wall, delay_ms = [], dict(n_ref=0, tp=0, fn=0, fp=0), 0.0, None
    print(f"{'rec':>4} {'n_ref':>6} {'TP':>6} {'FN':>5} {'FP':>5} {'Se%':>7} {'+P%':>7} {'VF':>3} lead")
    for rec in recs:
        x, fs, ref, vf, lead = load(args.data, rec)
        t0 = time.perf_counter()
        det, d = run_record(x, fs, args.chunk)
        wall += time.perf_counter() - t0
        delay_ms = 1000 * d.delay_samples / fs
        s = score(ref, det, fs, exclude=vf)
        n_ref = s["tp"] + s["fn"]
        rows.append(dict(record=rec, lead=lead, n_ref=n_ref, excluded_intervals=vf, **s))
        for k in ("tp", "fn", "fp"):
            tot[k] += s[k]
        tot["n_ref"] += n_ref
        print(f"{rec:>4} {n_ref:>6} {s['tp']:>6} {s['fn']:>5} {s['fp']:>5} "
              f"{100 * s['se']:>7.2f} {100 * s['ppv']:>7.2f} {len(vf):>3} {lead}")
    se = tot["tp"] / (tot["tp"] + tot["fn"])
    ppv = tot["tp"] / (tot["tp"] + tot["fp"])
    print(f"{'all':>4} {tot['n_ref']:>6} {tot['tp']:>6} {tot['fn']:>5} {tot['fp']:>5} "
          f"{100 * se:>7.2f} {100 * ppv:>7.2f}")
    print(f"pooled Se {100 * se:.2f}%  +P {100 * ppv:.2f}%  (150 ms window; VF episodes "
          f"'['..']' excluded per ANSI/AAMI EC57; paced records not scored)")
    print(f"delay {delay_ms:.0f} ms; detector wall time {wall:.2f} s for {len(recs)} records "
          f"(chunk {args.chunk})")
    if args.json:
        out = dict(
            records=rows,
            pooled=dict(tot, se=se, ppv=ppv),
            delay_ms=delay_ms,
            wall_s=wall,
            chunk=args.chunk,
            window_s=0.150,
            exclusion="ventricular flutter/fibrillation episodes ('[' .. ']') excluded (ANSI/AAMI EC57)",
            params=QRSDetector(360.0).config(),
            machine=dict(
                processor=platform.processor() or cpu_model(),
                platform=platform.platform(),
                python=platform.python_version(),
                numpy=np.__version__,
                cpu_count=os.cpu_count(),
            ),
        )
        args.json.write_text(json.dumps(out, indent=2, default=int))
    return 0


if __name__ == "__main__":
    sys.exit(main())

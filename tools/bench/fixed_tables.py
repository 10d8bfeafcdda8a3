"""Error of the fixed-point form's function tables (edgeseq/graph/fixed.py, printed into every int8
C bundle): tanh and sigmoid from one Q15 table with linear interpolation, log from a log2 mantissa
table. Every Q16 input magnitude up to 9 for tanh/sigmoid; every integer below 2**16 and 200,000
log-spaced ones up to 2**31 for log.

    python tools/bench/fixed_tables.py [--json tools/bench/results/fixed_tables.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edgeseq.graph import fixed as fx  # noqa: E402


def measure() -> dict:
    z = np.arange(0, 9 << 16, dtype=np.int64)
    t = fx._tanh_q(z) / 32768.0
    true = np.tanh(z / 65536.0)
    sig = (32768 + fx._tanh_q(z // 2)) / 65536.0  # sigmoid(x) = (1 + tanh(x / 2)) / 2
    x = np.unique(np.concatenate([np.arange(1, 1 << 16),
                                  np.exp(np.linspace(np.log(65536), np.log(2 ** 31 - 1), 200_000)).astype(np.int64)]))
    l2 = fx._log2_q24(x) / 2 ** 24
    return {
        "tanh_max_abs_error": float(np.abs(t - true).max()),
        "tanh_table": {"entries": int(len(fx.TANH_TABLE)), "step": 2.0 ** -fx.TANH_BITS, "range": fx.TANH_MAX,
                       "output": "Q15", "bytes": int(2 * len(fx.TANH_TABLE))},
        "sigmoid_max_abs_error": float(np.abs(sig - 1 / (1 + np.exp(-z / 65536.0))).max()),
        "ln_max_abs_error": float(np.abs(l2 - np.log2(x)).max() * np.log(2)),
        "log2_table": {"entries": int(len(fx.LOG2_TABLE)), "output": "Q24", "bytes": int(4 * len(fx.LOG2_TABLE))},
        "command": "python tools/bench/fixed_tables.py --json tools/bench/results/fixed_tables.json",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    res = measure()
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

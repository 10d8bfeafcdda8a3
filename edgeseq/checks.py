"""The one validator of option values: command-line numbers and ``--param`` hyper-parameters.

Decision: a value is checked where it enters, against a declared range, and refused with one
line naming the option, the rule and the value; nothing downstream clamps it silently or trips on
a NaN. ``Range`` is used as an argparse ``type=`` and, through ``check_params``, for the
hyper-parameters each model family declares (``PARAMS`` beside the family's ``__init__``).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

from .errors import EdgeseqError


@dataclass(frozen=True)
class Range:
    """A real (or integer) number in ``[lo, hi]``; ``lo_open``/``hi_open`` exclude the bound."""

    lo: float | None = None
    hi: float | None = None
    integer: bool = False
    lo_open: bool = False
    hi_open: bool = False

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        def num(v):  # 4294967295, not 4.29497e+09: the bound a user must type
            return str(int(v)) if self.integer or float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"

        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {num(self.lo)}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {num(self.hi)}")
        return kind + (" " + " and ".join(parts) if parts else "")

    def parse(self, value):
        """``value`` (a string or a JSON value) as int/float inside the range, or ``ValueError``
        with the rule."""
        if isinstance(value, bool):
            raise ValueError(f"must be {self.describe()}")
        if isinstance(value, str):
            text = value.strip()
            try:
                v = int(text) if self.integer else float(text)
            except ValueError:
                try:  # "1e3" for an integer option
                    f = float(text)
                except ValueError:
                    raise ValueError(f"must be {self.describe()}") from None
                if not (self.integer and math.isfinite(f) and f == int(f)):
                    raise ValueError(f"must be {self.describe()}") from None
                v = int(f)
        elif isinstance(value, (int, float)):
            v = value
        else:
            raise ValueError(f"must be {self.describe()}")
        if self.integer:
            if isinstance(v, float):
                if not (math.isfinite(v) and v == int(v)):
                    raise ValueError(f"must be {self.describe()}")
                v = int(v)
        else:
            v = float(v)
            if not math.isfinite(v):
                raise ValueError(f"must be {self.describe()}")
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            raise ValueError(f"must be {self.describe()}")
        if self.hi is not None and (v > self.hi or (self.hi_open and v == self.hi)):
            raise ValueError(f"must be {self.describe()}")
        return v

    def __call__(self, text: str):  # argparse ``type=``
        try:
            return self.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc}, got {text!r}") from None


#: Common option ranges.
POSITIVE = Range(0, None, lo_open=True)
POSITIVE_INT = Range(1, None, integer=True)
SEED = Range(0, 2**32 - 1, integer=True)


def check_params(params: dict, spec: dict, family: str) -> dict:
    """``--param`` values checked against a family's declared ``spec`` (name -> ``Range``, or a
    tuple of allowed values); an unknown name or a value outside its range is one line."""
    out = {}
    for key, value in params.items():
        if key not in spec:
            raise EdgeseqError(f"--param {key}: not a hyper-parameter of {family} "
                               f"(known: {', '.join(sorted(spec))})")
        rule = spec[key]
        if isinstance(rule, Range):
            try:
                out[key] = rule.parse(value)
            except ValueError as exc:
                raise EdgeseqError(f"--param {key}={value!r}: {exc}") from None
        elif value in rule:
            out[key] = value
        else:
            raise EdgeseqError(f"--param {key}={value!r}: must be one of {', '.join(map(str, rule))}")
    return out


class Parser(argparse.ArgumentParser):
    """argparse with the project's error contract: one line on stderr, exit status 2 (argparse
    would print the whole usage first, burying the one line that says what is wrong)."""

    def error(self, message: str):
        # "edgeseq: error: ...", like errors found after parsing: one prefix for scripts to match.
        print(f"{self.prog.split()[0]}: error: {message}", file=sys.stderr)
        raise SystemExit(2)

"""The one non-finite policy: a NaN or an infinity never becomes a label, a weight or a figure.

Decision: non-finite *inputs to training* (data, states, fitted weights) are the user's problem and
end in one line (``require_finite``); a non-finite *logit at inference* is a fault of that one beat
or window, so it is left unlabelled and counted (``decide``), never turned into ``argmax`` of NaN,
which numpy answers with index 0 -- "N", a normal beat. Device-side: numpy only.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import EdgeseqError

#: The label index ``decide`` gives a row whose logits are not all finite.
UNLABELLED = -1


def require_finite(x, what: str) -> np.ndarray:
    """``x`` as an array when every value is finite, else one line naming ``what`` and the first bad index."""
    a = np.asarray(x)
    if a.dtype.kind in "fc":
        bad = ~np.isfinite(a)
        if bad.any():
            where = np.unravel_index(int(np.argmax(bad)), a.shape) if a.ndim else ()
            at = f" at index {tuple(int(i) for i in where)}" if a.ndim else ""
            raise EdgeseqError(f"{what} holds NaN or infinite values ({int(bad.sum())} of {a.size}){at}")
    return a


def finite_number(value, what: str) -> float:
    """``value`` as a float when it is a finite real number, else one line naming ``what``."""
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        raise EdgeseqError(f"{what} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(v):
        raise EdgeseqError(f"{what} must be a finite number, got {value!r}")
    return v


def finite_rows(z: np.ndarray) -> np.ndarray:
    """Mask of the rows of ``z`` (B, K) whose values are all finite."""
    z = np.asarray(z)
    return np.isfinite(z).all(axis=tuple(range(1, z.ndim))) if z.ndim > 1 else np.isfinite(z)


def decide(logits) -> tuple[np.ndarray, np.ndarray]:
    """Class index and softmax probabilities per row of ``logits`` (B, K); a row with any NaN or
    infinity gets index ``UNLABELLED`` and NaN probabilities, so callers must count it, not label it."""
    z = np.asarray(logits, dtype=np.float64)
    ok = finite_rows(z)
    k = np.full(len(z), UNLABELLED, dtype=np.int64)
    p = np.full(z.shape, np.nan)
    if ok.any():
        zz = z[ok] - z[ok].max(axis=1, keepdims=True)
        e = np.exp(zz)
        p[ok] = e / e.sum(axis=1, keepdims=True)
        k[ok] = np.argmax(z[ok], axis=1)
    return k, p

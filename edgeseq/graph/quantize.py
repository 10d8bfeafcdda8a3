"""Where precision is decided: one pass from a float description to its integer form, which the
ONNX and TFLite lowerings and the numpy interpreter all run, so the three agree at int8 as at float.

- Weights (constants a description marks ``weight_axis``): int8, symmetric, one scale per output
  channel. One scale for the whole matrix spent the 8 bits on its largest column: on the DS1 ESN
  it changed 89 labels where per-channel changed 71.
- Activations: only where the description put a ``q`` node, at its width. A scale fixed there
  (a bounded tensor such as a leaky tanh state) is used as is; otherwise calibration runs the
  float description on real inputs: int16 takes the largest value seen (no clipping, still a fine
  grid), int8 the 99.99% quantile of |value|, since the largest of a heavy tail would leave the
  bulk a few steps (all-int8 at max range moved 302 DS1 labels of the LSTM).
- Biases and everything unmarked stay float32.
"""

from __future__ import annotations

import copy

import numpy as np

from . import Graph, Weight
from .numpy import run

INT8_QUANTILE = 0.9999
_KEEP = 1 << 20  # values kept per tensor for the quantile


def weight(w: np.ndarray, axis: int) -> Weight:
    """Symmetric int8 with one scale per index of ``axis``."""
    w = np.asarray(w, np.float32)
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    amax = np.abs(moved).max(axis=1)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return Weight(q, scale, axis)


def _q_nodes(g: Graph):
    return [n for n in g.walk() if n.op == "q"]


def calibrate(g: Graph, batches, progress=None) -> dict:
    """``{q tensor: (max |x|, quantile |x|)}`` over ``batches`` (an iterable of feed dicts), for
    the ``q`` nodes whose scale the description left open. ``progress(done)`` after each batch."""
    open_ = {n.outputs[0] for n in _q_nodes(g) if n.attrs["fixed"] is None}
    top = {k: 0.0 for k in open_}
    kept: dict = {k: [] for k in open_}

    def observe(name, v):
        if name in open_:
            a = np.abs(v).ravel()
            top[name] = max(top[name], float(a.max(initial=0.0)))
            kept[name].append(a[::max(1, a.size // 65536)])
            if sum(map(len, kept[name])) > 4 * _KEEP:  # a long loop: thin what is kept, evenly
                kept[name] = [np.concatenate(kept[name])[::2]]

    for i, feeds in enumerate(batches):
        run(g, feeds, observe=observe)
        if progress:
            progress(i + 1)
    out = {}
    for k in open_:
        vals = np.concatenate(kept[k]) if kept[k] else np.zeros(1)
        vals = vals[::max(1, len(vals) // _KEEP)]
        out[k] = (top[k], float(np.quantile(vals, INT8_QUANTILE)))
    return out


def quantize(g: Graph, ranges: dict | None = None, scales: dict | None = None) -> Graph:
    """The integer form of ``g``: weights as :class:`Weight`, every ``q`` node's scale set from
    its ``ranges`` (``calibrate``), or given in ``scales`` (``{tensor: scale}``, as a manifest's
    ``plan`` records them)."""
    q = copy.deepcopy(g)
    for name, axis in q.weights.items():
        q.consts[name] = weight(q.consts[name], axis)
    for n in _q_nodes(q):
        bits, fixed = n.attrs["bits"], n.attrs["fixed"]
        if scales and n.outputs[0] in scales:
            fixed = scales[n.outputs[0]]
        elif fixed is None:
            top, quant = ranges[n.outputs[0]]
            fixed = max(top if bits == 16 else quant, 1e-6) / (2 ** (bits - 1) - 1)
        n.attrs["scale"] = float(fixed)
    return q


def plan(g: Graph) -> dict:
    """What an integer ``g`` stores at which width, for the manifest: weights and activations."""
    return {"weights": {k: "int8 per-channel" for k in g.weights},
            "activations": {n.outputs[0]: {"bits": n.attrs["bits"], "scale": n.attrs["scale"]}
                            for n in _q_nodes(g)}}

"""Exported LSTM and TCN bundles: the same ``classify`` / ``logits`` as the ESN, and a step form
with named states.

The manifest's ``runtime`` section says what the step graph takes::

    "step_inputs":  {"u": [B, D], <state>: [B, ...], ...}         float32
    "step_outputs": {"out": [B, H], <state>_out: [B, ...], ...}
    "state": [<state>, ...]                       LSTM: h0, c0, h1, c1 ...; TCN: buf0, buf1 ...
    "step_counter": {"name": "pos", "modulo": M}  TCN only: the ring buffers' write position,
                                                  an int32 [1] input, t mod M

``step(u)`` feeds one sample per window of the batch and returns the top layer's output; the
model keeps the state (``reset()`` zeroes it). Pool ``last`` and ``mean`` of those outputs over
a window and call ``readout(last, mean, rr)``: the same logits as ``classify`` on the window.
"""

from __future__ import annotations

import numpy as np

from ..errors import EdgeseqError
from . import Model, _check


class NeuralModel(Model):
    def _init_step(self, rt: dict) -> None:
        self._states = list(rt.get("state", []))
        st = rt.get("step_inputs", {})
        self._D = int(st["u"]["shape"][1]) if "u" in st else None
        self._state_shapes = {k: [int(n) for n in st[k]["shape"][1:]] for k in self._states}
        counter = rt.get("step_counter")
        self._counter = (counter["name"], int(counter["modulo"])) if counter else None
        self.state: dict | None = None
        self._t = 0
        self._head = None  # the numpy model, built on the first readout

    def reset(self) -> None:
        self.state = None
        self._t = 0

    def initial_state(self, batch: int) -> dict:
        return {k: np.zeros((batch, *shape), np.float32) for k, shape in self._state_shapes.items()}

    def step(self, u, state: dict | None = None, t: int | None = None) -> np.ndarray:
        """One sample ``u`` ``[B, D]`` for each of ``B`` streams -> the top layer's output ``[B, H]``.
        From ``state`` (a dict as :meth:`initial_state` gives) at step ``t`` (a TCN's ring position;
        default: the model's own count), else from the model's own state; a new batch size starts
        from zero state at step 0."""
        if self._D is None:
            raise EdgeseqError(f"bundle {self.path} has no step model")
        u = _check("u", u, (None, self._D))
        if state is None:
            state = self.state
            if state is None or len(state[self._states[0]]) != len(u):
                state, self._t = self.initial_state(len(u)), 0
        feeds = {"u": u}
        for k in self._states:
            feeds[k] = _check(k, state[k], (len(u), *self._state_shapes[k]))
        t = self._t if t is None else int(t)
        if self._counter:
            name, modulo = self._counter
            feeds[name] = np.array([t % modulo], np.int32)
        outs = self._backend.run_step(feeds)
        self.state = {k: outs[k + "_out"] for k in self._states}
        self._t = t + 1
        return outs["out"]

    def readout(self, last, mean, rr) -> np.ndarray:
        """Logits from the pooled step outputs (last and mean over the window) and the window's rr
        features: the numpy model's own head on the bundle's float weights."""
        if "head_W1" not in self._arrays:
            raise EdgeseqError(f"bundle {self.path} carries no head weights")
        if self._head is None:
            from ..models import model_class

            m = self.manifest["model"]
            self._head = model_class(m["kind"]).from_arrays(m["params"], self._arrays)
        H = self._head.hidden_size
        last = _check("last", last, (None, H))
        mean = _check("mean", mean, (len(last), H))
        return self._head.readout(last, mean, _check("rr", rr, (len(last), self._F)))

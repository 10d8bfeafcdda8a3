"""Causal IIR filtering that runs on the device with numpy only.

Coefficients are designed on the host (``design_bandpass`` imports scipy lazily) and shipped as
plain numbers; ``SOSFilter`` needs nothing but numpy to apply them, chunk by chunk, with state.

Speed comes from a block state-space formulation instead of a per-sample loop: the SOS cascade is
merged into one state space (A, B, C, D) and the signal is cut into blocks of ``L`` samples. For a
block with start state z and inputs x,

    y  = O z + T x          O: rows C A^k,  T: lower-triangular Toeplitz of the impulse response
    z' = A^L z + K x        K: columns A^(L-1-j) B

so all outputs of all full blocks of a chunk come from one matrix product, after a short
sequential pass (one small mat-vec per block) for the block start states. The result is the
exact IIR response (not an FIR truncation); it matches ``scipy.signal.sosfilt`` to rounding.
"""

from __future__ import annotations

import numpy as np

from edgeseq.errors import EdgeseqError

__all__ = ["design_bandpass", "SOSFilter", "sosfilt"]


def design_bandpass(fs: float, low_hz: float, high_hz: float, order: int = 2) -> np.ndarray:
    """Butterworth band-pass as second-order sections, shape (n_sections, 6). Host only (scipy)."""
    from scipy.signal import butter  # lazy: the device never designs filters

    if not 0 < low_hz < high_hz < fs / 2:
        raise EdgeseqError(
            f"band-pass edges must satisfy 0 < low < high < fs/2, got {low_hz}, {high_hz} at fs={fs}"
        )
    return butter(order, [low_hz, high_hz], btype="bandpass", fs=fs, output="sos")


def _as_sos(sos) -> np.ndarray:
    sos = np.array(sos, dtype=np.float64)
    if sos.ndim != 2 or sos.shape[1] != 6 or sos.shape[0] == 0:
        raise EdgeseqError(f"sos must have shape (n_sections, 6), got {sos.shape}")
    if not np.all(np.isfinite(sos)):
        raise EdgeseqError("sos coefficients must be finite")
    if np.any(sos[:, 3] == 0):
        raise EdgeseqError("sos has a section with a0 == 0")
    return sos / sos[:, 3:4]


def _state_space(sos: np.ndarray):
    """Series composition of the sections' transposed direct-form-II state spaces."""
    A = np.zeros((0, 0))
    B = np.zeros(0)
    C = np.zeros(0)
    D = 1.0
    for b0, b1, b2, _, a1, a2 in sos:
        Ai = np.array([[-a1, 1.0], [-a2, 0.0]])
        Bi = np.array([b1 - a1 * b0, b2 - a2 * b0])
        Ci = np.array([1.0, 0.0])
        n = A.shape[0]
        # Section i is driven by the output y = C z + D u of everything before it.
        A = np.block([[A, np.zeros((n, 2))], [np.outer(Bi, C), Ai]])
        B = np.concatenate([B, Bi * D])
        C = np.concatenate([b0 * C, Ci])
        D = b0 * D
    return A, B, C, D


class SOSFilter:
    """Streaming causal IIR filter over an SOS cascade; numpy only.

    ``process(chunk)`` accepts any length (including 0) and keeps state between calls, so the
    concatenated outputs equal one pass over the concatenated inputs (to rounding).
    """

    def __init__(self, sos, block: int = 256):
        self.sos = _as_sos(sos)
        self.block = max(1, int(block))
        A, B, C, D = _state_space(self.sos)
        n, L = A.shape[0], self.block
        powers = [np.eye(n)]
        for _ in range(L):
            powers.append(powers[-1] @ A)
        self._powers = np.array(powers)  # A^0 .. A^L
        self._O = np.array([C @ P for P in powers[:L]])  # (L, n)
        h = np.concatenate([[D], [C @ P @ B for P in powers[: L - 1]]])
        idx = np.arange(L)
        lag = idx[:, None] - idx[None, :]
        self._T = np.where(lag >= 0, h[np.clip(lag, 0, None)], 0.0)  # (L, L)
        self._K = np.array([powers[L - 1 - j] @ B for j in range(L)]).T  # (n, L)
        self._AL = powers[L]
        self._A, self._B = A, B
        self._z = np.zeros(n)

    @property
    def n_states(self) -> int:
        return self._z.shape[0]

    def state_is_finite(self) -> bool:
        return bool(np.isfinite(self._z).all())

    def reset(self, x0: float = 0.0) -> None:
        """Zero state, or the steady state for a constant input ``x0`` (avoids a start-up step)."""
        z = np.zeros_like(self._z)
        if x0:
            try:
                z = np.linalg.solve(np.eye(len(z)) - self._A, self._B) * float(x0)
            except np.linalg.LinAlgError:  # a pole at z=1 has no steady state; start from zero
                pass
        self._z = z

    def process(self, chunk) -> np.ndarray:
        x = np.asarray(chunk, dtype=np.float64)
        if x.ndim != 1:
            raise EdgeseqError(f"SOSFilter.process expects a 1-D chunk, got shape {x.shape}")
        L, N = self.block, x.shape[0]
        nb, r = divmod(N, L)
        y = np.empty(N)
        z = self._z
        if nb:
            X = x[: nb * L].reshape(nb, L)
            KX = X @ self._K.T  # state increments of every block, one product
            Z = np.empty((nb, z.shape[0]))
            for k in range(nb):
                Z[k] = z
                z = self._AL @ z + KX[k]
            y[: nb * L] = (Z @ self._O.T + X @ self._T.T).ravel()
        if r:
            xt = x[nb * L :]
            y[nb * L :] = self._O[:r] @ z + self._T[:r, :r] @ xt
            z = self._powers[r] @ z + self._K[:, L - r :] @ xt
        self._z = z
        return y


def sosfilt(sos, x) -> np.ndarray:
    """One-shot causal filtering from zero state (numpy only)."""
    return SOSFilter(sos).process(x)

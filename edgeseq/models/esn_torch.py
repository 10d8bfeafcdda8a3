"""The ESN's batched state computation in PyTorch, for large reservoirs on a GPU (host only).

Same arithmetic as :func:`edgeseq.models.esn.batched_states`: one ``[x, u, c, 1] @ [W; Win; bias]``
product per time step for a batch of sequences, then the leaky tanh update, in float32. TF32 is
switched off for these products: the states must equal the CPU path within float32 tolerance,
and TF32's 10-bit mantissa does not (a 5,000-unit reservoir sums 5,000 products per unit).
"""

from __future__ import annotations

import numpy as np

from .torch_fit import _torch


def batched_states_torch(U: np.ndarray, W: np.ndarray, Win: np.ndarray, bias: np.ndarray, lr: float, *,
                         const: np.ndarray | None = None, device="cuda", batch_size: int = 8192,
                         progress=None) -> tuple[np.ndarray, np.ndarray]:
    """``(last, mean)`` states ``(B, N)`` float32, computed on ``device``."""
    torch = _torch()
    U = np.asarray(U, np.float32)
    if U.ndim == 2:
        U = U[:, :, None]
    B, T, D = U.shape
    N = W.shape[0]
    K = 0 if const is None else np.shape(const)[1]
    if Win.shape != (N, D + K):
        raise ValueError(f"Win has shape {Win.shape}, expected {(N, D + K)}")
    dev = torch.device(device)
    old_tf32 = torch.backends.cuda.matmul.allow_tf32 if dev.type == "cuda" else None
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    try:
        WA = torch.from_numpy(np.concatenate([np.asarray(W, np.float64).T, np.asarray(Win, np.float64).T,
                                              np.asarray(bias, np.float64).reshape(1, N)]).astype(np.float32)).to(dev)
        last = np.empty((B, N), np.float32)
        mean = np.empty((B, N), np.float32)
        with torch.no_grad():
            for start in range(0, B, batch_size):
                n = min(batch_size, B - start)
                u = torch.from_numpy(np.ascontiguousarray(U[start:start + n])).to(dev)
                XA = torch.zeros((n, N + D + K + 1), dtype=torch.float32, device=dev)
                if K:
                    XA[:, N + D:N + D + K] = torch.from_numpy(np.asarray(const[start:start + n], np.float32)).to(dev)
                XA[:, -1] = 1
                x = XA[:, :N]
                acc = torch.zeros((n, N), dtype=torch.float32, device=dev)
                for t in range(T):
                    XA[:, N:N + D] = u[:, t]
                    h = torch.tanh(XA @ WA)
                    h -= x
                    h *= lr
                    x += h
                    acc += x
                last[start:start + n] = x.cpu().numpy()
                mean[start:start + n] = (acc / T).cpu().numpy()
                if progress:
                    progress(start + n, B)
    finally:
        if old_tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32 = old_tf32
    return last, mean

"""Training of the neural window models in PyTorch (host only: nothing on the device path imports
this module). The torch modules compute exactly what the families' descriptions (``describe`` in
``lstm.py`` and ``tcn.py``) state; after training their weights become the model's ``_`` arrays.

Device selection (``resolve_device``): ``cpu``, ``cuda`` (falls back to the CPU with one line on
stderr when torch sees no GPU) or ``auto``. On CUDA, mixed precision (bf16 autocast where the GPU
has it, else fp16 with a gradient scaler) unless ``amp=False``. Runs are deterministic for a seed
on the CPU; on a GPU cuDNN is asked for deterministic kernels too.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from ..errors import EdgeseqError, install_hint

DEVICES = ("cpu", "cuda", "auto")


def _torch():
    try:
        import torch
    except ImportError:
        raise EdgeseqError(f"training LSTM and TCN models needs PyTorch (torch==2.13.0): "
                           f"{install_hint('torch')}") from None
    return torch


def resolve_device(device: str, *, warn=True):
    """``(torch.device, note)``. A GPU asked for but absent is not an error: training goes on on
    the CPU and ``note`` (also printed on stderr) says so."""
    torch = _torch()
    if device not in DEVICES:
        raise EdgeseqError(f"--device must be one of {', '.join(DEVICES)}, not {device!r}")
    if device == "cpu":
        return torch.device("cpu"), ""
    if torch.cuda.is_available():
        return torch.device("cuda"), ""
    if device == "auto":
        return torch.device("cpu"), ""
    why = ("this torch build has no CUDA support" if torch.version.cuda is None
           else "torch finds no CUDA GPU (driver or device missing)")
    note = f"--device cuda: {why} (torch {torch.__version__}); training on the CPU instead"
    if warn:
        print(f"edgeseq: {note}", file=sys.stderr, flush=True)
    return torch.device("cpu"), note


def _modules():
    torch = _torch()
    nn = torch.nn
    F = nn.functional

    class Head(nn.Module):
        def __init__(self, hidden, side, head, outputs):
            super().__init__()
            self.fc1 = nn.Linear(2 * hidden + side, head)
            self.fc2 = nn.Linear(head, outputs)

        def forward(self, h, z):
            f = torch.cat([h[:, -1], h.mean(dim=1), z], dim=1)
            return self.fc2(F.relu(self.fc1(f)))

    class LSTMNet(nn.Module):
        def __init__(self, inputs, side, outputs, hp):
            super().__init__()
            self.lstm = nn.LSTM(inputs, hp["hidden"], hp["layers"], batch_first=True)
            self.head = Head(hp["hidden"], side, hp["head"], outputs)

        def forward(self, x, z):
            return self.head(self.lstm(x)[0], z)

        def arrays(self):
            out = {}
            for l in range(self.lstm.num_layers):
                g = lambda n: getattr(self.lstm, f"{n}_l{l}").detach().float().cpu().numpy()  # noqa: E731
                out[f"lstm_Wih{l}"] = g("weight_ih")
                out[f"lstm_Whh{l}"] = g("weight_hh")
                out[f"lstm_b{l}"] = g("bias_ih") + g("bias_hh")
            return out

    class TCNNet(nn.Module):
        def __init__(self, inputs, side, outputs, hp):
            super().__init__()
            C, K = hp["channels"], hp["kernel"]
            self.K = K
            self.convs = nn.ModuleList(
                nn.Conv1d(inputs if l == 0 else C, C, K, dilation=2 ** l) for l in range(hp["blocks"]))
            self.proj = nn.Conv1d(inputs, C, 1) if inputs != C else None
            self.head = Head(C, side, hp["head"], outputs)

        def forward(self, x, z):
            h = x.transpose(1, 2)  # (B, C, T)
            for l, conv in enumerate(self.convs):
                y = F.relu(conv(F.pad(h, ((self.K - 1) * conv.dilation[0], 0))))
                h = y + (self.proj(h) if l == 0 and self.proj is not None else h)
            return self.head(h.transpose(1, 2), z)

        def arrays(self):
            out = {}
            for l, conv in enumerate(self.convs):
                out[f"tcn_W{l}"] = conv.weight.detach().float().cpu().numpy()
                out[f"tcn_b{l}"] = conv.bias.detach().float().cpu().numpy()
            if self.proj is not None:
                out["tcn_P"] = self.proj.weight.detach().float().cpu().numpy()[:, :, 0]
                out["tcn_pb"] = self.proj.bias.detach().float().cpu().numpy()
            return out

    return {"lstm": LSTMNet, "tcn": TCNNet}


def robust_scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and 1 / (IQR / 1.349) per column: RR intervals in seconds have rare huge values
    (a 100 s signal gap) that would inflate a standard deviation."""
    if x.shape[1] == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    med = np.median(x, axis=0)
    q1, q3 = np.percentile(x, [25, 75], axis=0)
    sd = (q3 - q1) / 1.349
    sd = np.where(sd > 1e-6, sd, np.maximum(x.std(axis=0), 1e-6))
    return med.astype(np.float32), (1.0 / sd).astype(np.float32)


def fit_model(est, windows: np.ndarray, side: np.ndarray | None, y: np.ndarray, n_classes, progress=None):
    """Train ``est`` (an LSTMModel or TCNModel) and set its learned arrays. ``progress(epoch,
    epochs, note)`` after every epoch."""
    torch = _torch()
    hp = est.resolved()
    B, T, D = windows.shape
    if side is None:
        side = np.zeros((B, 0), np.float32)
    if len(side) != B or len(y) != B:
        raise EdgeseqError(f"got {B} windows, {len(side)} rows of side features and {len(y)} targets")
    if B == 0:
        raise EdgeseqError("nothing to train on: no windows")
    for name, a in (("windows", windows), ("side features", side)):
        if not np.isfinite(a).all():
            raise EdgeseqError(f"{name} contain NaN or inf (row {np.argwhere(~np.isfinite(a))[0][0]})")
    classification = hp["objective"] == "classification"
    if classification:
        y = y.astype(np.int64)
        n_out = int(n_classes if n_classes is not None else y.max() + 1)
        counts = np.bincount(y, minlength=n_out)
        cw = est.class_weights(counts)
    else:
        y = y.astype(np.float32).reshape(B, -1)
        n_out = y.shape[1]
        y_mu, y_sd = y.mean(axis=0), np.maximum(y.std(axis=0), 1e-6)

    device, note = resolve_device(hp["device"])
    torch.manual_seed(int(hp["seed"]))
    rng = np.random.default_rng(int(hp["seed"]))
    threads = hp.get("threads")
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False

    in_scale = (1.0 / np.maximum(windows.reshape(-1, D).std(axis=0), 1e-6)).astype(np.float32)
    side_center, side_scale = robust_scale(side)
    net = _modules()[est.KIND](D, side.shape[1], n_out, hp).to(device)
    # Inputs live on the device for the whole fit: DS1 is 51k x 126 floats, 26 MB.
    X = torch.from_numpy(np.ascontiguousarray(windows * in_scale)).to(device)
    Z = torch.from_numpy(np.clip((side - side_center) * side_scale, -4, 4).astype(np.float32)).to(device)
    if classification:
        Y = torch.from_numpy(y).to(device)
        loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(cw, dtype=torch.float32, device=device))
    else:
        Y = torch.from_numpy((y - y_mu) / y_sd).to(device)
        loss_fn = torch.nn.MSELoss()

    epochs, bs = int(hp["epochs"]), int(hp["batch_size"])
    steps = epochs * ((B + bs - 1) // bs)
    opt = torch.optim.AdamW(net.parameters(), lr=float(hp["learning_rate"]), weight_decay=float(hp["weight_decay"]))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=float(hp["learning_rate"]), total_steps=max(steps, 1))
    use_amp = bool(hp["amp"]) and device.type == "cuda"
    amp_dtype = (torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    history = []
    t_start = time.perf_counter()
    net.train()
    for epoch in range(epochs):
        t0 = time.perf_counter()
        order = torch.from_numpy(rng.permutation(B)).to(device)
        total = 0.0
        for i in range(0, B, bs):
            idx = order[i:i + bs]
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                out = net(X[idx], Z[idx])
                loss = loss_fn(out.float(), Y[idx])
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if device.type == "cuda":
            torch.cuda.synchronize()
        history.append({"epoch": epoch + 1, "loss": round(total / B, 5), "seconds": round(time.perf_counter() - t0, 3)})
        if progress:
            progress(epoch + 1, epochs, f"loss {total / B:.4f}")
    if threads:
        torch.set_num_threads(old_threads)

    net.eval()
    arrays = net.arrays()
    head = net.head
    W2 = head.fc2.weight.detach().float().cpu().numpy().T
    b2 = head.fc2.bias.detach().float().cpu().numpy()
    if not classification:  # undo the target standardisation inside the last layer
        W2, b2 = W2 * y_sd, b2 * y_sd + y_mu
    arrays.update({"in_scale": in_scale, "side_center": side_center, "side_scale": side_scale,
                   "head_W1": head.fc1.weight.detach().float().cpu().numpy().T,
                   "head_b1": head.fc1.bias.detach().float().cpu().numpy(), "head_W2": W2, "head_b2": b2})
    for k, v in arrays.items():
        setattr(est, k + "_", np.ascontiguousarray(v, dtype=np.float32))
    if classification:
        est.classes_ = np.arange(n_out)
        est.class_counts_ = counts.astype(np.int64)
    est.training_ = {"device": device.type + (f" ({torch.cuda.get_device_name(0)})" if device.type == "cuda" else ""),
                     "device_note": note, "amp": (str(amp_dtype).replace("torch.", "") if use_amp else "off"),
                     "epochs": history, "seconds_training": round(time.perf_counter() - t_start, 2),
                     "torch": torch.__version__, "threads": torch.get_num_threads()}
    return est

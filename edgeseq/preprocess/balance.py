"""Balance-board preprocessing shared by training (host) and inference (device): numpy only.

A board measures four corner forces. Everything the balance models see follows from them: the
centre of pressure (COP), then per window the COP displacement about its mean and its velocity,
decimated to the rate at which sway lives (well under 5 Hz), scaled to unit size.

Geometry: load cells at (+-half_x, +-half_y) cm from the plate centre, x to the right, y forward,
in the order top-left, top-right, bottom-left, bottom-right ("top" = front, +y). Defaults are the
Wii Balance Board's cell spacing, 433 mm x 238 mm. The COP of forces F_i at (x_i, y_i) is
``(sum F_i x_i, sum F_i y_i) / sum F_i``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import EdgeseqError

CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")
BOARD_HALF_X_CM, BOARD_HALF_Y_CM = 21.65, 11.9


def _corner_xy(half_x: float, half_y: float) -> tuple[np.ndarray, np.ndarray]:
    return np.array([-half_x, half_x, -half_x, half_x]), np.array([half_y, half_y, -half_y, -half_y])


def corner_forces(fz, cop_x_cm, cop_y_cm, half_x: float = BOARD_HALF_X_CM, half_y: float = BOARD_HALF_Y_CM):
    """The four cell forces ``(n, 4)`` (CORNERS order) of a plate carrying ``fz`` at the COP.

    Four forces, three equations (total force, moments about x and y): the minimum-norm solution,
    ``F_i = fz / 4 * (1 + x x_i / half_x^2 + y y_i / half_y^2)``, which puts the COP exactly where the
    force platform measured it.
    """
    fz, x, y = (np.asarray(v, dtype=np.float64) for v in (fz, cop_x_cm, cop_y_cm))
    xs, ys = _corner_xy(half_x, half_y)
    return fz[:, None] / 4.0 * (1.0 + np.outer(x, xs) / half_x**2 + np.outer(y, ys) / half_y**2)


def cop_from_corners(forces, half_x: float = BOARD_HALF_X_CM, half_y: float = BOARD_HALF_Y_CM) -> np.ndarray:
    """COP ``(n, 2)`` in cm from the four corner forces ``(n, 4)``."""
    F = np.asarray(forces, dtype=np.float64)
    if F.ndim != 2 or F.shape[1] != 4:
        raise EdgeseqError(f"balance board forces must have shape (n, 4) in order {', '.join(CORNERS)}, got {F.shape}")
    total = F.sum(axis=1)
    if np.any(total <= 0):
        i = int(np.argmax(total <= 0))
        raise EdgeseqError(f"no weight on the board at sample {i} (total force {total[i]:g}): nobody standing?")
    xs, ys = _corner_xy(half_x, half_y)
    return np.stack([F @ xs, F @ ys], axis=1) / total[:, None]


#: Names of the classic posturography features (per window), in column order.
SWAY_FEATURES = ("rms_ml", "rms_ap", "rms_dist", "mean_vel", "mean_vel_ml", "mean_vel_ap", "area95", "mean_freq")


@dataclass
class BalancePreprocessing:
    """How four corner forces become model input, per analysis window.

    Per window of ``window_s`` (every ``hop_s``): the COP at ``sample_rate``, averaged over blocks of
    ``decimate`` samples (sway lives below 5 Hz), centred on the window's mean position; the model
    input per step is ``[x, y, vx, vy] / input_scale`` (cm, cm/s). The scales are fixed physical
    sizes, not fitted, so nothing about the test subjects leaks into the input.
    """

    sample_rate: float = 100.0
    half_x_cm: float = BOARD_HALF_X_CM
    half_y_cm: float = BOARD_HALF_Y_CM
    decimate: int = 4
    window_s: float = 10.0
    hop_s: float = 5.0
    input_scale: list = field(default_factory=lambda: [0.5, 0.5, 2.0, 2.0])

    @property
    def window(self) -> int:
        """Samples per window at ``sample_rate`` (a multiple of ``decimate``)."""
        return int(round(self.window_s * self.sample_rate)) // self.decimate * self.decimate

    @property
    def hop(self) -> int:
        return max(1, int(round(self.hop_s * self.sample_rate)))

    @property
    def steps(self) -> int:
        return self.window // self.decimate

    def config(self) -> dict:
        return asdict(self)

    @classmethod
    def from_config(cls, cfg: dict) -> "BalancePreprocessing":
        unknown = set(cfg) - set(cls.__dataclass_fields__)
        if unknown:
            raise EdgeseqError(f"unknown balance preprocessing keys in bundle: {', '.join(sorted(unknown))}")
        return cls(**cfg)

    def cop(self, forces) -> np.ndarray:
        F = np.asarray(forces, dtype=np.float64)
        if F.ndim == 2 and not np.isfinite(F).all():
            raise EdgeseqError(f"balance forces have NaN or infinite values (first at sample "
                               f"{int(np.argmax(~np.isfinite(F).all(axis=1)))})")
        return cop_from_corners(F, self.half_x_cm, self.half_y_cm)

    def starts(self, n: int) -> np.ndarray:
        """First sample of every full window in a recording of ``n`` samples."""
        if n < self.window:
            return np.zeros(0, np.int64)
        return np.arange(0, n - self.window + 1, self.hop, dtype=np.int64)

    def window_inputs(self, cop_windows: np.ndarray) -> np.ndarray:
        """``(B, window, 2)`` COP windows (cm) -> ``(B, steps, 4)`` float32 model inputs."""
        C = np.asarray(cop_windows, dtype=np.float64)
        B = C.shape[0]
        D = C.reshape(B, self.steps, self.decimate, 2).mean(axis=2)
        D = D - D.mean(axis=1, keepdims=True)
        fs = self.sample_rate / self.decimate
        V = np.zeros_like(D)
        V[:, 1:] = np.diff(D, axis=1) * fs
        X = np.concatenate([D, V], axis=2) / np.asarray(self.input_scale, dtype=np.float64)
        return X.astype(np.float32)

    def windows(self, forces) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Model inputs ``(B, steps, 4)``, posturography features ``(B, 8)`` and window starts of
        one recording of corner forces ``(n, 4)``."""
        cop = self.cop(forces)
        s = self.starts(len(cop))
        if not len(s):
            raise EdgeseqError(f"recording of {len(cop) / self.sample_rate:.1f} s is shorter than one "
                               f"{self.window_s:g}-s analysis window")
        Cw = cop[s[:, None] + np.arange(self.window)]
        return self.window_inputs(Cw), sway_features(Cw, self.sample_rate), s


def sway_features(cop_windows: np.ndarray, fs: float) -> np.ndarray:
    """Classic COP measures per window (Prieto et al. 1996), ``(B, 8)`` in SWAY_FEATURES order:
    RMS distance (ML, AP, resultant, cm), mean velocity (resultant, ML, AP, cm/s), 95% confidence
    ellipse area (cm^2) and mean frequency (Hz, mean velocity / (2 pi mean distance)). The COP is
    first smoothed by a 0.1-s moving average: force-plate noise would otherwise dominate velocity."""
    C = np.asarray(cop_windows, dtype=np.float64)
    k = max(1, int(round(0.1 * fs)))
    if k > 1:
        cs = np.cumsum(np.concatenate([np.zeros((C.shape[0], 1, 2)), C], axis=1), axis=1)
        C = (cs[:, k:] - cs[:, :-k]) / k
    D = C - C.mean(axis=1, keepdims=True)
    dist = np.hypot(D[..., 0], D[..., 1])
    rms_ml, rms_ap = np.sqrt((D[..., 0] ** 2).mean(axis=1)), np.sqrt((D[..., 1] ** 2).mean(axis=1))
    rms_dist = np.sqrt((dist ** 2).mean(axis=1))
    step = np.diff(C, axis=1)
    dur = step.shape[1] / fs
    vel = np.hypot(step[..., 0], step[..., 1]).sum(axis=1) / dur
    vel_ml, vel_ap = np.abs(step[..., 0]).sum(axis=1) / dur, np.abs(step[..., 1]).sum(axis=1) / dur
    sxx, syy = (D[..., 0] ** 2).mean(axis=1), (D[..., 1] ** 2).mean(axis=1)
    sxy = (D[..., 0] * D[..., 1]).mean(axis=1)
    # 95% ellipse: pi * F(0.95; 2, n-2) * 2 * sqrt(det(cov)) ~ pi * 5.991 * sqrt(det) for large n
    area = np.pi * 5.991 * np.sqrt(np.maximum(sxx * syy - sxy ** 2, 0.0))
    mfreq = vel / (2 * np.pi * np.maximum(dist.mean(axis=1), 1e-9))
    return np.stack([rms_ml, rms_ap, rms_dist, vel, vel_ml, vel_ap, area, mfreq], axis=1)

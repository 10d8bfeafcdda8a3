"""Progress lines for long host-side steps, on stderr so stdout stays the result."""

from __future__ import annotations

import sys
import time


class Progress:
    """``Progress("states", total)(done)`` redraws one line on a terminal, and prints a line per
    quarter when stderr is a file or pipe (CI logs stay short)."""

    def __init__(self, label: str, total: int, *, enabled: bool = True, stream=None, every: bool = False):
        self.label, self.total = label, max(int(total), 1)
        self.every = every  # a line per call even off a terminal (training epochs: few and slow)
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()
        self._last_quarter = -1

    def __call__(self, done: int, total: int | None = None, note: str = "") -> None:
        if not self.enabled:
            return
        total = self.total if total is None else max(int(total), 1)
        frac = min(done / total, 1.0)
        text = f"{self.label}: {done}/{total} ({100 * frac:.0f}%) {time.perf_counter() - self.t0:.1f}s"
        if note:
            text += f" {note}"
        if self.tty:
            self.stream.write("\r" + text + ("\n" if done >= total else ""))
            self.stream.flush()
        else:
            quarter = int(frac * 4)
            if quarter > self._last_quarter or self.every:
                self._last_quarter = quarter
                print(text, file=self.stream, flush=True)

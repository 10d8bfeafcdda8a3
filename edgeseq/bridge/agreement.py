"""Device labels against the host's: a device that classifies its own beats (``ecg_ad8232`` in
classify mode) sends a PREDICTION frame per beat; ``edgeseq serve`` classifies the same samples
and matches the two by sample index.

Matching is a merge of two streams that are each in sample order (beats come out of both front
ends in order), so only the predictions one side has made and the other not yet are held, at most
``HOLD`` per side: a side that is ahead never makes memory grow, and a prediction the other side
has gone past without making is counted at once as made by one side only.
"""

from __future__ import annotations

from collections import deque

#: Disagreements kept with their details for the summary (all are counted).
KEEP = 10
#: Predictions of one side held while waiting for the other's (a device that sends none, or a host
#: that drops a stretch, must not grow memory): beyond it the oldest counts as one side's only.
HOLD = 256


class Agreement:
    """Feed it both sides' labelled predictions as they come; :meth:`summary` at any time.

    A side whose sample index goes back (a device restart) starts both sides afresh: what was
    held is counted as unmatched, so a few beats around a restart may count as one side's only.
    """

    def __init__(self, hold: int = HOLD):
        self.hold = hold
        self._device: deque = deque()  # (sample, label, score), waiting for the host's
        self._host: deque = deque()  # (sample, label, score), waiting for the device's
        self._last = {"device": None, "host": None}
        self.device_labels = self.host_labels = self.matched = self.agreeing = 0
        self.device_only = self.host_only = 0
        self.max_score_diff = 0.0
        self.disagreements: list[dict] = []

    def add_device(self, sample: int, label: str | None, score: float) -> None:
        if label is None:
            return  # a score without a class: nothing to agree on
        self.device_labels += 1
        self._order("device", sample)
        while self._host and self._host[0][0] < sample:  # the device went past it: the host's only
            self._host.popleft()
            self.host_only += 1
        if self._host and self._host[0][0] == sample:
            h = self._host.popleft()
            self._match((sample, label, score), h)
        else:
            self._device.append((sample, label, score))
            if len(self._device) > self.hold:
                self._device.popleft()
                self.device_only += 1

    def add_host(self, sample: int, label: str | None, score: float):
        """Returns the device's ``(label, score)`` for this sample when it came first (the usual
        order: the device sends its PREDICTION before the samples that complete the beat reach the
        host), else None (a later device prediction is still counted, in the summary)."""
        if label is None:
            return None
        self.host_labels += 1
        self._order("host", sample)
        while self._device and self._device[0][0] < sample:
            self._device.popleft()
            self.device_only += 1
        if self._device and self._device[0][0] == sample:
            d = self._device.popleft()
            self._match(d, (sample, label, score))
            return d[1], d[2]
        self._host.append((sample, label, score))
        if len(self._host) > self.hold:
            self._host.popleft()
            self.host_only += 1
        return None

    def _order(self, side: str, sample: int) -> None:
        last = self._last[side]
        self._last[side] = sample
        if last is not None and sample < last:
            self.device_only += len(self._device)
            self.host_only += len(self._host)
            self._device.clear()
            self._host.clear()
            self._last = {"device": None, "host": None, side: sample}

    def _match(self, d, h) -> None:
        self.matched += 1
        if d[1] == h[1]:
            self.agreeing += 1
            diff = abs(float(d[2]) - float(h[2]))
            if diff == diff:  # a NaN score says nothing about the difference
                self.max_score_diff = max(self.max_score_diff, diff)
        elif len(self.disagreements) < KEEP:
            self.disagreements.append({"sample": int(d[0]), "device": d[1], "host": h[1],
                                       "device_score": round(float(d[2]), 6), "host_score": round(float(h[2]), 6)})

    def summary(self) -> dict | None:
        """None when the device sent no labelled prediction (a sketch that only streams). What is
        still held counts as one side's only: the summary is the end of the stream's view."""
        if not self.device_labels:
            return None
        return {"device_labels": self.device_labels, "host_labels": self.host_labels,
                "matched": self.matched, "agreeing": self.agreeing,
                "agreement": round(self.agreeing / self.matched, 6) if self.matched else None,
                "device_only": self.device_only + len(self._device), "host_only": self.host_only + len(self._host),
                "max_score_diff": round(self.max_score_diff, 6), "disagreements": list(self.disagreements)}

"""A training bundle on the numpy interpreter of its family's description: the float reference,
and what ``evaluate``, ``profile`` and ``serve`` run before any export. Numpy only."""

from __future__ import annotations

from ..graph.numpy import constants, run


class NumpyBackend:
    def __init__(self, manifest: dict, arrays: dict):
        from ..models import family
        from . import contract

        fam = family(manifest)
        self.graphs = {"model": fam.describe(manifest, arrays, "window"), "step": fam.describe(manifest, arrays, "step")}
        self.runtime = {**contract({"window": self.graphs["model"], "step": self.graphs["step"]}, fam.interface),
                        "format": "numpy", "precision": "float32", "model": "description", "step": "description"}
        self.initial = fam.initial(arrays)
        self._env = {k: constants(g) for k, g in self.graphs.items()}

    def run(self, which: str, feeds: dict) -> dict:
        return run(self.graphs[which], feeds, env=self._env[which])

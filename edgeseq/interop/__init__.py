"""Importers of models trained with other libraries into edgeseq bundles (host side; each
importer imports its library lazily, so ``import edgeseq.interop`` costs nothing extra)."""

from __future__ import annotations


def from_reservoirpy(model, out_dir, *, sample_rate=None, labels=None, initial_state: str = "reservoir"):
    """See :func:`edgeseq.interop.reservoirpy.from_reservoirpy`."""
    from .reservoirpy import from_reservoirpy as _impl
    return _impl(model, out_dir, sample_rate=sample_rate, labels=labels, initial_state=initial_state)


__all__ = ["from_reservoirpy"]

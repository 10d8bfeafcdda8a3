"""edgeseq: sequence models for physiological signals, trained on a host, run on small devices."""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy, so that `import edgeseq` on a device never pulls in reservoirpy.
    if name == "from_reservoirpy":
        from .interop.reservoirpy import from_reservoirpy

        return from_reservoirpy
    raise AttributeError(f"module 'edgeseq' has no attribute {name!r}")

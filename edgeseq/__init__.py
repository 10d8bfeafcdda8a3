"""edgeseq: sequence models for physiological signals, trained on a host, run on small devices."""

__version__ = "0.1.0"

"""``edgeseq profile``: what a bundle costs on the machine it runs on. Device side: numpy, the
bundle's runtime, the standard library; matplotlib only for the plot, tflite-micro only for the
arena search, ssh/scp only for ``--ssh``.

    from edgeseq.profile import profile_bundle
    res = profile_bundle("beats.onnx.bundle", threads=1, n=1000)
    res["latency_us"]["window"]["p99"], res["arena_bytes"], res["efficiency"]

Measured per call after a warm-up: one analysis window (an ECG beat window, or a balance window)
and one step (one new sample through the reservoir), as p50/p90/p99/max; throughput; the model
files' size; parameters and multiply-accumulates from the weights; peak RSS and the part the model
added; onnxruntime's own memory profile; the tflite-micro arena; and efficiency, the MAC/s achieved
over this machine's measured float32 matmul peak.
"""

from .core import METRICS, compare, format_compare, format_table, profile_bundle

__all__ = ["profile_bundle", "compare", "format_table", "format_compare", "METRICS"]

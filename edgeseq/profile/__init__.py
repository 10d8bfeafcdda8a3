"""``edgeseq profile``: what a bundle costs on the machine it runs on. Device side: numpy, the
bundle's runtime, the standard library; matplotlib only for the plot, tflite-micro only for the
arena search, ssh/scp only for ``--ssh``.

    from edgeseq.profile import profile_bundle
    res = profile_bundle("beats.onnx.bundle", threads=1, n=1000)
    res["latency_us"]["window"]["p99"], res["arena_bytes"], res["efficiency"]

Measured per call after ``warmup`` calls: one analysis window (an ECG beat window, or a balance
window) and one step (one new sample through the reservoir), as p50/p90/p99/max; throughput, one
window per call and ``batch`` per call; the model files' size; parameters and multiply-accumulates
from the weights; peak RSS and the part the model added; ``rss``, what the RSS is made of: what
each stage added (interpreter, numpy and edgeseq; the runtime library's import; the model's load;
the first calls; the timed calls; the batched run) and, from ``/proc/self/smaps`` where there is
one, the pages at the end by what backs them (anonymous, the runtime library's file pages, other
files); onnxruntime's own memory profile, and with ``ort_profile`` its time per op type and node;
the tflite-micro arena; and efficiency, the MAC/s achieved over this machine's measured float32
matmul peak. Sizes print in one binary unit per quantity, named in the row (KiB, MiB).
"""

from .core import METRICS, RSS_ROWS, compare, format_compare, format_table, profile_bundle, rss_parts

__all__ = ["profile_bundle", "compare", "format_table", "format_compare", "METRICS", "RSS_ROWS", "rss_parts"]

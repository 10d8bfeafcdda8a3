"""Host-side exporters of bundles to other runtimes (ONNX)."""

"""Host-side exporters of trained bundles to device runtimes (ONNX, TFLite)."""

from __future__ import annotations

import json
from pathlib import Path

from ..bundle import Bundle, load_bundle
from ..errors import EdgeseqError


def source_bundle(bundle_path, out_dir=None, task: str | None = None) -> tuple[Path, Bundle, dict]:
    """The trained bundle an export starts from (hashes checked) and a private copy of its
    manifest to extend; an already exported bundle is refused, and so is an export written over
    its own source (it would replace the training bundle)."""
    src = Path(bundle_path)
    if out_dir is not None and Path(out_dir).resolve() == src.resolve():
        raise EdgeseqError(f"export --out {out_dir} is the bundle being exported: choose another directory")
    bundle = load_bundle(src, task=task)
    manifest = json.loads(json.dumps(bundle.manifest))
    if "runtime" in manifest:
        raise EdgeseqError(f"bundle {src} is already an exported bundle ({manifest['runtime'].get('format')})")
    return src, bundle, manifest

"""Host-side exporters of trained bundles to device runtimes (ONNX, TFLite)."""

from __future__ import annotations

import json
from pathlib import Path

from ..bundle import Bundle, load_bundle
from ..errors import EdgeseqError


def source_bundle(bundle_path, task: str | None = None) -> tuple[Path, Bundle, dict]:
    """The trained bundle an export starts from (hashes checked) and a private copy of its
    manifest to extend; an already exported bundle is refused."""
    src = Path(bundle_path)
    bundle = load_bundle(src, task=task)
    manifest = json.loads(json.dumps(bundle.manifest))
    if "runtime" in manifest:
        raise EdgeseqError(f"bundle {src} is already an exported bundle ({manifest['runtime'].get('format')})")
    return src, bundle, manifest

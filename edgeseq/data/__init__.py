"""Where samples enter edgeseq on the host: readers for public data sets and users' recordings."""

from pathlib import Path

from ..errors import EdgeseqError


def check_dir(data_dir) -> Path:
    """``data_dir`` as a Path, or a one-line error when it is missing or not a directory."""
    path = Path(data_dir)
    if not path.exists():
        raise EdgeseqError(f"data directory {path} does not exist")
    if not path.is_dir():
        raise EdgeseqError(f"data path {path} is not a directory")
    return path

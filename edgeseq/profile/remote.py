"""``edgeseq profile --ssh user@host BUNDLE``: profile on the board itself, with its own runtime.

The bundle travels as a tar on one ssh connection into a fresh ``mktemp -d`` directory on the
board, the board's ``python3 -m edgeseq profile`` runs there and prints its JSON, which comes back
over ssh; the directory is removed either way. The board needs edgeseq with its runtime installed
(``edgeseq deploy`` does that, or ``pip install "edgeseq[device]"``) and ssh keys. How the board is
reached (ssh options, ``--ssh-config``, errors) is ``edgeseq/ssh.py``, shared with ``deploy``.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from ..errors import EdgeseqError
from ..ssh import Board, sh

_PREFIX = "/tmp/edgeseq-profile."
#: Makes the directory, extracts the tar from its stdin and prints the directory.
_COPY = sh(f'd=$(mktemp -d {_PREFIX}XXXXXX) && {{ tar -xf - -C "$d" || {{ rm -rf "$d"; exit 1; }}; }} '
           f'&& printf "%s\\n" "$d"')


def _lines(remote_dir: str, name: str, profile_args: list[str], python: str) -> dict:
    """The line the board runs for each step (one quoted line each)."""
    profile = " ".join(shlex.quote(a) for a in [python, "-m", "edgeseq", "profile", f"{remote_dir}/{name}",
                                                  *profile_args, "--json", "-"])
    return {"copy": _COPY, "profile": profile, "cleanup": f"rm -rf {shlex.quote(remote_dir)}"}


def commands(host: str, bundle, remote_dir: str, profile_args: list[str], *, ssh: str = "ssh",
             python: str = "python3", config: str | None = None) -> dict:
    """The commands, as argument lists (no local shell)."""
    board = Board(host, config=config, ssh=ssh)
    return {k: board.argv(line) for k, line in _lines(remote_dir, Path(bundle).name, profile_args, python).items()}


def profile_remote(host: str, bundle, profile_args: list[str], *, ssh: str = "ssh", python: str = "python3",
                   config: str | None = None, timeout: float = 600.0) -> dict:
    board = Board(host, config=config, ssh=ssh)
    if not Path(bundle).is_dir():
        raise EdgeseqError(f"bundle {bundle} not found")
    name = Path(bundle).name
    remote_dir = board.send([(name, Path(bundle))], _COPY, "copying the bundle", timeout=timeout).strip()
    if not remote_dir.startswith(_PREFIX) or "/" in remote_dir[len(_PREFIX):]:
        raise EdgeseqError(f"unexpected answer from mktemp on {host}: {remote_dir[:80]!r}")
    lines = _lines(remote_dir, name, profile_args, python)
    try:
        out = board.run(lines["profile"], "profiling", timeout=timeout)
    finally:
        try:
            board.run(lines["cleanup"], "removing the copy", timeout=60)
        except EdgeseqError:
            pass
    try:
        res = json.loads(out)
    except json.JSONDecodeError:
        raise EdgeseqError(f"the profiler on {host} did not print JSON: {out.strip()[:120]!r}") from None
    res["host"] = host
    return res

"""``edgeseq deploy [user@]host BUNDLE``: from a laptop to a board in one command. Host-side only
(the CLI imports it lazily; no device-side module imports it).

Stages, a line each: **build** the wheel (or ``--wheel``), **connect** (the board's Python, machine,
free disk), **copy** wheel and bundle into a new release, **venv** (create or reuse, install the
wheel with the extra its runtime needs: ``runtime.BACKENDS``), **self-check** (the board's own
edgeseq loads the bundle, checks hashes, the signature with ``--trust``, and profiles it),
**activate** (switch ``current``, prune), **service** (a systemd user unit with ``--service``).

Layout on the board (``~/edgeseq``, every path made absolute once the board's home is known)::

    venv/                                shared by releases (--venv PATH elsewhere)
    releases/<UTC time>-<manifest sha>/  .edgeseq-release (our mark), wheel/*.whl, bundle/,
                                         trust.pub (--trust), deploy.json (the deploy's summary)
    current -> releases/<...>            switched only after the self-check passed
    serve.jsonl                          the service's predictions

Decisions:
- The board judges the bundle: the self-check runs on the bytes that arrived, with the runtime
  the board has; the laptop reads only the manifest, to choose the extra.
- Every release stores its bundle as ``bundle/``: the unit's ``--bundle ~/edgeseq/current/bundle``
  never changes, so a later deploy without ``--service`` just restarts an installed service onto it.
- One venv, reused: dependencies install once (the first deploy pays for the runtime); the wheel
  is reinstalled without its dependencies every time, since a changed edgeseq keeps its version.
  Each release keeps its wheel, so a failure after the install puts the running release's wheel
  back: a failed deploy leaves the previous deployment as it was (``current`` not switched, the
  service not restarted, the failed release removed).
- ``current`` is replaced atomically (``ln -sfn`` to a temporary name, then ``mv -T`` over it):
  a reader never sees it missing. Releases are kept 3 deep (the new one and 2 before it); only
  directories holding our mark are ever deleted.
- Files travel as one tar over ssh (``edgeseq/ssh.py`` says why), the only way to the board.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EdgeseqError
from .ssh import Board, RemoteError, check_host, sh

UNIT = "edgeseq-serve.service"
SYSTEMCTL = "systemctl --user"
KEEP = 3  # releases kept: the new one and the 2 before it (rollback targets)
MARK = ".edgeseq-release"
#: What a systemd unit line may hold without quoting rules: a path or a port name. Spaces,
#: quotes, ``%`` (a specifier), ``$`` and backslashes are refused, not escaped.
_UNIT_SAFE = re.compile(r"[A-Za-z0-9_./@+,:=-]+")

# Run on the board with its python3: what deploy must know before it changes anything.
_PROBE = r"""
import json, os, platform, shutil, sys
home = os.path.expanduser("~")
root = os.path.join(home, "edgeseq")
venv = os.path.join(root, "venv")
if sys.argv[1]:  # --venv: absolute, ~/..., or relative to the home directory
    venv = os.path.abspath(os.path.join(home, os.path.expanduser(sys.argv[1])))
cur = os.path.join(root, "current")
unit = os.path.join(home, ".config", "systemd", "user", sys.argv[2])
old = os.path.realpath(cur) if os.path.islink(cur) else None
info = None
if old and os.path.isfile(os.path.join(old, "deploy.json")):
    try:
        info = json.load(open(os.path.join(old, "deploy.json")))
    except ValueError:
        pass
u = platform.uname()
print(json.dumps({"python": platform.python_version(), "version": list(sys.version_info[:2]),
                  "hostname": u.node, "uname": " ".join([u.system, u.release, u.machine]), "machine": u.machine,
                  "home": home, "root": root, "venv": venv,
                  "venv_exists": os.path.isfile(os.path.join(venv, "bin", "python")),
                  "free": shutil.disk_usage(home).free, "current": old, "previous": info,
                  "unit_path": unit, "unit": open(unit).read() if os.path.isfile(unit) else None}))
"""

# Run on the board with its python3: the state --status reports.
_STATUS = r"""
import json, os, subprocess, sys
root = os.path.join(os.path.expanduser("~"), "edgeseq")
cur = os.path.join(root, "current")
out = {"current": os.path.realpath(cur) if os.path.islink(cur) else None, "deploy": None}
if out["current"] and os.path.isfile(os.path.join(out["current"], "deploy.json")):
    out["deploy"] = json.load(open(os.path.join(out["current"], "deploy.json")))
try:
    r = subprocess.run(["systemctl", "--user", "is-active", sys.argv[1]], capture_output=True, text=True,
                       timeout=30)
    out["service"] = r.stdout.strip() or r.stderr.strip() or "unknown"
except OSError as exc:
    out["service"] = "unknown (systemctl: %s)" % exc.strerror
print(json.dumps(out))
"""


class _Failed(Exception):
    def __init__(self, stage: str, tail: str):
        super().__init__(tail)
        self.stage, self.tail = stage, tail


@contextlib.contextmanager
def _stage(name: str):
    """Any error inside becomes a failure of stage ``name`` with the board's last stderr line."""
    try:
        yield
    except RemoteError as exc:
        raise _Failed(name, exc.tail) from None
    except EdgeseqError as exc:
        raise _Failed(name, str(exc)) from None


def _q(*parts) -> str:
    return " ".join(shlex.quote(str(p)) for p in parts)


def _pip(venv: str) -> str:
    """``pip install`` in the board's venv. --no-compile: bytecode is written on first import for
    the modules the board uses (a fraction of numpy's and the runtime's), not all at install; that
    halves the install."""
    return _q(f"{venv}/bin/python", "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile")


def _board(host: str, ssh_config, option: str) -> Board:
    check_host(host, option)
    return Board(host, config=str(ssh_config) if ssh_config else None)


def unit_safe(value: str, what: str) -> str:
    if not _UNIT_SAFE.fullmatch(value) or value.startswith("-"):
        raise EdgeseqError(f"{what} {value!r}: a service unit takes letters, digits and ./_@+,:=- only "
                           f"(no spaces, quotes, %, $ or backslashes), not starting with '-'")
    return value


# ---- build ---------------------------------------------------------------------------------------

def checkout() -> Path | None:
    """The source checkout this edgeseq runs from (the package's parent holds its pyproject.toml),
    or None for an installed wheel."""
    root = Path(__file__).resolve().parent.parent
    project = root / "pyproject.toml"
    if project.is_file() and re.search(r'(?m)^name\s*=\s*"edgeseq"', project.read_text(errors="replace")):
        return root
    return None


def _can_build_in_place() -> bool:
    """``--no-isolation`` when this interpreter has the build requirement of pyproject.toml
    (setuptools >= 77, which builds wheels itself): no download, seconds. ``build`` checks installed
    distributions, so their metadata is what counts, not an import."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        major = int(version("setuptools").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return False
    return major >= 77


def build_wheel(out_dir) -> Path:
    """``python -m build`` of the checkout into ``out_dir``; the wheel's path. The sdist first, then
    the wheel from the unpacked sdist (build's default): a wheel built in the checkout would take
    along whatever an earlier build left in its ``build/lib``, a file deleted since included."""
    from importlib.util import find_spec

    root = checkout()
    if root is None:
        raise EdgeseqError("no source checkout of edgeseq here to build a wheel from: give --wheel FILE")
    if find_spec("build") is None:
        raise EdgeseqError("building the wheel needs the 'build' package (pip install build), or give --wheel FILE")
    cmd = [sys.executable, "-m", "build", "--outdir", str(out_dir)]
    cmd += ["--no-isolation"] if _can_build_in_place() else []
    try:
        r = subprocess.run([*cmd, str(root)], capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        raise EdgeseqError("python -m build did not finish in 30 min") from None
    if r.returncode != 0:
        lines = [ln.strip() for ln in (r.stderr + r.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")]
        raise EdgeseqError((errors or lines or [f"python -m build: exit status {r.returncode}"])[-1])
    wheels = sorted(Path(out_dir).glob("edgeseq-*.whl"))
    if len(wheels) != 1:
        raise EdgeseqError(f"python -m build left {len(wheels)} edgeseq wheels in {out_dir}")
    return wheels[0]


# ---- the plan ------------------------------------------------------------------------------------

@dataclass
class _Plan:
    """What this deploy does on the board, learnt at connect; and what it has done (for a rollback)."""

    board: Board
    probe: dict = field(default_factory=dict)
    release: str | None = None       # made by the copy
    installed: bool = False          # the new wheel is in the venv
    switched: bool = False           # current points at the release
    unit_written: bool = False
    restarted: bool = False
    wheel_sha: str = ""



def _read_bundle(bundle) -> tuple[dict, str]:
    from .bundle import MANIFEST, read_manifest, sha256_file

    return read_manifest(bundle), sha256_file(Path(bundle) / MANIFEST)


def _check_wheel(wheel) -> Path:
    p = Path(wheel)
    if not p.is_file():
        raise EdgeseqError(f"--wheel {wheel}: no such file")
    if not re.fullmatch(r"edgeseq-[^-]+(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl", p.name):
        raise EdgeseqError(f"--wheel {wheel}: not an edgeseq wheel (edgeseq-VERSION-...-py3-none-any.whl)")
    return p


def _release_in(out: str, root: str) -> str | None:
    made = [ln for ln in out.splitlines() if ln.startswith(root + "/releases/") and posixpath.dirname(ln) == root + "/releases"]
    return made[-1] if made else None


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.1f} GB"


def unit_text(*, venv: str, root: str, port: str, trust: bool) -> str:
    """The systemd user unit running ``edgeseq serve`` on the current release (absolute paths)."""
    cmd = [f"{venv}/bin/edgeseq", "serve", "--port", port, "--bundle", f"{root}/current/bundle",
           "--out", f"{root}/serve.jsonl"] + (["--trust", f"{root}/current/trust.pub"] if trust else [])
    for part in (venv, root, port):
        unit_safe(part, "service path")
    return "\n".join([
        "# Written by edgeseq deploy; a later deploy with --service rewrites it.",
        "[Unit]",
        "Description=edgeseq serve: the deployed bundle on " + port,
        "",
        "[Service]",
        "ExecStart=" + " ".join(cmd),
        # a board whose sensor is unplugged keeps trying, without a busy loop
        "Restart=on-failure",
        "RestartSec=5",
        "Environment=PYTHONUNBUFFERED=1",
        "StandardOutput=journal",
        "StandardError=journal",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ])


# ---- deploy ----------------------------------------------------------------------------------------

def deploy(host: str, bundle, *, port: str | None = None, venv: str | None = None, service: bool = False,
           trust=None, ssh_config=None, wheel=None, say=None) -> dict:
    """Deploy ``bundle`` to ``host``; a line per stage through ``say``; returns the summary (also
    written to the release's deploy.json). Raises ``EdgeseqError`` "deploy failed at STAGE on HOST:
    ..." after undoing what this deploy did."""
    say = say or (lambda line: print(line, flush=True))
    check_host(host, "deploy")
    if service and not port:
        raise EdgeseqError("--service needs --port PORT: the serial port the service reads")
    if port and not service:
        raise EdgeseqError("--port goes with --service (the port the installed service reads)")
    if port:
        unit_safe(port, "--port")
    if venv is not None and (not venv.strip() or any(not c.isprintable() for c in venv)):
        raise EdgeseqError(f"--venv {venv!r}: give a directory on the board")
    manifest, manifest_sha = _read_bundle(bundle)
    from .runtime import BACKENDS, format_of

    fmt = format_of(manifest)
    extra = BACKENDS[fmt].extra
    if trust:
        from .signing import read_public_key

        read_public_key(trust)
    wheel = _check_wheel(wheel) if wheel else None
    plan = _Plan(Board(host, config=str(ssh_config) if ssh_config else None))
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="edgeseq-deploy-") as tmp:
        try:
            summary = _stages(plan, Path(bundle), manifest, manifest_sha, fmt, extra, port=port, venv=venv,
                              service=service, trust=trust, wheel=wheel, tmp=Path(tmp), say=say,
                              t_start=t_start)
        except _Failed as f:
            _rollback(plan)
            raise EdgeseqError(f"deploy failed at {f.stage} on {host}: {f.tail}") from None
        except KeyboardInterrupt:  # Ctrl-C mid-deploy: the board goes back as it was, too
            _rollback(plan)
            raise
    summary["seconds"] = round(time.monotonic() - t_start, 1)
    lat = summary["latency_us"]
    say(f"deployed {summary['bundle']['name']} to {host} in {summary['seconds']:.1f} s\n"
        f"  board:    {summary['board']['hostname']} ({summary['board']['uname']})\n"
        f"  python:   {summary['python']}\n"
        f"  runtime:  {summary['bundle']['runtime']} {summary['bundle']['precision']} (extra '{extra}')\n"
        f"  bundle:   {summary['bundle']['name']} (manifest sha256 {manifest_sha[:16]})\n"
        f"  latency:  p50 {lat['window']['p50']:.0f} us, p99 {lat['window']['p99']:.0f} us per window "
        f"(measured on the board, n={lat['n']})\n"
        f"  release:  {summary['release']}")
    return summary


def _stages(plan: _Plan, bundle: Path, manifest: dict, manifest_sha: str, fmt: str, extra: str, *, port, venv,
            service, trust, wheel, tmp: Path, say, t_start) -> dict:
    board, host = plan.board, plan.board.host

    started, times = {}, {}

    def timed(name):
        started[name] = time.monotonic()
        return _stage(name)

    def took(name) -> str:
        times[name] = round(time.monotonic() - started[name], 1)
        return f"({times[name]:.1f} s)"

    with timed("build"):
        if wheel is None:
            wheel = build_wheel(tmp)
            how = "built"
        else:
            how = "given"
    from .bundle import sha256_file

    plan.wheel_sha = sha256_file(wheel)
    say(f"build: {wheel.name} {how}, {_mb(wheel.stat().st_size)} {took('build')}")

    with timed("connect"):
        out = board.run(sh("python3 -c " + _q(_PROBE, venv or "", UNIT)), "probing the board", timeout=120)
        try:
            plan.probe = p = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise EdgeseqError(f"python3 on the board did not answer: {out.strip()[:120]!r}") from None
        if tuple(p["version"]) < (3, 10):
            raise EdgeseqError(f"python3 on the board is {p['python']}; edgeseq needs 3.10 or newer")
        if p["unit"] is not None and "--trust" in p["unit"] and not trust and not service:
            raise EdgeseqError(f"the installed service checks signatures (--trust): deploy with --trust KEY.pub, "
                               f"or reinstall it with --service")
    upload = wheel.stat().st_size + sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file())
    need = upload + (0 if p["venv_exists"] else 300e6)  # a runtime and numpy, installed
    say(f"connect: {host}: {p['hostname']} ({p['uname']}), Python {p['python']}, {_mb(p['free'])} free, "
        f"current release {posixpath.basename(p['current']) if p['current'] else 'none'} {took('connect')}")
    if p["free"] < need:
        print(f"edgeseq: warning: {host} has {_mb(p['free'])} free; this deploy may need {_mb(need)}",
              file=sys.stderr)

    root = p["root"]
    with timed("copy"):
        script = (f"set -e; R={_q(root)}; mkdir -p \"$R/releases\"; "
                  f"base=\"$R/releases/$(date -u +%Y%m%dT%H%M%SZ)-{manifest_sha[:12]}\"; d=\"$base\"; n=1; "
                  f"while [ -e \"$d\" ]; do n=$((n+1)); d=\"$base-$n\"; done; mkdir \"$d\"; "
                  f"echo 'made by edgeseq deploy: may be deleted by it' > \"$d/{MARK}\"; "
                  f"printf '%s\\n' \"$d\"; tar -xf - -C \"$d\"")
        entries = [(f"wheel/{wheel.name}", wheel), ("bundle", bundle)] + ([("trust.pub", Path(trust))] if trust else [])
        try:
            out = board.send(entries, sh(script), "copying", timeout=1800)
        except RemoteError as exc:  # the directory is named before the tar: removed all the same
            plan.release = _release_in(exc.stdout, root)
            raise
        plan.release = rel = _release_in(out, root)
        if rel is None:
            raise EdgeseqError(f"unexpected answer from the board: {out.strip()[:120]!r}")
    say(f"copy: {posixpath.relpath(rel, root)} ({_mb(upload)}) {took('copy')}")

    venv_dir = p["venv"]
    remote_wheel = f"{rel}/wheel/{wheel.name}"
    with timed("venv"):
        pip = _pip(venv_dir)
        script = (f"set -e; V={_q(venv_dir)}; "
                  f"if [ -x \"$V/bin/python\" ]; then echo reused; else python3 -m venv \"$V\" >&2; echo created; fi; "
                  f"{pip} {_q(f'{remote_wheel}[{extra}]')} >&2; ")
        if p["venv_exists"]:  # same version, new code: pip would call it satisfied
            script += f"{pip} --force-reinstall --no-deps {_q(remote_wheel)} >&2; "
        plan.installed = True
        out = board.run(sh(script + f"{_q(venv_dir + '/bin/edgeseq')} --version"), "installing", timeout=3600)
        lines = out.split()
        state = "reused" if "reused" in lines else "created"
    say(f"venv: {state} {venv_dir}, installed edgeseq[{extra}] ({out.strip().splitlines()[-1]}) {took('venv')}")

    with timed("self-check"):
        args = [f"{venv_dir}/bin/edgeseq", "profile", f"{rel}/bundle", "--n", "200", "--no-arena", "--json", "-"]
        args += ["--trust", f"{rel}/trust.pub"] if trust else []
        out = board.run(sh(f"cd {_q(rel)} && {_q(*args)}"), "self-check", timeout=1800)
        try:
            prof = json.loads(out)
            lat = prof["latency_us"]
        except (ValueError, KeyError, TypeError):
            raise EdgeseqError(f"edgeseq profile on the board did not print its JSON: {out.strip()[:120]!r}") from None
    win = lat.get("window") or lat["step"]
    signed = ", signature verified" if trust else ""
    say(f"self-check: bundle loaded, hashes verified{signed}; {prof.get('runtime', fmt)} "
        f"p50 {win['p50']:.0f} us, p99 {win['p99']:.0f} us per window {took('self-check')}")

    bundle_name = bundle.resolve().name
    summary = {
        "host": host, "release": posixpath.basename(rel), "path": rel,
        "deployed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "board": {"hostname": p["hostname"], "uname": p["uname"], "machine": p["machine"]},
        "python": p["python"], "venv": venv_dir, "extra": extra,
        "wheel": {"name": wheel.name, "sha256": plan.wheel_sha},
        "bundle": {"name": bundle_name, "task": manifest.get("task"), "kind": (manifest.get("model") or {}).get("kind"),
                   "runtime": fmt, "precision": (manifest.get("runtime") or {}).get("precision", "float32"),
                   "manifest_sha256": manifest_sha, "signed_for": Path(trust).name if trust else None},
        "latency_us": {"window": {k: win[k] for k in ("p50", "p99")},
                       "step": {k: lat["step"][k] for k in ("p50", "p99")} if lat.get("step") else None,
                       "n": win.get("n", 200), "runtime": prof.get("runtime", fmt)},
        "service": {"port": port, "unit": p["unit_path"]} if service else None,
        "stages_s": dict(times),
        "seconds": round(time.monotonic() - t_start, 1),  # up to the self-check; deploy() prints the total
    }

    with timed("activate"):
        # the new release and the one it replaces are never pruned, whatever their names
        keep_old = posixpath.basename(p["current"]) if p["current"] else ""
        script = (f"set -e; R={_q(root)}; N={_q(rel)}; K={_q(posixpath.basename(rel))}; O={_q(keep_old)}; "
                  f"printf '%s\\n' {_q(json.dumps(summary, indent=1))} > \"$N/deploy.json\"; "
                  f"ln -sfn \"$N\" \"$R/current.new.$$\"; mv -T \"$R/current.new.$$\" \"$R/current\"; "
                  f"cd \"$R/releases\"; n=0; ls -1 | sort -r | while IFS= read -r r; do "
                  f"[ -f \"$r/{MARK}\" ] || continue; n=$((n+1)); [ $n -le {KEEP} ] && continue; "
                  f"[ \"$r\" = \"$K\" ] || [ \"$r\" = \"$O\" ] && continue; "
                  f"rm -rf -- \"$r\"; echo \"pruned $r\"; done || true")  # pruning is best effort
        plan.switched = True
        out = board.run(sh(script), "activating", timeout=300)
    pruned = [ln.split(" ", 1)[1] for ln in out.splitlines() if ln.startswith("pruned ")]
    say(f"activate: current -> {posixpath.relpath(rel, root)}"
        f"{f', pruned {len(pruned)} old release(s)' if pruned else ''} {took('activate')}")

    with timed("service"):
        if service:
            text = unit_text(venv=venv_dir, root=root, port=port, trust=bool(trust))
            u = p["unit_path"]
            script = (f"set -e; U={_q(u)}; mkdir -p \"$(dirname \"$U\")\"; "
                      f"printf '%s' {_q(text)} > \"$U.tmp\"; mv \"$U.tmp\" \"$U\"; "
                      f"{SYSTEMCTL} daemon-reload; {SYSTEMCTL} enable {UNIT}; {SYSTEMCTL} restart {UNIT}; "
                      # linger: the user's service manager (and so this service) keeps running after
                      # logout and starts at boot without a login; a board may refuse it to users
                      f"if l=$(loginctl enable-linger 2>&1); then echo linger=yes; "
                      f"else echo \"linger=no $(printf '%s' \"$l\" | tail -n 1)\"; fi")
            plan.unit_written = plan.restarted = True
            out = board.run(sh(script), "installing the service", timeout=300)
            linger = next((ln for ln in out.splitlines() if ln.startswith("linger=")), "linger=yes")
            if linger != "linger=yes":
                print(f"edgeseq: warning: loginctl enable-linger refused on {host} "
                      f"({linger.split(' ', 1)[-1] or 'no reason given'}): the service stops when you log out",
                      file=sys.stderr)
            line = f"{UNIT} enabled and restarted, serving {port}"
        elif p["unit"] is not None:
            if f"ExecStart={venv_dir}/bin/edgeseq " not in p["unit"]:
                print(f"edgeseq: warning: the service on {host} runs another venv's edgeseq; deploy with "
                      f"--service --port PORT to point it at {venv_dir}", file=sys.stderr)
            plan.restarted = True
            board.run(sh(f"{SYSTEMCTL} restart {UNIT}"), "restarting the service", timeout=300)
            line = f"{UNIT} restarted on the new release"
        else:
            line = "none installed (--service --port PORT installs one)"
    say(f"service: {line} {took('service')}")
    return summary


def _rollback(plan: _Plan) -> None:
    """Undo what this deploy did on the board, newest first; best effort, each step on its own."""
    if not plan.probe or plan.release is None:
        return
    p, steps = plan.probe, []
    if plan.switched:
        steps.append(f"ln -sfn {_q(p['current'])} {_q(p['root'] + '/current.old')} && "
                     f"mv -T {_q(p['root'] + '/current.old')} {_q(p['root'] + '/current')}" if p["current"]
                     else f"rm -f {_q(p['root'] + '/current')}")
    if plan.unit_written:
        steps.append(f"printf '%s' {_q(p['unit'])} > {_q(p['unit_path'])}" if p["unit"] is not None
                     else f"{SYSTEMCTL} disable {UNIT}; rm -f {_q(p['unit_path'])}")
        steps.append(f"{SYSTEMCTL} daemon-reload")
    prev = p.get("previous") or {}
    old_wheel = (prev.get("wheel") or {}).get("name")
    if (plan.installed and p["venv_exists"] and p["current"] and old_wheel and prev.get("venv") == p["venv"]
            and (prev.get("wheel") or {}).get("sha256") != plan.wheel_sha):
        old_path = f"{p['current']}/wheel/{old_wheel}"
        steps.append(f"{_pip(p['venv'])} --force-reinstall --no-deps {_q(old_path)}")
    if plan.restarted and p["unit"] is not None and p["current"]:
        steps.append(f"{SYSTEMCTL} restart {UNIT}")
    steps.append(f"rm -rf -- {_q(plan.release)}")
    try:
        plan.board.run(sh("; ".join(f"{{ {s}; }} >&2" for s in steps)), "rolling back", timeout=900)
    except EdgeseqError as exc:
        print(f"edgeseq: warning: undoing the failed deploy: {exc}", file=sys.stderr)


# ---- status and logs ---------------------------------------------------------------------------------

def status(host: str, *, ssh_config=None) -> dict:
    """The current release's deploy.json (its summary), and whether the service is active."""
    board = _board(host, ssh_config, "deploy --status")
    try:
        out = board.run(sh("python3 -c " + _q(_STATUS, UNIT)), "reading the deployment", timeout=120)
        st = json.loads(out.strip().splitlines()[-1])
    except RemoteError as exc:
        raise EdgeseqError(f"deploy --status on {host}: {exc.tail}") from None
    except (ValueError, IndexError):
        raise EdgeseqError(f"deploy --status on {host}: python3 did not answer") from None
    if not st["current"]:
        raise EdgeseqError(f"no edgeseq deployment on {host} (~/edgeseq/current is missing): run edgeseq deploy")
    return st


def format_status(host: str, st: dict) -> str:
    d = st.get("deploy") or {}
    b, lat = d.get("bundle") or {}, d.get("latency_us") or {}
    win = lat.get("window") or {}
    lines = [f"board: {host}" + (f" ({d['board']['hostname']}, {d['board']['uname']})" if d.get("board") else ""),
             f"current: {st['current']}" + (f" (deployed {d['deployed_at']})" if d.get("deployed_at") else "")]
    if b:
        lines.append(f"bundle: {b.get('name')} (task {b.get('task')}, runtime {b.get('runtime')}, precision "
                     f"{b.get('precision')}, manifest sha256 {str(b.get('manifest_sha256'))[:16]})")
    lines.append(f"service: {UNIT.removesuffix('.service')} {st['service']}")
    if win:
        lines.append(f"last deploy: Python {d.get('python')}, venv {d.get('venv')}, p50 {win['p50']:.0f} us, "
                     f"p99 {win['p99']:.0f} us per window on the board, took {d.get('seconds', '?')} s")
    return "\n".join(lines)


def logs(host: str, n: int, *, ssh_config=None) -> str:
    board = _board(host, ssh_config, "deploy --logs")
    try:
        return board.run(_q("journalctl", "--user", "-u", UNIT.removesuffix(".service"), "-n", int(n), "--no-pager"),
                         "reading the journal", timeout=120)
    except RemoteError as exc:
        raise EdgeseqError(f"deploy --logs on {host}: {exc.tail}") from None

"""``edgeseq deploy`` end to end, against a real SSH server on 127.0.0.1.

The board is a directory served by asyncssh (``tests/sshd.py``; OpenSSH's ``sshd`` is not in this
container): each command runs there with ``HOME`` and cwd set to it. There is no systemd in this
container either, so ``systemctl``, ``journalctl`` and ``loginctl`` on the board are stand-ins
that log their arguments, answer ``is-active``, print canned journal lines, and (loginctl) refuse
linger as a board may. Everything else is real: OpenSSH's ``ssh`` with a generated key, a
known_hosts and a config file (``--ssh-config``), the wheel built by ``python -m build``,
``python3 -m venv``, pip installing the wheel with its extra from this machine's package mirror,
and the board's own edgeseq running the self-check.

One board, one venv for the module: the first deploy builds the wheel and creates the venv, the
next ones reuse both (the wheel is taken from the first release on the board).
"""

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from edgeseq.cli import main
from edgeseq.export import export

TIMES = {}


def deploy(board, *args, config=None):
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "edgeseq", "deploy", *map(str, args),
                        "--ssh-config", str(config or board.config)], capture_output=True, text=True, timeout=600)
    return r, time.monotonic() - t


def one_line(r, text):
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgeseq: error: ") and text in lines[0], r.stderr
    return lines[0]


def calls(board) -> list[str]:
    return (board.root / "standins.log").read_text().splitlines()


def releases(board) -> list[str]:
    return sorted(p.name for p in (board.home / "edgeseq" / "releases").iterdir())


def current(board) -> Path:
    link = board.home / "edgeseq" / "current"
    assert link.is_symlink()
    return Path(os.readlink(link))


@pytest.fixture(scope="module")
def onnx_bundle(small_bundle, tmp_path_factory):
    return export(small_bundle, tmp_path_factory.mktemp("deploy") / "small.onnx.bundle", fmt="onnx")


@pytest.fixture(scope="module")
def first(loopback_board, onnx_bundle):
    """The first deploy: builds the wheel, creates the venv, installs the service."""
    r, t = deploy(loopback_board, "board", onnx_bundle, "--service", "--port", "/dev/ttyUSB9")
    TIMES["first"] = t
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.fixture(scope="module")
def wheel(first, loopback_board) -> Path:
    """The wheel the first deploy built, as the board received it."""
    return next((current(loopback_board) / "wheel").glob("edgeseq-*.whl"))


def test_first_deploy(first, loopback_board, onnx_bundle):
    board = loopback_board
    out = first.stdout
    for stage in ("build", "connect", "copy", "venv", "self-check", "activate", "service"):
        assert any(line.startswith(stage + ": ") for line in out.splitlines()), (stage, out)
    assert "venv: created" in out and "installed edgeseq[device]" in out
    assert "Python 3." in out and "runtime:  onnx float32" in out
    # the latency in the summary is the one the board's profile measured, and it is recorded
    rel = current(board)
    summary = json.loads((rel / "deploy.json").read_text())
    lat = summary["latency_us"]["window"]
    assert 0 < lat["p50"] <= lat["p99"] and f"p50 {lat['p50']:.0f} us, p99 {lat['p99']:.0f} us" in out
    TIMES["latency"] = lat
    assert rel.parent == board.home / "edgeseq" / "releases" and releases(board) == [rel.name]
    assert summary["bundle"]["name"] == "small.onnx.bundle" and summary["extra"] == "device"
    assert summary["bundle"]["manifest_sha256"][:16] in out
    assert (rel / "bundle" / "manifest.json").read_bytes() == (onnx_bundle / "manifest.json").read_bytes()
    # linger refused by the stand-in: a warning, not a failure
    assert "warning: loginctl enable-linger refused on board" in first.stderr
    assert calls(board) == ["systemctl --user daemon-reload", "systemctl --user enable edgeseq-serve.service",
                            "systemctl --user restart edgeseq-serve.service", "loginctl enable-linger"]
    unit = board.home / ".config" / "systemd" / "user" / "edgeseq-serve.service"
    text = unit.read_text()
    edgeseq = board.home / "edgeseq" / "venv" / "bin" / "edgeseq"
    assert (f"ExecStart={edgeseq} serve --port /dev/ttyUSB9 --bundle {board.home}/edgeseq/current/bundle "
            f"--out {board.home}/edgeseq/serve.jsonl\n") in text
    assert "Restart=on-failure" in text and "WantedBy=default.target" in text
    # the board's edgeseq is the one just built, and it runs
    v = subprocess.run([str(edgeseq), "--version"], capture_output=True, text=True, timeout=60)
    assert v.returncode == 0 and v.stdout.startswith("edgeseq ")
    if shutil.which("systemd-analyze"):
        a = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                           timeout=60)
        assert a.returncode == 0 and not a.stderr.strip() and not a.stdout.strip(), a.stdout + a.stderr


def test_status_and_logs(first, loopback_board):
    r, _ = deploy(loopback_board, "--status", "board")
    assert r.returncode == 0, r.stderr
    rel = current(loopback_board)
    assert f"current: {rel}" in r.stdout and "service: edgeseq-serve active" in r.stdout
    assert "bundle: small.onnx.bundle (task ecg, runtime onnx, precision float32" in r.stdout
    assert "us per window on the board" in r.stdout
    r, _ = deploy(loopback_board, "--logs", "board", "-n", "5")
    assert r.returncode == 0 and '"label": "N"' in r.stdout, r.stderr
    assert calls(loopback_board)[-1] == "journalctl --user -u edgeseq-serve -n 5 --no-pager"


def test_second_deploy_reuses_the_venv(first, loopback_board, onnx_bundle, wheel, tmp_path):
    """A signed bundle with --trust, the wheel given: the venv is reused (faster), the installed
    service restarted onto the new release, the oldest of our releases pruned (3 kept), a
    directory that is not ours left alone."""
    board = loopback_board
    assert main(["keygen", "--out", str(tmp_path / "team")]) == 0
    signed = tmp_path / "signed.onnx.bundle"
    shutil.copytree(onnx_bundle, signed)
    assert main(["sign", str(signed), "--key", str(tmp_path / "team")]) == 0
    rel_dir = board.home / "edgeseq" / "releases"
    for name, ours in (("20000101T000000Z-old", True), ("20010101T000000Z-old", True), ("19990101-mine", False)):
        (rel_dir / name).mkdir()
        if ours:
            (rel_dir / name / ".edgeseq-release").write_text("x")
    before, n_calls = current(board), len(calls(board))
    r, t = deploy(board, "board", signed, "--wheel", wheel, "--trust", tmp_path / "team.pub")
    TIMES["second"] = t
    assert r.returncode == 0, r.stdout + r.stderr
    assert "build: " + wheel.name + " given" in r.stdout and "venv: reused" in r.stdout
    assert "signature verified" in r.stdout and "pruned 1 old release" in r.stdout
    assert t < TIMES["first"]
    now = current(board)
    assert now != before and (now / "trust.pub").is_file()
    assert json.loads((now / "deploy.json").read_text())["bundle"]["signed_for"] == "team.pub"
    assert releases(board) == sorted(["19990101-mine", "20010101T000000Z-old", before.name, now.name])
    assert calls(board)[n_calls:] == ["systemctl --user restart edgeseq-serve.service"]
    shutil.rmtree(rel_dir / "20010101T000000Z-old")
    print(f"\nfirst deploy {TIMES['first']:.1f} s, second (venv reused) {t:.1f} s, board latency "
          f"p50 {TIMES['latency']['p50']:.0f} us, p99 {TIMES['latency']['p99']:.0f} us per window")


@pytest.mark.parametrize("case", ["altered byte", "other key"])
def test_failed_deploy_leaves_the_previous_one(case, first, loopback_board, onnx_bundle, wheel, tmp_path):
    board = loopback_board
    bad = tmp_path / "bad.onnx.bundle"
    shutil.copytree(onnx_bundle, bad)
    args = []
    if case == "altered byte":
        model = bad / "model.onnx"
        data = bytearray(model.read_bytes())
        data[len(data) // 2] ^= 1
        model.write_bytes(bytes(data))
        why = "sha256"
        # and a changed edgeseq wheel (same name, one more file): installed, then put back
        changed = tmp_path / wheel.name
        with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(changed, "w") as dst:
            for item in src.infolist():
                dst.writestr(item, src.read(item))
            dst.writestr("edgeseq/_changed.txt", "a newer edgeseq")
        wheel = changed
    else:
        for k in ("a", "b"):
            assert main(["keygen", "--out", str(tmp_path / k)]) == 0
        assert main(["sign", str(bad), "--key", str(tmp_path / "a")]) == 0
        args = ["--trust", tmp_path / "b.pub"]
        why = "signed by key"
    before, kept, n_calls = current(board), releases(board), len(calls(board))
    r, _ = deploy(board, "board", bad, "--wheel", wheel, *args)
    line = one_line(r, "edgeseq: error: deploy failed at self-check on board: edgeseq: error: bundle ")
    assert why in line
    assert current(board) == before and releases(board) == kept  # the failed release is removed
    assert calls(board)[n_calls:] == []  # no restart, no systemctl at all
    assert "venv: reused" in r.stdout and "activate:" not in r.stdout
    assert not list((board.home / "edgeseq" / "venv").glob("lib/python*/site-packages/edgeseq/_changed.txt"))


def test_wrong_host_key_fails_at_connect(first, loopback_board, onnx_bundle, wheel):
    import asyncssh

    board = loopback_board
    config = board.ssh_config("impostor", asyncssh.generate_private_key("ssh-ed25519"))
    before, kept = current(board), releases(board)
    r, _ = deploy(board, "board", onnx_bundle, "--wheel", wheel, config=config)
    one_line(r, "deploy failed at connect on board: Host key verification failed.")
    assert current(board) == before and releases(board) == kept


def test_option_errors(onnx_bundle, tmp_path, capsys, monkeypatch):
    cases = [(["board", str(onnx_bundle), "--service"], "--service needs --port"),
             (["board", str(onnx_bundle), "--port", "/dev/ttyACM0"], "--port goes with --service"),
             (["board", str(onnx_bundle), "--service", "--port", "/dev/tty 1"], "--port '/dev/tty 1'"),
             (["-oProxyCommand=touch x", str(onnx_bundle)], "is not a USER@HOST"),
             (["board", str(onnx_bundle), "--wheel", str(tmp_path / "no.whl")], "no such file"),
             (["board", str(tmp_path / "none")], "does not exist"),
             (["board"], "deploy needs [USER@]HOST BUNDLE"),
             (["--status", "board", str(onnx_bundle)], "takes only the host"),
             (["board", str(onnx_bundle), "--ssh-config", str(tmp_path / "nope")], "--ssh-config")]
    for args, msg in cases:
        assert main(["deploy", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("edgeseq: error:") and msg in err and len(err.strip().splitlines()) == 1, err
    # no checkout to build from and no --wheel: the build stage says so, before reaching the board
    from edgeseq import deploy as dp

    monkeypatch.setattr(dp, "checkout", lambda: None)
    assert main(["deploy", "board", str(onnx_bundle)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgeseq: error: deploy failed at build on board: no source checkout") and "--wheel" in err


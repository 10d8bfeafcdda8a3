from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_MITDB = ROOT.parent / "shared" / "data" / "mitdb"
SAMPLE = ROOT / "edgeseq" / "data" / "sample"
HBEDB = ROOT.parent / "shared" / "data" / "hbedb"


def _shared(path: Path, what: str) -> Path:
    """A data set beside the checkout (CI has it); skip only where it is absent."""
    if not path.is_dir():
        pytest.skip(f"{what} not found at {path}")
    return path


@pytest.fixture(scope="session")
def mitdb() -> Path:
    """The full MIT-BIH records."""
    return _shared(SHARED_MITDB, "MIT-BIH records")


@pytest.fixture(scope="session")
def sample() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def small_bundle(tmp_path_factory, sample):
    """An ESN bundle trained once on three shipped excerpts (small reservoir: tests need no accuracy)."""
    from edgeseq.tasks import ecg

    out = tmp_path_factory.mktemp("bundles") / "small.bundle"
    ecg.train(sample, ["119", "201", "223"], out=out, seed=1, params={"units": 60}, progress=False)
    return out


@pytest.fixture(scope="session")
def neural_bundles(tmp_path_factory, sample):
    """Tiny LSTM (two layers) and TCN bundles trained once on shipped excerpts (needs torch)."""
    pytest.importorskip("torch")
    from edgeseq.tasks import ecg

    root = tmp_path_factory.mktemp("neural")
    out = {}
    for kind, params in (("lstm", {"hidden": 12, "layers": 2, "epochs": 1}),
                         ("tcn", {"channels": 8, "blocks": 4, "epochs": 1})):
        out[kind] = ecg.train(sample, ["119", "201", "223"], out=root / f"{kind}.bundle", model=kind, seed=1,
                              params=params, progress=False)["bundle"]
    return out


@pytest.fixture(scope="session")
def hbedb() -> Path:
    """The balance data set."""
    return _shared(HBEDB, "hbedb")


@pytest.fixture(scope="session")
def score_bundle(hbedb, tmp_path_factory):
    """A balance ESN (Mini-BESTest total), trained once."""
    from edgeseq.tasks import balance

    return balance.train(hbedb, target="Best_T", out=tmp_path_factory.mktemp("bal") / "best.bundle",
                         progress=False, params={"units": 100})


@pytest.fixture(scope="session")
def tcn_condition_bundle(hbedb, tmp_path_factory):
    """A small balance TCN telling foam from firm, trained once (needs torch)."""
    pytest.importorskip("torch")
    from edgeseq.tasks import balance

    return balance.train(hbedb, target="surface", out=tmp_path_factory.mktemp("bal") / "tcn.bundle", model="tcn",
                         progress=False, params={"channels": 8, "blocks": 4, "epochs": 8})


@pytest.fixture(scope="module")
def loopback_board(tmp_path_factory):
    """A "board" reached with the system ssh through a real SSH server on 127.0.0.1 (tests/sshd.py):
    ``.host`` ("board"), ``.config`` (for ssh -F / --ssh-config), ``.home``, ``.root``."""
    import shutil

    if shutil.which("ssh") is None:
        pytest.skip("no OpenSSH client (ssh) on this machine")
    from sshd import LoopbackBoard, board_env

    root = tmp_path_factory.mktemp("board")
    with LoopbackBoard(root, board_env(root)) as board:
        yield board

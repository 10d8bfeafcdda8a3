"""One model, every runtime: family x format x precision x form (window, step).

Each family's description runs on the numpy interpreter (a training bundle through
``edgeseq.runtime``) and, exported, on onnxruntime, a TFLite interpreter and the generated C
(built with the system compiler). Float: every export equals the description (1e-4). int8: ONNX
and TFLite equal the description's integer form (the scales its manifest records), so they agree
with each other; C equals the fixed-point program (``graph/fixed.py``) bit for bit; and every
int8 export keeps the float labels. Step: a window model stepped sample by sample from its initial state ends at its window
output; a sequence model stepped equals its run.
"""

from dataclasses import dataclass, field

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")

from edgeseq import runtime  # noqa: E402
from edgeseq.export import export  # noqa: E402

FAMILIES = ["ecg-esn", "ecg-lstm", "ecg-tcn", "balance-esn", "balance-tcn", "reservoirpy"]
FORMATS = ["onnx", "tflite", "c"]
PRECISIONS = ["float32", "int8"]
FORMS = ["window", "step"]


@dataclass
class Case:
    bundle: object
    args: tuple = ()  # window-model inputs, batch first
    held: dict = field(default_factory=dict)  # step inputs held over a window
    samples: np.ndarray | None = None  # [B, T, D]: one step's input per t
    sequences: list = field(default_factory=list)  # sequence models: (T, D) inputs
    calibration: object = None
    classifier: bool = True


def _beats(bundle, sample, n=300):
    from edgeseq.preprocess.ecg import EcgPreprocessing
    from edgeseq.tasks.ecg import load_beats

    prep = EcgPreprocessing.from_config(runtime.load(bundle).manifest["preprocessing"])
    b = load_beats(sample, ["208"], prep, progress=False)  # V-rich: more than one class in play
    w, rr = b.windows[:n].astype(np.float32), b.rr[:n].astype(np.float32)
    return Case(bundle, (w, rr), {"rr": rr}, w[:, :, None], calibration=(w, rr))


def _balance_windows(bundle, hbedb):
    from edgeseq.data.hbedb import load_trial
    from edgeseq.preprocess.balance import BalancePreprocessing

    prep = BalancePreprocessing.from_config(runtime.load(bundle).manifest["preprocessing"])
    X, _, _ = prep.windows(load_trial(hbedb, "BDS00042").forces)
    return X.astype(np.float32)


@pytest.fixture(scope="session")
def rpy_bundle(tmp_path_factory):
    """A reservoirpy model fitted on a synthetic task (delayed sines), imported with its state."""
    pytest.importorskip("reservoirpy")
    from reservoirpy.nodes import Reservoir, Ridge

    from edgeseq.interop import from_reservoirpy

    t = np.arange(1200)
    X = np.stack([np.sin(2 * np.pi * t / 37), np.sin(2 * np.pi * t / 23)], axis=1)
    model = Reservoir(80, lr=0.4, sr=0.9, seed=3) >> Ridge(ridge=1e-4)
    model.fit(X[:800], np.roll(X[:800, :1], 5, axis=0), warmup=20)
    return from_reservoirpy(model, tmp_path_factory.mktemp("rpy") / "rpy.bundle", sample_rate=100), X[800:].astype(np.float32)


@pytest.fixture(scope="session")
def cases(request, sample):
    made = {}

    def get(name):
        if name not in made:
            if name.startswith("ecg-"):
                bundle = request.getfixturevalue("small_bundle") if name == "ecg-esn" else \
                    request.getfixturevalue("neural_bundles")[name[4:]]
                made[name] = _beats(bundle, sample)
            elif name == "balance-esn":
                b, hbedb = request.getfixturevalue("score_bundle"), request.getfixturevalue("hbedb")
                X = _balance_windows(b, hbedb)[:6]
                made[name] = Case(b, sequences=list(X), calibration=X, classifier=False)
            elif name == "balance-tcn":
                b, hbedb = request.getfixturevalue("tcn_condition_bundle"), request.getfixturevalue("hbedb")
                X = _balance_windows(b, hbedb)
                made[name] = Case(b, (X,), {}, X, calibration=X)
            else:
                b, X = request.getfixturevalue("rpy_bundle")
                made[name] = Case(b, sequences=[X[:200], X[200:400]], calibration=X[:400], classifier=False)
        return made[name]
    return get


@pytest.fixture(scope="session")
def exported(cases, tmp_path_factory):
    root, done = tmp_path_factory.mktemp("parity"), {}

    def get(name, fmt, precision):
        key = (name, fmt, precision)
        if key not in done:
            c = cases(name)
            done[key] = export(c.bundle, root / "-".join(key), fmt=fmt, int8=precision == "int8",
                               calibration=c.calibration)
        return done[key]
    return get


def window_outputs(model, c: Case) -> np.ndarray:
    if c.sequences:  # each sequence from the model's initial state
        return np.concatenate([model.run(x, model.initial_state()) for x in c.sequences])
    return model.logits(*c.args)


def step_outputs(model, c: Case) -> np.ndarray:
    if c.sequences:
        ys = []
        for x in c.sequences:
            state = model.initial_state()
            for t in range(len(x)):
                y, state = model.step(x[t:t + 1], state)
                ys.append(y)
        return np.concatenate(ys)
    state = model.initial_state(len(c.samples), **c.held)
    for t in range(c.samples.shape[1]):
        y, state = model.step(c.samples[:, t], state)
        assert (y is None) == (t < c.samples.shape[1] - 1)  # a window's output, at its end only
    return y


FORM = {"window": window_outputs, "step": step_outputs}


class _Integer:
    """The numpy interpreter on the integer form of a family's description, at the scales an
    int8 export recorded: the reference every int8 export must equal."""

    def __init__(self, training_bundle, manifest):
        from edgeseq.bundle import load_bundle
        from edgeseq.graph.numpy import run
        from edgeseq.graph.quantize import quantize
        from edgeseq.models import family

        b = load_bundle(training_bundle)
        fam = family(b.manifest)
        scales = {k: v["scale"] for k, v in manifest["runtime"]["quantization"]["activations"].items()}
        self.graphs = {which: quantize(fam.describe(b.manifest, b.arrays, form), scales=scales)
                       for which, form in (("model", "window"), ("step", "step"))}
        self._run = run

    def run(self, which, feeds):
        return self._run(self.graphs[which], feeds)


def _integer_model(c: Case, path):
    m = runtime.load(path)
    man = dict(m.manifest)
    man["runtime"] = {**man["runtime"], "model": "description"}  # the interpreter has a window form for any length
    return runtime.Model(path, man, _Integer(c.bundle, m.manifest), runtime.load(c.bundle)._initial)


class _Fixed:
    """The numpy interpreter of the fixed-point program the int8 C export printed."""

    def __init__(self, training_bundle, calibration, manifest):
        from edgeseq.export import fixed_program

        self.prog = fixed_program(training_bundle, calibration)
        self.rt = manifest["runtime"]

    def run(self, which, feeds):
        from edgeseq.graph import fixed

        step = lambda f: fixed.run(self.prog, f)  # noqa: E731
        if which == "step":
            return step(feeds)
        p = self.prog
        if self.rt["interface"] == "sequence":
            out = fixed.scan_steps(step, p.inputs, p.shape, p.states, feeds, {}, every=True)
            return {k: (v[:, -1] if k[:-4] in p.states else v) for k, v in out.items()}
        return fixed.scan_steps(step, p.inputs, p.shape, p.states, feeds, {k: fixed.to_float(v, p.scale[k]) for k, v in p.initial.items()})


def _fixed_model(c: Case, path):
    m = runtime.load(path)
    return runtime.Model(path, m.manifest, _Fixed(c.bundle, c.calibration, m.manifest), runtime.load(c.bundle)._initial)


#: format -> (the int8 reference it must equal, bit for bit or not)
INT8_REFERENCE = {"onnx": (_integer_model, False), "tflite": (_integer_model, False), "c": (_fixed_model, True)}


def _close(got, want, rel):
    scale = max(1.0, float(np.abs(want).max()))
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= rel * scale, np.abs(got - want).max()


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", FAMILIES)
def test_float_export_equals_the_description(cases, exported, name, fmt, form):
    c = cases(name)
    want = window_outputs(runtime.load(c.bundle), c)  # the numpy interpreter on the training bundle
    _close(FORM[form](runtime.load(exported(name, fmt, "float32")), c), want, 1e-4)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", FAMILIES)
def test_int8_export_equals_the_integer_description(cases, exported, name, fmt, form):
    c = cases(name)
    path = exported(name, fmt, "int8")
    reference, exact = INT8_REFERENCE[fmt]
    want = window_outputs(reference(c, path), c)
    got = FORM[form](runtime.load(path), c)
    if exact:
        np.testing.assert_array_equal(got, want)
        return
    # a value on a rounding boundary may round either way in another runtime's float order: one
    # step of one activation; the bulk must agree to float rounding
    diff = np.abs(got - want)
    assert np.median(diff) <= 1e-5 * max(1.0, float(np.abs(want).max()))
    if c.classifier:
        assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.99


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", FAMILIES)
def test_int8_keeps_the_float_outputs(cases, exported, name, fmt):
    c = cases(name)
    f = window_outputs(runtime.load(exported(name, fmt, "float32")), c)
    q = window_outputs(runtime.load(exported(name, fmt, "int8")), c)
    if c.classifier:
        assert (q.argmax(-1) == f.argmax(-1)).mean() >= 0.98
    else:
        assert np.abs(q - f).max() <= 0.05 * (np.ptp(f) + 1e-6)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", FAMILIES)
def test_int8_bundle_holds_its_runtime_and_nothing_else(cases, exported, name, fmt):
    from edgeseq.bundle import load_bundle

    path = exported(name, fmt, "int8")
    b = load_bundle(path)
    rt = b.manifest["runtime"]
    assert set(b.arrays) <= set(rt["state"])  # initial states only: no float weights
    header = [rt["c"]["header"]] if "c" in rt else []  # a C library's API
    assert set(b.manifest["files"]) == {"weights.npz", rt["step"], *([rt["model"]] if "model" in rt else []), *header}
    assert rt["precision"] == "int8" and rt["quantization"]["weights"]
    assert b.manifest["model"]["kind"] == load_bundle(cases(name).bundle).manifest["model"]["kind"]

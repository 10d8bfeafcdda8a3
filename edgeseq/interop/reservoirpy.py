"""Import a trained reservoirpy 0.4 echo-state network as an edgeseq SEQUENCE bundle.

    import edgeseq.interop.reservoirpy as rpy
    rpy.from_reservoirpy(model, "esn.bundle")       # then: edgeseq export esn.bundle

Supported subset (anything else raises :class:`EdgeseqError` naming what is not supported):

- a ``reservoirpy.Model`` (or the ``ESN`` class with ``feedback=False`` and
  ``return_reservoir_activity=False``) made of exactly one ``Reservoir`` and one ``Ridge``, the
  reservoir feeding the readout, plus optional ``Input`` nodes: ``res >> readout``,
  ``data >> res >> readout & data >> readout``, ``ESN(input_to_readout=True)``; one source
  node only (``[data, res] >> readout`` has two, and takes a dict of inputs: not supported);
- ``Reservoir`` exactly (not its subclasses: intrinsic plasticity, local plasticity, ES2N, LIF),
  initialised (run or fitted once, so ``W``/``Win`` are matrices), activation tanh, identity,
  sigmoid or relu from ``reservoirpy.activationsfunc``; ``lr`` scalar or per unit; ``W`` and
  ``Win`` dense or scipy sparse; ``bias`` scalar or per unit;
- ``Ridge`` exactly (not RLS, LMS, ScikitLearnNode), fitted: ``Wout`` (in, out) and ``bias`` arrays;
- every connection without delay: no feedback (``readout << res``, ``ESN(feedback=True)``), no
  delayed links (``a >> 2 >> b``), no noise terms, one output node.

State: reservoirpy's ``run`` continues from the state the last call (or ``fit``) left. The bundle
records that state as ``x0`` by default, so its first run equals reservoirpy's next ``run`` call;
``initial_state="zero"`` records zeros instead (reservoirpy's ``run`` after ``model.reset()``).
Either way the runtime carries the state from one ``run`` call to the next, as reservoirpy does.

Arrays are stored as float32: ``W`` (N, N), ``Win`` (N, D), ``bias`` (N,), ``lr`` (N,),
``Wout`` (N [+ D], O) with the reservoir-state rows first and the input rows (when the input feeds
the readout) after, whatever the order reservoirpy concatenated them in, and ``bout`` (O,).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..bundle import write_bundle
from ..errors import EdgeseqError
__all__ = ["from_reservoirpy", "extract"]


def _rpy():
    try:
        import reservoirpy  # noqa: F401
        from reservoirpy import activationsfunc as af
        from reservoirpy.model import Model
        from reservoirpy.node import Node
        from reservoirpy.nodes import Input, Reservoir, Ridge
    except ImportError:
        raise EdgeseqError("from_reservoirpy needs reservoirpy 0.4 (pip install 'reservoirpy>=0.4,<0.5')") from None
    ver = getattr(reservoirpy, "__version__", "?")
    if not str(ver).startswith("0.4"):
        raise EdgeseqError(f"from_reservoirpy supports reservoirpy 0.4, this is {ver}")
    return Model, Node, Input, Reservoir, Ridge, af


def _dense(a, name: str) -> np.ndarray:
    if hasattr(a, "toarray"):  # scipy sparse: reservoirpy's default W and Win
        a = a.toarray()
    try:
        out = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise EdgeseqError(f"reservoirpy {name} is not a numeric array ({type(a).__name__})") from None
    if not np.all(np.isfinite(out)):
        raise EdgeseqError(f"reservoirpy {name} contains NaN or infinite values")
    return out


def _name(node) -> str:
    return f"{type(node).__name__}" + (f" {node.name!r}" if getattr(node, "name", None) else "")


def extract(model) -> tuple[dict, dict]:
    """The float64 arrays and the params of a supported reservoirpy model (see module doc).

    ``x0`` is the reservoir's current state (zeros if it has none yet).
    """
    Model, Node, Input, Reservoir, Ridge, af = _rpy()
    if isinstance(model, Node):
        raise EdgeseqError(f"from_reservoirpy needs a Model (reservoir >> readout), got a single node {_name(model)}")
    if not isinstance(model, Model):
        raise EdgeseqError(f"from_reservoirpy needs a reservoirpy Model, got {type(model).__name__}")
    if getattr(model, "feedback", False):
        raise EdgeseqError("reservoirpy ESN with feedback=True is not supported (no readout-to-reservoir feedback)")
    if getattr(model, "return_reservoir_activity", False):
        raise EdgeseqError("reservoirpy ESN with return_reservoir_activity=True is not supported (one output only)")

    others = [n for n in model.nodes if type(n) not in (Reservoir, Ridge, Input)]
    if others:
        raise EdgeseqError(f"reservoirpy node {_name(others[0])} is not supported: a model must be one "
                           f"Reservoir and one Ridge readout (plus Input nodes)")
    res = [n for n in model.nodes if type(n) is Reservoir]
    rdo = [n for n in model.nodes if type(n) is Ridge]
    if len(res) != 1:
        raise EdgeseqError(f"the model has {len(res)} Reservoir nodes; only one reservoir is supported "
                           f"(no deep or parallel reservoirs)")
    if len(rdo) != 1:
        raise EdgeseqError(f"the model has {len(rdo)} Ridge nodes; exactly one Ridge readout is supported")
    res, rdo = res[0], rdo[0]

    for p, d, c in model.edges:
        if d != 0:
            raise EdgeseqError(f"reservoirpy connection {_name(p)} -> {_name(c)} with delay {d} (feedback or "
                               f"delayed link) is not supported: only direct connections")
        if c is res and type(p) is not Input:
            raise EdgeseqError(f"the reservoir receives {_name(p)}; it may receive the input only")
        if c is rdo and p is not res and type(p) is not Input:
            raise EdgeseqError(f"the readout receives {_name(p)}; it may receive the reservoir and the input only")
        if type(c) is Input:
            raise EdgeseqError(f"Input node {_name(c)} receives {_name(p)}; Input nodes must be sources")
    if len(model.inputs) != 1:
        raise EdgeseqError(f"the model has {len(model.inputs)} sources "
                           f"({', '.join(_name(n) for n in model.inputs)}); one is supported: write "
                           f"data >> res >> readout & data >> readout to feed the input to the readout")
    if model.outputs != [rdo]:
        raise EdgeseqError(f"the model outputs {', '.join(_name(n) for n in model.outputs)}; "
                           f"only the Ridge readout may be an output")
    if res not in model.parents[rdo]:
        raise EdgeseqError("the reservoir does not feed the readout (expected reservoir >> readout)")
    for n in model.nodes:
        if type(n) is Input and n not in model.inputs:
            raise EdgeseqError(f"Input node {_name(n)} is not a model source")

    # Reservoir (0.4.2 has no Wfb or noise; a later or patched version might)
    for attr in ("noise_rc", "noise_in", "noise_fb"):
        if float(np.max(np.abs(np.asarray(getattr(res, attr, 0.0) or 0.0, dtype=float)))) != 0.0:
            raise EdgeseqError(f"reservoir {attr}={getattr(res, attr)} is not supported (noise makes runs random)")
    if getattr(res, "Wfb", None) is not None:
        raise EdgeseqError("reservoir feedback weights (Wfb) are not supported")
    if not getattr(res, "initialized", False) or callable(res.W) or callable(res.Win):
        raise EdgeseqError("the reservoir is not initialised (W/Win are still initialisers): fit or run "
                           "the model once before exporting")
    acts = {af.tanh: "tanh", af.identity: "identity", af.sigmoid: "sigmoid", af.relu: "relu"}
    act = acts.get(res.activation)
    if act is None:
        name = getattr(res.activation, "__name__", type(res.activation).__name__)
        raise EdgeseqError(f"reservoir activation {name!r} is not supported (supported: reservoirpy's "
                           f"tanh, identity, sigmoid, relu)")
    W = _dense(res.W, "reservoir W")
    Win_all = _dense(res.Win, "reservoir Win")
    N = W.shape[0]
    if W.shape != (N, N) or Win_all.ndim != 2 or Win_all.shape[0] != N:
        raise EdgeseqError(f"reservoir W {W.shape} / Win {Win_all.shape} do not have the shapes (N, N) / (N, D)")
    bias = _dense(res.bias, "reservoir bias")
    if bias.size == 1:
        bias = np.full(N, float(bias.reshape(())))
    elif bias.shape != (N,):
        raise EdgeseqError(f"reservoir bias has shape {bias.shape}; a scalar or ({N},) is supported")
    lr = _dense(res.lr, "reservoir lr")
    scalar_lr = lr.size == 1
    if scalar_lr:
        lr = np.full(N, float(lr.reshape(())))
    elif lr.shape != (N,):
        raise EdgeseqError(f"reservoir lr has shape {lr.shape}; a scalar or ({N},) is supported")

    # What each node receives: model.run(X) gives X to the source, then parents' outputs in
    # model.parents order (reservoirpy.Model._run). Should a node get X twice, both blocks of its
    # weight matrix multiply the same X and sum into one (N, D) / (D, O) matrix.
    def parts(node):
        out = ["x"] if node in model.inputs else []
        return out + ["s" if p is res else "x" for p in model.parents[node]]

    res_parts, rdo_parts = parts(res), parts(rdo)
    if not res_parts:
        raise EdgeseqError("the reservoir receives no input")
    D, r = divmod(Win_all.shape[1], len(res_parts))
    if r or D == 0:
        raise EdgeseqError(f"reservoir Win has {Win_all.shape[1]} columns for {len(res_parts)} input copies")
    Win = sum(Win_all[:, i * D:(i + 1) * D] for i in range(len(res_parts)))

    if rdo.Wout is None or callable(rdo.Wout) or rdo.bias is None or callable(rdo.bias):
        raise EdgeseqError("the Ridge readout is not fitted (no Wout/bias): fit the model before exporting")
    Wout_all = _dense(rdo.Wout, "readout Wout")
    bout = _dense(rdo.bias, "readout bias").reshape(-1)
    widths = [N if p == "s" else D for p in rdo_parts]
    if Wout_all.ndim != 2 or Wout_all.shape[0] != sum(widths):
        raise EdgeseqError(f"readout Wout has shape {Wout_all.shape}, expected ({sum(widths)}, outputs) "
                           f"for inputs {'+'.join(rdo_parts)}")
    O = Wout_all.shape[1]
    if bout.shape != (O,):
        raise EdgeseqError(f"readout bias has shape {bout.shape}, expected ({O},)")
    Wout_s, Wout_x = np.zeros((N, O)), np.zeros((D, O))
    row = 0
    for p, w in zip(rdo_parts, widths):
        if p == "s":
            Wout_s = Wout_s + Wout_all[row:row + w]
        else:
            Wout_x = Wout_x + Wout_all[row:row + w]
        row += w
    to_readout = "x" in rdo_parts
    Wout = np.concatenate([Wout_s, Wout_x]) if to_readout else Wout_s

    state = getattr(res, "state", None)
    x0 = np.zeros(N) if not isinstance(state, dict) or state.get("out") is None else \
        _dense(state["out"], "reservoir state").reshape(-1)
    if x0.shape != (N,):
        raise EdgeseqError(f"reservoir state has shape {x0.shape}, expected ({N},)")
    arrays = {"W": W, "Win": Win, "bias": bias, "lr": lr, "Wout": Wout, "bout": bout, "x0": x0}
    params = {"units": int(N), "inputs": int(D), "outputs": int(O), "activation": act,
              "lr": float(lr[0]) if scalar_lr else "per-unit", "input_to_readout": bool(to_readout),
              "readout_rows": ["state", "input"] if to_readout else ["state"],
              "initial_state": "reservoir",
              "source": {"library": "reservoirpy", "version": _version(),
                         "reservoir": {"sr": _num(getattr(res, "sr", None)),
                                       "input_scaling": _num(getattr(res, "input_scaling", None))},
                         "readout": {"ridge": _num(getattr(rdo, "ridge", None)),
                                     "fit_bias": bool(getattr(rdo, "fit_bias", True))}}}
    return arrays, params


def _version() -> str:
    import reservoirpy
    return str(getattr(reservoirpy, "__version__", "?"))


def _num(v):
    """A JSON-able copy of a hyper-parameter kept for the record (never used to compute)."""
    if v is None or callable(v):
        return None
    a = np.asarray(v, dtype=float)
    return float(a) if a.ndim == 0 else a.tolist()


def from_reservoirpy(model, out_dir, *, sample_rate=None, labels=None, initial_state: str = "reservoir") -> Path:
    """Write a float SEQUENCE bundle (regression, or per-step classification when ``labels`` names
    the outputs) from a trained reservoirpy model; ``edgeseq export`` turns it into ONNX or TFLite.

    ``initial_state``: ``"reservoir"`` (the reservoir's current state: the bundle's first run
    equals reservoirpy's next ``run``) or ``"zero"``. ``sample_rate`` (Hz) is recorded for the
    user's tooling only; the model does not use it.
    """
    if initial_state not in ("reservoir", "zero"):
        raise EdgeseqError(f"initial_state must be 'reservoir' or 'zero', not {initial_state!r}")
    arrays, params = extract(model)
    if initial_state == "zero":
        arrays["x0"] = np.zeros_like(arrays["x0"])
    params["initial_state"] = initial_state
    if sample_rate is not None:
        try:
            sample_rate = float(sample_rate)
        except (TypeError, ValueError):
            raise EdgeseqError(f"sample_rate must be a number of Hz or None, got {sample_rate!r}") from None
        if not (math.isfinite(sample_rate) and sample_rate > 0):
            raise EdgeseqError(f"sample_rate must be a positive number of Hz, got {sample_rate}")
    labels = [] if labels is None else [str(s) for s in labels]
    if labels and len(labels) != params["outputs"]:
        raise EdgeseqError(f"{len(labels)} labels given for a readout with {params['outputs']} outputs")
    if len(set(labels)) != len(labels):
        raise EdgeseqError("labels must be distinct")
    manifest = {"task": "sequence", "sample_rate": sample_rate, "labels": labels,
                "model": {"kind": "reservoirpy", "params": params}}
    return write_bundle(out_dir, manifest, {k: v.astype(np.float32) for k, v in arrays.items()})

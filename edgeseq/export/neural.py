"""What the ONNX and TFLite exporters of LSTM/TCN bundles share: the checked numpy model a graph is
built from, the step model's state tensors, and the manifest ``runtime`` section that
``edgeseq/runtime/neural.py`` reads."""

from __future__ import annotations

from ..errors import EdgeseqError


def neural_model(manifest: dict, arrays: dict, fmt: str):
    """``(est, T, F)``: the bundle's numpy model (its own shape checks run on load), the window
    length and the rr feature count; refused with one line unless it is a beat classifier the
    exporters take (one input channel, rr side features, a TCN with a past to keep)."""
    from ..models import NEURAL, model_class

    kind = manifest["model"]["kind"]
    if kind not in NEURAL:
        raise EdgeseqError(f"this exporter takes LSTM and TCN bundles, this one is {kind!r}")
    est = model_class(kind).from_arrays(manifest["model"]["params"], arrays)
    inp = manifest["model"].get("input", {})
    F = len(inp.get("rr_features", []))
    if est.objective != "classification" or len(est.in_scale_) != 1 or len(est.side_center_) != F or not F:
        raise EdgeseqError(f"{fmt} export takes beat classifiers: one input channel and the beats' rr features; "
                           f"this {kind} is a {est.objective} model of {len(est.in_scale_)} channels and "
                           f"{len(est.side_center_)} side features")
    T = int(inp.get("window_length", 0))
    if not T:
        raise EdgeseqError("bundle manifest lacks model.input.window_length; cannot fix the window length")
    if kind == "tcn" and est.kernel_size < 2:
        raise EdgeseqError("a TCN of kernel 1 keeps no past: there is no step state to export")
    return est, T, F


def step_states(est) -> dict[str, list[int]]:
    """State name -> shape after the batch, in the order the runtime feeds them: ``h{l}``, ``c{l}``
    per LSTM layer; the ring buffer ``buf{l}`` ``[(K-1) d, C_in]`` per TCN block."""
    H = est.hidden_size
    if est.KIND == "lstm":
        return {f"{k}{l}": [H] for l in range(est.n_layers) for k in ("h", "c")}
    return {f"buf{l}": [(est.kernel_size - 1) * est.dilation(l), H if l else len(est.in_scale_)]
            for l in range(est.n_blocks)}


def neural_runtime_section(est, fmt: str, *, T: int, F: int, int8: bool, model: str, step: str,
                           graph_form: str, source_sha256: str) -> dict:
    """The manifest ``runtime`` section of an exported LSTM or TCN, the same for both formats."""
    def f32(*shape):
        return {"shape": list(shape), "dtype": "float32"}

    states = step_states(est)
    rt = {
        "format": fmt, "precision": "int8" if int8 else "float32", "model": model, "step": step,
        "graph_form": graph_form, "source_sha256": source_sha256,
        "inputs": {"window": f32("B", T), "rr": f32("B", F)},
        "outputs": {"logits": f32("B", int(est.head_W2_.shape[1]))},
        "step_inputs": {"u": f32("B", len(est.in_scale_)), **{k: f32("B", *s) for k, s in states.items()}},
        "step_outputs": {"out": f32("B", est.hidden_size), **{k + "_out": f32("B", *s) for k, s in states.items()}},
        "state": list(states),
    }
    if est.KIND == "tcn":
        rt["step_inputs"]["pos"] = {"shape": [1], "dtype": "int32"}
        rt["step_counter"] = {"name": "pos", "modulo": max(s[0] for s in states.values())}
    return rt

"""README's first command ends in `edgeseq demo`: it must train, evaluate and name its plot."""

import json
import subprocess
import sys


def test_demo_runs_end_to_end(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgeseq", "demo", "--out", str(tmp_path / "demo")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "accuracy" in out and "detection Se" in out
    plot = tmp_path / "demo" / "demo-evaluation.confusion.png"
    assert f"plot: {plot}" in out and plot.stat().st_size > 10_000
    rep = json.loads((tmp_path / "demo" / "demo-evaluation.json").read_text())
    assert rep["records"] == ["208", "209"] and not rep["includes_training_records"]
    assert rep["detection"]["se"] > 0.99 and rep["classes"]["V"]["se"] > 0.8
    assert "reading records" in proc.stderr  # progress is shown for the long steps


def test_example_script(tmp_path):
    proc = subprocess.run([sys.executable, "examples/train_and_evaluate.py", "--out", str(tmp_path / "b")],
                          capture_output=True, text=True, timeout=600,
                          cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert proc.returncode == 0, proc.stderr
    assert "record 208:" in proc.stdout and "scored against" in proc.stdout

"""The GPU preset script of benchmarks/perf runs end to end on CPU at a tiny size and writes its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "perf" / "run_gpu.py"


def test_tiny_run_writes_every_mode_for_both_models(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--out", str(tmp_path), "--segments", "2",
                           "--warmup", "1", "--steps", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "gpu-tiny.json").read_text())
    assert set(doc["models"]) == {"wt103_base", "enwik8"} and doc["segments"] == 2
    for model in doc["models"].values():
        cases = {r["case"] for r in model["results"]}
        assert {f"rmtzoo/{m}" for m in ("none", "rmt", "xl", "rmt_xl")} <= cases
        assert ("pypi" in cases) == doc["pypi_installed"]
        for r in model["results"]:
            assert len(r["step_s"]) == 2 and r["tokens_per_s"] > 0
            assert r["tokens_per_step"] == model["size"]["batch"] * 2 * model["size"]["segment"]
    assert not list(tmp_path.glob(".gpu-*"))


def test_without_a_gpu_the_full_preset_refuses_in_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        return
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "--tiny" in proc.stderr
    assert not list(tmp_path.iterdir())

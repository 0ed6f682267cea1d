"""benchmarks/perf/bf16_vs_fp32.py trains one config in both precisions and reports both loss curves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "perf" / "bf16_vs_fp32.py"


def test_both_precisions_train_the_same_steps(tmp_path):
    config = tmp_path / "tiny.toml"
    text = (ROOT / "examples" / "copy_small.toml").read_text()
    config.write_text(text.replace("train_size = 20000", "train_size = 500").replace("test_size = 2000", "test_size = 64")
                      .replace("log_every = 100", "log_every = 5"))
    out = tmp_path / "r" / "cmp"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--config", str(config), "--steps", "10", "--seeds", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.with_name("cmp.json").read_text())
    by = {r["precision"]: r for r in doc["runs"]}
    assert set(by) == {"fp32", "bf16"}
    assert [s for s, _ in by["fp32"]["train_loss"]] == [s for s, _ in by["bf16"]["train_loss"]] == [5, 10]
    assert by["fp32"]["train_loss"] != by["bf16"]["train_loss"]  # bf16 really ran in bf16
    assert by["fp32"]["test"]["step"] == by["bf16"]["test"]["step"] == 10  # early stopping off
    assert "| 10 |" in out.with_name("cmp.md").read_text()


def test_bad_input_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--config", str(tmp_path / "missing.toml"), "--out",
                           str(tmp_path / "x")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "missing.toml" in proc.stderr

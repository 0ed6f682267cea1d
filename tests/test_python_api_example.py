"""examples/python_api.py runs as a user runs it: train, save, reload, generate with the Python API alone."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "python_api.py"


def test_python_api_example_runs(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RMTZOO_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.run([sys.executable, str(EXAMPLE), str(tmp_path), "--steps", "4"], capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert re.search(r"^test accuracy: \d\.\d+$", out, re.M), out
    assert "saved: README.md, config.json, model.safetensors, rmtzoo_model.json" in out
    assert "reloaded logits identical: True" in out
    generated = re.search(r"^source: \[2, 3, 4, 5, 6, 7\] generated: \[([\d, ]+)\]$", out, re.M)
    assert generated and len(generated.group(1).split(",")) == 6, out
    assert (tmp_path / "copy-rmt" / "README.md").read_text().startswith("---\nlibrary_name: rmtzoo\n")

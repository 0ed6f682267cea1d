"""benchmarks/perf/run_inference.py (issue 14's inference numbers) runs end to end at a small size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "perf" / "run_inference.py"


def test_small_run_writes_streaming_rss_and_generation(tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--only", "stream", "rss", "generate", "--segments", "1",
                           "--rounds", "1", "--gen-rounds", "1", "--new", "17", "--rss-tokens", "256",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    want = {f"{r} {p} {w}" for r in ("rmt", "rmt_xl") for p in ("fp32", "bf16") for w in ("reuse", "recompute")}
    assert want <= set(doc["stream"]) <= want | {"pypi fp32", "pypi bf16"}
    assert all(v["tokens_per_s"] > 0 and v["n"] == 1 for v in doc["stream"].values())
    assert set(doc["generate"]) == {"extend", "rerun"} and doc["rss"]["rss_mb_after_tokens"]


def test_bad_options_exit_2_in_one_line():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--only", "nope"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1

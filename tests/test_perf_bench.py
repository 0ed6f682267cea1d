"""The perf benchmark's smoke preset runs end to end and writes a well-formed JSON and markdown report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "perf" / "run_perf.py"


def test_smoke_preset(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--preset",
            "smoke",
            "--out",
            str(tmp_path),
            "--name",
            "smoke",
            "--no-profile",
            "--threads",
            "1",  # tiny models; more threads only contend on a shared machine
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "smoke.json").read_text())
    md = (tmp_path / "smoke.md").read_text()
    assert "# rmtzoo perf" in md and "target_short" in md
    assert not list(tmp_path.glob(".*tmp*")), "atomic write left a temporary file"

    assert doc["schema"] == 1 and doc["preset"] == "smoke" and doc["torch"]
    pypi = doc["pypi"]
    names = {(r["group"], r["case"]) for r in doc["results"]}
    expected = {
        ("target_short", f"rmtzoo/{m} {p}") for m in ("none", "rmt", "xl", "rmt_xl") for p in ("fp32", "bf16")
    }
    expected |= {("target_short", f"full {p}") for p in ("fp32", "bf16")}
    expected |= {
        ("target_long", "rmtzoo/rmt fp32"),
        ("target_long", "rmtzoo/rmt bf16"),
        ("target_long", "rmtzoo/rmt+ckpt fp32"),
        ("target_long", "rmtzoo/rmt+ckpt bf16"),
        ("target_long", "rmtzoo/rmt+sel fp32"),
        ("target_long", "rmtzoo/rmt+sel bf16"),
    }
    expected |= {
        ("attention_kernels", f"rmtzoo/rmt{a} {p}")
        for a in ("", "[eager]", "[sdpa]")
        for p in ("fp32", "bf16")
    }
    expected |= {("sweep_bptt", "rmtzoo/rmt/k1 fp32"), ("sweep_bptt", "rmtzoo/rmt/k2 fp32")}
    pypi_cases = {("target_short", "pypi fp32"), ("target_short", "pypi bf16"), ("target_long", "pypi fp32")}
    if pypi["installed"]:
        expected |= pypi_cases
        assert any("train_vs_pypi" in r for r in doc["ratios"])
    else:  # the comparison is skipped cleanly and the JSON says why
        assert pypi["reason"] and not names & pypi_cases
        assert any(s["case"].startswith("pypi") for s in doc["skipped"])
    assert expected <= names, expected - names
    for group in ("sweep_segments", "sweep_segment_length", "sweep_memory"):
        assert any(g == group for g, _ in names), group

    for row in doc["results"]:
        assert row["train"]["tokens_per_s"] > 0 and len(row["train"]["step_s"]) >= 2
        assert row["tokens_per_step"] == row["batch"] * row["segments"] * row["segment_length"]
        if row["group"] == "target_short":
            assert row["infer"]["tokens_per_s"] > 0
    assert any("train_vs_full" in r for r in doc["ratios"])
    assert {r["case"] for r in doc["ratios"] if "train_vs_no_ckpt" in r} == {
        "rmtzoo/rmt+ckpt fp32",
        "rmtzoo/rmt+ckpt bf16",
        "rmtzoo/rmt+sel fp32",
        "rmtzoo/rmt+sel bf16",
    }
    assert {r["case"] for r in doc["ratios"] if "train_vs_sdpa" in r} >= {
        "rmtzoo/rmt bf16",
        "rmtzoo/rmt[eager] fp32",
    }
    for t in doc["targets"]:  # met and margin agree with the measured value
        assert t["met"] == (t["value"] >= t["need"] if t["unit"] == "x" else t["value"] <= t["need"])
        assert t["margin"] >= 0 if t["met"] else t["margin"] <= 0
    assert any("ckpt" in t["target"] for t in doc["targets"]) and "## Targets" in md
    assert doc["memory"] and all(m.get("peak_rss_mb", 0) > 0 for m in doc["memory"]), doc["memory"]


TARGETS = SCRIPT.with_name("run_training_targets.py")


def test_training_targets_smoke(tmp_path):
    """The issue-14 training-targets script runs at tiny sizes and pairs every ratio per round."""
    import pytest

    pytest.importorskip("recurrent_memory_transformer_pytorch")
    out = tmp_path / "t.json"
    cmd = [sys.executable, str(TARGETS), "--smoke", "--out", str(out), "--warmup", "0"]
    cmd += [
        "--short-rounds",
        "2",
        "--long-rounds",
        "2",
        "--long-segments",
        "3",
        "--no-memory",
        "--no-profile",
        "--compile",
        "--compile-rounds",
        "2",
        "--compile-precisions",
        "fp32",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["ratios"]["linearity k=3"]["n"] == 2 and doc["ratios"]["bf16 rmtzoo/pypi S4"]["n"] == 2
    for ratio in doc["ratios"].values():
        assert ratio["min"] <= ratio["median"] <= ratio["max"]
    for impl in ("rmtzoo", "pypi"):  # matmul FLOPs grow with the segments
        assert doc["flops"][impl]["S4"] > doc["flops"][impl]["S1"] > 0
    assert all(0 < r["share_of_peak"] for r in doc["rates"].values())
    assert doc["peak_start"]["bf16"]["ff_up"] > 0 and doc["loadavg_start"]
    for key in ("fp32 S4", "fp32 S3"):  # train.compile against eager, paired; its graphs counted
        entry = doc["compile"][key]
        assert entry["compiled/eager"]["n"] == 2 and entry["compile_s"] > 0 and 1 <= entry["graphs"] <= 4
        assert entry["graphs_in_timed_rounds"] == 0  # nothing recompiles once warm


def test_training_targets_bad_input(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(TARGETS), "--out", str(tmp_path / "t.json"), "--long-rounds", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr

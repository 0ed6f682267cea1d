"""The summary page and the committed reports: a row per claim of the paper with measured numbers and n,
hand-written notes kept around the generated part, and every committed report current (rebuilt from the
committed result files into a temporary folder, it reads the same apart from where and with what it ran)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import rmtzoo
from rmtzoo.bench import Benchmark, report
from rmtzoo.bench._summary import BEGIN, END, _ordering_row, render_summary, write_summary

pytest.importorskip("rmtzoo_benchmarks", reason="pip install -e benchmarks")

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "benchmarks" / "reports"
RESULTS = REPORTS / "small" / "results"
COMMAND = "rmtzoo bench report --all --preset small --results benchmarks/reports/small/results --reports benchmarks/reports"
WHERE = ("- report written on:", "- versions:")


def test_the_summary_has_a_row_per_claim_and_keeps_hand_written_notes(tmp_path):
    reg = rmtzoo.Registry(environ={})
    text = render_summary(reg, ["fig3a", "fig3c", "wt103"], preset="small", results_dir=RESULTS,
                          reports_dir=tmp_path)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "`" in line.split("|")[2]]
    fig3a = next(r for r in rows if "`fig3a`" in r)
    assert "segments 8: RMT 0.445 ± 0.372 (n=2)" in fig3a and fig3a.split(" | ")[3] == "within noise"
    assert "| does NOT hold (segments 2, 3) |" in next(r for r in rows if "`fig3c`" in r)
    assert any("`wt103`: Tr-XL + RMT" in r for r in rows)
    assert "rmtzoo bench run fig3a --preset small --seeds 2 --workers 2` | 53 min of cell time over 26 cell(s)" in text
    page = tmp_path / "README.md"
    page.write_text("# By hand\n\nkept above\n")
    write_summary(text, page)
    write_summary(text.replace("within noise", "WN"), page)  # a second run replaces, never appends
    written = page.read_text()
    assert written.startswith("# By hand\n\nkept above\n") and written.count(BEGIN) == written.count(END) == 1
    assert "WN" in written


def test_the_summary_row_prints_the_measured_order_not_the_claimed_one():
    """The papercut: "RMT 0.493 ± 0.004 (n=2) > Tr-XL 0.802 ± 0.201 (n=2) > ... (does NOT hold)"."""
    bench = Benchmark("b", "F3c", {"small": []}, ordering=("RMT", "Tr-XL", "Baseline"), headline="RMT wins")
    rows = [{"labels": {"model": m, "segments": 2}, "values": v, "seeds": [0, 1], "records": []}
            for m, v in (("RMT", [0.49, 0.496]), ("Tr-XL", [0.66, 0.944]), ("Baseline", [0.484, 0.484]))]
    measured, verdict = _ordering_row(bench, rows)
    assert measured == ("segments 2: RMT 0.493 ± 0.004 (n=2) < Tr-XL 0.802 ± 0.201 (n=2) > "
                        "Baseline 0.484 ± 0.000 (n=2) (does NOT hold)")
    assert verdict == "does NOT hold (segments 2)"


def _normalised(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith(WHERE))


def test_the_committed_reports_are_current(tmp_path, monkeypatch):
    """Rebuild with: rmtzoo bench report --all --preset small --results benchmarks/reports/small/results
    --reports benchmarks/reports (then rmtzoo bench summary with the same arguments)."""
    reg = rmtzoo.Registry(environ={})
    committed = {p.stem for p in (REPORTS / "small").glob("*.md")} - {"README", "fig3c-4pairs"}
    names = sorted(committed & set(reg.names("benchmarks")))
    assert {"fig3a", "fig3b", "fig3c", "fig6", "fig9"} <= set(names)
    for path in report(reg, names, preset="small", results_dir=RESULTS, reports_dir=tmp_path, command=COMMAND):
        old = (REPORTS / "small" / path.name).read_text()
        assert _normalised(path.read_text()) == _normalised(old), f"{path.name} is stale: {COMMAND}"
    monkeypatch.chdir(ROOT)  # the page names the folders as the documented command does
    summary = render_summary(reg, reg.names("benchmarks"), preset="small", results_dir="benchmarks/reports/small/results",
                             reports_dir="benchmarks/reports")
    readme = (REPORTS / "small" / "README.md").read_text()
    assert re.sub(r"\s+", " ", summary.strip()) in re.sub(r"\s+", " ", readme), "README.md's summary is stale"


MAMBA = REPORTS / "mamba"
MAMBA_COMMAND = ("rmtzoo bench report fig3a fig3b --preset small --backbone mamba --results "
                 "benchmarks/reports/mamba/results --reports benchmarks/reports/mamba")


def test_the_committed_mamba_reports_are_current(tmp_path):
    """Figure 3 with the Mamba plugin as every cell's backbone (issue 13): rebuilt from its committed results."""
    pytest.importorskip("rmtzoo_mamba", reason="pip install -e plugins/rmtzoo-mamba")
    reg = rmtzoo.Registry(environ={})
    written = report(reg, ["fig3a", "fig3b"], preset="small", results_dir=MAMBA / "results", reports_dir=tmp_path,
                     command=MAMBA_COMMAND, backbone="mamba")
    for path in written:
        old = (MAMBA / "small" / path.name).read_text()
        assert "- backbone: `mamba`" in old
        assert _normalised(path.read_text()) == _normalised(old), f"{path.name} is stale: {MAMBA_COMMAND}"

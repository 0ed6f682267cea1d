"""Reports name the decoding that produced the scored answers of sample tasks (issue 9)."""

import pytest

import rmtzoo
from rmtzoo.bench._report import report


def test_each_report_names_its_decoding(tmp_path):
    pytest.importorskip("rmtzoo_benchmarks", reason="pip install -e benchmarks")
    report(rmtzoo.Registry(), ["table1", "fig3a", "wt103"], preset="small", results_dir=tmp_path / "none",
           reports_dir=tmp_path)
    table1 = (tmp_path / "small" / "table1.md").read_text()
    fig3a = (tmp_path / "small" / "fig3a.md").read_text()
    assert "- decoding: `greedy`" in table1 and "by_length" not in table1  # Table 1: whole target generated
    assert "- decoding: `by_length`" in fig3a
    assert "- decoding:" not in (tmp_path / "small" / "wt103.md").read_text()  # LM perplexity: nothing decoded

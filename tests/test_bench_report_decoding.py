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


def test_each_report_names_its_backbone(tmp_path):
    """A spec run with ``--backbone NAME`` must say so in its report, or a Mamba grid reads as a transformer's."""
    pytest.importorskip("rmtzoo_benchmarks", reason="pip install -e benchmarks")
    pytest.importorskip("rmtzoo_mamba", reason="pip install -e plugins/rmtzoo-mamba")
    registry = rmtzoo.Registry()
    report(registry, ["fig3a"], preset="small", results_dir=tmp_path / "none", reports_dir=tmp_path / "own")
    report(registry, ["fig3a"], preset="small", results_dir=tmp_path / "none", reports_dir=tmp_path / "mamba",
           backbone="mamba")
    own = (tmp_path / "own" / "small" / "fig3a.md").read_text()
    swapped = (tmp_path / "mamba" / "small" / "fig3a.md").read_text()
    assert "- backbone: `transformer_xl`" in own and "mamba" not in own
    assert "- backbone: `mamba`" in swapped and "transformer_xl" not in swapped

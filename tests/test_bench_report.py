"""Reports fit to publish: verdicts against the seed spread, the paper column of a shrunk task, the packaged
reference table from any directory, the paper's points in the figure, and the attention-map captions.
Everything here reads the committed result files or hand-made rows: nothing trains."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import rmtzoo
from rmtzoo.bench import Benchmark, Cell
from rmtzoo.bench._report import ordering_checks, packaged_reference, paper_series, render, runs_papers_task
from rmtzoo.cli import main

pytest.importorskip("rmtzoo_benchmarks", reason="pip install -e benchmarks")

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "benchmarks" / "reports" / "small" / "results"
ORDER = Benchmark("b", "F3a", {"smoke": []}, ordering=("RMT", "Tr-XL", "Baseline"))


def rows_of(*cells):
    return [{"labels": labels, "values": values, "seeds": list(range(len(values))), "records": []}
            for labels, values in cells]


def test_a_margin_inside_the_seed_spread_is_within_noise():
    rows = rows_of(({"model": "RMT", "segments": 8}, [0.1, 0.9]), ({"model": "Tr-XL", "segments": 8}, [0.11, 0.13]))
    (line,) = ordering_checks(ORDER, rows)
    assert line.endswith(": within noise") and "(n=2)" in line
    rows = rows_of(({"model": "RMT", "segments": 8}, [0.95, 0.97]), ({"model": "Tr-XL", "segments": 8}, [0.1, 0.9]))
    assert ordering_checks(ORDER, rows)[0].endswith(": within noise")  # reversed, but inside the spread
    rows = rows_of(({"model": "RMT", "segments": 8}, [0.1, 0.12]), ({"model": "Tr-XL", "segments": 8}, [0.9, 0.92]))
    assert ordering_checks(ORDER, rows)[0].endswith(": does NOT hold")


def test_identical_results_never_hold():
    """The smoke papercut: "RMT 0.000 >= Tr-XL 0.000 >= Baseline 0.000: holds"."""
    rows = rows_of(*(({"model": m, "segments": 3}, [0.0, 0.0]) for m in ("RMT", "Tr-XL", "Baseline")))
    (line,) = ordering_checks(ORDER, rows)
    assert "holds" not in line and line.endswith(": within noise")
    one_seed = rows_of(*(({"model": m, "segments": 3}, [0.0]) for m in ("RMT", "Tr-XL", "Baseline")))
    assert ordering_checks(ORDER, one_seed)[0].endswith(": too few seeds to tell")


def test_the_ordering_line_shows_the_measured_relation_between_neighbours():
    """The claimed order stays (best first), but each sign is what was measured: the old line read
    "RMT 0.110 ± 0.014 (n=2) > Tr-XL 0.910 ... > Baseline ...: does NOT hold"."""
    rows = rows_of(({"model": "RMT", "segments": 2}, [0.1, 0.12]), ({"model": "Tr-XL", "segments": 2}, [0.9, 0.92]),
                   ({"model": "Baseline", "segments": 2}, [0.5, 0.52]))
    (line,) = ordering_checks(ORDER, rows)
    assert line == ("- segments 2: RMT 0.110 ± 0.014 (n=2) < Tr-XL 0.910 ± 0.014 (n=2) > "
                    "Baseline 0.510 ± 0.014 (n=2): does NOT hold")
    noise = rows_of(({"model": "RMT", "segments": 2}, [0.1, 0.9]), ({"model": "Tr-XL", "segments": 2}, [0.4, 0.5]),
                    ({"model": "Baseline", "segments": 2}, [0.4, 0.5]))
    (line,) = ordering_checks(ORDER, noise)
    assert " ≈ Tr-XL " in line and " = Baseline " in line and " > " not in line
    one_seed = rows_of(({"model": "RMT", "segments": 2}, [0.9]), ({"model": "Tr-XL", "segments": 2}, [0.1]))
    (line,) = ordering_checks(ORDER, one_seed)
    assert " vs Tr-XL " in line and " > " not in line and line.endswith(": too few seeds to tell")


def _shrunk(src_len_small):
    def cells(src_len):
        return [Cell({"model": m, "segments": 3}, {"task": {"kind": "copy", "src_len": src_len, "train_size": 9}})
                for m in ("RMT", "Tr-XL")]
    return Benchmark("b", "F3a", {"paper": cells(24), "small": cells(src_len_small)}, ordering=("RMT", "Tr-XL"))


def test_a_shrunk_task_gets_the_paper_number_for_orientation_and_no_delta():
    reference = [{"artefact": "F3a", "model": "RMT", "segments": "3", "mean": "1.0", "std": "", "n_runs": "3"},
                 {"artefact": "F3a", "model": "Tr-XL", "segments": "3", "mean": "0.9997", "std": "0.0006",
                  "n_runs": "3"}]
    rows = rows_of(({"model": "RMT", "segments": 3}, [1.0, 1.0]), ({"model": "Tr-XL", "segments": 3}, [0.5, 0.52]))
    shrunk = _shrunk(8)
    assert not runs_papers_task(shrunk, "small")
    text = render(shrunk, rows, preset="small", reference_rows=reference, command="c")
    assert "| model | segments | regenerated | paper (orientation) |" in text and "delta" not in text
    assert "| Tr-XL | 3 | 0.510 ± 0.014 (2) | 1.000 ± 0.001 (3) |" in text and "orientation only" in text
    same = _shrunk(24)  # only split sizes differ: the paper's own task, so the difference means something
    assert runs_papers_task(same, "small")
    text = render(same, rows, preset="small", reference_rows=reference, command="c")
    assert "| paper | delta |" in text and "| -0.490 |" in text


def test_fig3a_small_report_from_any_directory_has_the_paper_column_and_points(tmp_path, monkeypatch):
    """Issue 9's acceptance: from the committed results, run outside the repository."""
    assert packaged_reference() is not None
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert main(["bench", "report", "fig3a", "--preset", "small", "--results", str(COMMITTED),
                 "--reports", str(out)]) == 0
    text = (out / "small" / "fig3a.md").read_text()
    assert "| regenerated | paper (orientation) |" in text and "no reference table" not in text
    tr_xl_6 = next(line for line in text.splitlines() if line.startswith("| Tr-XL | 6 |"))
    assert tr_xl_6.endswith("| 0.967 ± 0.055 (3) |")
    assert re.search(r"segments 8: RMT 0\.445 ± 0\.372 \(n=2\) ≈ .*: within noise", text)  # 0.33 < 0.37
    assert "the paper's numbers dashed in the same colour" in text and "chance 0.1 dotted" in text
    assert (out / "small" / "fig3a.png").read_bytes()[:4] == b"\x89PNG"


def test_the_figure_draws_the_papers_curve_at_its_own_segment_counts():
    from rmtzoo.bench._report import collect, load_reference

    reg = rmtzoo.Registry(environ={})
    bench, rows = collect(reg, "fig3a", "small", COMMITTED)
    series, note = paper_series(bench, rows, load_reference(packaged_reference()), "small")
    assert note is None
    assert series["Tr-XL"][9.0][0] == pytest.approx(0.288) and series["RMT"][9.0][0] == 1.0  # small has no 9
    assert set(series["Baseline"]) == {1.0, 3.0, 6.0, 9.0}


def test_attention_figures_letter_panels_uniquely_and_say_when_a_model_did_not_learn(tmp_path):
    out = tmp_path / "out"
    assert main(["bench", "report", "fig6", "fig9", "--preset", "small", "--results", str(COMMITTED),
                 "--reports", str(out)]) == 0
    fig6, fig9 = ((out / "small" / f"{n}.md").read_text() for n in ("fig6", "fig9"))
    letters = re.findall(r"^\| \((\w)\) \| 6\w \|", fig6, flags=re.M)
    assert letters == sorted(set(letters)) and len(letters) == 6  # the paper's (a) and (b) twice each
    assert "copy 8 tokens, 3 segments of 8, memory 8" in fig6 and "did not learn" not in fig6
    assert "**RMT and Tr-XL did not learn the task**" in fig9 and "4 segments of 4, memory 2" in fig9

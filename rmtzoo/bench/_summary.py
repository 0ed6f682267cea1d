"""One page for a preset: a row per claim of the paper (``Benchmark.headline`` for a benchmark's ordering,
``Claim.headline`` for a claim), with the spec, what was measured (means ± sample std, n), and the verdict
(holds / does NOT hold / within noise / too few seeds / not yet run); then how to regenerate each report
and the cell time its result files record.

The page is written between two marker lines of ``out`` (created if missing), so notes written by hand
around the generated part are kept.
"""

from __future__ import annotations

from pathlib import Path

from rmtzoo._io import atomic_write_text
from rmtzoo.bench._report import (
    NOT_HOLD,
    SIGNS_LEGEND,
    _combine,
    _fmt_short,
    chain_text,
    claim_results,
    collect,
    load_reference,
    ordering_results,
    packaged_reference,
)

BEGIN = "<!-- rmtzoo bench summary: begin (generated, do not edit by hand) -->"
END = "<!-- rmtzoo bench summary: end -->"


def _ordering_row(bench, rows) -> tuple[str, str]:
    results = ordering_results(bench, rows)
    if not results:
        return "–", "not yet run"
    x = None if bench.figure == "table" else bench.x
    parts = [f"{f'{x} {at}: ' if x else ''}{chain_text(chain)} ({v})" for at, chain, v in results]
    verdict = _combine(v for _, _, v in results)
    if verdict == NOT_HOLD:
        where = ", ".join(str(at) for at, _, v in results if v == NOT_HOLD)
        verdict += f" ({bench.x} {where})" if x else ""
    missing = sum(1 for r in rows if str(r["labels"].get(bench.line)) in bench.ordering and not r["values"])
    if missing:
        verdict += f"; {missing} cell(s) not yet run"
    return "<br>".join(parts), verdict


def _claim_row(result) -> tuple[str, str, str]:
    measured = "–" if result["stats"] is None else ", ".join(_fmt_short(s) for s in result["stats"])
    verdict = "not yet run" if result["stats"] is None else result["verdict"]
    paper = "–" if result["paper"] is None else (
        ("holds" if result["paper"]["holds"] else "does NOT hold") + " ("
        + ", ".join(f"{m:g}" for m in result["paper"]["means"]) + ")")
    return measured, verdict, paper


def _wall_time(rows) -> tuple[float, int, int]:
    """Cell seconds the spec's own result files record (reused ones excluded), cells trained, reused."""
    seconds, trained, reused, seen = 0.0, 0, 0, set()
    for row in rows:
        for record in row["records"]:
            if record.get("seed") not in row["seeds"] or (record.get("hash") in seen):
                continue
            seen.add(record.get("hash"))
            if record.get("reused_from"):
                reused += 1
            else:
                seconds += float(record.get("wall_time_s") or 0.0)
                trained += 1
    return seconds, trained, reused


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def render_summary(registry, names, *, preset: str, results_dir, reports_dir, reference=None,
                   seeds: int = 2) -> str:
    reference_rows = load_reference(reference if reference is not None else packaged_reference())
    claims: list[tuple[str, str, str, str, str]] = []
    regen: list[str] = []
    for name in names:
        bench, rows = collect(registry, name, preset, results_dir)
        if bench.headline:
            measured, verdict = _ordering_row(bench, rows)
            claims.append((bench.headline, f"`{name}`: {', '.join(bench.ordering)} best first", measured, verdict, "–"))
        for result in claim_results(bench, rows, reference_rows):
            if result["claim"].headline:
                claims.append((result["claim"].headline, f"`{name}`: {result['claim'].text}", *_claim_row(result)))
        seconds, trained, reused = _wall_time(rows)
        done = "not yet run" if not trained and not reused else (
            f"{_duration(seconds)} of cell time over {trained} cell(s)" + (f", {reused} reused" if reused else ""))
        regen.append(f"| `{name}` | `rmtzoo bench run {name} --preset {preset} --seeds {seeds} --workers 2` | {done} |")
    order = list(dict.fromkeys(c[0] for c in claims))
    claims.sort(key=lambda c: order.index(c[0]))
    results_arg, reports_arg = Path(results_dir).as_posix(), Path(reports_dir).as_posix()
    out = [BEGIN, "", f"## The paper's claims, preset `{preset}`", "",
           "Verdicts: \"holds\" only where every margin exceeds the seed spread (the larger sample std of the "
           "cells compared, each with at least 2 seeds); a smaller margin is \"within noise\". Means ± sample "
           "std (n = seeds); a benchmark's ordering lists its models best first as the paper claims. "
           + SIGNS_LEGEND + " The paper column is the paper's own numbers, on the paper's full-size task.", "",
           "| paper's claim | spec: what is compared | measured | verdict | paper |", "|---|---|---|---|---|"]
    out += [f"| {' | '.join(c)} |" for c in claims]
    out += ["", "## Regenerating", "",
            "Each spec's cells train with the first command (a cell with a result is skipped, one trained for "
            "another spec is reused); every report is rebuilt from the committed result files, and this "
            "page with the third:", "", "```bash",
            f"rmtzoo bench report --all --preset {preset} --results {results_arg} --reports {reports_arg}",
            f"rmtzoo bench summary --all --preset {preset} --results {results_arg} --reports {reports_arg}",
            "```", "",
            "Cell time is the sum of the cells' recorded wall times (one thread each on the machine the "
            "result files name); with `--workers 2` the wall clock is about half of it.", "",
            "| spec | command | measured |", "|---|---|---|", *regen, "", END]
    return "\n".join(out) + "\n"


def write_summary(text: str, out) -> Path:
    """Put ``text`` (BEGIN ... END) into ``out`` in place of its generated part, or at its end."""
    out = Path(out)
    old = out.read_text(encoding="utf-8") if out.is_file() else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        new = head + text.rstrip("\n") + rest.split(END, 1)[1]
    else:
        new = (old.rstrip("\n") + "\n\n" if old else "") + text
    atomic_write_text(out, new)
    return out


def summary(registry, names, *, preset: str = "small", results_dir="results", reports_dir="reports",
            reference=None, seeds: int = 2) -> Path:
    """Write ``reports_dir/<preset>/README.md``'s generated part; returns its path."""
    text = render_summary(registry, names, preset=preset, results_dir=results_dir, reports_dir=reports_dir,
                          reference=reference, seeds=seeds)
    return write_summary(text, Path(reports_dir) / preset / "README.md")


__all__ = ["BEGIN", "END", "render_summary", "summary", "write_summary"]

"""The RMT paper's comparisons as rmtzoo benchmarks (docs/paper-settings.md section 8), registered through the
``rmtzoo`` entry point ``benchmarks``. ``rmtzoo bench list`` shows them."""

from __future__ import annotations

import dataclasses

import rmtzoo
from rmtzoo_benchmarks import fig4, lm, table1
from rmtzoo_benchmarks.attention_maps import ATTENTION_MAPS
from rmtzoo_benchmarks.babilong import BABILONG
from rmtzoo_benchmarks.fig3 import FIG3
from rmtzoo_benchmarks.fig8 import FIG8

__version__ = "0.1.0"

SPECS = {
    **FIG3,
    "table1": ("Table 1: quadratic equations, exact-answer accuracy (Baseline, Tr-XL, RMT)", table1.build),
    "fig4a": ("Figure 4a: copy of 360 tokens, accuracy vs 1/3/6/9 segments", fig4.build_fig4a),
    "fig4b": ("Figure 4b: copy of 360/720/1080 tokens in segments of 120, Tr-XL vs RMT", fig4.build_fig4b),
    **FIG8,
    **lm.LM,
    **ATTENTION_MAPS,
    **BABILONG,
}


SEGMENTS = "RMT beats Tr-XL, and Tr-XL the Baseline, as a sequence is split into more segments"
HALF = "RMT with memory half the segment still beats Tr-XL with the same cache"
MEMORY_WT103 = "WikiText-103: RMT with a few memory tokens does as well as Tr-XL with a much larger cache"
MEMORY_ENWIK8 = "enwik8: RMT with a few memory tokens does as well as Tr-XL with a much larger cache"
BPTT = "Backpropagating through more segments (deeper BPTT) helps RMT"
BEST = "Tr-XL + RMT (cache and memory) is the best model"
SIZE = "Memory size: one memory vector already helps; beyond 5 the gains are small"
MEMTR = "MemTr (memory at the start only) is no better than the Baseline"
# the paper's claims (its section on comparisons) each benchmark's ordering or claims check: the rows of
# ``rmtzoo bench summary``. Benchmark name -> ordering's headline; claim text prefix -> headline.
HEADLINES = {"fig3a": SEGMENTS, "fig3b": SEGMENTS, "fig3c": SEGMENTS, "fig4a": SEGMENTS, "fig4b": SEGMENTS,
             "table1": SEGMENTS, "fig8a": HALF, "fig8b": HALF, "fig8c": HALF}
CLAIM_HEADLINES = {
    "wt103": {"segment 150: RMT memory": MEMORY_WT103, "segment 50: RMT memory 1": MEMORY_WT103,
              "segment 50: Tr-XL cache 50": MEMORY_WT103, "Tr-XL + RMT": BEST, "MemTr": MEMTR,
              "segment 50, memory 10: deeper BPTT": BPTT},
    "table4": {"RMT memory": MEMORY_ENWIK8, "Tr-XL cache 10 beats": MEMORY_ENWIK8},
    "fig5a": {"RMT with one memory vector": MEMORY_WT103, "memory 5: deeper BPTT": BPTT},
    "fig5b": {"": SIZE},
}


def _with_headlines(name, build):
    """``build`` with the paper's claims named on the benchmark's ordering and claims (for the summary)."""
    def build_named(params):
        bench = build(params)
        prefixes = CLAIM_HEADLINES.get(name, {})
        claims = tuple(dataclasses.replace(c, headline=next((h for p, h in prefixes.items() if c.text.startswith(p)),
                                                            c.headline)) for c in bench.claims)
        return dataclasses.replace(bench, headline=HEADLINES.get(name, bench.headline), claims=claims)

    return build_named


@rmtzoo.hookimpl
def rmtzoo_register_benchmarks(register):
    for name, (summary, build) in SPECS.items():
        register(rmtzoo.BenchmarkSpec(name=name, summary=summary, build=_with_headlines(name, build)))

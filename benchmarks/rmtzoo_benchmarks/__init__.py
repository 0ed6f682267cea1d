"""The RMT paper's comparisons as rmtzoo benchmarks (PAPER.md section 8), registered through the
``rmtzoo`` entry point ``benchmarks``. ``rmtzoo bench list`` shows them."""

from __future__ import annotations

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


@rmtzoo.hookimpl
def rmtzoo_register_benchmarks(register):
    for name, (summary, build) in SPECS.items():
        register(rmtzoo.BenchmarkSpec(name=name, summary=summary, build=build))

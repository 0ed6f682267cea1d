"""The RMT paper's comparisons as rmtzoo benchmarks (PAPER.md section 8), registered through the
``rmtzoo`` entry point ``benchmarks``. ``rmtzoo bench list`` shows them."""

from __future__ import annotations

import rmtzoo
from rmtzoo_benchmarks.fig3 import FIG3

__version__ = "0.1.0"


@rmtzoo.hookimpl
def rmtzoo_register_benchmarks(register):
    for name, (summary, build) in FIG3.items():
        register(rmtzoo.BenchmarkSpec(name=name, summary=summary, build=build))

"""Issue 14's CPU training targets in one process, with paired per-round ratios and share of matmul peak.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 python benchmarks/perf/run_training_targets.py --out r.json
    python benchmarks/perf/run_training_targets.py --smoke --out /tmp/t.json      # seconds (tests)

Built on ``run_perf.py``'s ``Case``/``Runner`` (same models, same train step: forward over every segment,
mean next-token loss, backward, Adam step; bf16 = ``torch.autocast("cpu", torch.bfloat16)``), the cpu
preset's sizes (4 layers, d_model 256, 4 heads, segment 128, 10 memory tokens, batch 8, bytes, full BPTT).

* **short group** (S = 1, 4, 16): rmtzoo ``rmt`` fp32/bf16 and the PyPI package fp32/bf16 at S = 4, rmtzoo
  ``rmt`` bf16 at S = 1 and 16. ``--short-rounds`` rounds after ``--warmup`` warm-up rounds.
* **long group** (S = 64): rmtzoo ``rmt`` fp32/bf16, the package fp32/bf16, rmtzoo bf16 with selective and
  with per-segment checkpointing, and rmtzoo bf16 at S = 1 (the linearity reference for k = 64).
  ``--long-rounds`` rounds after one warm-up round.
* In a round every case of a group runs one step, in a fixed order (A, B, C, A, B, C, ...). A **paired
  ratio** is formed per round (speed of A / speed of B in the same round); the report gives its median
  and range, and n = the number of rounds.
* **compile group** (``--compile``; S = 4 and S = ``--long-segments``): rmtzoo ``rmt`` eager and with
  ``train.compile`` (``compile_segments``), bf16 and fp32 (``--compile-precisions``). The two warm-up
  steps of a compiled case include its compilation, reported as ``compile_s``; its graphs are counted
  (``torch._dynamo`` graph counter), in all and in the timed rounds, to show they stay bounded. ``--compile-rounds`` rounds.
* **FLOPs**: ``torch.utils.flop_counter.FlopCounterMode`` counts the matmul FLOPs (mm, addmm, bmm, ...) of one
  bf16 training step (forward + backward) at S = 1 and S = 4 per implementation (rmtzoo's bf16 attention is
  eager matmuls, so nothing is hidden in a fused kernel); per-segment FLOPs x S is the step's count. The
  same count is used for fp32 (same math). Checkpointed cases are charged the unchecked count (useful work).
* **matmul peak**: median GFLOP/s of ``a @ b`` at the model's feed-forward shapes (``[B*(T+2M), d] @ [d, 4d]``
  and ``[B*(T+2M), 4d] @ [4d, d]``) and at 1024^3, fp32 and bf16, measured at the start and at the end;
  share of peak = step FLOPs / median step seconds / the larger feed-forward-shape rate of that precision.
* **memory**: ``run_perf.measure_memory`` (fresh subprocess per case, VmHWM of one training step) for the
  S = 64 bf16 cases unchecked, selective, per-segment, and the package.
* **profile**: ``run_perf.profile_step`` (top ops by self CPU time) of one bf16 step at S = 4, both sides.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run_perf  # noqa: E402
from run_perf import Case, Runner  # noqa: E402

from rmtzoo._io import atomic_write_text  # noqa: E402


def matmul_rate(m: int, k: int, n: int, dtype: torch.dtype, reps: int) -> float:
    """Median GFLOP/s of one [m, k] @ [k, n] matmul."""
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * m * k * n / statistics.median(times) / 1e9


def peaks(c: Case, reps: int) -> dict:
    rows = c.batch * (c.segment_length + 2 * c.memory_tokens)
    out = {}
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        out[name] = {
            "ff_up": round(matmul_rate(rows, c.d_model, 4 * c.d_model, dt, reps), 1),
            "ff_down": round(matmul_rate(rows, 4 * c.d_model, c.d_model, dt, reps), 1),
            "1024^3": round(matmul_rate(1024, 1024, 1024, dt, reps), 1),
        }
    return out


def count_flops(case: Case) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    r = Runner(case)
    with FlopCounterMode(display=False) as fc:
        r.train_step()
    return int(fc.get_total_flops())


def run_rounds(cases: list[Case], warmup: int, rounds: int, log, tag: str) -> list[list[float]]:
    runners = [Runner(c) for c in cases]
    for _ in range(warmup):
        for r in runners:
            r.train_step()
    times: list[list[float]] = [[] for _ in runners]
    for rep in range(rounds):
        t0 = time.perf_counter()
        for i, r in enumerate(runners):
            times[i].append(r.train_step())
        log(f"  {tag}: round {rep + 1}/{rounds} ({time.perf_counter() - t0:.0f} s)")
    return times


def paired(a: list[float], b: list[float], scale: float = 1.0) -> dict:
    """Speed of A over speed of B per round (= t_B / t_A x scale): median, min, max, n."""
    r = [scale * tb / ta for ta, tb in zip(a, b, strict=True)]
    return {
        "median": round(statistics.median(r), 3),
        "min": round(min(r), 3),
        "max": round(max(r), 3),
        "n": len(r),
    }


def compile_group(base: Case, long_segments: int, args, log) -> dict:
    """Eager against ``train.compile`` at S = 4 and S = long, paired per round; compile time, graph count."""
    import torch._dynamo.utils as dynamo_utils

    precisions = [p.strip() for p in args.compile_precisions.split(",") if p.strip()]
    out: dict = {}
    for precision in precisions:
        for segments in (4, long_segments):
            eager_case = replace(base, segments=segments, precision=precision)
            compiled_case = replace(eager_case, compiled=True)
            eager, compiled = Runner(eager_case), Runner(compiled_case)
            frames = dynamo_utils.counters["stats"]["unique_graphs"]
            t0 = time.perf_counter()
            compiled.train_step()  # compiles: the first train-mode step
            compiled.train_step()  # and the second (cached tables and optimizer state take other branches)
            compile_s = time.perf_counter() - t0
            warm = dynamo_utils.counters["stats"]["unique_graphs"]
            eager.train_step()
            eager.train_step()
            t_e, t_c = [], []
            for rep in range(args.compile_rounds):
                t_e.append(eager.train_step())
                t_c.append(compiled.train_step())
                log(f"  compile {precision} S{segments}: round {rep + 1}/{args.compile_rounds}")
            key = f"{precision} S{segments}"
            out[key] = {
                "compiled/eager": paired(t_c, t_e),
                "eager_median_s": round(statistics.median(t_e), 4),
                "compiled_median_s": round(statistics.median(t_c), 4),
                "compile_s": round(compile_s, 1),  # the two warm-up steps, compilation included
                "graphs": dynamo_utils.counters["stats"]["unique_graphs"] - frames,
                "graphs_in_timed_rounds": dynamo_utils.counters["stats"]["unique_graphs"] - warm,
            }
            log(f"  compile {key}: {out[key]}")
    return out


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="result JSON")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (tests)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--short-rounds", type=int, default=10)
    ap.add_argument("--long-rounds", type=int, default=5)
    ap.add_argument("--long-segments", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--compile", action="store_true", help="also time train.compile against eager")
    ap.add_argument("--compile-rounds", type=int, default=5)
    ap.add_argument("--compile-precisions", default="bf16,fp32", help="comma-separated: bf16, fp32")
    ap.add_argument("--compile-only", action="store_true", help="only the compile group (with the peaks and FLOPs)")
    args = ap.parse_args(argv)
    if min(args.short_rounds, args.long_rounds, args.compile_rounds) < 1 or args.warmup < 0 or args.long_segments < 1:
        print(
            "run_training_targets.py: rounds must be >= 1, warmup >= 0, long segments >= 1", file=sys.stderr
        )
        return 2
    if run_perf.pypi_version() is None:
        print(
            "run_training_targets.py: recurrent-memory-transformer-pytorch is not installed", file=sys.stderr
        )
        return 2
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    log = lambda msg: print(f"[{time.perf_counter() - t_start:6.1f}s] {msg}", flush=True)  # noqa: E731
    base = Case(impl="rmtzoo", **run_perf._sizes("smoke" if args.smoke else "cpu"))
    L = args.long_segments
    doc: dict = {
        "command": " ".join(
            ["python", "benchmarks/perf/run_training_targets.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_model": run_perf.cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "pypi_version": run_perf.pypi_version(),
        "sizes": asdict(base),
        "loadavg_start": loadavg(),
    }
    reps = 3 if args.smoke else 20
    log("matmul peak (start)")
    doc["peak_start"] = peaks(base, reps)
    log(f"  {doc['peak_start']}")

    log("flops (bf16, S = 1 and 4)")
    flops = {}
    for impl in ("rmtzoo", "pypi"):
        f1 = count_flops(replace(base, impl=impl, segments=1, precision="bf16"))
        f4 = count_flops(replace(base, impl=impl, segments=4, precision="bf16"))
        flops[impl] = {"S1": f1, "S4": f4, "per_segment": f4 / 4}
        log(f"  {impl}: S=1 {f1 / 1e9:.2f} GFLOP, S=4 {f4 / 1e9:.2f} GFLOP")
    doc["flops"] = flops

    if args.compile_only:
        doc["compile"] = compile_group(base, L, args, log)
        return _finish(doc, args, base, reps, t_start, log)
    if not args.no_memory:
        doc["memory"] = []
        for c in (
            replace(base, segments=L, precision="bf16"),
            replace(base, segments=L, precision="bf16", checkpoint="selective"),
            replace(base, segments=L, precision="bf16", checkpoint=True),
            replace(base, impl="pypi", segments=L, precision="bf16"),
        ):
            log(f"memory: {c.name} S={c.segments}")
            m = run_perf.measure_memory(c, args.threads, timeout=600)
            doc["memory"].append(m)
            msg = m.get("error") or f"peak RSS {m['peak_rss_mb']:.0f} MB, step {m['peak_step_mb']:.0f} MB"
            log(f"  -> {msg}")

    short = {
        "rmt fp32 S4": replace(base, segments=4),
        "pypi fp32 S4": replace(base, impl="pypi", segments=4),
        "rmt bf16 S4": replace(base, segments=4, precision="bf16"),
        "pypi bf16 S4": replace(base, impl="pypi", segments=4, precision="bf16"),
        "rmt bf16 S1": replace(base, segments=1, precision="bf16"),
        "rmt bf16 S16": replace(base, segments=16, precision="bf16"),
    }
    long = {
        f"rmt fp32 S{L}": replace(base, segments=L),
        f"pypi fp32 S{L}": replace(base, impl="pypi", segments=L),
        f"rmt bf16 S{L}": replace(base, segments=L, precision="bf16"),
        f"pypi bf16 S{L}": replace(base, impl="pypi", segments=L, precision="bf16"),
        f"rmt+sel bf16 S{L}": replace(base, segments=L, precision="bf16", checkpoint="selective"),
        f"rmt+ckpt bf16 S{L}": replace(base, segments=L, precision="bf16", checkpoint=True),
        "rmt bf16 S1": replace(base, segments=1, precision="bf16"),
    }
    times = {}
    for tag, group, warm, rounds in (
        ("short", short, args.warmup, args.short_rounds),
        ("long", long, 1, args.long_rounds),
    ):
        log(f"group {tag}: {len(group)} cases, {warm} warm-up + {rounds} rounds")
        t = run_rounds(list(group.values()), warm, rounds, log, tag)
        times[tag] = {k: [round(x, 5) for x in v] for k, v in zip(group, t, strict=True)}
    doc["times"] = times
    doc["cases"] = {tag: {k: c.name for k, c in g.items()} for tag, g in (("short", short), ("long", long))}

    # tokens/s and share of peak per case
    rate = {}
    for tag, group in (("short", short), ("long", long)):
        for k, c in group.items():
            med = statistics.median(times[tag][k])
            f = flops[c.impl]["per_segment"] * c.segments
            peak = max(doc["peak_start"][c.precision]["ff_up"], doc["peak_start"][c.precision]["ff_down"])
            rate[f"{tag}/{k}"] = {
                "median_s": round(med, 4),
                "min_s": round(min(times[tag][k]), 4),
                "max_s": round(max(times[tag][k]), 4),
                "n": len(times[tag][k]),
                "tokens_per_s": round(c.tokens / med, 1),
                "gflop_per_s": round(f / med / 1e9, 1),
                "share_of_peak": round(f / med / 1e9 / peak, 3),
            }
    doc["rates"] = rate
    S, Ls = times["short"], times["long"]
    doc["ratios"] = {
        "bf16 rmtzoo/pypi S4": paired(S["rmt bf16 S4"], S["pypi bf16 S4"]),
        "fp32 rmtzoo/pypi S4": paired(S["rmt fp32 S4"], S["pypi fp32 S4"]),
        f"bf16 rmtzoo/pypi S{L}": paired(Ls[f"rmt bf16 S{L}"], Ls[f"pypi bf16 S{L}"]),
        f"fp32 rmtzoo/pypi S{L}": paired(Ls[f"rmt fp32 S{L}"], Ls[f"pypi fp32 S{L}"]),
        f"bf16 sel/unchecked S{L}": paired(Ls[f"rmt+sel bf16 S{L}"], Ls[f"rmt bf16 S{L}"]),
        f"bf16 ckpt/unchecked S{L}": paired(Ls[f"rmt+ckpt bf16 S{L}"], Ls[f"rmt bf16 S{L}"]),
        # linearity: time(k segments) / (k x time(one segment)), paired in the round (inverse of paired())
        "linearity k=4": paired(S["rmt bf16 S1"], S["rmt bf16 S4"], scale=1 / 4),
        "linearity k=16": paired(S["rmt bf16 S1"], S["rmt bf16 S16"], scale=1 / 16),
        f"linearity k={L}": paired(Ls["rmt bf16 S1"], Ls[f"rmt bf16 S{L}"], scale=1 / L),
    }
    if args.compile:
        doc["compile"] = compile_group(base, L, args, log)
    if not args.no_profile:
        doc["profiles"] = []
        for impl in ("rmtzoo", "pypi"):
            c = replace(base, impl=impl, segments=4, precision="bf16")
            log(f"profile: {c.name}")
            doc["profiles"].append(run_perf.profile_step(c, top=12))
    return _finish(doc, args, base, reps, t_start, log)


def _finish(doc: dict, args, base: Case, reps: int, t_start: float, log) -> int:
    log("matmul peak (end)")
    doc["peak_end"] = peaks(base, reps)
    log(f"  {doc['peak_end']}")
    doc["loadavg_end"] = loadavg()
    doc["wall_s"] = round(time.perf_counter() - t_start, 1)
    atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")
    for k, v in doc.get("ratios", {}).items():
        log(f"  {k}: {v}")
    for k, v in doc.get("rates", {}).items():
        log(f"  {k}: {v}")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

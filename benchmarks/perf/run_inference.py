"""Inference speed (issue 14): streaming without gradient, generation per token, flex vs the built-in kernels.

The ``cpu`` preset's model (4 layers, d_model 256, 4 heads, d_head 64, d_inner 1024, segment 128, 10 memory
tokens, 256-token vocabulary), batch 1, fp32 unless said. Every comparison runs its cases in one process,
interleaved round by round (A, B, A, B, ...), after one warm-up round each; medians and min-max over
``--rounds`` rounds.

- ``stream``: tokens/s of ``model.step`` over ``--segments`` segments (nll of every token, no logits kept),
  for ``rmt`` and ``rmt_xl`` (cache 128), fp32 and bf16 autocast. ``reuse`` is the path without gradient
  (cache keys carried, relative table projected once per layout); ``recompute`` is the same code run with
  gradient recording on and every weight frozen, which is what the path without gradient did before
  (every segment projects its cache and its table again) at no autograd cost (nothing requires grad).
- ``rss``: process RSS (``VmRSS``) after 16k, 64k and ``--rss-tokens`` streamed tokens (``rmt``, fp32).
- ``generate``: milliseconds per new token (median within windows of token numbers), greedy, one prompt of
  128 tokens (one whole segment), ``--new`` tokens, the open segment extended (``reuse_keys=True``) vs
  re-run for every token (``False``); tokens/s over tokens 2..new. Every 128th token also pays a commit.
- ``kernels``: tokens/s of the same streaming loop (``rmt``) with ``attention.kind`` auto, eager and flex
  (fused: ``torch.compile``; the first call's compile time is reported apart), fp32 and bf16 autocast.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/perf/run_inference.py --out result.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time

import torch

import rmtzoo
from rmtzoo.train._generate import stream_batch

SIZES = dict(vocab_size=256, n_layer=4, n_head=4, d_model=256, d_head=64, d_inner=1024, dropout=0.0)


def build(recurrence: str, attention=None, segment=128):
    rec = {"kind": recurrence, **({"cache_len": segment} if "xl" in recurrence else {})}
    config = {"seed": 0, "backbone": {"kind": "transformer_xl", **SIZES}, "memory": {"kind": "read_write", "num_tokens": 10},
              "recurrence": rec, "segment": {"length": segment}, "attention": attention or {"kind": "auto"}}
    model = rmtzoo.build_model(config).eval()
    model.requires_grad_(False)
    return model


def autocast(precision: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


def stream(model, ids, precision: str, grad: bool) -> float:
    """Seconds to stream ``ids [1, N+1]`` segment by segment (nll of every token)."""
    length = model.segment_length
    t0 = time.perf_counter()
    with torch.set_grad_enabled(grad), autocast(precision):
        state, total = model.initial_state(ids.shape[0]), 0.0
        for start in range(0, ids.shape[1] - 1, length):
            x, y = ids[:, start : start + length], ids[:, start + 1 : start + 1 + length]
            out, state = model.step(x, state, return_logits=False)
            total += float(model.backbone.nll(out.hidden, y).sum())
    return time.perf_counter() - t0


def interleave(cases: dict, rounds: int) -> dict:
    """cases: name -> zero-argument function returning seconds. One warm-up each, then round-robin."""
    times = {name: [] for name in cases}
    for fn in cases.values():
        fn()
    for _ in range(rounds):
        for name, fn in cases.items():
            times[name].append(fn())
    return times


def summary(times: list[float], tokens: int) -> dict:
    med = statistics.median(times)
    return {"median_s": round(med, 4), "min_s": round(min(times), 4), "max_s": round(max(times), 4),
            "tokens_per_s": round(tokens / med, 1), "n": len(times)}


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def build_pypi():
    """The PyPI package at the same sizes, as ``run_perf.py`` builds it (one residual stream, no XL
    memories); None where it is not installed."""
    try:
        from recurrent_memory_transformer_pytorch import RecurrentMemoryTransformer
    except ImportError:
        return None
    torch.manual_seed(0)
    core = RecurrentMemoryTransformer(256, num_tokens=256, depth=4, num_memory_tokens=10, seq_len=128, dim_head=64,
                                      heads=4, ff_mult=4, use_xl_memories=False, num_residual_streams=1).eval()
    core.requires_grad_(False)
    return core


def stream_pypi(core, ids, precision: str) -> float:
    """The package's streaming loop: one call per segment, its write memories read by the next."""
    t0 = time.perf_counter()
    with torch.no_grad(), autocast(precision):
        memories, total = None, 0.0
        for start in range(0, ids.shape[1] - 1, 128):
            x, y = ids[:, start : start + 128], ids[:, start + 1 : start + 129]
            logits, memories, _ = core(x, memories)
            total += float(torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum"))
    return time.perf_counter() - t0


def bench_stream(args, gen) -> dict:
    n = args.segments * 128
    ids = torch.randint(0, 256, (1, n + 1), generator=gen)
    out = {}
    core = build_pypi()
    for recurrence in ("rmt", "rmt_xl"):
        model = build(recurrence)
        cases = {f"{recurrence} {p} {path}": (lambda p=p, grad=(path == "recompute"), model=model: stream(model, ids, p, grad))
                 for p in ("fp32", "bf16") for path in ("reuse", "recompute")}
        if recurrence == "rmt" and core is not None:
            cases.update({f"pypi {p}": (lambda p=p: stream_pypi(core, ids, p)) for p in ("fp32", "bf16")})
        for name, times in interleave(cases, args.rounds).items():
            out[name] = summary(times, n)
            print(name, out[name], flush=True)
    return out


def bench_rss(args, gen) -> dict:
    model = build("rmt")
    ids = torch.randint(0, 256, (1, args.rss_tokens + 1), generator=gen)
    marks, state, seen = {}, model.initial_state(1), 0
    wanted = sorted({16384, 65536, args.rss_tokens})
    t0 = time.perf_counter()
    with torch.no_grad():
        for start in range(0, args.rss_tokens, 128):
            out, state = model.step(ids[:, start : start + 128], state, return_logits=False)
            model.backbone.nll(out.hidden, ids[:, start + 1 : start + 129])
            seen += 128
            if wanted and seen >= wanted[0]:
                marks[wanted.pop(0)] = round(rss_mb(), 1)
    result = {"rss_mb_after_tokens": marks, "tokens_per_s": round(args.rss_tokens / (time.perf_counter() - t0), 1)}
    print("rss", result, flush=True)
    return result


def per_token_times(model, prompt, new: int, reuse: bool) -> list[float]:
    times, last = [], time.perf_counter()
    for _ in stream_batch(model, [prompt], new, reuse_keys=reuse):
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return times


def bench_generate(args, gen) -> dict:
    model = build("rmt")
    prompt = torch.randint(0, 256, (128,), generator=gen).tolist()
    runs = {True: [], False: []}
    per_token_times(model, prompt, 8, True), per_token_times(model, prompt, 8, False)  # warm-up
    for _ in range(args.gen_rounds):
        for reuse in (True, False):
            runs[reuse].append(per_token_times(model, prompt, args.new, reuse))  # [k-1]: token k's seconds
    # windows of token numbers k (token 1 also pays the prompt's pass and is left out)
    edges = sorted({2, *(e for e in (17, 33, 65, 97, 129, 257, 385, 513, 1025) if e <= args.new), args.new + 1})
    out = {}
    for reuse, rounds in runs.items():
        name = "extend" if reuse else "rerun"
        rows = {}
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            window = [t for r in rounds for t in r[lo - 1 : hi - 1]]
            rows[f"tokens {lo}-{hi - 1}"] = round(1000 * statistics.median(window), 3)
        total = [sum(r[1:]) for r in rounds]
        out[name] = {"median_ms_per_token": rows, "tokens_per_s": round((args.new - 1) / statistics.median(total), 1),
                     "n": len(rounds)}
        print(name, out[name], flush=True)
    return out


def bench_kernels(args, gen) -> dict:
    n = args.kernel_segments * 128
    ids = torch.randint(0, 256, (1, n + 1), generator=gen)
    models = {kind: build("rmt", {"kind": kind}) for kind in ("auto", "eager", "flex")}
    compile_s = {}
    for p in ("fp32", "bf16"):  # flex compiles one graph per shape and dtype on its first call
        t0 = time.perf_counter()
        stream(models["flex"], ids[:, : 128 + 1], p, False)
        compile_s[p] = round(time.perf_counter() - t0, 1)
    out = {"flex_first_call_s": compile_s}
    for p in ("fp32", "bf16"):
        cases = {f"{kind} {p}": (lambda m=m, p=p: stream(m, ids, p, False)) for kind, m in models.items()}
        for name, times in interleave(cases, args.rounds).items():
            out[name] = summary(times, n)
            print(name, out[name], flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=["stream", "rss", "generate", "kernels"])
    parser.add_argument("--segments", type=int, default=16)
    parser.add_argument("--kernel-segments", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--gen-rounds", type=int, default=2)
    parser.add_argument("--new", type=int, default=385)
    parser.add_argument("--rss-tokens", type=int, default=262144)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    bad = [x for x in args.only if x not in ("stream", "rss", "generate", "kernels")]
    if bad or args.new < 17 or args.segments < 1 or args.rounds < 1:
        print(f"run_inference: bad option ({bad or 'a count'}): --only stream rss generate kernels, --new >= 17",
              file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "argv": sys.argv[1:]}
    for part in args.only:
        result[part] = {"stream": bench_stream, "rss": bench_rss, "generate": bench_generate,
                        "kernels": bench_kernels}[part](args, gen)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

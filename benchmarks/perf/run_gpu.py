"""GPU preset of the perf benchmark: the paper's WikiText-103 base and enwik8 models in bf16 on one GPU.

    python benchmarks/perf/run_gpu.py --out benchmarks/perf/reports            # one H100/H200, a few minutes
    python benchmarks/perf/run_gpu.py --tiny --out /tmp/gpu-perf                # CPU, seconds (the test)

Models (LM-RMT's Transformer-XL sizes): ``wt103_base``: 16 layers, d_model 410, 10 heads, d_head 41,
d_inner 2100, segment 150, memory 10, batch 60, 32k vocabulary (a plain softmax: the adaptive head is
not what is timed); ``enwik8``: 12 layers, d_model 512, 8 heads, d_head 64, d_inner 2048, segment 512,
memory 10, batch 22, 256 bytes. Every recurrence mode (``none``, ``rmt``, ``xl`` with a one-segment
cache, ``rmt_xl``) and, where installed, the PyPI package ``recurrent-memory-transformer-pytorch``
(one residual stream, same width, depth, heads and memory) run ``--segments`` segments with full BPTT,
interleaved round-robin step by step. Each train step is forward + backward + AdamW under bf16
autocast; time is read from CUDA events after ``--warmup`` steps (``time.perf_counter`` on CPU);
``tokens/s = batch * segments * segment / median step seconds``; peak memory is
``torch.cuda.max_memory_allocated`` over a case's steps (not measured on CPU). One JSON written
atomically (temporary file + rename).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

MODELS = {
    "wt103_base": dict(n_layer=16, d_model=410, n_head=10, d_head=41, d_inner=2100, segment=150, batch=60, vocab=32000),
    "enwik8": dict(n_layer=12, d_model=512, n_head=8, d_head=64, d_inner=2048, segment=512, batch=22, vocab=256),
}
TINY = dict(n_layer=2, d_model=32, n_head=2, d_head=16, d_inner=64, segment=8, batch=2, vocab=64)
MODES = ("none", "rmt", "xl", "rmt_xl")


def build(impl: str, mode: str, size: dict, memory: int):
    if impl == "pypi":
        from recurrent_memory_transformer_pytorch import (
            RecurrentMemoryTransformer,
            RecurrentMemoryTransformerWrapper,
        )

        core = RecurrentMemoryTransformer(size["d_model"], num_tokens=size["vocab"], depth=size["n_layer"],
                                          num_memory_tokens=memory, seq_len=size["segment"], dim_head=size["d_head"],
                                          heads=size["n_head"], ff_mult=size["d_inner"] / size["d_model"],
                                          use_xl_memories=False, num_residual_streams=1)
        return RecurrentMemoryTransformerWrapper(core)
    import rmtzoo

    rec = {"kind": mode}
    if mode in ("xl", "rmt_xl"):
        rec["cache_len"] = size["segment"]
    config = {
        "backbone": {"kind": "transformer_xl", "vocab_size": size["vocab"], "n_layer": size["n_layer"],
                     "n_head": size["n_head"], "d_model": size["d_model"], "d_head": size["d_head"],
                     "d_inner": size["d_inner"], "dropout": 0.0},
        "memory": {"kind": "none"} if mode in ("none", "xl") else {"kind": "read_write", "num_tokens": memory},
        "recurrence": rec,
        "segment": {"length": size["segment"]},
    }
    return rmtzoo.build_model(config)


class Case:
    def __init__(self, name, impl, mode, size, segments, memory, device):
        self.name, self.impl, self.size, self.device = name, impl, size, device
        torch.manual_seed(0)
        self.model = build(impl, mode, size, memory).to(device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        n = segments * size["segment"]
        self.ids = torch.randint(0, size["vocab"], (size["batch"], n + 1), device=device)
        self.tokens, self.times, self.peak = size["batch"] * n, [], 0

    def loss(self):
        if self.impl == "pypi":
            return self.model(self.ids, return_loss=True)[0]
        x, y, model = self.ids[:, :-1], self.ids[:, 1:], self.model
        state, total, length = model.initial_state(x.shape[0]), 0.0, model.segment_length
        for start in range(0, x.shape[1], length):
            out, state = model.step(x[:, start : start + length], state, return_logits=False,
                                    targets=y[:, start : start + length])
            total = total + out.nll.mean()
        return total / (x.shape[1] // length)

    def step(self, timed: bool):
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        t0 = time.perf_counter()
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            loss = self.loss()
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if cuda:
            end.record()
            torch.cuda.synchronize(self.device)
            seconds = start.elapsed_time(end) / 1000
            self.peak = max(self.peak, torch.cuda.max_memory_allocated(self.device))
        else:
            seconds = time.perf_counter() - t0
        if not torch.isfinite(loss):
            raise RuntimeError(f"{self.name}: loss is {float(loss)}")
        if timed:
            self.times.append(seconds)

    def row(self):
        median = statistics.median(self.times)
        return {"case": self.name, "step_s": [round(t, 5) for t in self.times], "median_s": round(median, 5),
                "tokens_per_step": self.tokens, "tokens_per_s": round(self.tokens / median, 1),
                "peak_mb": round(self.peak / 2**20, 1) if self.peak else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    ap.add_argument("--segments", type=int, default=4)
    ap.add_argument("--memory", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--tiny", action="store_true", help="tiny sizes on whatever device there is (the CPU test)")
    args = ap.parse_args(argv)
    for name in ("segments", "warmup", "steps"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            print(f"run_gpu: --{name} must be >= {0 if name == 'warmup' else 1}, got {getattr(args, name)}", file=sys.stderr)
            return 2
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.tiny:
        print("run_gpu: no CUDA device here; use --tiny to check the script on CPU", file=sys.stderr)
        return 2
    try:
        import recurrent_memory_transformer_pytorch  # noqa: F401

        have_pypi = True
    except Exception:
        have_pypi = False
    doc = {"schema": 1, "torch": torch.__version__, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "segments": args.segments, "memory": args.memory, "warmup": args.warmup, "steps": args.steps,
           "timing": "CUDA events" if device.type == "cuda" else "perf_counter", "pypi_installed": have_pypi, "models": {}}
    for model_name in args.models:
        size = TINY if args.tiny else MODELS[model_name]
        cases = [Case(f"rmtzoo/{m}", "rmtzoo", m, size, args.segments, args.memory, device) for m in MODES]
        if have_pypi:
            cases.append(Case("pypi", "pypi", "rmt", size, args.segments, args.memory, device))
        for i in range(args.warmup + args.steps):
            for case in cases:  # interleaved: drift hits every case alike
                case.step(timed=i >= args.warmup)
        rows = [c.row() for c in cases]
        pypi = next((r for r in rows if r["case"] == "pypi"), None)
        for r in rows:
            if pypi and r is not pypi:
                r["vs_pypi"] = round(r["tokens_per_s"] / pypi["tokens_per_s"], 3)
        doc["models"][model_name] = {"size": size, "results": rows}
        del cases
        if device.type == "cuda":
            torch.cuda.empty_cache()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu-{'tiny' if args.tiny else 'bf16'}.json"
    fd, tmp = tempfile.mkstemp(dir=args.out, prefix=".gpu-", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1)
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)
    print(f"wrote {path}")
    return 0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


if __name__ == "__main__":
    sys.exit(main())

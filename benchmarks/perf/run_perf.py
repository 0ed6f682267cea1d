"""Training and inference throughput, and peak memory, of rmtzoo's RMT against a full-attention
transformer and the PyPI package ``recurrent-memory-transformer-pytorch``.

    python benchmarks/perf/run_perf.py --preset smoke --out /tmp/perf      # seconds
    python benchmarks/perf/run_perf.py --preset cpu --out benchmarks/perf/reports   # ~10 minutes

What is measured
----------------
* **train tokens/s**: one optimizer step over a whole sequence of S segments with full BPTT (or BPTT
  depth k where a case says so): forward over every segment, mean next-token loss over all
  ``batch * S * T`` positions, backward, Adam step. ``tokens/s = batch * S * T / median(step seconds)``.
* **inference tokens/s**: ``torch.no_grad`` forward over the same sequence in eval mode (logits for every
  position), same formula.
* **peak memory**: in a fresh ``python`` subprocess per case, the model, optimizer and batch are built,
  ``gc.collect()`` and ``malloc_trim(0)`` run, the current RSS is read from ``/proc/self/statm``, then one
  RSS high-water mark is reset (``echo 5 > /proc/self/clear_refs``), one training step runs and the
  high-water mark ``VmHWM`` of ``/proc/self/status`` is read (not ``ru_maxrss``: Linux carries it over
  fork+exec from the parent). The reported ``peak_step_mb`` = VmHWM - RSS before the step: what one training step needs on top of
  the built model (activations kept for backward, gradients, Adam state, allocator slack). ``tracemalloc``
  does not see torch's allocations, so it is not used.

Timing discipline: every case of a group is built in one process and their timed steps are interleaved
round-robin (A, B, C, A, B, C, ...), so drift on a shared machine hits all cases alike; medians and ratios
are reported. fp32 and bf16 autocast (``torch.autocast("cpu", torch.bfloat16)``) are separate cases.

Models (same width, depth, heads, memory tokens and segment length everywhere):
* ``rmtzoo/<mode>``: ``rmtzoo.build_model`` with the ``transformer_xl`` backbone (post-LN, relative
  positions, dropout 0), ``read_write`` memory, recurrence ``none|rmt|xl|rmt_xl`` (XL cache = one segment).
  ``d_inner = 4 * d_model``.
* ``full``: the same backbone with memory ``none``, recurrence ``none`` and segment length = the whole
  sequence: one causal full-attention pass.
* ``pypi``: ``RecurrentMemoryTransformer`` + ``RecurrentMemoryTransformerWrapper`` with one residual
  stream (``num_residual_streams=1``: no hyper-connections), ``ff_mult=4`` (GEGLU with inner width
  ``int(4 * d * 2/3)``: the same FF parameter count and FLOPs as ``d_inner = 4d``), ``dim_head = d/heads``,
  dropout 0, XL memories off (its wrapper does not pass them between segments anyway), its default
  einsum attention (``use_flash_attn=False``). Loss via ``wrapper(ids, return_loss=True)``.
* ``+ckpt``: the model option ``segment.checkpoint_activations = true``: each segment's forward and
  loss run under ``torch.utils.checkpoint`` (non-reentrant), so only what crosses segment boundaries is
  kept and each segment is recomputed during backward.
* ``+sel``: ``segment.checkpoint_activations = "selective"``: inside each segment's checkpoint the
  matmul outputs are kept and only the elementwise ops between them are recomputed.
* ``[eager]`` / ``[sdpa]``: the attention kernel forced; unmarked rmtzoo cases use ``auto`` (the
  default: eager for bf16 on CPU, sdpa in fp32; see ``rmtzoo/attention.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as _dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

SCHEMA = 1
HERE = Path(__file__).resolve().parent
SHARED_NOTE = (
    "The machine was shared with other work while this ran: absolute timings are noisy; compare the "
    "ratios, which come from cases interleaved step by step in one process."
)


# -- cases ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    impl: str  # rmtzoo | full | pypi
    mode: str = "rmt"  # rmtzoo recurrence (ignored by full/pypi)
    segments: int = 4
    segment_length: int = 128
    memory_tokens: int = 10
    bptt_depth: int | None = None
    precision: str = "fp32"  # fp32 | bf16
    checkpoint: bool | str = False  # True: per segment; "selective": matmul outputs kept
    batch: int = 8
    n_layer: int = 4
    d_model: int = 256
    n_head: int = 4
    vocab: int = 256
    attention: str = "auto"  # rmtzoo attention backend (auto: eager under bf16 on CPU, sdpa in fp32)
    compiled: bool = False  # rmtzoo: torch.compile of the per-segment computation (train.compile)

    @property
    def name(self) -> str:
        base = {"rmtzoo": f"rmtzoo/{self.mode}", "full": "full", "pypi": "pypi"}[self.impl]
        if self.bptt_depth is not None:
            base += f"/k{self.bptt_depth}"
        if self.checkpoint:
            base += "+sel" if self.checkpoint == "selective" else "+ckpt"
        if self.attention != "auto" and self.impl != "pypi":
            base += f"[{self.attention}]"
        if self.compiled and self.impl != "pypi":
            base += "+compiled"
        return f"{base} {self.precision}"

    @property
    def tokens(self) -> int:
        return self.batch * self.segments * self.segment_length


@dataclass(frozen=True)
class Group:
    name: str
    cases: tuple[Case, ...]
    warmup: int
    steps: int
    infer: bool = True


def _sizes(preset: str) -> dict:
    if preset == "smoke":
        return dict(batch=2, n_layer=2, d_model=32, n_head=2, segment_length=8, memory_tokens=2)
    return dict(batch=8, n_layer=4, d_model=256, n_head=4, segment_length=128, memory_tokens=10)


def plan(preset: str, have_pypi: bool) -> tuple[list[Group], list[Case], list[dict]]:
    """Throughput groups, memory cases, and skipped cases (with reasons) for a preset."""
    base = Case(impl="rmtzoo", **_sizes(preset))
    smoke = preset == "smoke"
    long_s = 4 if smoke else 64
    modes = ("none", "rmt", "xl", "rmt_xl")
    skipped: list[dict] = []

    def with_pypi(cases):
        out = []
        for c in cases:
            if c.impl == "pypi" and not have_pypi:
                skipped.append(
                    {
                        "case": c.name,
                        "segments": c.segments,
                        "reason": "recurrent-memory-transformer-pytorch is not installed",
                    }
                )
                continue
            out.append(c)
        return tuple(out)

    groups = []
    # 1. the target at few segments: every mode, full attention, the PyPI package; fp32 and bf16
    short = [replace(base, segments=2 if smoke else 4, precision=p) for p in ("fp32", "bf16")]
    cases = []
    for c in short:
        cases += [replace(c, mode=m) for m in modes]
        cases += [replace(c, impl="full", mode="none", memory_tokens=0), replace(c, impl="pypi")]
    groups.append(Group("target_short", with_pypi(cases), warmup=1 if smoke else 2, steps=2 if smoke else 5))
    # 2. the target at many segments (full BPTT): rmt, the package, and rmt with per-segment checkpointing
    long = [replace(base, segments=long_s, precision=p) for p in ("fp32", "bf16")]
    cases = []
    for c in long:
        cases += [c, replace(c, impl="pypi"), replace(c, checkpoint=True), replace(c, checkpoint="selective")]
    groups.append(Group("target_long", with_pypi(cases), warmup=1, steps=2 if smoke else 3))
    # the attention kernel `auto` picks, against each kernel forced (S as in target_short)
    cases = [
        replace(base, segments=2 if smoke else 4, precision=p, attention=a)
        for p in ("fp32", "bf16")
        for a in ("auto", "eager", "sdpa")
    ]
    groups.append(Group("attention_kernels", tuple(cases), warmup=1, steps=2 if smoke else 3, infer=True))
    full_tokens = long_s * base.segment_length
    est_gb = 4 * base.batch * base.n_head * full_tokens**2 * 4 * base.n_layer / 1e9
    if not smoke:
        skipped.append(
            {
                "case": "full fp32/bf16",
                "segments": long_s,
                "reason": f"one {full_tokens}-token attention: its fp32 [B,H,N,N] score/probability tensors kept "
                f"for backward alone are ~{est_gb:.0f} GB over {base.n_layer} layers (this machine has 23 GB)",
            }
        )
    # 3. sweeps (fp32): segments, segment length, memory size, BPTT depth
    seg_points = (1, 2, 4) if smoke else (1, 2, 4, 8, 16)
    cases = []
    for s in seg_points:
        cases += [replace(base, segments=s), replace(base, impl="pypi", segments=s)]
    groups.append(Group("sweep_segments", with_pypi(cases), warmup=1, steps=2 if smoke else 3, infer=False))
    len_points = (4, 16) if smoke else (64, 256)  # 128 is in target_short
    cases = []
    for t in len_points:
        cases += [replace(base, segment_length=t), replace(base, impl="pypi", segment_length=t)]
    groups.append(
        Group("sweep_segment_length", with_pypi(cases), warmup=1, steps=2 if smoke else 3, infer=False)
    )
    mem_points = (1, 4) if smoke else (1, 32, 64)  # 10 is in target_short
    cases = []
    for m in mem_points:
        cases += [replace(base, memory_tokens=m), replace(base, impl="pypi", memory_tokens=m)]
    groups.append(Group("sweep_memory", with_pypi(cases), warmup=1, steps=2 if smoke else 3, infer=False))
    bptt_s = 4 if smoke else 8
    cases = tuple(replace(base, segments=bptt_s, bptt_depth=k) for k in (1, 2, None))
    groups.append(Group("sweep_bptt", cases, warmup=1, steps=2 if smoke else 3, infer=False))

    mem_cases = [
        replace(base, segments=2 if smoke else 4),
        replace(base, impl="full", mode="none", memory_tokens=0, segments=2 if smoke else 4),
    ]
    mem_cases += [replace(base, segments=long_s), replace(base, segments=long_s, checkpoint=True)]
    mem_cases += [replace(base, segments=long_s, precision="bf16")]
    mem_cases += [replace(base, segments=long_s, precision="bf16", checkpoint=True)]
    mem_cases += [replace(base, segments=long_s, precision=p, checkpoint="selective") for p in ("fp32", "bf16")]
    mem_cases += [
        replace(base, impl="pypi", segments=2 if smoke else 4),
        replace(base, impl="pypi", segments=long_s),
    ]
    mem_cases += [replace(base, impl="pypi", segments=long_s, precision="bf16")]
    mem_cases = [c for c in mem_cases if have_pypi or c.impl != "pypi"]
    if smoke:
        mem_cases = mem_cases[:2]
    return groups, mem_cases, skipped


# -- models ---------------------------------------------------------------------------------------
def pypi_version() -> str | None:
    try:
        from importlib.metadata import version

        import recurrent_memory_transformer_pytorch  # noqa: F401

        return version("recurrent-memory-transformer-pytorch")
    except Exception:  # not installed, or its deps are missing
        return None


class Runner:
    """One case: a model, an optimizer, a fixed batch, and train/infer step functions."""

    def __init__(self, case: Case, seed: int = 0) -> None:
        self.case = c = case
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, c.vocab, (c.batch, c.segments * c.segment_length + 1), generator=g)
        if c.impl == "pypi":
            from recurrent_memory_transformer_pytorch import (
                RecurrentMemoryTransformer,
                RecurrentMemoryTransformerWrapper,
            )

            torch.manual_seed(seed)
            core = RecurrentMemoryTransformer(
                c.d_model,
                num_tokens=c.vocab,
                depth=c.n_layer,
                num_memory_tokens=c.memory_tokens,
                seq_len=c.segment_length,
                dim_head=c.d_model // c.n_head,
                heads=c.n_head,
                ff_mult=4,
                use_xl_memories=False,
                num_residual_streams=1,
            )
            self.model = RecurrentMemoryTransformerWrapper(core)
        else:
            import rmtzoo

            seg = c.segments * c.segment_length if c.impl == "full" else c.segment_length
            rec: dict = {"kind": "none" if c.impl == "full" else c.mode}
            if rec["kind"] in ("rmt", "rmt_xl") and c.bptt_depth is not None:
                rec["bptt_depth"] = c.bptt_depth
            if rec["kind"] in ("xl", "rmt_xl"):
                rec["cache_len"] = c.segment_length
            memory = (
                {"kind": "none"}
                if c.impl == "full" or not c.memory_tokens
                else {"kind": "read_write", "num_tokens": c.memory_tokens}
            )
            config = {
                "seed": seed,
                "backbone": {
                    "kind": "transformer_xl",
                    "vocab_size": c.vocab,
                    "n_layer": c.n_layer,
                    "n_head": c.n_head,
                    "d_model": c.d_model,
                    "d_head": c.d_model // c.n_head,
                    "d_inner": 4 * c.d_model,
                    "dropout": 0.0,
                },
                "memory": memory,
                "recurrence": rec,
                "segment": {"length": seg, "checkpoint_activations": c.checkpoint},
                "attention": {"kind": c.attention},
            }
            self.model = rmtzoo.build_model(config)
            if c.compiled:
                self.model.compile_segments()
        self.params = sum(p.numel() for p in self.model.parameters())
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4)

    def _autocast(self):
        if self.case.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _loss(self) -> torch.Tensor:
        c, ids = self.case, self.ids
        if c.impl == "pypi":
            loss, _ = self.model(ids, return_loss=True)
            return loss
        x, y = ids[:, :-1], ids[:, 1:]
        model = self.model
        state = model.initial_state(c.batch)
        total = 0.0
        length = model.segment_length
        n = 0
        for start in range(0, x.shape[1], length):
            out, state = model.step(
                x[:, start : start + length], state, return_logits=False, targets=y[:, start : start + length]
            )
            total = total + out.nll.sum()
            n += out.nll.numel()
        return total / n

    def train_step(self) -> float:
        self.model.train()
        t0 = time.perf_counter()
        with self._autocast():
            loss = self._loss()
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        if not torch.isfinite(loss):
            raise RuntimeError(f"{self.case.name}: loss is {loss.item()}")
        return dt

    @torch.no_grad()
    def infer_step(self) -> float:
        self.model.eval()
        c, x = self.case, self.ids[:, :-1]
        t0 = time.perf_counter()
        with self._autocast():
            if c.impl == "pypi":
                logits, _ = self.model(x)
            else:
                logits = self.model.forward_sequence(x).logits
        dt = time.perf_counter() - t0
        assert logits.shape[:2] == x.shape
        return dt


# -- throughput -----------------------------------------------------------------------------------
def _stats(times: list[float], tokens: int) -> dict:
    med = statistics.median(times)
    return {
        "step_s": [round(t, 5) for t in times],
        "median_s": round(med, 5),
        "tokens_per_s": round(tokens / med, 1),
    }


def run_group(group: Group, log) -> list[dict]:
    runners = [Runner(c) for c in group.cases]
    train: dict[int, list[float]] = {i: [] for i in range(len(runners))}
    infer: dict[int, list[float]] = {i: [] for i in range(len(runners))}
    for _ in range(group.warmup):
        for r in runners:
            r.train_step()
    for rep in range(group.steps):  # interleaved: A, B, C, A, B, C, ...
        for i, r in enumerate(runners):
            train[i].append(r.train_step())
        log(f"  {group.name}: round {rep + 1}/{group.steps} done")
    if group.infer:
        for r in runners:
            r.infer_step()
        for _ in range(group.steps):
            for i, r in enumerate(runners):
                infer[i].append(r.infer_step())
    rows = []
    for i, r in enumerate(runners):
        row = {
            "group": group.name,
            "case": r.case.name,
            **asdict(r.case),
            "tokens_per_step": r.case.tokens,
            "params": r.params,
        }
        row["train"] = _stats(train[i], r.case.tokens)
        row["infer"] = _stats(infer[i], r.case.tokens) if infer[i] else None
        rows.append(row)
        inf = f", infer {row['infer']['tokens_per_s']:.0f} tok/s" if row["infer"] else ""
        log(
            f"  {r.case.name:28s} S={r.case.segments:3d} T={r.case.segment_length:3d} M={r.case.memory_tokens:2d} "
            f"k={r.case.bptt_depth}: train {row['train']['tokens_per_s']:.0f} tok/s{inf}"
        )
    del runners
    gc.collect()
    return rows


# -- memory (one fresh subprocess per case) -------------------------------------------------------
def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Reset this process's RSS high-water mark (VmHWM) to its current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure_memory_child(case: Case) -> dict:
    """Peak RSS one training step adds, in this (fresh) process. ``ru_maxrss`` is not used: Linux
    carries it across fork+exec, so a child of a big parent starts with the parent's peak; VmHWM belongs
    to the address space, which exec replaces, and ``clear_refs`` resets it right before the step."""
    torch.manual_seed(0)
    r = Runner(case)
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    reset = _reset_peak()
    before = _status_mb("VmRSS")
    dt = r.train_step()
    peak = _status_mb("VmHWM")
    return {
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(peak, 1),
        "peak_step_mb": round(peak - before, 1),
        # False: the high-water mark could not be reset, so it may come from before the step (imports,
        # building) and peak_step_mb is only an upper bound of what the step needs
        "peak_reset": reset,
        "step_s": round(dt, 3),
    }


def measure_memory(case: Case, threads: int, timeout: float) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--_memory-case",
        json.dumps(asdict(case)),
        "--threads",
        str(threads),
    ]
    row = {"case": case.name, **asdict(case)}
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**row, "error": f"timed out after {timeout:.0f} s"}
    if p.returncode != 0:
        return {**row, "error": (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]}
    return {**row, **json.loads(p.stdout.strip().splitlines()[-1])}


# -- profile --------------------------------------------------------------------------------------
def profile_step(case: Case, top: int = 15) -> dict:
    from torch.profiler import ProfilerActivity, profile

    r = Runner(case)
    r.train_step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        r.train_step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    rows = [
        {
            "op": e.key,
            "self_ms": round(e.self_cpu_time_total / 1e3, 2),
            "share": round(e.self_cpu_time_total / total, 4),
            "calls": e.count,
        }
        for e in events[:top]
    ]
    return {"case": case.name, "segments": case.segments, "total_self_ms": round(total / 1e3, 1), "top": rows}


# -- report ---------------------------------------------------------------------------------------
def _find(results, group, name):
    for row in results:
        if row["group"] == group and row["case"] == name:
            return row
    return None


def ratios(results: list[dict]) -> list[dict]:
    out = []
    for group in ("target_short", "target_long"):
        for prec in ("fp32", "bf16"):
            pypi = _find(results, group, f"pypi {prec}")
            full = _find(results, group, f"full {prec}")
            for row in results:
                if row["group"] != group or row["impl"] != "rmtzoo" or row["precision"] != prec:
                    continue
                item = {"group": group, "segments": row["segments"], "case": row["case"]}
                for kind in ("train", "infer"):
                    if row.get(kind) is None:
                        continue
                    if pypi and pypi.get(kind):
                        item[f"{kind}_vs_pypi"] = round(
                            row[kind]["tokens_per_s"] / pypi[kind]["tokens_per_s"], 3
                        )
                    if full and full.get(kind):
                        item[f"{kind}_vs_full"] = round(
                            row[kind]["tokens_per_s"] / full[kind]["tokens_per_s"], 3
                        )
                out.append(item)
    for prec in ("fp32", "bf16"):
        sdpa = _find(results, "attention_kernels", f"rmtzoo/rmt[sdpa] {prec}")
        for name in (f"rmtzoo/rmt {prec}", f"rmtzoo/rmt[eager] {prec}"):
            row = _find(results, "attention_kernels", name)
            if row and sdpa:
                item = {"group": "attention_kernels", "segments": row["segments"], "case": name}
                for kind in ("train", "infer"):
                    if row.get(kind) and sdpa.get(kind):
                        item[f"{kind}_vs_sdpa"] = round(
                            row[kind]["tokens_per_s"] / sdpa[kind]["tokens_per_s"], 3
                        )
                out.append(item)
    for prec, mark in (("fp32", "ckpt"), ("bf16", "ckpt"), ("fp32", "sel"), ("bf16", "sel")):
        ck = _find(results, "target_long", f"rmtzoo/rmt+{mark} {prec}")
        plain = _find(results, "target_long", f"rmtzoo/rmt {prec}")
        if ck and plain:
            out.append(
                {
                    "group": "target_long",
                    "segments": ck["segments"],
                    "case": ck["case"],
                    "train_vs_no_ckpt": round(
                        ck["train"]["tokens_per_s"] / plain["train"]["tokens_per_s"], 3
                    ),
                }
            )
    return out


TARGET_SPEEDUP, TARGET_MEMORY_MB, TARGET_CKPT_RATIO = 1.15, 2048, 0.75


def targets(doc: dict) -> list[dict]:
    """Issue #4's targets, each with the measured value and met / missed by how much."""
    res, out = doc["results"], []

    def add(target, value, need, unit="x", higher=True):
        met = value >= need if higher else value <= need
        by = value / need - 1 if higher else need / value - 1
        out.append(
            {
                "target": target,
                "value": round(value, 3),
                "need": need,
                "unit": unit,
                "met": met,
                "margin": round(by, 3),
            }
        )

    for group in ("target_short", "target_long"):
        for mine, theirs in (("fp32", "fp32"), ("bf16", "bf16"), ("bf16", "fp32")):
            a, b = _find(res, group, f"rmtzoo/rmt {mine}"), _find(res, group, f"pypi {theirs}")
            if a and b:
                ratio = a["train"]["tokens_per_s"] / b["train"]["tokens_per_s"]
                add(
                    f"train S={a['segments']}: rmtzoo {mine} / package {theirs} >= {TARGET_SPEEDUP}x",
                    ratio,
                    TARGET_SPEEDUP,
                )
    for prec in ("fp32", "bf16"):
        m = next(
            (m for m in doc["memory"] if m["case"] == f"rmtzoo/rmt+ckpt {prec}" and "error" not in m), None
        )
        if m and m["segments"] >= 64:
            add(
                f"memory S={m['segments']} rmtzoo+ckpt {prec}: peak RSS of the process <= 2 GB",
                m["peak_rss_mb"],
                TARGET_MEMORY_MB,
                unit="MB",
                higher=False,
            )
    for r in doc["ratios"]:
        if "train_vs_no_ckpt" in r:
            add(
                f"train S={r['segments']} {r['case']} / without checkpointing >= {TARGET_CKPT_RATIO}x",
                r["train_vs_no_ckpt"],
                TARGET_CKPT_RATIO,
            )
    return out


def markdown(doc: dict) -> str:
    L = [f"# rmtzoo perf: preset `{doc['preset']}`", ""]
    L += [
        f"- command: `{doc['command']}`",
        f"- date: {doc['created']}",
        f"- torch {doc['torch']}, python {doc['python']}, "
        f"{doc['threads']} threads, CPU: {doc['cpu_model']} ({doc['cpu_count']} cores visible)",
    ]
    pv = doc["pypi"]
    L.append(
        f"- recurrent-memory-transformer-pytorch: {pv['version'] if pv['installed'] else 'not installed: PyPI cases skipped'}"
    )
    L += [f"- note: {doc['note']}", f"- wall time: {doc['wall_s']:.0f} s", ""]
    L += [
        "Train = forward + backward + Adam step over the whole sequence (full BPTT unless `/kN`); "
        "tokens/s = batch x segments x segment length / median step time. Inference = no-grad forward. "
        "Cases of a group ran interleaved in one process.",
        "",
    ]
    groups: dict[str, list] = {}
    for row in doc["results"]:
        groups.setdefault(row["group"], []).append(row)
    for name, rows in groups.items():
        L += [
            f"## {name}",
            "",
            "| case | S | T | M | k | train tok/s | median step s | infer tok/s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            inf = f"{r['infer']['tokens_per_s']:.0f}" if r.get("infer") else "-"
            L.append(
                f"| {r['case']} | {r['segments']} | {r['segment_length']} | {r['memory_tokens']} | {r['bptt_depth'] or 'all'} | "
                f"{r['train']['tokens_per_s']:.0f} | {r['train']['median_s']:.3f} | {inf} |"
            )
        L.append("")
    if doc["ratios"]:
        L += [
            "## Ratios (same group, same precision)",
            "",
            "| group | S | case | train / pypi | train / full | infer / pypi | infer / full | train / no-ckpt "
            "| train / sdpa | infer / sdpa |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in doc["ratios"]:
            g = lambda k, r=r: f"{r[k]:.2f}x" if k in r else "-"  # noqa: E731
            L.append(
                f"| {r['group']} | {r['segments']} | {r['case']} | {g('train_vs_pypi')} | {g('train_vs_full')} | {g('infer_vs_pypi')} | {g('infer_vs_full')} | {g('train_vs_no_ckpt')} | {g('train_vs_sdpa')} | {g('infer_vs_sdpa')} |"
            )
        L.append("")
    if doc.get("targets"):
        L += ["## Targets (issue #4)", "", "| target | measured | met | margin |", "|---|---|---|---|"]
        for t in doc["targets"]:
            v = f"{t['value']:.2f}x" if t["unit"] == "x" else f"{t['value']:.0f} MB"
            L.append(f"| {t['target']} | {v} | {'yes' if t['met'] else 'no'} | {100 * t['margin']:+.0f}% |")
        L.append("")
    if doc["memory"]:
        L += [
            "## Peak memory of one training step",
            "",
            "Fresh subprocess per case; `peak step MB` = VmHWM after one step (reset just before it) - RSS before it (after gc + malloc_trim).",
            "",
            "| case | S | peak step MB | RSS before MB | peak RSS MB | first (cold) step s |",
            "|---|---|---|---|---|---|",
        ]
        for m in doc["memory"]:
            if "error" in m:
                L.append(f"| {m['case']} | {m['segments']} | error: {m['error']} | | | |")
            else:
                L.append(
                    f"| {m['case']} | {m['segments']} | {m['peak_step_mb']:.0f} | {m['rss_before_mb']:.0f} | {m['peak_rss_mb']:.0f} | {m['step_s']:.2f} |"
                )
        L.append("")
    if doc["skipped"]:
        L += (
            ["## Skipped", ""]
            + [f"- {s['case']} (S={s.get('segments')}): {s['reason']}" for s in doc["skipped"]]
            + [""]
        )
    for prof in doc.get("profiles", []):
        L += [
            f"## Profile: one training step of {prof['case']}, S={prof['segments']} (self CPU time {prof['total_self_ms']:.0f} ms)",
            "",
            "| op | self ms | share | calls |",
            "|---|---|---|---|",
        ]
        L += [
            f"| `{r['op']}` | {r['self_ms']:.1f} | {100 * r['share']:.1f}% | {r['calls']} |"
            for r in prof["top"]
        ]
        L.append("")
    return "\n".join(L)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


# -- main -----------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=("smoke", "cpu"), default="smoke")
    ap.add_argument("--out", type=Path, default=HERE / "reports")
    ap.add_argument("--name", help="file stem (default: <preset>-<date>)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="skip remaining sweep groups past this (default: 600 cpu, 60 smoke)",
    )
    ap.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--no-pypi", action="store_true", help="leave the PyPI package out even if installed")
    ap.add_argument("--render", type=Path, help="only re-write the markdown next to this result JSON")
    ap.add_argument("--_memory-case", dest="memory_case", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.render:
        _write_atomic(args.render.with_suffix(".md"), markdown(json.loads(args.render.read_text())) + "\n")
        return 0
    if args.memory_case:
        print(json.dumps(measure_memory_child(Case(**json.loads(args.memory_case)))))
        return 0

    t_start = time.perf_counter()
    log = lambda msg: print(f"[{time.perf_counter() - t_start:6.1f}s] {msg}", flush=True)  # noqa: E731
    version = None if args.no_pypi else pypi_version()
    groups, mem_cases, skipped = plan(args.preset, version is not None)
    budget = args.budget_s if args.budget_s is not None else (60.0 if args.preset == "smoke" else 600.0)
    created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    doc = {
        "schema": SCHEMA,
        "preset": args.preset,
        "command": " ".join(
            ["python", "benchmarks/perf/run_perf.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "created": created.isoformat(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "note": SHARED_NOTE,
        "pypi": {
            "installed": version is not None,
            "version": version,
            "reason": None
            if version
            else ("--no-pypi" if args.no_pypi else "recurrent-memory-transformer-pytorch is not installed"),
        },
        "budget_s": budget,
        "results": [],
        "memory": [],
        "skipped": skipped,
        "profiles": [],
    }
    if not args.no_memory:  # first, while this process is small (RAM is shared by parent and child)
        for case in mem_cases:
            log(f"memory: {case.name} S={case.segments}")
            doc["memory"].append(measure_memory(case, args.threads, timeout=900))
            m = doc["memory"][-1]
            log(f"  -> {m.get('error') or str(m['peak_step_mb']) + ' MB peak for the step'}")
    for group in groups:
        if group.name.startswith("sweep") and time.perf_counter() - t_start > budget:
            skipped.append(
                {
                    "case": f"group {group.name}",
                    "segments": None,
                    "reason": f"time budget {budget:.0f} s spent",
                }
            )
            log(f"skip {group.name}: budget spent")
            continue
        log(
            f"group {group.name}: {len(group.cases)} cases, {group.warmup} warm-up + {group.steps} timed steps each"
        )
        doc["results"] += run_group(group, log)
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
    if not args.no_profile:
        base = Case(impl="rmtzoo", **_sizes(args.preset), segments=2 if args.preset == "smoke" else 4)
        for prec in ("fp32", "bf16"):
            cases = [replace(base, precision=prec)] + (
                [replace(base, impl="pypi", precision=prec)] if version else []
            )
            for case in cases:
                log(f"profile: {case.name}")
                doc["profiles"].append(profile_step(case))
    doc["ratios"] = ratios(doc["results"])
    doc["targets"] = targets(doc)
    doc["wall_s"] = round(time.perf_counter() - t_start, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.name or f"{args.preset}-{created.date().isoformat()}"
    if not args.name:  # a second run on the same day must not overwrite a (committed) report
        base, n = stem, 2
        while (args.out / f"{stem}.json").exists() or (args.out / f"{stem}.md").exists():
            stem, n = f"{base}-v{n}", n + 1
    _write_atomic(args.out / f"{stem}.json", json.dumps(doc, indent=1) + "\n")
    _write_atomic(args.out / f"{stem}.md", markdown(doc) + "\n")
    log(f"wrote {args.out / (stem + '.json')} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Loss curves of one config trained in fp32 and in bf16 autocast, same seeds: is bf16 numerically safe?

    OMP_NUM_THREADS=1 python benchmarks/perf/bf16_vs_fp32.py --config examples/copy_small.toml \\
        --steps 1500 --seeds 3 --out benchmarks/perf/reports/bf16-vs-fp32-copy_small
    python benchmarks/perf/bf16_vs_fp32.py --config examples/copy_small.toml --steps 20 --seeds 1 --out /tmp/b   # tests

Each (precision, seed) trains ``--config`` through :func:`rmtzoo.train` in a fresh run folder under a
temporary directory, with ``train.precision`` set, ``train.steps = --steps`` and early stopping off
(``train.stop_at = null``), so both precisions train the same number of steps on the same batches (the
seed fixes data order and initialisation). The trainer's ``metrics.jsonl`` gives the logged train loss
(``train.log_every``) and the validation accuracy (``eval.every``); the test metrics are the trainer's.
bf16 here is what ``train.precision = "bf16"`` runs: ``torch.autocast`` with the attention in the compute
dtype (biases and the additive mask in bf16, softmax in bf16). Writes ``<out>.json``, ``<out>.md`` and,
with matplotlib, ``<out>.png``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_perf  # noqa: E402  (the perf scripts' shared helpers)

from rmtzoo._io import atomic_write, atomic_write_text  # noqa: E402  (temporary file + rename, user's umask)


def run_one(config_path: str, precision: str, seed: int, steps: int, root: Path) -> dict:
    import rmtzoo
    from rmtzoo.train import train

    config = rmtzoo.load_config(config_path, [f"train.precision={precision}", f"seed={seed}",
                                              f"train.steps={steps}", "train.stop_at=null"])
    run_dir = root / f"{precision}-{seed}"
    t0 = time.perf_counter()
    results = train(config, run_dir, log=lambda *_: None, device="cpu", threads=1)
    wall = time.perf_counter() - t0
    losses, valid = [], []
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if "event" in record:
            continue
        if "train/loss" in record:
            losses.append([record["step"], record["train/loss"]])
        if "valid/accuracy" in record:
            valid.append([record["step"], record["valid/accuracy"]])
    return {"precision": precision, "seed": seed, "wall_s": round(wall, 1), "train_loss": losses,
            "valid_accuracy": valid, "test": {k: v for k, v in results.items() if isinstance(v, int | float)}}


def render(doc: dict) -> str:
    runs = doc["runs"]
    seeds = sorted({r["seed"] for r in runs})
    by = {(r["precision"], r["seed"]): r for r in runs}
    loss = {key: dict(map(tuple, r["train_loss"])) for key, r in by.items()}  # (precision, seed) -> {step: loss}
    lines = [
        f"# bf16 autocast against fp32: `{doc['config']}`, {doc['steps']} steps, seeds {', '.join(map(str, seeds))}",
        "",
        f"- command: `{doc['command']}`",
        f"- machine: {doc['cpu_model']}, {doc['cpu_count']} cores, one thread per run; torch {doc['torch']}",
        f"- created: {doc['created']}; wall {doc['wall_s']} s",
        "- same seed = same initialisation and batches; early stopping off, so every run trains every step",
        "",
        "## Train loss at logged steps (mean over seeds; in brackets the largest |bf16 - fp32| of one seed)",
        "",
        "| step | fp32 | bf16 | bf16 - fp32 |",
        "|---|---|---|---|",
    ]
    steps = [s for s, _ in by["fp32", seeds[0]]["train_loss"]]
    shown = sorted(set(steps[:: max(1, len(steps) // 10)] + steps[-1:]))
    for step in shown:
        f = [loss["fp32", s][step] for s in seeds]
        b = [loss["bf16", s][step] for s in seeds]
        worst = max(abs(x - y) for x, y in zip(f, b, strict=True))
        lines.append(f"| {step} | {statistics.mean(f):.4f} | {statistics.mean(b):.4f} | "
                     f"{statistics.mean(b) - statistics.mean(f):+.4f} ({worst:.4f}) |")
    lines += ["", "## Test (the trainer's, whole test split)", "", "| seed | fp32 accuracy | bf16 accuracy | fp32 loss | bf16 loss | fp32 wall s | bf16 wall s |",
              "|---|---|---|---|---|---|---|"]
    for s in seeds:
        f, b = by["fp32", s], by["bf16", s]
        lines.append(f"| {s} | {f['test'].get('test/accuracy', float('nan')):.4f} | {b['test'].get('test/accuracy', float('nan')):.4f} | "
                     f"{f['test'].get('test/loss', float('nan')):.4f} | {b['test'].get('test/loss', float('nan')):.4f} | "
                     f"{f['wall_s']} | {b['wall_s']} |")
    if doc.get("figure"):
        lines += ["", f"![train loss, fp32 and bf16]({doc['figure']})"]
    return "\n".join(lines) + "\n"


def figure(doc: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for r in doc["runs"]:
        xs, ys = zip(*r["train_loss"], strict=True)
        ax.plot(xs, ys, color="tab:blue" if r["precision"] == "fp32" else "tab:orange",
                linestyle="-" if r["precision"] == "fp32" else "--", linewidth=1,
                label=f"{r['precision']} seed {r['seed']}")
    ax.set_xlabel("step")
    ax.set_ylabel("train loss")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110), binary=True)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="a TOML/YAML/JSON experiment config")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    ap.add_argument("--out", type=Path, required=True, help="output prefix: <out>.json, .md, .png")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.seeds < 1:
        print("bf16_vs_fp32.py: --steps and --seeds must be >= 1", file=sys.stderr)
        return 2
    import torch

    import rmtzoo

    try:
        rmtzoo.load_config(args.config)
    except rmtzoo.ConfigError as exc:
        print(f"bf16_vs_fp32.py: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    doc = {
        "command": " ".join(["python", "benchmarks/perf/bf16_vs_fp32.py", *(sys.argv[1:] if argv is None else argv)]),
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "config": args.config, "steps": args.steps, "torch": torch.__version__,
        "python": platform.python_version(), "cpu_model": run_perf.cpu_model(), "cpu_count": os.cpu_count(), "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for precision in ("fp32", "bf16"):  # interleaved, so load drift hits both alike
                run = run_one(args.config, precision, seed, args.steps, Path(tmp))
                doc["runs"].append(run)
                print(f"{precision} seed {seed}: {run['test']} ({run['wall_s']} s)", flush=True)
    doc["wall_s"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    png = args.out.with_name(args.out.name + ".png")
    doc["figure"] = png.name if figure(doc, png) else None
    atomic_write_text(args.out.with_name(args.out.name + ".json"), json.dumps(doc, indent=1) + "\n")
    atomic_write_text(args.out.with_name(args.out.name + ".md"), render(doc))
    print(f"wrote {args.out}.json / .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

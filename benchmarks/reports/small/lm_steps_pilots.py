"""Is RMT behind Tr-XL and the Baseline on `small`'s language modelling only for lack of training?

The wt103 `small` cells train 1,000 steps on the embedded synthetic_lm corpus. This reruns three of
the segment-50 cells (Baseline, Tr-XL cache 10, RMT memory 10 BPTT-1) with more steps and nothing
else changed, to see whether the gaps close, stay or widen.

Run from the repo root (one thread):

    OMP_NUM_THREADS=1 python benchmarks/reports/small/lm_steps_pilots.py [--steps N] [--seed S] [NAME ...]

Test perplexity, wall time and the whole config of each run go to benchmarks/reports/small/lm_steps_pilots.json
(merged with what is there).
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
import tempfile
import time

import rmtzoo
from rmtzoo._io import atomic_write_text
from rmtzoo.train import train
from rmtzoo_benchmarks.lm import wt103_cells

HERE = pathlib.Path(__file__).parent
PICKS = {  # name -> the wt103 small cell's labels
    "baseline": {"model": "Baseline", "segment_length": 50},
    "trxl10": {"model": "Tr-XL", "segment_length": 50, "cache": 10},
    "rmt10_bptt1": {"model": "RMT", "segment_length": 50, "memory": 10, "bptt": 1},
}


def cell_config(labels: dict) -> dict:
    for cell in wt103_cells("small"):
        if all(cell.labels.get(k) == v for k, v in labels.items()):
            return copy.deepcopy(cell.config)
    raise KeyError(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"default all: {', '.join(PICKS)}")
    parser.add_argument("--steps", type=int, default=4_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "lm_steps_pilots.json")
    args = parser.parse_args()
    done = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name in args.names or list(PICKS):
        raw = cell_config(PICKS[name])
        raw["train"] = {**raw["train"], "steps": args.steps}
        config = rmtzoo.load_config({**raw, "seed": args.seed})
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as run_dir:
            metrics = train(config, run_dir, threads=1, device="cpu")
        key = f"{name}/steps{args.steps}/seed{args.seed}"
        done[key] = {"cell": PICKS[name], "steps": args.steps, "seed": args.seed, "test": metrics,
                     "wall_s": round(time.perf_counter() - start, 1), "config": config.model_dump(mode="json")}
        print(f"{key}: test ppl {metrics.get('test/ppl')} ({done[key]['wall_s']} s)", flush=True)
        atomic_write_text(args.out, json.dumps(done, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()

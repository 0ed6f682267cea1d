"""Can RMT learn `small`'s associative retrieval (2 pairs) through memory? Pilots around fig3c's RMT cells.

fig3c `small` trains RMT on 2 key-value pairs in 2 segments of 3 tokens (memory 3) or 3 of 2 (memory 2):
both seeds sat at 0.49, the guess between the two values in the context, while Tr-XL learned. Each pilot
starts from that cell's config and changes one thing the issue names: a curriculum over segments, memory
size, learning rate, a longer schedule. The winner is then tried on the paper's 4 pairs.

Run from the repo root (one thread; a few minutes a pilot):

    OMP_NUM_THREADS=1 python benchmarks/reports/small/ar_rmt_pilots.py [NAME ...] [--out FILE]

Each pilot's test metrics (``step``: where training stopped; ``test/segments``: the curriculum stage it
reached), wall time and config go to FILE (JSON,
default benchmarks/reports/small/ar_rmt_pilots.json), merged with what is already there, so pilots can be
run one at a time.
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
import tempfile
import time

import rmtzoo
from rmtzoo._config import set_dotted
from rmtzoo._io import atomic_write_text
from rmtzoo.train import train
from rmtzoo_benchmarks.fig3 import FIG3

HERE = pathlib.Path(__file__).parent


def base(segments: int, model: str = "RMT") -> dict:
    """fig3c's `small` ``model`` cell at ``segments`` (2: segments of 3, memory or cache 3; 3: segments of 2)."""
    _, build = FIG3["fig3c"]
    for cell in build(None).cells("small"):
        if cell.labels["model"] == model and cell.labels["segments"] == segments:
            return copy.deepcopy(cell.config)
    raise KeyError(segments)


def with_(config: dict, dotted: dict) -> dict:
    """A copy of ``config`` with the dotted overrides (``{"train.steps": 20_000}``) set, as the CLI sets them."""
    out = copy.deepcopy(config)
    for key, value in dotted.items():
        set_dotted(out, key, value)
    return out


CURRICULUM_2 = {"segments": [1, 2], "advance_at": 0.95}


def pilots() -> dict[str, tuple[str, dict]]:
    b2, b3 = base(2), base(3)
    return {
        "base2": ("fig3c's cell as it is: 2 segments of 3, memory 3, lr 2e-3, 7,000 steps", b2),
        "curr2": ("curriculum 1 -> 2 segments (advance at 0.95 validation accuracy)",
                  with_(b2, {"train.curriculum": CURRICULUM_2})),
        "mem6": ("memory 6 (twice the segment)", with_(b2, {"memory.num_tokens": 6})),
        "lr1e-3_20k": ("lr 1e-3, 20,000 steps", with_(b2, {"train.lr": 1e-3, "train.steps": 20_000})),
        "long20k": ("20,000 steps (lr 2e-3 as in the cell)", with_(b2, {"train.steps": 20_000})),
        "trxl_long20k": ("Tr-XL's cell (cache 3) with 20,000 steps: the same budget for the comparison",
                         with_(base(2, "Tr-XL"), {"train.steps": 20_000})),
        "long20k_3seg": ("3 segments of 2, memory 2, 20,000 steps", with_(b3, {"train.steps": 20_000})),
        "pairs4_long20k": ("the paper's 4 pairs (10 tokens) in 2 segments of 5, memory 5, 20,000 steps",
                           with_(b2, {"task.n_pairs": 4, "segment.length": 5, "memory.num_tokens": 5,
                                      "train.steps": 20_000})),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    table = pilots()
    parser.add_argument("names", nargs="*", help=f"pilots to run (default all): {', '.join(table)}")
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "ar_rmt_pilots.json")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    done = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name in args.names or list(table):
        what, raw = table[name]
        config = rmtzoo.load_config({**raw, "seed": args.seed})
        key = f"{name}/seed{args.seed}"
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as run_dir:
            metrics = train(config, run_dir, threads=1, device="cpu")
        done[key] = {"pilot": name, "what": what, "seed": args.seed, "test": metrics,
                     "wall_s": round(time.perf_counter() - start, 1),
                     "config": config.model_dump(mode="json")}
        print(f"{key}: {what}: test accuracy {metrics.get('test/accuracy')} ({done[key]['wall_s']} s)", flush=True)
        atomic_write_text(args.out, json.dumps(done, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()

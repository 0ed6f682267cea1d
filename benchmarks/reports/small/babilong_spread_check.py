"""babilong small, a check outside the spec: trained cells at 256, 32,768 and 1M tokens on 8 test questions
spread over the 200-question split (indices 0, 25, ..., 175), where the spec's sweep takes the first n,
whose answers are all "hallway" for n <= 5. Segments of 64 (the config's), batch 8, no gradient.

    python benchmarks/reports/small/babilong_spread_check.py RESULTS/babilong/small/runs HASH [HASH ...]

RESULTS is the folder ``rmtzoo bench run babilong --preset small`` wrote (its runs/ keep the checkpoints,
which are not committed); HASH is a cell's result file name without .json.
"""

from __future__ import annotations

import json
import sys

import torch

import rmtzoo
from rmtzoo.tasks.babilong import BabilongParams, BabilongTask
from rmtzoo_benchmarks.babilong import exact_match_at


class Fixed:
    """The task interface exact_match_at reads: the given samples as the test split."""

    def __init__(self, samples):
        ids = torch.tensor([s.input_ids for s in samples])  # [n, L]
        labels = torch.full_like(ids, -100)
        labels[:, -1] = torch.tensor([s.answer for s in samples])
        self.t = (ids, labels)

    def tensors(self, split, n=None):
        return self.t


torch.set_num_threads(1)
runs, *hashes = sys.argv[1:]
for run in hashes:
    pre = rmtzoo.load(f"{runs}/{run}", which="best")
    model = pre.model.eval()
    p = BabilongParams(**{k: v for k, v in pre.config.task.model_dump().items() if k != "kind"})
    model.segment_length = 64
    idx = list(range(0, 200, 25))  # 8 questions spread over the 200-question test split
    answers = [x.story.answer for x in BabilongTask(p).samples("test", indices=idx)]
    for length in (256, 32768, 1_000_000):
        at_length = BabilongTask(p.model_copy(update={"context_length": length}))
        r = exact_match_at(model, Fixed(at_length.samples("test", indices=idx)), n=8, batch_size=8)
        print(json.dumps({"run": run, "answers": answers, **r}), flush=True)

"""babilong small, a check outside the spec: trained cells at 256, 32,768 and 1M tokens on 8 test questions
spread over the 200-question split (indices 0, 25, ..., 175), where the spec's sweep takes the first n,
whose answers are all "hallway" for n <= 5. Segments of 64 (the config's), batch 8, no gradient.

    python benchmarks/reports/small/babilong_spread_check.py RESULTS/babilong/small/runs HASH [HASH ...]

RESULTS is the folder ``rmtzoo bench run babilong --preset small`` wrote (its runs/ keep the checkpoints,
which are not committed); HASH is a cell's result file name without .json.
"""

from __future__ import annotations

import json
import random
import sys

import torch

import rmtzoo
from rmtzoo.tasks import _babi as babi
from rmtzoo.tasks.babilong import BabilongParams, BabilongTask, _filler_pool
from rmtzoo_benchmarks.babilong import exact_match_at


def spread_samples(p, length, indices):
    pool = _filler_pool(p.filler, p.filler_path, p.filler_column, p.filler_vocab, p.filler_seed, "test")
    rng = random.Random(f"rmtzoo-babilong/{p.qa}/{p.n_facts}/{p.data_seed}/test")
    out = []
    for i in range(max(indices) + 1):
        story = babi.STORIES[p.qa](rng, p.n_facts)
        place = random.Random(f"{rng.random()}/{length}")  # same draws as BabilongTask.samples
        if i in indices:
            out.append(babi.hide_in_filler(place, story, pool, context_length=length, filler_vocab=p.filler_vocab))
    return out


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
    check = BabilongTask(p).samples("test")
    assert [s.input_ids for s in spread_samples(p, 256, idx)] == [check[i].input_ids for i in idx]
    answers = [check[i].story.answer for i in idx]
    for length in (256, 32768, 1_000_000):
        r = exact_match_at(model, Fixed(spread_samples(p, length, idx)), n=8, batch_size=8)
        print(json.dumps({"run": run, "answers": answers, **r}), flush=True)

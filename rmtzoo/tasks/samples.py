"""The paper's algorithmic tasks as registered components: copy, reverse, associative retrieval and
quadratic equations (docs/paper-settings.md section 2), served as ``datasets.Dataset`` objects cached on disk.

A :class:`SampleTask` hands the trainer whole samples; every sample starts from the initial memory, so
gradients flow through memory across all segments of a sample (what the authors' code did, docs/paper-settings.md 1.5).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from functools import partial
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from rmtzoo._components import Params, TaskSpec
from rmtzoo._io import check_folder, make_temp_dir
from rmtzoo._registry import hookimpl
from rmtzoo.tasks import synthetic as syn


def default_cache_dir() -> Path:
    return check_folder(Path(os.environ.get("RMTZOO_CACHE") or Path.home() / ".cache" / "rmtzoo"), "RMTZOO_CACHE")


class _SplitParams(Params):
    """Split sizes default to the paper's (docs/paper-settings.md 2.4); ``data_seed`` fixes the generated data."""

    train_size: PositiveInt | None = None
    valid_size: PositiveInt | None = None
    test_size: PositiveInt | None = None
    data_seed: NonNegativeInt = 0
    segmenting: Literal["equal", "lm_rmt_chunk"] = "equal"
    cache_dir: str | None = None
    # decoding: how evaluation produces the scored answer. ``by_length``: greedy (no teacher forcing)
    # when the answer spans more than one segment, teacher-forced argmax otherwise (the paper's metric
    # for copy, reverse and associative retrieval, docs/paper-settings.md 2). ``greedy``: generate the
    # whole target whatever its length (for quadratic equations everything after the equation slot,
    # docs/paper-settings.md 2.6). Left out of the dumped config (and the hash) at its default.
    decoding: Literal["by_length", "greedy"] = Field("by_length", exclude_if=lambda v: v == "by_length")


class CopyParams(_SplitParams):
    src_len: PositiveInt = 24
    n_symbols: int = Field(10, ge=2, le=1000)

    @model_validator(mode="after")
    def _enough_distinct_inputs(self):
        """Splits hold distinct inputs, and there are only ``n_symbols ** src_len`` of them."""
        paper = syn.PAPER_SPLIT_SIZES["copy"]
        sizes = (self.train_size or paper[0], self.valid_size or paper[1], self.test_size or paper[2])
        if self.n_symbols**self.src_len < sum(sizes):
            raise ValueError(
                f"src_len={self.src_len} with n_symbols={self.n_symbols} gives {self.n_symbols**self.src_len} "
                f"distinct inputs, fewer than the {sum(sizes)} the splits ask for (train/valid/test = "
                f"{sizes[0]}/{sizes[1]}/{sizes[2]}); raise src_len or n_symbols, or set smaller "
                "train_size/valid_size/test_size"
            )
        return self


class AssociativeRetrievalParams(_SplitParams):
    n_pairs: int = Field(4, ge=1, le=10)


class QuadraticEquationParams(_SplitParams):
    no_root_fraction: float = Field(0.2, ge=0.0, le=1.0)


class SampleTask:
    """A generated task of fixed-length samples: ``input_ids``, ``labels`` (-100: no loss)."""

    kind = "samples"

    def __init__(self, name: str, params: _SplitParams, sample_kwargs: dict, vocab_size: int, metric: str):
        self.name, self.params, self.vocab_size, self.metric = name, params, vocab_size, metric
        self._sample_fn = partial(syn.SAMPLE_FUNCTIONS[name], **sample_kwargs)
        self.sequence_length = syn.task_lengths(name, **sample_kwargs)
        self.answer_start = self._sample_fn(random.Random(0)).answer_start  # the same for every sample
        self.answer_length = self.sequence_length - self.answer_start
        # the first position whose prediction greedy decoding of the whole target feeds back
        self.target_start = syn.target_start(name, self.answer_start)
        self.decoding = params.decoding
        paper = syn.PAPER_SPLIT_SIZES.get(syn._task_name(self._sample_fn), (1000, 100, 100))
        p = params
        self.sizes = (p.train_size or paper[0], p.valid_size or paper[1], p.test_size or paper[2])
        self._cache: dict[str, object] = {}

    def segment_length_for(self, segment_length: int) -> int:
        """The segment length the model runs with: ``equal`` needs exact tiling; ``lm_rmt_chunk``
        reproduces the authors' ``torch.chunk`` (docs/paper-settings.md 2.5) as equal chunks plus a shorter last one."""
        bounds = syn.segment_bounds(self.sequence_length, segment_length, rule=self.params.segmenting)
        return bounds[0][1] - bounds[0][0]

    def _key(self) -> str:
        spec = {"task": self.name, "kwargs": self._sample_fn.keywords, "sizes": self.sizes, "seed": self.params.data_seed}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def dataset(self, split: str):
        """The split as a ``datasets.Dataset`` (columns input_ids, labels), generated once and cached."""
        import datasets

        if split not in ("train", "valid", "test"):
            raise ValueError(f"split must be train, valid or test, got {split!r}")
        if split in self._cache:
            return self._cache[split]
        datasets.disable_progress_bars()
        root = check_folder(Path(self.params.cache_dir), "task.cache_dir") if self.params.cache_dir else default_cache_dir()
        folder = root / "tasks" / f"{self.name}-{self._key()}"
        if not (folder / "complete").exists():
            splits = syn.generate_splits(self._sample_fn, sizes=self.sizes, seed=self.params.data_seed)
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = make_temp_dir(folder.parent, f".{folder.name}.")
            for name, samples in splits.items():
                columns = {"input_ids": [s.input_ids for s in samples], "labels": [s.labels for s in samples]}
                datasets.Dataset.from_dict(columns).save_to_disk(str(tmp / name))
            (tmp / "complete").write_text("ok\n")
            if not (folder / "complete").exists():  # never delete a whole cache another process may be reading
                shutil.rmtree(folder, ignore_errors=True)
            try:
                os.replace(tmp, folder)  # readers see a whole cache or none
            except OSError:  # another process (a DDP rank) put the same cache in place first
                shutil.rmtree(tmp, ignore_errors=True)
                if not (folder / "complete").exists():
                    raise
        ds = datasets.load_from_disk(str(folder / split))
        self._cache[split] = ds
        return ds

    def tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids and labels of a split as ``[N, T]`` long tensors."""
        columns = self.dataset(split).with_format("torch")[:]
        return columns["input_ids"].long(), columns["labels"].long()


def _copy_like(name):
    def build(p: CopyParams) -> SampleTask:
        return SampleTask(name, p, {"src_len": p.src_len, "n_symbols": p.n_symbols}, p.n_symbols + 2, "accuracy")

    return build


@hookimpl
def rmtzoo_register_tasks(register):
    small = {"train_size": 64, "valid_size": 16, "test_size": 16}
    for name, summary in (
        ("copy", "copy: x1..xn, start token, then x1..xn x1..xn (docs/paper-settings.md 2.1); per-character accuracy"),
        ("reverse", "reverse: x1..xn, start token, then xn..x1 (docs/paper-settings.md 2.2); per-character accuracy"),
    ):
        register(
            TaskSpec(
                name=name,
                summary=summary,
                params=CopyParams,
                build=_copy_like(name),
                vocab_size=lambda p: p.n_symbols + 2,
                test_params={**small, "src_len": 4},
            )
        )
    register(
        TaskSpec(
            name="associative_retrieval",
            summary="4 key-value pairs then a query key; answer its value (docs/paper-settings.md 2.3); accuracy",
            params=AssociativeRetrievalParams,
            build=lambda p: SampleTask("associative_retrieval", p, {"n_pairs": p.n_pairs}, 37, "accuracy"),
            vocab_size=lambda p: 37,
            test_params=small,
        )
    )
    register(
        TaskSpec(
            name="quadratic_equations",
            summary="solve a*(x-x1)(x-x2)=0 step by step in 6 slots of 30 (docs/paper-settings.md 2.6); exact-answer accuracy",
            params=QuadraticEquationParams,
            build=lambda p: SampleTask(
                "quadratic_equations", p, {"no_root_fraction": p.no_root_fraction}, 24, "exact_match"
            ),
            vocab_size=lambda p: 24,
            test_params=small,
        )
    )

"""The ``babilong`` task: bAbI-style questions whose facts are hidden in filler text, at any length from one
segment to 1,000,000 tokens (after BABILong, Kuratov et al. 2024), answered exact-match.

Stories come from the seeded templates of :mod:`rmtzoo.tasks._babi` (``qa1``/``qa2``/``qa3``: one, two
or three supporting facts) or, with ``source = "dataset"``, from real bAbI/BABILong rows (columns
``input``, ``question``, ``target``) read through ``datasets`` from a local folder, a data file or the
Hub cache. Filler comes from the embedded LM corpus (default), a text file (``filler = "file"``) or a
``datasets`` corpus (``filler = "dataset"``, the ``filler_column`` of its train split).

Deviations from BABILong, on purpose: words are tokens (story words have their own ids, every other word
is hashed into ``filler_vocab`` buckets) instead of a subword tokenizer, so a tiny model can learn the
task on a CPU; the filler is the embedded corpus instead of PG-19 (any text by option); generated
stories use bAbI's world and question forms but not its generator or its data; a real row longer than
``context_length`` is an error and a shorter one is left-padded with ``<pad>``.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from rmtzoo._components import Params, TaskSpec
from rmtzoo._errors import ConfigError
from rmtzoo._registry import hookimpl
from rmtzoo.tasks import _babi as babi

IGNORE_INDEX = -100
MAX_CONTEXT = 1_000_000


class BabilongParams(Params):
    """qa: which question type; context_length: tokens per sample, question included; n_facts: facts per
    story (supporting plus distractors); sizes and ``data_seed`` fix the generated splits; the filler and
    source options are in the module docstring."""

    qa: Literal["qa1", "qa2", "qa3"] = "qa1"
    context_length: int = Field(256, ge=16, le=MAX_CONTEXT)
    n_facts: int = Field(4, ge=1, le=64)
    train_size: PositiveInt = 2000
    valid_size: PositiveInt = 100
    test_size: PositiveInt = 100
    data_seed: NonNegativeInt = 0
    filler: Literal["embedded", "file", "dataset"] = "embedded"
    filler_path: str | None = None
    filler_column: str = "text"
    filler_vocab: int = Field(256, ge=1, le=100_000)
    filler_seed: NonNegativeInt = 0
    source: Literal["generated", "dataset"] = "generated"
    dataset: str | None = None
    dataset_config: str | None = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.n_facts < babi.MIN_FACTS[self.qa]:
            raise ValueError(f"n_facts: {self.qa} needs at least {babi.MIN_FACTS[self.qa]} facts, got {self.n_facts}")
        need = self.n_facts * babi.MAX_FACT_WORDS + babi.MAX_QUESTION_WORDS + 2
        if self.source == "generated" and self.context_length < need:
            raise ValueError(f"context_length: {self.context_length} cannot hold {self.n_facts} facts and the question; use >= {need}")
        if self.filler != "embedded" and not self.filler_path:
            raise ValueError(f"filler_path: filler = {self.filler!r} needs a path (a text file, or a datasets name or folder)")
        if self.source == "dataset" and not self.dataset:
            raise ValueError("dataset: source = 'dataset' needs a local folder, data file or Hub name")
        return self


@functools.lru_cache(maxsize=8)
def _filler_pool(filler: str, path: str | None, column: str, vocab: int, seed: int, split: str):
    """Encoded fact-free sentences of the filler corpus (train and evaluation splits of the embedded one
    differ; a file or dataset is shared by all splits)."""
    if filler == "embedded":
        from rmtzoo.tasks._lm_data import synthetic_split_text

        text = synthetic_split_text(seed, "train" if split == "train" else "test", 60_000)
    elif filler == "file":
        file = Path(path).expanduser()
        if not file.is_file():
            raise ConfigError(f"task.filler_path: {path!r} is not a file")
        text = file.read_text(encoding="utf-8", errors="replace")
    else:
        rows = _load_rows(path, None, "train")
        if column not in rows.column_names:
            raise ConfigError(f"task.filler_column: {column!r} is not a column of {path!r}; it has {', '.join(rows.column_names)}")
        text = "\n".join(map(str, rows[column]))
    pool = babi.fact_free_sentences(text, vocab)
    if not pool:
        raise ConfigError(f"task.filler: the {filler} corpus has no sentence free of bAbI names, places and objects")
    return tuple(pool)


def _load_rows(name: str, config: str | None, split: str):
    """One split of a local folder (``save_to_disk``), a data file or a Hub dataset, through datasets."""
    import datasets

    local = Path(name).expanduser()
    try:
        if local.is_dir() and ((local / "dataset_dict.json").exists() or (local / "dataset_info.json").exists()):
            loaded = datasets.load_from_disk(str(local))
            return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        if local.is_file():
            kind = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}
            return datasets.load_dataset(kind.get(local.suffix, "json"), data_files=str(local), split="train")
        return datasets.load_dataset(name, config, split=split)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"task.dataset: cannot read {name!r} (split {split!r}): {first}") from None


class BabilongTask:
    """A sample task (``kind = "samples"``): inputs ``[N, context_length]``, the answer the last label."""

    kind = "samples"
    name = "babilong"
    metric = "exact_match"
    answer_length = 1

    def __init__(self, params: BabilongParams) -> None:
        self.params = params
        self.vocab_size = babi.vocab_size(params.filler_vocab)
        self.sequence_length = params.context_length
        self.answer_start = params.context_length - 1
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def at_length(self, context_length: int) -> BabilongTask:
        """The same task (stories, filler, seeds) at another context length: length generalisation."""
        return BabilongTask(self.params.model_copy(update={"context_length": context_length}))

    def segment_length_for(self, segment_length: int) -> int:
        if segment_length > self.sequence_length:
            raise ValueError(f"{segment_length} is longer than the {self.sequence_length}-token samples")
        return segment_length  # a last, shorter segment is fine

    def samples(self, split: str, n: int | None = None, *, indices=None) -> list[babi.Sample]:
        """The split's samples (the first ``n``, or those at ``indices`` in increasing order), regenerated
        from the seeds; only the chosen ones are hidden in filler."""
        p = self.params
        sizes = {"train": p.train_size, "valid": p.valid_size, "test": p.test_size}
        if split not in sizes:
            raise ValueError(f"split must be train, valid or test, got {split!r}")
        n = sizes[split] if n is None else min(n, sizes[split])
        if p.source == "dataset":
            if indices is not None:
                raise ValueError("indices: only generated samples can be picked by index")
            return self._dataset_samples(split, n)
        chosen = set(range(n)) if indices is None else {i for i in indices if 0 <= i < sizes[split]}
        pool = _filler_pool(p.filler, p.filler_path, p.filler_column, p.filler_vocab, p.filler_seed, split)
        rng = random.Random(f"rmtzoo-babilong/{p.qa}/{p.n_facts}/{p.data_seed}/{split}")
        out = []
        for i in range(max(chosen, default=-1) + 1):
            story = babi.STORIES[p.qa](rng, p.n_facts)
            # the story's placement depends on the length, the story itself does not: the same questions
            # are asked at every length of a length-generalisation sweep
            place = random.Random(f"{rng.random()}/{p.context_length}")
            if i in chosen:
                out.append(babi.hide_in_filler(place, story, pool, context_length=p.context_length,
                                               filler_vocab=p.filler_vocab))
        return out

    def _dataset_samples(self, split: str, n: int) -> list[babi.Sample]:
        p = self.params
        rows = _load_rows(p.dataset, p.dataset_config, p.qa)
        missing = [c for c in ("input", "question", "target") if c not in rows.column_names]
        if missing:
            raise ConfigError(f"task.dataset: {p.dataset!r} lacks column(s) {', '.join(missing)} (bAbI/BABILong rows)")
        offset = {"train": 0, "valid": p.train_size, "test": p.train_size + p.valid_size}[split]
        out = []
        for i in range(offset, min(offset + n, len(rows))):
            row = rows[i]
            answer = babi.words(str(row["target"]))
            if len(answer) != 1 or answer[0] not in babi.WORD_IDS:
                raise ConfigError(f"task.dataset: row {i} has target {row['target']!r}; one bAbI word is needed")
            context = babi.encode(babi.words(str(row["input"])), p.filler_vocab)
            question = [babi.QUESTION_ID, *babi.encode(babi.words(str(row["question"])), p.filler_vocab), babi.ANSWER_ID]
            ids = context + question
            if len(ids) > p.context_length:
                raise ConfigError(f"task.context_length: row {i} of {p.dataset!r} has {len(ids)} tokens, more than {p.context_length}")
            ids = [babi.PAD_ID] * (p.context_length - len(ids)) + ids
            story = babi.Story(p.qa, (), str(row["question"]), answer[0], ())
            out.append(babi.Sample(ids, babi.WORD_IDS[answer[0]], (), story))
        return out

    def tensors(self, split: str, n: int | None = None, *, indices=None) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids ``[N, context_length]`` and labels (IGNORE_INDEX except the answer at the end) of the
        first ``n`` samples, or of those at ``indices`` (see :meth:`samples`)."""
        key = f"{split}/{n}" if indices is None else f"{split}/at/{','.join(map(str, sorted(set(indices))))}"
        if key not in self._cache:
            samples = self.samples(split, n, indices=indices)
            ids = torch.tensor([s.input_ids for s in samples], dtype=torch.long)  # [N, T]
            labels = torch.full_like(ids, IGNORE_INDEX)
            labels[:, -1] = torch.tensor([s.answer for s in samples])
            self._cache[key] = (ids, labels)
        return self._cache[key]


@hookimpl
def rmtzoo_register_tasks(register):
    register(
        TaskSpec(
            name="babilong",
            summary="bAbI-style qa1/qa2/qa3 facts hidden in filler text, 16 to 1,000,000 tokens; exact match",
            params=BabilongParams,
            build=BabilongTask,
            vocab_size=lambda p: babi.vocab_size(p.filler_vocab),
            test_params={"context_length": 48, "n_facts": 2, "train_size": 16, "valid_size": 8, "test_size": 8,
                         "filler_vocab": 8},
        )
    )

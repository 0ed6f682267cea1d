"""Sequence classification as a task type (``kind = "classification"``), the shape of docs/paper-settings.md 4.

A :class:`ClassificationTask` serves, per split, right-aligned token ids (docs/paper-settings.md 1.8: the document is
cut into segments from its end, so the first segment is the partial one, padded on the left with
``pad_id``), a padding mask and one label per document. The sequence length is ``max_segments *
segment_length``, fixed with the model's segment length; a longer document keeps its beginning (docs/paper-settings.md
4: whole documents are truncated to ``input_seq_len``). Leading segments that are all padding are dropped
by the model per sample (it leaves that sample's memory unchanged). The loss and the prediction come from
the last segment; the metric is F1 of the positive class (label 1), with accuracy reported beside it.

Tokenised documents (not yet aligned, so one cache serves every segment length) are cached as
``datasets.Dataset`` splits under ``<cache_dir>/classification/<task>-<hash>/``, written to a temporary
folder and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from rmtzoo._errors import RmtzooError
from rmtzoo._io import make_temp_dir

SPLITS = ("train", "valid", "test")


class ClassificationDataError(RmtzooError):
    """A classification corpus, split file or tokenizer could not be found or read (one-line message)."""


@dataclass(frozen=True)
class Document:
    id: int
    text: str
    label: int


# -- tokenizers -------------------------------------------------------------------------------------
class ByteTokenizer:
    """UTF-8 bytes 0..255 plus one special id, 256, for padding. No dependency."""

    name = "bytes"
    pad_id = 256
    vocab_size = 257

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))


class HFTokenizer:
    """A Hugging Face tokenizer (Hub name or local directory), loaded lazily; no special tokens are
    added (a backbone that wants [CLS]/[SEP] per segment adds them itself)."""

    def __init__(self, name: str) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise ClassificationDataError(
                f"task.tokenizer: {name!r} needs the transformers package (pip install transformers), "
                "or use tokenizer = 'bytes'"
            ) from None
        try:
            self._tok = AutoTokenizer.from_pretrained(name)
        except Exception as exc:
            raise ClassificationDataError(f"task.tokenizer: cannot load {name!r}: {one_line(exc)}") from None
        self._tok.model_max_length = 1 << 62  # documents are cut into segments, not truncated here
        self.name = name
        pad = self._tok.pad_token_id
        self.pad_id = pad if pad is not None else (self._tok.eos_token_id or 0)
        self.vocab_size = len(self._tok)

    def encode(self, text: str) -> list[int]:
        return list(self._tok(text, add_special_tokens=False)["input_ids"])


def load_tokenizer(name: str):
    return ByteTokenizer() if name == "bytes" else HFTokenizer(name)


# -- alignment and metrics --------------------------------------------------------------------------
def right_align(
    documents: Sequence[Sequence[int]], *, segment_length: int, max_segments: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """ids ``[N, L]`` and padding mask ``[N, L]`` (True: a real token), ``L = max_segments *
    segment_length``: each document's first L tokens, placed at the end of its row."""
    length = segment_length * max_segments
    ids = torch.full((len(documents), length), pad_id, dtype=torch.long)
    mask = torch.zeros(len(documents), length, dtype=torch.bool)
    for row, doc in enumerate(documents):
        kept = list(doc[:length])  # keep the beginning of a long document
        if kept:
            ids[row, length - len(kept) :] = torch.tensor(kept, dtype=torch.long)
            mask[row, length - len(kept) :] = True
    return ids, mask


def classification_metrics(predictions: torch.Tensor, labels: torch.Tensor, *, positive: int = 1) -> dict:
    """Accuracy, and precision, recall and F1 of the ``positive`` class (0.0 where undefined)."""
    predictions, labels = predictions.long().cpu(), labels.long().cpu()
    tp = int(((predictions == positive) & (labels == positive)).sum())
    fp = int(((predictions == positive) & (labels != positive)).sum())
    fn = int(((predictions != positive) & (labels == positive)).sum())
    n = max(len(labels), 1)
    return {
        "accuracy": int((predictions == labels).sum()) / n,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
    }


# -- the task ---------------------------------------------------------------------------------------
class ClassificationTask:
    """name, kind ("classification"), params, metric ("f1"), num_labels, max_segments; ``vocab_size``
    and ``pad_id`` (loading the tokenizer); ``dataset(split)``; ``tensors(split, segment_length)``.

    ``load_documents()`` returns ``{"train": [Document], "valid": [...], "test": [...]}``; it runs only
    when the cache for ``fingerprint`` (what identifies the source data) is missing.
    """

    kind = "classification"

    def __init__(
        self,
        name: str,
        params,
        *,
        load_documents: Callable[[], dict[str, list[Document]]],
        fingerprint: dict,
        tokenizer: str,
        max_segments: int,
        cache_root: Path,
        num_labels: int = 2,
        metric: str = "f1",
    ) -> None:
        self.name, self.params, self.metric, self.num_labels = name, params, metric, num_labels
        self.max_segments = max_segments
        self._load_documents, self._fingerprint, self._tokenizer_name = load_documents, fingerprint, tokenizer
        self._cache_root = cache_root
        self._tokenizer = None
        self._datasets: dict[str, object] = {}

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self._tokenizer_name)
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_id

    @property
    def cache_path(self) -> Path:
        spec = {"task": self.name, "tokenizer": self._tokenizer_name, "source": self._fingerprint}
        key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
        return self._cache_root / "classification" / f"{self.name}-{key}"

    def dataset(self, split: str):
        """The split as a ``datasets.Dataset`` (columns id, input_ids, label), tokenised once and cached."""
        import datasets

        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        if split not in self._datasets:
            datasets.disable_progress_bars()
            folder = self.cache_path
            if not (folder / "complete").exists():
                self._write_cache(folder)
            self._datasets[split] = datasets.load_from_disk(str(folder / split))
        return self._datasets[split]

    def _write_cache(self, folder: Path) -> None:
        import datasets

        splits = self._load_documents()
        encode = self.tokenizer.encode
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(folder.parent, f".{folder.name}.")
        try:
            for split in SPLITS:
                docs = splits[split]
                columns = {"id": [d.id for d in docs], "input_ids": [encode(d.text) for d in docs],
                           "label": [d.label for d in docs]}
                datasets.Dataset.from_dict(columns).save_to_disk(str(tmp / split))
            (tmp / "complete").write_text("ok\n")
            if not (folder / "complete").exists():  # never delete a whole cache another process may read
                shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)  # readers see a whole cache or none
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            # an OSError with the cache in place: another process (a DDP rank) put it there first
            if not (isinstance(exc, OSError) and (folder / "complete").exists()):
                raise

    def tensors(self, split: str, segment_length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ids ``[N, L]`` (right-aligned), padding mask ``[N, L]`` and labels ``[N]``,
        ``L = max_segments * segment_length``."""
        ds = self.dataset(split)
        ids, mask = right_align(
            ds["input_ids"], segment_length=segment_length, max_segments=self.max_segments, pad_id=self.pad_id
        )
        return ids, mask, torch.tensor(ds["label"], dtype=torch.long)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."

"""Your own data: text tasks from local files or a Hub dataset, with a byte, a Transformer-XL word or a
Hugging Face tokenizer.

- ``text_lm`` (a stream task): every row of ``column``, each followed by a line break, as one ordered
  token stream per split, scored by perplexity (or bits per character).
- ``text_pairs`` (a sample task): rows of ``prompt_column`` / ``answer_column``. A sample is the prompt's
  last ``prompt_length`` tokens, padded on the left, then the answer's first ``answer_length - 1`` tokens
  and the end-of-text token, padded on the right; the loss and the accuracy cover the answer and its
  end-of-text token (greedy decoding when the answer spans a segment, like the algorithmic tasks).
  Deviation (no paper counterpart): sample tasks run without a padding mask, so the model sees the left
  pads; generation works best from a prompt laid out the same way (``task.prompt_ids(text)``).
- ``text_classification``: rows of ``text_column`` / ``label_column``, served like Hyperpartisan
  (right-aligned, at most ``max_segments`` segments, the prediction from the last one).

Sources (exactly one): ``train`` (and optionally ``valid`` / ``test``) local files read through
``datasets`` (``.txt``: one row a line; ``.jsonl`` / ``.json``; ``.csv``; ``.parquet``), or ``hub_name``
(with ``hub_config``), whose ``train`` / ``validation`` / ``test`` splits are used. A missing valid or test
split is held out from train: ``holdout`` of it each (the end of the token stream for ``text_lm``, a
``split_seed`` shuffle of the rows otherwise). ``streaming = true`` (``text_lm``) reads the rows through
``datasets``' streaming mode, so a corpus larger than memory (or than the disk, for a Hub dataset) is
tokenised batch by batch; the ids are written to disk and memory-mapped.

Tokenizers: ``"bytes"`` (UTF-8 bytes, then end-of-text 256 and padding 257), ``"transformer_xl"``
(Transformer-XL's word vocabulary counted on train: ``<eos>``, ``<unk>``, ``<pad>``, then words by
descending count, ties in first-occurrence order; each line ends in ``<eos>``), or any other string: a
Hugging Face tokenizer name or local directory (``transformers.AutoTokenizer``, no special tokens added;
its ``eos_token`` ends answers, its ``pad_token`` (else ``eos_token``) pads).

Tokenised data is cached under ``cache_dir`` (default ``$RMTZOO_CACHE`` or ``~/.cache/rmtzoo``) in
``text/<task>-<hash>/``, keyed by the parameters and the source files' sizes and modification times.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from rmtzoo._components import Params, TaskSpec
from rmtzoo._errors import RmtzooError
from rmtzoo._registry import hookimpl
from rmtzoo.tasks import _lm_data as data
from rmtzoo.tasks.classification import ClassificationTask, Document, one_line

SPLITS = ("train", "valid", "test")
HUB_SPLITS = {"train": ("train",), "valid": ("validation", "valid", "dev"), "test": ("test",)}
BUILDERS = {".txt": "text", ".text": "text", ".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
IGNORE_INDEX = -100
_BATCH = 1000


class TextDataError(RmtzooError):
    """A text corpus, column or tokenizer could not be found or read (one-line message)."""


# -- parameters ----------------------------------------------------------------------------------------
class TextSourceParams(Params):
    """Where the rows come from and how they are tokenised (see the module docstring)."""

    train: str | None = None
    valid: str | None = None
    test: str | None = None
    hub_name: str | None = None
    hub_config: str | None = None
    holdout: float = Field(0.05, gt=0, lt=0.5)
    split_seed: NonNegativeInt = 0
    tokenizer: str = "bytes"
    cache_dir: str | None = None

    @model_validator(mode="after")
    def _one_source(self):
        if (self.train is None) == (self.hub_name is None):
            raise ValueError("give train (a local .txt/.jsonl/.json/.csv/.parquet file) or hub_name, exactly one")
        if self.hub_name is not None and (self.valid or self.test):
            raise ValueError("valid and test are local files; with hub_name the Hub dataset's splits are used")
        if not self.tokenizer:
            raise ValueError("tokenizer must be 'bytes', 'transformer_xl' or a Hugging Face tokenizer name or directory")
        return self


class TextLMParams(TextSourceParams):
    column: str = "text"
    metric: Literal["ppl", "bpc"] = "ppl"
    streaming: bool = False


class TextPairsParams(TextSourceParams):
    prompt_column: str = "prompt"
    answer_column: str = "answer"
    prompt_length: PositiveInt = 32
    answer_length: int = Field(16, ge=2)
    metric: Literal["accuracy", "exact_match"] = "accuracy"
    segmenting: Literal["equal", "lm_rmt_chunk"] = "equal"


class TextClassificationParams(TextSourceParams):
    """labels: the label values in class order (a row's label is matched as a string); without it the
    labels are integers 0 .. num_labels - 1. F1 of class 1 is the metric with two classes, else accuracy."""

    text_column: str = "text"
    label_column: str = "label"
    labels: tuple[str, ...] | None = None
    num_labels: int = Field(2, ge=2)
    max_segments: PositiveInt = 4

    @model_validator(mode="after")
    def _tokenizers(self):
        if self.tokenizer == "transformer_xl":
            raise ValueError("text_classification takes tokenizer = 'bytes' or a Hugging Face tokenizer")
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be distinct, got {list(self.labels)}")
        return self


# -- tokenizers ----------------------------------------------------------------------------------------
class BytesTokenizer:
    name, vocab_size, eos_id, pad_id = "bytes", 258, 256, 257

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_rows(self, rows: list[str]) -> list[list[int]]:
        return [list(f"{row}\n".encode()) for row in rows]

    def decode(self, ids) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class WordTokenizer:
    """Transformer-XL's word vocabulary (``vocab``: symbols, index = id; ``<eos>``, ``<unk>``, ``<pad>``
    first); unseen words are ``<unk>``."""

    name, specials = "transformer_xl", (data.EOS, data.UNK, "<pad>")
    eos_id, pad_id = 0, 2

    def __init__(self, vocab: list[str]) -> None:
        self.vocab, self.vocab_size = vocab, len(vocab)
        self._index = {sym: i for i, sym in enumerate(vocab)}

    @classmethod
    def fit(cls, rows: Iterator[list[str]]) -> WordTokenizer:
        counts: Counter = Counter()
        for batch in rows:
            for row in batch:
                counts.update(row.split())
        words = [w for w, _ in counts.most_common() if w not in cls.specials]  # stable: ties keep first occurrence
        return cls([*cls.specials, *words])

    def encode(self, text: str) -> list[int]:
        unk = self._index[data.UNK]
        return [i for line in (text.split("\n") or [""]) for i in (*(self._index.get(w, unk) for w in line.split()), 0)]

    def encode_rows(self, rows: list[str]) -> list[list[int]]:
        return [self.encode(row) for row in rows]

    def decode(self, ids) -> str:
        """Words joined by spaces, ``<eos>`` as a line break, padding left out."""
        lines, line = [], []
        for i in ids:
            if i == self.eos_id:
                lines.append(" ".join(line) + "\n")
                line = []
            elif i != self.pad_id:
                line.append(self.vocab[i])
        return "".join(lines) + " ".join(line)


class HFTextTokenizer:
    def __init__(self, name: str) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise TextDataError(f"task.tokenizer: {name!r} needs transformers (pip install transformers)") from None
        try:
            self._tok = AutoTokenizer.from_pretrained(name)
        except Exception as exc:
            raise TextDataError(f"task.tokenizer: cannot load Hugging Face tokenizer {name!r}: {one_line(exc)}") from None
        self._tok.model_max_length = 1 << 62  # rows are cut into segments, not truncated here
        self.name, self.vocab_size = name, len(self._tok)
        self.eos_id = self._tok.eos_token_id
        pad = self._tok.pad_token_id
        self.pad_id = pad if pad is not None else (self.eos_id if self.eos_id is not None else 0)

    def encode(self, text: str) -> list[int]:
        return list(self._tok(text, add_special_tokens=False)["input_ids"])

    def encode_rows(self, rows: list[str]) -> list[list[int]]:
        return [list(ids) for ids in self._tok([f"{row}\n" for row in rows], add_special_tokens=False)["input_ids"]]

    def decode(self, ids) -> str:
        return self._tok.decode(list(ids))


# -- reading rows --------------------------------------------------------------------------------------
def _stat(path: str) -> list:
    p = Path(path).expanduser()
    if not p.is_file():
        raise TextDataError(f"task: {path!r} is not a file (expected a .txt, .jsonl, .json, .csv or .parquet file)")
    return data._stat(p)


def _fingerprint(p: TextSourceParams) -> dict:
    if p.hub_name is not None:
        local = Path(p.hub_name).expanduser()  # a dataset folder on disk: its files' sizes and times count
        files = sorted(f for f in local.rglob("*") if f.is_file()) if local.is_dir() else []
        return {"hub": [p.hub_name, p.hub_config], "files": [data._stat(f) for f in files]}
    return {s: _stat(getattr(p, s)) for s in SPLITS if getattr(p, s)}


def _open(task: str, p: TextSourceParams, work: Path, *, streaming: bool = False) -> dict:
    """{split: a ``datasets`` Dataset (or IterableDataset)} for the splits the source has."""
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its errors come back as our one line
    try:
        if p.hub_name is not None:
            loaded = datasets.load_dataset(p.hub_name, p.hub_config, streaming=streaming,
                                           cache_dir=str(data.cache_root(p.cache_dir) / "hf_datasets"))
            found = {s: next((loaded[n] for n in names if n in loaded), None) for s, names in HUB_SPLITS.items()}
            if found["train"] is None:
                raise TextDataError(f"{task}: {p.hub_name!r} has no train split (it has {', '.join(loaded)})")
            return {s: ds for s, ds in found.items() if ds is not None}
        files = {s: str(Path(getattr(p, s)).expanduser()) for s in SPLITS if getattr(p, s)}
        suffixes = {Path(f).suffix.lower() for f in files.values()}
        builders = {BUILDERS.get(x) for x in suffixes}
        if None in builders or len(builders) != 1:
            raise TextDataError(f"{task}: files must all be one of {', '.join(BUILDERS)}; got {', '.join(files.values())}")
        builder = builders.pop()
        options = {"sample_by": "line", "keep_linebreaks": False, "encoding": "utf-8"} if builder == "text" else {}
        loaded = datasets.load_dataset(builder, data_files=files, streaming=streaming, cache_dir=str(work), **options)
        return {s: loaded[s] for s in files}
    except TextDataError:
        raise
    except Exception as exc:
        where = p.hub_name or ", ".join(str(getattr(p, s)) for s in SPLITS if getattr(p, s))
        hint = "; offline, give local files (train = ...)" if p.hub_name else ""
        raise TextDataError(f"{task}: datasets could not read {where}: {_root_cause(exc)}{hint}") from None


def _root_cause(exc: BaseException) -> str:
    """The innermost cause's message (``datasets`` wraps a parse error in a generic one)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return one_line(exc)


def _columns(task: str, ds, columns: tuple[str, ...]) -> Iterator[list[list]]:
    """Batches of rows, one list per column; a missing column is a one-line error naming what exists."""
    batches = ds.iter(batch_size=_BATCH)
    while True:
        try:  # a streamed source is read (and can fail) here
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:
            raise TextDataError(f"{task}: datasets could not read a row: {_root_cause(exc)}") from None
        missing = [c for c in columns if c not in batch]
        if missing:
            raise TextDataError(f"{task}: no column {missing[0]!r}; the data has {', '.join(batch)} (set the task's column options)")
        yield [["" if x is None else x for x in batch[c]] for c in columns]


def _tokenizer(p: TextSourceParams, fit_rows=None):
    if p.tokenizer == "bytes":
        return BytesTokenizer()
    if p.tokenizer == "transformer_xl":
        if fit_rows is None:
            raise ValueError("a word vocabulary is fitted on train rows")
        return WordTokenizer.fit(fit_rows())
    return HFTextTokenizer(p.tokenizer)


class _Cache:
    """A folder under ``<cache_dir>/text/`` written whole or not at all: filled in a temporary sibling
    (made with the user's umask), then renamed into place; ``meta.json`` marks it complete."""

    def __init__(self, task: str, p: TextSourceParams) -> None:
        root = data.cache_root(p.cache_dir)
        key = data.cache_key(task, p.model_dump(mode="json", exclude={"cache_dir"}), _fingerprint(p))
        self.root, self.folder = root, root / "text" / f"{task}-{key}"

    def meta(self) -> dict | None:
        return data.read_meta(self.folder)

    def build(self, fill) -> dict:
        """``fill(tmp_folder, work_folder) -> meta``; returns the meta of the complete cache."""
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.folder.parent / f".{self.folder.name}.{uuid.uuid4().hex[:8]}"
        work = self.folder.parent / f".work-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        work.mkdir()
        try:
            meta = {"format": data.CACHE_FORMAT, **fill(tmp, work)}
            (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
            if self.meta() is None:
                shutil.rmtree(self.folder, ignore_errors=True)
                os.replace(tmp, self.folder)  # readers see a whole cache or none
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)
        return self.meta()


def _hold_out(task: str, splits: dict[str, list], p: TextSourceParams) -> dict[str, list]:
    """Every split, the missing valid / test ones taken from a ``split_seed`` shuffle of train's rows
    (``holdout`` of them each); the rest of train stays in train, in its order."""
    missing = [s for s in ("valid", "test") if s not in splits]
    rows = splits["train"]
    k = max(1, int(len(rows) * p.holdout))
    if missing and len(rows) <= k * len(missing):
        raise TextDataError(f"{task}: train has {len(rows)} rows, too few to hold out {', '.join(missing)} from")
    order = list(range(len(rows)))
    random.Random(p.split_seed).shuffle(order)
    out, taken = dict(splits), set()
    for j, s in enumerate(missing):
        idx = order[j * k : (j + 1) * k]
        out[s], taken = [rows[i] for i in idx], taken | set(idx)
    out["train"] = [row for i, row in enumerate(rows) if i not in taken]
    return out


# -- text_lm -------------------------------------------------------------------------------------------
class TextLMTask:
    """A stream task (like :class:`rmtzoo.tasks.lm.StreamTask`): ``tokens(split)`` is a memory-mapped
    LongTensor [N]; ``encode`` / ``decode``; ``eos_id``."""

    kind = "stream"

    def __init__(self, name: str, p: TextLMParams) -> None:
        self.name, self.params, self.metric = name, p, p.metric
        self._cache, self._meta, self._tok = _Cache(name, p), None, None

    def prepare(self) -> TextLMTask:
        if self._meta is None:
            self._meta = self._cache.meta() or self._cache.build(self._fill)
            if self._tok is None:
                vocab = self._meta.get("vocab")
                self._tok = WordTokenizer(vocab) if vocab is not None else _tokenizer(self.params)
        return self

    def _fill(self, tmp: Path, work: Path) -> dict:
        import numpy as np

        p = self.params
        splits = _open(self.name, p, work, streaming=p.streaming)

        def rows(split):  # batches of row texts, read again on every call (a stream is re-streamed)
            return (list(map(str, cols[0])) for cols in _columns(self.name, splits[split], (p.column,)))

        self._tok = _tokenizer(p, lambda: rows("train"))
        counts = {}
        for split in splits:
            n = 0
            with open(tmp / f"{split}.bin", "wb") as fh:
                for batch in rows(split):
                    ids = [i for row in self._tok.encode_rows(batch) for i in row]
                    np.asarray(ids, dtype=np.int64).tofile(fh)
                    n += len(ids)
            counts[split] = n
        bounds = {s: (s, 0, counts[s]) for s in splits}
        n = counts["train"]
        k = int(n * p.holdout)
        missing = [s for s in ("valid", "test") if s not in splits]
        for s in missing:  # the end of the train stream: test last, valid before it
            end = n if s == "test" or len(missing) == 1 else n - k
            bounds[s] = ("train", end - k, end)
        bounds["train"] = ("train", 0, n - k * len(missing))
        for s, (_, start, end) in bounds.items():
            if end - start < 2:
                raise TextDataError(f"{self.name}: the {s} split has {end - start} tokens; need at least 2 "
                                    "(give more text, or a larger holdout)")
        meta = {"task": self.name, "splits": bounds, "vocab_size": self._tok.vocab_size}
        if isinstance(self._tok, WordTokenizer):
            meta["vocab"] = self._tok.vocab
        return meta

    @property
    def tokenizer(self):
        return self.prepare()._tok

    @property
    def vocab_size(self) -> int:
        return self.prepare()._meta["vocab_size"]

    @property
    def eos_id(self):
        return self.tokenizer.eos_id

    def tokens(self, split: str) -> torch.Tensor:
        import numpy as np

        if split not in SPLITS:
            raise RmtzooError(f"{self.name}: split must be one of {', '.join(SPLITS)}; got {split!r}")
        file, start, end = self.prepare()._meta["splits"][split]
        ids = np.memmap(self._cache.folder / f"{file}.bin", dtype=np.int64, mode="c")  # copy-on-write: lazy
        return torch.from_numpy(ids)[start:end]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids.tolist() if isinstance(ids, torch.Tensor) else list(ids))


# -- text_pairs ----------------------------------------------------------------------------------------
class TextPairsTask:
    """A sample task of prompt/answer rows laid out as the module docstring says: ``tensors(split)``
    gives input_ids and labels ``[N, prompt_length + answer_length]``; ``prompt_ids(text)``."""

    kind = "samples"

    def __init__(self, name: str, p: TextPairsParams) -> None:
        self.name, self.params, self.metric = name, p, p.metric
        self.sequence_length = p.prompt_length + p.answer_length
        self.answer_start = p.prompt_length - 1  # the position that predicts the answer's first token
        self.answer_length = self.sequence_length - self.answer_start
        self._cache, self._meta, self._tok, self._tensors = _Cache(name, p), None, None, {}

    def prepare(self) -> TextPairsTask:
        if self._meta is None:
            self._meta = self._cache.meta() or self._cache.build(self._fill)
            if self._tok is None:
                vocab = self._meta.get("vocab")
                self._tok = WordTokenizer(vocab) if vocab is not None else _tokenizer(self.params)
        return self

    def _fill(self, tmp: Path, work: Path) -> dict:
        p = self.params
        splits = _open(self.name, p, work)
        columns = (p.prompt_column, p.answer_column)
        pairs = {s: [(str(q), str(a)) for qs, ans in _columns(self.name, ds, columns) for q, a in zip(qs, ans, strict=True)]
                 for s, ds in splits.items()}
        self._tok = _tokenizer(p, lambda: iter([[t for pair in pairs["train"] for t in pair]]))
        if self._tok.eos_id is None:
            raise TextDataError(f"task.tokenizer: {p.tokenizer!r} has no eos_token to end answers with")
        pairs = _hold_out(self.name, pairs, p)
        for s, rows in pairs.items():
            if not rows:
                raise TextDataError(f"{self.name}: the {s} split has no rows")
            ids, labels = self._layout(rows)
            torch.save({"input_ids": ids.to(torch.int32), "labels": labels.to(torch.int32)}, tmp / f"{s}.pt")
        meta = {"task": self.name, "vocab_size": self._tok.vocab_size, "rows": {s: len(r) for s, r in pairs.items()}}
        if isinstance(self._tok, WordTokenizer):
            meta["vocab"] = self._tok.vocab
        return meta

    def prompt_ids(self, text: str) -> list[int]:
        """A prompt as the samples lay it out: its last ``prompt_length`` tokens, padded on the left."""
        ids = self.tokenizer.encode(text)[-self.params.prompt_length :]
        return [self.tokenizer.pad_id] * (self.params.prompt_length - len(ids)) + ids

    def _layout(self, rows) -> tuple[torch.Tensor, torch.Tensor]:
        tok, p = self._tok, self.params
        full = torch.full((len(rows), self.sequence_length), tok.pad_id, dtype=torch.long)  # [N, T]
        labels = torch.full_like(full, IGNORE_INDEX)
        for r, (prompt, answer) in enumerate(rows):
            full[r, : p.prompt_length] = torch.tensor(self.prompt_ids(prompt))
            a = tok.encode(answer)
            if a and a[-1] == tok.eos_id:
                a = a[:-1]  # the word tokenizer ends every line in <eos>
            a = a[: p.answer_length - 1] + [tok.eos_id]
            full[r, p.prompt_length : p.prompt_length + len(a)] = torch.tensor(a)
            labels[r, self.answer_start : self.answer_start + len(a)] = torch.tensor(a)  # labels[i] = full[i + 1]
        return full, labels

    @property
    def tokenizer(self):
        if self._tok is None:
            self.prepare()
        return self._tok

    @property
    def vocab_size(self) -> int:
        return self.prepare()._meta["vocab_size"]

    @property
    def eos_id(self):
        return self.tokenizer.eos_id

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids) -> str:
        return self.tokenizer.decode([i for i in ids if i != self.tokenizer.pad_id])

    def segment_length_for(self, segment_length: int) -> int:
        from rmtzoo.tasks.synthetic import segment_bounds

        bounds = segment_bounds(self.sequence_length, segment_length, rule=self.params.segmenting)
        return bounds[0][1] - bounds[0][0]

    def tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids and labels of a split as ``[N, T]`` long tensors."""
        if split not in SPLITS:
            raise ValueError(f"split must be train, valid or test, got {split!r}")
        if split not in self._tensors:
            path = self.prepare()._cache.folder / f"{split}.pt"
            try:
                saved = torch.load(path, map_location="cpu", weights_only=True)
                self._tensors[split] = (saved["input_ids"].long(), saved["labels"].long())
            except Exception as exc:
                raise TextDataError(f"{self.name}: cache {str(path)!r} is unreadable ({one_line(exc)}); "
                                    f"delete {str(self._cache.folder)!r}") from None
        return self._tensors[split]


# -- text_classification -------------------------------------------------------------------------------
def _documents(name: str, p: TextClassificationParams, cache: _Cache) -> dict[str, list[Document]]:
    work = cache.folder.parent / f".work-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True)
    try:
        splits = _open(name, p, work)
        out = {}
        for s, ds in splits.items():
            docs = []
            for texts, labels in _columns(name, ds, (p.text_column, p.label_column)):
                for text, label in zip(texts, labels, strict=True):
                    docs.append(Document(len(docs), str(text), _label_index(name, p, label, s, len(docs))))
            out[s] = docs
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _hold_out(name, out, p)


def _label_index(name: str, p: TextClassificationParams, label, split: str, row: int) -> int:
    if p.labels is not None:
        if str(label) not in p.labels:
            raise TextDataError(f"{name}: {split} row {row} has label {label!r}, not one of labels = {list(p.labels)}")
        return p.labels.index(str(label))
    try:
        value = int(label)
    except (TypeError, ValueError):
        value = -1
    if not 0 <= value < p.num_labels or str(value) != str(label).strip():
        raise TextDataError(f"{name}: {split} row {row} has label {label!r}; expected an integer in 0..{p.num_labels - 1} "
                            "(or set labels = [...] to name them)")
    return value


def build_text_classification(p: TextClassificationParams) -> ClassificationTask:
    name = "text_classification"
    cache = _Cache(name, p)
    num_labels = len(p.labels) if p.labels is not None else p.num_labels
    fingerprint = {"params": p.model_dump(mode="json", exclude={"cache_dir"}), "source": _fingerprint(p)}
    return ClassificationTask(name, p, load_documents=lambda: _documents(name, p, cache), fingerprint=fingerprint,
                              tokenizer=p.tokenizer, max_segments=p.max_segments, cache_root=cache.root,
                              num_labels=num_labels, metric="f1" if num_labels == 2 else "accuracy")


# -- registration --------------------------------------------------------------------------------------
@hookimpl
def rmtzoo_register_tasks(register):
    # No test_params: these tasks read the user's files; they are tested on small files (tests/test_text_tasks.py).
    register(TaskSpec(name="text_lm", summary="your own corpus (text/JSONL files or a Hub dataset) as a language-"
                      "modelling stream; byte, Transformer-XL or HF tokenizer (ppl)", params=TextLMParams,
                      build=lambda p: TextLMTask("text_lm", p)))
    register(TaskSpec(name="text_pairs", summary="your own prompt/answer pairs as sample tasks; answer accuracy",
                      params=TextPairsParams, build=lambda p: TextPairsTask("text_pairs", p)))
    register(TaskSpec(name="text_classification", summary="your own text/label rows as sequence classification (F1 "
                      "with 2 classes, else accuracy)", params=TextClassificationParams,
                      build=build_text_classification, needs=("per_sample_mask",)))

"""Language modelling (docs/paper-settings.md 3.1): WikiText-103, enwik8 and an embedded synthetic corpus, served as
ordered token streams the way Transformer-XL serves them.

A :class:`StreamTask` holds each split as one id stream (``tokens(split) -> LongTensor [N]``). The
trainer cuts it with :func:`ordered_streams` into ``batch_size`` contiguous streams and walks them with
:func:`stream_segments`; memory and cache persist across steps and across the whole evaluation stream,
and :func:`stream_metric` turns the summed NLL over every scored token into perplexity or bits per
character.

Corpora are read through ``datasets`` (imported lazily): local files in the released layouts, or the
Hub by name when ``path`` is not set. They are tokenised once, as Transformer-XL's ``Vocab``/``Corpus``
do, and the ids and vocabulary are cached under ``cache_dir`` (default ``$RMTZOO_CACHE`` or
``~/.cache/rmtzoo``) in ``lm/<task>-<hash>/``, keyed by the task, its parameters and the source files'
sizes and modification times. The ``datasets`` copy of local files is temporary; Hub downloads are kept
in ``<cache_dir>/hf_datasets``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, NonNegativeInt

from rmtzoo._components import Params, TaskSpec
from rmtzoo._errors import InputError, RmtzooError
from rmtzoo._registry import hookimpl
from rmtzoo.tasks import _lm_data as data
from rmtzoo.tasks._lm_data import EOS, SPLITS, SYNTHETIC_VOCAB_SIZE, LMDataError

Metric = Literal["ppl", "bpc"]


class WikiText103Params(Params):
    """WikiText-103, word level. ``path``: a folder with ``wiki.{train,valid,test}.tokens`` (the released
    ``wikitext-103-v1``), ``wiki.{train,valid,test}.raw`` (``wikitext-103-raw-v1``) or Transformer-XL's
    ``{train,valid,test}.txt``, or the folder holding the unzipped ``wikitext-103[-raw]``, or the
    released .zip itself. Unset: ``datasets.load_dataset(hub_name, hub_config)``."""

    path: str | None = None
    hub_name: str = "wikitext"
    hub_config: str = "wikitext-103-v1"
    cache_dir: str | None = None


class Enwik8Params(Params):
    """enwik8, bytes. ``path``: the raw ``enwik8`` file (or ``enwik8.zip``, or a folder holding either),
    split as ``prep_enwik8.py`` does: for the 100,000,000-byte file, the first 90M bytes train, the next
    5M valid, the last 5M test; a file of any other size is split 90/5/5 proportionally (valid and test
    each ``n * 5 // 100`` bytes, from the end). Or a folder in ``prep_enwik8.py``'s released layout:
    ``{train,valid,test}.txt`` of space-separated byte values with newline bytes as line breaks.
    Unset: ``datasets.load_dataset(hub_name, hub_config)``, whose ``enwik8-raw`` config holds the file
    as one UTF-8 text row (re-encoded to bytes, then split as above)."""

    path: str | None = None
    hub_name: str = "LTCB/enwik8"
    hub_config: str = "enwik8-raw"
    cache_dir: str | None = None


class SyntheticLMParams(Params):
    """The embedded corpus: generated from ``seed`` by the project, no download. Each split has exactly
    ``n_train_tokens`` / ``n_eval_tokens`` tokens (WikiText counting: words plus one ``<eos>`` a line)."""

    seed: NonNegativeInt = 0
    n_train_tokens: int = Field(200_000, ge=1_000, le=100_000_000)
    n_eval_tokens: int = Field(20_000, ge=100, le=10_000_000)
    cache_dir: str | None = None


class StreamTask:
    """A language-modelling corpus as three ordered id streams, loaded on first use.

    name, kind ("stream"), metric ("ppl" or "bpc"), params; ``vocab_size`` and ``vocab`` (list of
    symbols, index = id) load the corpus if needed; ``tokens(split)``; ``encode(text)`` /
    ``decode(ids)``; ``prepare()`` loads (from the cache when it can) and returns the task.
    """

    kind = "stream"

    def __init__(self, name: str, params: Params, source, *, metric: Metric, vocab_size: int | None = None):
        if metric not in ("ppl", "bpc"):
            raise ValueError(f"metric must be 'ppl' or 'bpc', got {metric!r}")
        self.name, self.params, self.metric = name, params, metric
        self._source = source
        self._known_vocab_size = vocab_size
        self._folder: Path | None = None
        self._meta: dict | None = None
        self._tokens: dict[str, torch.Tensor] = {}
        self._index: dict[str, int] | None = None

    # -- loading ----------------------------------------------------------------------------------
    def prepare(self) -> StreamTask:
        """Load the vocabulary (tokenising and caching the corpus the first time); idempotent."""
        if self._meta is not None:
            return self
        root = data.cache_root(getattr(self.params, "cache_dir", None))
        key = data.cache_key(
            self.name, self.params.model_dump(mode="json", exclude={"cache_dir"}), self._source.fingerprint()
        )
        folder = root / "lm" / f"{self.name}-{key}"
        meta = data.read_meta(folder)
        if meta is None:
            vocab, tensors = self._source.load(root, folder)
            meta = {
                "format": data.CACHE_FORMAT,
                "task": self.name,
                "codec": self._source.codec,
                "n_tokens": {s: int(t.numel()) for s, t in tensors.items()},
                "vocab": vocab,
            }
            data.write_cache(folder, meta, tensors)
            self._tokens = {s: t.long() for s, t in tensors.items()}
        self._folder, self._meta = folder, meta
        return self

    @property
    def cache_path(self) -> Path:
        """The folder holding this corpus's cached ids and vocabulary."""
        return self.prepare()._folder

    @property
    def vocab(self) -> list[str]:
        return self.prepare()._meta["vocab"]

    @property
    def vocab_size(self) -> int:
        if self._meta is None and self._known_vocab_size is not None:
            return self._known_vocab_size
        return len(self.vocab)

    def tokens(self, split: str) -> torch.Tensor:
        """The whole split as one LongTensor [N] of ids, in corpus order."""
        if split not in SPLITS:
            raise RmtzooError(f"{self.name}: split must be one of {', '.join(SPLITS)}; got {split!r}")
        if split not in self._tokens:
            self.prepare()
            self._tokens[split] = data.read_split(self._folder, split, self._meta["n_tokens"][split])
        return self._tokens[split]

    # -- text <-> ids -----------------------------------------------------------------------------------
    def _lookup(self) -> dict[str, int]:
        if self._index is None:
            self._index = {sym: i for i, sym in enumerate(self.vocab)}
        return self._index

    def encode(self, text: str) -> list[int]:
        """Text to ids as the corpus was tokenised: words (each line split on whitespace, then ``<eos>``;
        unknown words become ``<unk>`` when the vocabulary has it) or bytes (UTF-8; newline bytes are
        dropped, as Transformer-XL's enwik8 pipeline drops them)."""
        index = self._lookup()
        if self._meta["codec"] == "bytes":
            symbols = [str(b) for b in text.encode("utf-8") if b != 10]
        else:
            # lines as a text file is read: universal newlines, then split at "\n" only
            lines = io.StringIO(text, newline=None)
            symbols = [sym for line in lines for sym in (*line.split(), EOS)]
        unk = index.get(data.UNK)
        ids = []
        for sym in symbols:
            i = index.get(sym, unk)
            if i is None:
                raise InputError(f"{self.name}: {sym!r} is not in the vocabulary, which has no {data.UNK}")
            ids.append(i)
        return ids

    def decode(self, ids) -> str:
        """Ids to text: words joined by spaces with ``<eos>`` as a line break, or bytes as UTF-8."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        vocab = self.vocab
        if self._meta["codec"] == "bytes":
            return bytes(int(vocab[i]) for i in ids).decode("utf-8", errors="replace")
        out, line = [], []
        for i in ids:
            if vocab[i] == EOS:
                out.append(" ".join(line) + "\n")
                line = []
            else:
                line.append(vocab[i])
        return "".join(out) + " ".join(line)

    def __repr__(self) -> str:
        return f"StreamTask({self.name!r}, metric={self.metric!r})"


# Transformer-XL's ordered iterator ---------------------------------------------------------------------


def ordered_streams(tokens: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Tr-XL ``LMOrderedIterator``: drop the last ``N % batch_size`` tokens and cut the rest into
    ``batch_size`` contiguous streams, row b = ``tokens[b*L:(b+1)*L]`` with ``L = N // batch_size``.
    Returns ``[batch_size, L]`` (Tr-XL keeps the transpose, ``[L, batch_size]``)."""
    if tokens.dim() != 1:
        raise InputError(f"tokens must be one stream [N], got shape {tuple(tokens.shape)}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    length = tokens.numel() // batch_size
    if length < 2:
        raise InputError(
            f"{tokens.numel()} tokens make streams of {length} for batch_size {batch_size}; need at least 2 "
            "tokens a stream (an input and its target)"
        )
    return tokens[: length * batch_size].view(batch_size, length)


def stream_segments(
    streams: torch.Tensor, segment_length: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Tr-XL ``get_fixlen_iter``: for i = 0, T, 2T, ... < L-1, inputs ``streams[:, i:i+t]`` and targets
    ``streams[:, i+1:i+1+t]`` with ``t = min(T, L-1-i)``, so the last piece may be shorter; every token
    but each stream's first is a target exactly once (``B * (L-1)`` scored tokens)."""
    if streams.dim() != 2:
        raise InputError(f"streams must be [batch_size, L], got shape {tuple(streams.shape)}")
    if segment_length < 1:
        raise InputError(f"segment_length must be >= 1, got {segment_length}")
    length = streams.shape[1]
    for i in range(0, length - 1, segment_length):
        t = min(segment_length, length - 1 - i)
        yield streams[:, i : i + t], streams[:, i + 1 : i + 1 + t]


def stream_metric(total_nll: float, n_tokens: int, metric: Metric) -> float:
    """Over a whole evaluation stream: perplexity ``exp(mean nll)`` or bits per character
    ``mean nll / ln 2`` (nll in nats)."""
    total = float(total_nll)
    n = int(n_tokens)
    if n < 1:
        raise ValueError(f"n_tokens must be >= 1, got {n_tokens}")
    mean = total / n
    if metric == "ppl":
        return math.exp(mean)
    if metric == "bpc":
        return mean / math.log(2)
    raise ValueError(f"metric must be 'ppl' or 'bpc', got {metric!r}")


# Registration ------------------------------------------------------------------------------------------


def build_wikitext103(p: WikiText103Params) -> StreamTask:
    return StreamTask(
        "wikitext103", p, data.WikiTextSource("wikitext103", p.path, p.hub_name, p.hub_config), metric="ppl"
    )


def build_enwik8(p: Enwik8Params) -> StreamTask:
    return StreamTask(
        "enwik8", p, data.Enwik8Source("enwik8", p.path, p.hub_name, p.hub_config), metric="bpc"
    )


def build_synthetic_lm(p: SyntheticLMParams) -> StreamTask:
    source = data.SyntheticSource("synthetic_lm", p.seed, p.n_train_tokens, p.n_eval_tokens)
    return StreamTask("synthetic_lm", p, source, metric="ppl", vocab_size=SYNTHETIC_VOCAB_SIZE)


@hookimpl
def rmtzoo_register_tasks(register):
    # wikitext103 and enwik8 have no test_params: no real corpus ships with the project. Building them
    # does no I/O; their loading is tested on small files in the released layouts (tests/test_lm_tasks.py).
    register(
        TaskSpec(
            name="wikitext103",
            summary="WikiText-103 word-level LM, Tr-XL vocabulary from train with <eos> (docs/paper-settings.md 3.1); test ppl",
            params=WikiText103Params,
            build=build_wikitext103,
        )
    )
    register(
        TaskSpec(
            name="enwik8",
            summary="enwik8 byte-level LM, prep_enwik8.py's 90M/5M/5M split (docs/paper-settings.md 3.1); test bpc",
            params=Enwik8Params,
            build=build_enwik8,
        )
    )
    register(
        TaskSpec(
            name="synthetic_lm",
            summary="embedded word-level corpus, generated offline; documents repeat their title's topic words (ppl)",
            params=SyntheticLMParams,
            build=build_synthetic_lm,
            vocab_size=lambda p: SYNTHETIC_VOCAB_SIZE,
            test_params={"n_train_tokens": 2_000, "n_eval_tokens": 400},
        )
    )


__all__ = [
    "Enwik8Params",
    "LMDataError",
    "StreamTask",
    "SyntheticLMParams",
    "WikiText103Params",
    "ordered_streams",
    "stream_metric",
    "stream_segments",
]

"""Language-modelling corpora behind :mod:`rmtzoo.tasks.lm`: the released file layouts, the ``datasets``
loading path, Transformer-XL's tokenisation, the token cache and the embedded synthetic corpus.

Every corpus is read through ``datasets``: local split files with the packaged ``text`` builder (one row
per line, empty lines kept as empty rows, line breaks dropped, universal newlines as Python's ``open``),
the Hub by name. ``datasets`` is imported inside functions only. Tokenisation follows Transformer-XL's
``Vocab``/``Corpus`` (``pytorch/utils/vocabulary.py``, ``pytorch/data_utils.py``); see :func:`tokenise`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from rmtzoo._errors import RmtzooError
from rmtzoo._io import atomic_write, atomic_write_text, check_folder, make_temp_dir

SPLITS = ("train", "valid", "test")
EOS, UNK = "<eos>", "<unk>"
CACHE_FORMAT = 1
_ROWS_PER_BATCH = 20_000


class LMDataError(RmtzooError):
    """A language-modelling corpus could not be found, read or loaded (one-line message)."""


def default_cache_dir() -> Path:
    return check_folder(Path(os.environ.get("RMTZOO_CACHE") or Path.home() / ".cache" / "rmtzoo"), "RMTZOO_CACHE")


def cache_root(cache_dir: str | None) -> Path:
    return check_folder(Path(cache_dir).expanduser(), "task.cache_dir") if cache_dir else default_cache_dir()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _stat(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


# Tokenisation (Transformer-XL) -------------------------------------------------------------------------


class _Growing(dict):
    """symbol -> id, adding an unseen symbol with the next id (so ids are first-occurrence order)."""

    def __missing__(self, symbol: str) -> int:
        index = self[symbol] = len(self)
        return index


class _Frozen(dict):
    """The final vocabulary: an unseen symbol maps to ``<unk>`` when the vocabulary has it, else raises."""

    def __init__(self, vocab: dict[str, int], task: str, split: str) -> None:
        super().__init__(vocab)
        self.unk, self.task, self.split = vocab.get(UNK), task, split

    def __missing__(self, symbol: str) -> int:
        if self.unk is None:
            raise LMDataError(
                f"{self.task}: {self.split} has the symbol {symbol!r}, which is not in the vocabulary "
                f"built from train, and the vocabulary has no {UNK}"
            )
        return self.unk


def _encode_rows(rows: Iterable[list[str]], lookup, eos_id: int | None) -> torch.Tensor:
    chunks = []
    for lines in rows:
        ids: list[int] = []
        for line in lines:
            ids.extend(map(lookup, line.split()))  # Tr-XL: line.strip().split(None)
            if eos_id is not None:
                ids.append(eos_id)
        if ids:
            chunks.append(torch.tensor(ids, dtype=torch.int64))
    return torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.int64)


def tokenise(
    rows: dict[str, Iterable[list[str]]],
    *,
    task: str,
    specials: tuple[str, ...],
    vocab_splits: tuple[str, ...],
    add_eos: bool,
) -> tuple[list[str], dict[str, torch.Tensor]]:
    """Transformer-XL's ``Vocab`` on line rows: each line is ``line.split()`` (whitespace, case kept), plus
    ``<eos>`` at its end when ``add_eos`` (an empty line is just ``<eos>``). The vocabulary is ``specials``
    first, then every symbol counted in ``vocab_splits`` by descending count, ties in first-occurrence
    order (``Counter.most_common``, a stable sort over insertion order). Other splits map unseen symbols to
    ``<unk>`` when the vocabulary has it, else raise. Returns (vocabulary, {split: LongTensor [N]})."""
    index = _Growing((s, i) for i, s in enumerate(specials))
    eos_id = index[EOS] if add_eos else None
    counted = {s: _encode_rows(rows[s], index.__getitem__, eos_id) for s in vocab_splits}
    n, n_special = len(index), len(specials)
    counts = torch.zeros(n, dtype=torch.int64)
    for ids in counted.values():
        counts += torch.bincount(ids, minlength=n)
    count_of = counts.tolist()
    order = list(range(n_special)) + sorted(range(n_special, n), key=count_of.__getitem__, reverse=True)
    new_id = torch.empty(n, dtype=torch.int64)
    new_id[torch.tensor(order, dtype=torch.int64)] = torch.arange(n)
    symbols = list(index)
    vocab = [symbols[i] for i in order]
    out = {s: new_id[ids] for s, ids in counted.items()}
    final = {sym: i for i, sym in enumerate(vocab)}
    for split in rows:
        if split not in out:
            out[split] = _encode_rows(rows[split], _Frozen(final, task, split).__getitem__, eos_id)
    return vocab, out


# Loading through datasets ------------------------------------------------------------------------------


def _rows(dataset) -> Iterator[list[str]]:
    for batch in dataset.iter(batch_size=_ROWS_PER_BATCH):
        yield batch["text"]


def load_text_files(task: str, files: dict[str, Path], hf_cache: Path) -> dict:
    """The split files through ``datasets.load_dataset("text")``: one row per line, empty lines kept."""
    import datasets

    datasets.disable_progress_bars()
    try:
        loaded = datasets.load_dataset(
            "text",
            data_files={split: str(path) for split, path in files.items()},
            cache_dir=str(hf_cache),
            sample_by="line",
            keep_linebreaks=False,
            encoding="utf-8",
        )
    except Exception as exc:
        where = ", ".join(str(p) for p in files.values())
        raise LMDataError(f"{task}: datasets could not read {where}: {_one_line(exc)}") from exc
    return {split: loaded[split] for split in files}


def load_hub(task: str, hub_name: str, hub_config: str | None, hf_cache: Path, offline_hint: str):
    """``datasets.load_dataset(hub_name, hub_config)``; any failure (offline, unknown name) is one line."""
    import datasets

    datasets.disable_progress_bars()
    try:
        return datasets.load_dataset(hub_name, hub_config, cache_dir=str(hf_cache))
    except Exception as exc:
        raise LMDataError(
            f"{task}: could not load {hub_name!r} (config {hub_config!r}) from the Hugging Face Hub "
            f"({_one_line(exc)}); offline, set path to a local copy: {offline_hint}"
        ) from exc


class _WorkDir:
    """A temporary folder beside the cache for extracted or converted files and ``datasets``' own
    cache of local files (our token cache replaces it), removed afterwards."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.path = make_temp_dir(root, ".work-")

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


# WikiText-103 --------------------------------------------------------------------------------------------

WIKITEXT_LAYOUTS = {
    "tokens": {s: f"wiki.{s}.tokens" for s in SPLITS},  # the released wikitext-103-v1
    "raw": {s: f"wiki.{s}.raw" for s in SPLITS},  # the released wikitext-103-raw-v1
    "txt": {s: f"{s}.txt" for s in SPLITS},  # Transformer-XL's getdata.sh renames wiki.*.tokens so
}
WIKITEXT_EXPECTED = (
    "the released layout: wiki.{train,valid,test}.tokens (or wiki.{train,valid,test}.raw, or "
    "Transformer-XL's {train,valid,test}.txt), in a folder or the released .zip"
)


def _find_layout(task: str, folder: Path, layouts: dict[str, dict[str, str]]):
    for variant, names in layouts.items():
        present = [s for s in SPLITS if (folder / names[s]).is_file()]
        if len(present) == len(SPLITS):
            return variant, {s: folder / names[s] for s in SPLITS}
        if present:
            missing = [names[s] for s in SPLITS if s not in present]
            raise LMDataError(
                f"{task}: folder {str(folder)!r} has {names[present[0]]} but no {', '.join(missing)}"
            )
    return None


class WikiTextSource:
    """WikiText-103 from ``path`` (folder or released .zip) or, when ``path`` is None, the Hub.

    The ``raw`` variant (untokenised text, no ``<unk>`` in it) adds ``<unk>`` as a second special so that
    valid/test words missing from train have an id; the tokens variant uses only the data's own ``<unk>``.
    """

    codec = "words"

    def __init__(self, task: str, path: str | None, hub_name: str, hub_config: str) -> None:
        self.task, self.hub_name, self.hub_config = task, hub_name, hub_config
        self.path = Path(path).expanduser() if path else None

    def _resolve(self):
        """(variant, files dict) for a folder, or (variant, zip members dict) for a zip archive."""
        path, task = self.path, self.task
        if not path.exists():
            raise LMDataError(f"{task}: path {str(path)!r} does not exist (expected {WIKITEXT_EXPECTED})")
        if path.is_dir():
            for folder in (path, path / "wikitext-103", path / "wikitext-103-raw"):
                found = _find_layout(task, folder, WIKITEXT_LAYOUTS) if folder.is_dir() else None
                if found:
                    return found
            raise LMDataError(
                f"{task}: folder {str(path)!r} has no wiki.train.tokens (expected {WIKITEXT_EXPECTED})"
            )
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                members = {name.rsplit("/", 1)[-1]: name for name in zf.namelist()}
            for variant, names in WIKITEXT_LAYOUTS.items():
                if all(names[s] in members for s in SPLITS):
                    return variant, {s: members[names[s]] for s in SPLITS}
            raise LMDataError(
                f"{task}: archive {str(path)!r} has no wiki.train.tokens (expected {WIKITEXT_EXPECTED})"
            )
        raise LMDataError(
            f"{task}: path {str(path)!r} is a file, not a folder or .zip (expected {WIKITEXT_EXPECTED})"
        )

    def fingerprint(self) -> dict:
        if self.path is None:
            return {"hub": [self.hub_name, self.hub_config]}
        variant, files = self._resolve()
        stats = [_stat(self.path)] if self.path.is_file() else [_stat(p) for p in files.values()]
        return {"variant": variant, "files": stats}

    def specials(self, variant: str) -> tuple[str, ...]:
        return (EOS, UNK) if variant == "raw" else (EOS,)

    def load(self, root: Path, folder: Path) -> tuple[list[str], dict[str, torch.Tensor]]:
        if self.path is None:
            hub = load_hub(self.task, self.hub_name, self.hub_config, root / "hf_datasets", WIKITEXT_EXPECTED)
            split_of = {"train": "train", "valid": "validation", "test": "test"}
            try:
                rows = {s: _rows(hub[split_of[s]]) for s in SPLITS}
            except KeyError as exc:
                raise LMDataError(
                    f"{self.task}: {self.hub_name!r} has no split {exc}; expected train/validation/test"
                ) from None
            variant = "raw" if "raw" in self.hub_config else "tokens"
            return self._tokenise(rows, variant)
        variant, files = self._resolve()
        with _WorkDir(root / "lm") as work:
            if self.path.is_file():
                with zipfile.ZipFile(self.path) as zf:
                    files = {s: Path(zf.extract(member, work / "unzipped")) for s, member in files.items()}
            loaded = load_text_files(self.task, files, work / "hf_datasets")
            return self._tokenise({s: _rows(loaded[s]) for s in SPLITS}, variant)

    def _tokenise(self, rows, variant):
        # Tr-XL get_lm_corpus for wt103: special=['<eos>'], lower_case=False, vocabulary counted on train
        # only, every line encoded with add_eos=True.
        return tokenise(
            rows, task=self.task, specials=self.specials(variant), vocab_splits=("train",), add_eos=True
        )


# enwik8 --------------------------------------------------------------------------------------------------

ENWIK8_PREP = {"prep": {s: f"{s}.txt" for s in SPLITS}}
ENWIK8_EXPECTED = (
    "the raw 100,000,000-byte enwik8 file, enwik8.zip, or a folder in prep_enwik8.py's layout: "
    "{train,valid,test}.txt of space-separated byte values"
)
_BYTE_TEXT = [str(b) for b in range(256)]
_BYTE_TEXT[10] = "\n"  # prep_enwik8.py writes a newline byte as a line break, not as a symbol


def enwik8_bounds(n_bytes: int) -> dict[str, tuple[int, int]]:
    """prep_enwik8.py's split: valid and test are the last 2 x 5,000,000 bytes. Generalised as 5% each
    (``n * 5 // 100``), which is exactly 90M/5M/5M for the real 100,000,000-byte file."""
    n_eval = n_bytes * 5 // 100
    return {
        "train": (0, n_bytes - 2 * n_eval),
        "valid": (n_bytes - 2 * n_eval, n_bytes - n_eval),
        "test": (n_bytes - n_eval, n_bytes),
    }


def write_enwik8_prep(data: bytes, folder: Path, task: str = "enwik8") -> dict[str, Path]:
    """prep_enwik8.py: each split as ``' '.join(str(c) if c != ord('\\n') else '\\n' for c in part)``."""
    if len(data) < 20:
        raise LMDataError(f"{task}: the data has {len(data)} bytes; need at least 20 for a 90/5/5 split")
    folder.mkdir(parents=True, exist_ok=True)
    files, chunk = {}, 1 << 20
    for split, (start, end) in enwik8_bounds(len(data)).items():
        files[split] = folder / f"{split}.txt"
        with open(files[split], "w", encoding="ascii", newline="\n") as fh:
            for at in range(start, end, chunk):
                if at > start:
                    fh.write(" ")
                fh.write(" ".join([_BYTE_TEXT[c] for c in data[at : min(at + chunk, end)]]))
    return files


class Enwik8Source:
    """enwik8 from ``path`` (raw file, .zip, prep folder) or, when ``path`` is None, the Hub."""

    codec = "bytes"

    def __init__(self, task: str, path: str | None, hub_name: str, hub_config: str) -> None:
        self.task, self.hub_name, self.hub_config = task, hub_name, hub_config
        self.path = Path(path).expanduser() if path else None

    def _resolve(self) -> tuple[str, object]:
        """("prep", files) | ("raw", file) | ("zip", file)."""
        path, task = self.path, self.task
        if not path.exists():
            raise LMDataError(f"{task}: path {str(path)!r} does not exist (expected {ENWIK8_EXPECTED})")
        if path.is_dir():
            found = _find_layout(task, path, ENWIK8_PREP)
            if found:
                return found
            for name, kind in (("enwik8", "raw"), ("enwik8.zip", "zip")):
                if (path / name).is_file():
                    return kind, path / name
            raise LMDataError(
                f"{task}: folder {str(path)!r} has no train.txt and no enwik8 file (expected {ENWIK8_EXPECTED})"
            )
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                if "enwik8" not in zf.namelist():
                    raise LMDataError(
                        f"{task}: archive {str(path)!r} has no member 'enwik8' (expected {ENWIK8_EXPECTED})"
                    )
            return "zip", path
        return "raw", path

    def fingerprint(self) -> dict:
        if self.path is None:
            return {"hub": [self.hub_name, self.hub_config]}
        variant, where = self._resolve()
        stats = [_stat(p) for p in where.values()] if isinstance(where, dict) else [_stat(where)]
        return {"variant": variant, "files": stats}

    def load(self, root: Path, folder: Path) -> tuple[list[str], dict[str, torch.Tensor]]:
        with _WorkDir(root / "lm") as work:
            if self.path is None:
                hub = load_hub(
                    self.task, self.hub_name, self.hub_config, root / "hf_datasets", ENWIK8_EXPECTED
                )
                rows = hub["train"]["text"] if hasattr(hub, "keys") else hub["text"]
                # enwik8-raw is one row holding the whole file as UTF-8 text; a by-line config is re-joined.
                data = (rows[0] if len(rows) == 1 else "\n".join(rows)).encode("utf-8")
                files = write_enwik8_prep(data, work / "prep", self.task)
            else:
                variant, where = self._resolve()
                if variant == "prep":
                    files = where
                else:
                    if variant == "zip":
                        with zipfile.ZipFile(where) as zf:
                            data = zf.read("enwik8")
                    else:
                        data = where.read_bytes()
                    files = write_enwik8_prep(data, work / "prep", self.task)
            loaded = load_text_files(self.task, files, work / "hf_datasets")
            # Tr-XL Corpus for enwik8: Vocab() with no specials, counted on train, valid and test (in that
            # order), encoded with add_eos=False, so newline bytes (line breaks in the prep files) vanish.
            vocab, tensors = tokenise(
                {s: _rows(loaded[s]) for s in SPLITS},
                task=self.task,
                specials=(),
                vocab_splits=SPLITS,
                add_eos=False,
            )
        bad = [s for s in vocab if not (s.isdigit() and int(s) < 256)]
        if bad:
            raise LMDataError(
                f"{self.task}: the split files hold {bad[0]!r}, not byte values (expected {ENWIK8_EXPECTED})"
            )
        return vocab, tensors


# The token cache ---------------------------------------------------------------------------------------


def cache_key(task: str, params: dict, fingerprint: dict) -> str:
    spec = {"format": CACHE_FORMAT, "task": task, "params": params, "source": fingerprint}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _atomic_save(obj, path: Path) -> None:
    atomic_write(path, lambda fh: torch.save(obj, fh), binary=True)


def write_cache(folder: Path, meta: dict, tensors: dict[str, torch.Tensor]) -> None:
    """Each split as ``{split}.pt`` (int32), then ``meta.json`` last: a cache is whole iff it has meta."""
    folder.mkdir(parents=True, exist_ok=True)
    dtype = torch.int32 if len(meta["vocab"]) < 2**31 else torch.int64
    for split, ids in tensors.items():
        _atomic_save(ids.to(dtype).contiguous(), folder / f"{split}.pt")
    atomic_write_text(folder / "meta.json", json.dumps(meta))


def read_meta(folder: Path) -> dict | None:
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if meta.get("format") == CACHE_FORMAT else None


def read_split(folder: Path, split: str, n_tokens: int) -> torch.Tensor:
    path = folder / f"{split}.pt"
    try:
        ids = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise LMDataError(
            f"token cache {str(path)!r} is unreadable ({_one_line(exc)}); delete {str(folder)!r}"
        ) from exc
    if not isinstance(ids, torch.Tensor) or ids.shape != (n_tokens,):
        raise LMDataError(f"token cache {str(path)!r} does not hold {n_tokens} ids; delete {str(folder)!r}")
    return ids.long()


# The embedded synthetic corpus ------------------------------------------------------------------------

SYNTHETIC_VERSION = 1
N_TOPIC_WORDS = 3


def _lexicon() -> dict[str, tuple[str, ...]]:
    """Pseudo-words made from consonant-vowel syllables (nothing copied), the same for every seed."""
    rng = random.Random("rmtzoo-synthetic-lm-lexicon")
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    function = rng.sample(syllables, 20)
    content = rng.sample([a + b for a in syllables for b in syllables], 300)
    names = [w.capitalize() for w in rng.sample([a + b + "n" for a in syllables for b in syllables], 48)]
    return {
        "det": tuple(function[:6]),
        "prep": tuple(function[6:16]),
        "conj": tuple(function[16:20]),
        "adj": tuple(content[:60]),
        "noun": tuple(content[60:220]),
        "verb": tuple(content[220:300]),
        "name": tuple(names),
        "punct": (".", ",", "="),
    }


LEXICON = _lexicon()
SYNTHETIC_WORDS = tuple(w for group in LEXICON.values() for w in group)
SYNTHETIC_VOCAB_SIZE = len(SYNTHETIC_WORDS) + 1  # every word (the glossary line) and <eos>
_ZIPF = {k: [sum(1 / r for r in range(1, i + 2)) for i in range(len(v))] for k, v in LEXICON.items()}


def _word(rng: random.Random, kind: str) -> str:
    return rng.choices(LEXICON[kind], cum_weights=_ZIPF[kind])[0]


def _noun_phrase(rng: random.Random, *, pp: bool) -> list[str]:
    words = [_word(rng, "det")]
    words += [_word(rng, "adj") for _ in range((rng.random() < 0.5) + (rng.random() < 0.2))]
    words.append(_word(rng, "noun"))
    if pp and rng.random() < 0.2:
        words += [_word(rng, "prep"), *_noun_phrase(rng, pp=False)]
    return words


def _sentence(rng: random.Random, topic: list[str]) -> list[str]:
    subject = [rng.choice(topic)] if rng.random() < 0.35 else _noun_phrase(rng, pp=True)
    obj = [rng.choice(topic)] if rng.random() < 0.15 else _noun_phrase(rng, pp=True)
    words = subject + [_word(rng, "verb")] + obj
    if rng.random() < 0.25:
        words += [_word(rng, "prep"), *_noun_phrase(rng, pp=False)]
    if rng.random() < 0.15:
        words += [
            ",",
            _word(rng, "conj"),
            *_noun_phrase(rng, pp=False),
            _word(rng, "verb"),
            *_noun_phrase(rng, pp=False),
        ]
    return words + ["."]


def synthetic_document(rng: random.Random) -> list[str]:
    """One WikiText-style article: a title line ``= T1 T2 T3 =`` naming its topic words (names), 3-6
    paragraphs whose sentences use only those names, and a closing sentence naming all three in title
    order. Predicting the names needs memory of the title, hundreds of tokens back."""
    topic = rng.sample(LEXICON["name"], N_TOPIC_WORDS)
    lines = ["", " ".join(["=", *topic, "="]), ""]
    for _ in range(rng.randint(3, 6)):
        lines += [" ".join(w for _ in range(rng.randint(4, 9)) for w in _sentence(rng, topic)), ""]
    closing = _noun_phrase(rng, pp=False) + [
        _word(rng, "verb"),
        topic[0],
        ",",
        topic[1],
        _word(rng, "conj"),
        topic[2],
        ".",
    ]
    return lines + [" ".join(closing)]


def synthetic_split_text(seed: int, split: str, n_tokens: int) -> str:
    """A split of exactly ``n_tokens`` tokens as WikiText-103 counts them (words plus one ``<eos>`` per
    line), in the released file style (`` = Title = `` lines padded with spaces, blank lines ``" "``).
    Train opens with a glossary line holding every word once, so the train vocabulary is always the
    whole lexicon; the last document is cut where the count is reached."""
    rng = random.Random(f"rmtzoo-synthetic-lm/{SYNTHETIC_VERSION}/{seed}/{split}")
    lines = [" ".join(SYNTHETIC_WORDS)] if split == "train" else []
    count = len(SYNTHETIC_WORDS) + 1 if lines else 0
    while count < n_tokens:
        for line in synthetic_document(rng):
            room = n_tokens - count
            if room <= 0:
                break
            words = line.split()[: room - 1]
            lines.append(" ".join(words))
            count += len(words) + 1
    return "".join(f" {line} \n" if line else " \n" for line in lines)


class SyntheticSource:
    """The embedded corpus: written as wiki.{train,valid,test}.tokens under the cache, then read back
    through the WikiText loader (``datasets`` text builder and Tr-XL tokenisation)."""

    codec = "words"

    def __init__(self, task: str, seed: int, n_train_tokens: int, n_eval_tokens: int) -> None:
        self.task, self.seed, self.n_train, self.n_eval = task, seed, n_train_tokens, n_eval_tokens

    def fingerprint(self) -> dict:
        return {"generator": SYNTHETIC_VERSION}

    def write_files(self, folder: Path) -> dict[str, Path]:
        files = {}
        for split in SPLITS:
            files[split] = folder / WIKITEXT_LAYOUTS["tokens"][split]
            n = self.n_train if split == "train" else self.n_eval
            atomic_write_text(files[split], synthetic_split_text(self.seed, split, n))
        return files

    def load(self, root: Path, folder: Path) -> tuple[list[str], dict[str, torch.Tensor]]:
        source = folder / "source"
        self.write_files(source)
        return WikiTextSource(self.task, str(source), "", "").load(root, folder)

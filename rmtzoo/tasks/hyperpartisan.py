"""Hyperpartisan news detection (docs/paper-settings.md 4): SemEval-2019 Task 4, by-article, as a classification task.

Sources, in order of precedence:

- ``data_dir``: the released files, ``articles-training-byarticle-20181122.xml`` and
  ``ground-truth-training-byarticle-20181122.xml`` (Zenodo record 1489920, unzipped), read with
  ``xml.etree``. An article's text is the text of its HTML body (tags stripped, as Longformer's
  ``hp_preprocess.py`` does with ``ET.tostring(method="text")``), whitespace collapsed; the title is not
  included. Labels are joined by article id.
- ``source = "embedded"``: a synthetic corpus the project generates itself (no download), written in the
  released layout into the cache and read through the same XML path. Hyperpartisan articles carry a
  learnable signal (loaded words and exclamation marks in about half their sentences).
- otherwise ``source`` is a Hub dataset read through ``datasets``: by default
  ``SemEvalWorkshop/hyperpartisan_news_detection``, config ``byarticle`` (645 rows, columns ``text`` (HTML),
  ``hyperpartisan``; HTML stripped with ``html.parser``). Its rows carry no article id; row i is taken
  as id i, which assumes the rows keep the XML's order (unverified); use ``data_dir`` for exact ids.

Splits: ``split_file`` is Longformer's ``hp-splits.json`` (``{"train": [ids], "dev": [ids], "test":
[ids]}``, integer article ids; 516/64/65). Deviation when it is not given: a deterministic split of the
articles sorted by id, shuffled with ``split_seed``, in the same proportions (exactly 516/64/65 for 645
articles), not Longformer's. Longformer's extra text cleaning (``clean_txt``) is not reproduced.
"""

from __future__ import annotations

import html.parser
import json
import random
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from rmtzoo._components import Params, TaskSpec
from rmtzoo._io import atomic_write_text, check_folder
from rmtzoo._registry import hookimpl
from rmtzoo.tasks.classification import (
    ByteTokenizer,
    ClassificationDataError,
    ClassificationTask,
    Document,
    one_line,
)
from rmtzoo.tasks.samples import default_cache_dir

ARTICLES_XML = "articles-training-byarticle-20181122.xml"
GROUND_TRUTH_XML = "ground-truth-training-byarticle-20181122.xml"
HUB_NAME = "SemEvalWorkshop/hyperpartisan_news_detection"
LONGFORMER_SIZES = (516, 64, 65)  # of 645 articles


class HyperpartisanParams(Params):
    """source: a Hub dataset name (with ``hub_config``) or ``"embedded"``; data_dir: local released
    files (then ``source`` is not used); split_file: Longformer's ``hp-splits.json``; tokenizer:
    ``"bytes"`` or a Hugging Face tokenizer name or directory; max_segments: documents are truncated to
    ``max_segments * segment.length`` tokens; embedded_articles / embedded_seed: the embedded corpus."""

    source: str = HUB_NAME
    hub_config: str = "byarticle"
    data_dir: str | None = None
    split_file: str | None = None
    split_seed: NonNegativeInt = 0
    tokenizer: str = "bytes"
    max_segments: PositiveInt = 4
    embedded_articles: int = Field(400, ge=20, le=100_000)
    embedded_seed: NonNegativeInt = 0
    cache_dir: str | None = None

    @model_validator(mode="after")
    def _one_source(self):
        if self.data_dir is not None and self.source == "embedded":
            raise ValueError("give data_dir (local released files) or source = 'embedded', not both")
        if not self.tokenizer:
            raise ValueError("tokenizer must be 'bytes' or a Hugging Face tokenizer name or directory")
        return self


# -- reading the released layout -------------------------------------------------------------------
def read_byarticle_xml(data_dir: str | Path) -> list[Document]:
    """Articles and their labels from the released by-article XML pair, in article order."""
    folder = Path(data_dir)
    paths = [folder / ARTICLES_XML, folder / GROUND_TRUTH_XML]
    for path in paths:
        if not path.is_file():
            raise ClassificationDataError(f"task.data_dir: {str(path)!r} not found (expected {ARTICLES_XML} and {GROUND_TRUTH_XML})")
    try:
        articles = ET.parse(paths[0]).getroot().findall("article")
        truth = ET.parse(paths[1]).getroot().findall("article")
    except ET.ParseError as exc:
        raise ClassificationDataError(f"task.data_dir: cannot parse the XML in {str(folder)!r}: {one_line(exc)}") from None
    labels = {}
    for item in truth:
        value = item.get("hyperpartisan", "").lower()
        if value not in ("true", "false"):
            raise ClassificationDataError(f"{GROUND_TRUTH_XML}: article {item.get('id')!r} has hyperpartisan={value!r}, expected true or false")
        labels[_article_id(item)] = int(value == "true")
    docs = []
    for article in articles:
        id_ = _article_id(article)
        if id_ not in labels:
            raise ClassificationDataError(f"{GROUND_TRUTH_XML}: no label for article id {id_}")
        docs.append(Document(id_, _clean("".join(article.itertext())), labels[id_]))
    return docs


def _article_id(element) -> int:
    raw = element.get("id")
    if raw is None or not raw.strip().isdigit():
        raise ClassificationDataError(f"hyperpartisan XML: article id {raw!r} is not a number")
    return int(raw)


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


class _TextOnly(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def strip_html(markup: str) -> str:
    parser = _TextOnly()
    parser.feed(markup)
    parser.close()
    return _clean("".join(parser.parts))


def read_hub(source: str, config: str, cache_root: Path) -> list[Document]:
    import datasets

    try:
        rows = datasets.load_dataset(source, config, split="train", cache_dir=str(cache_root / "hf_datasets"))
    except Exception as exc:
        raise ClassificationDataError(
            f"task.source: cannot load {source!r} (config {config!r}) through datasets: {one_line(exc)}; "
            "set task.data_dir to the released XML files, or task.source = 'embedded'"
        ) from None
    return [
        Document(int(row["id"]) if "id" in row else i, strip_html(row["text"]), int(bool(row["hyperpartisan"])))
        for i, row in enumerate(rows)
    ]


# -- splits -----------------------------------------------------------------------------------------
def split_sizes(n: int) -> tuple[int, int, int]:
    """Longformer's proportions: exactly 516/64/65 for 645 articles."""
    valid = round(n * LONGFORMER_SIZES[1] / 645)
    test = round(n * LONGFORMER_SIZES[2] / 645)
    return n - valid - test, valid, test


def split_documents(docs: list[Document], *, split_file: str | None, seed: int) -> dict[str, list[Document]]:
    by_id = {d.id: d for d in docs}
    if split_file is None:
        ordered = sorted(docs, key=lambda d: d.id)
        random.Random(seed).shuffle(ordered)
        n_train, n_valid, _ = split_sizes(len(ordered))
        return {"train": ordered[:n_train], "valid": ordered[n_train : n_train + n_valid],
                "test": ordered[n_train + n_valid :]}
    try:
        raw = json.loads(Path(split_file).read_text())
    except (OSError, ValueError) as exc:
        raise ClassificationDataError(f"task.split_file: cannot read {split_file!r}: {one_line(exc)}") from None
    if not isinstance(raw, dict):
        raise ClassificationDataError(f"task.split_file: {split_file!r} must hold {{\"train\": [ids], \"dev\": [ids], \"test\": [ids]}}")
    splits = {}
    for ours, theirs in (("train", ("train",)), ("valid", ("dev", "valid", "validation")), ("test", ("test",))):
        key = next((k for k in theirs if k in raw), None)
        if key is None:
            raise ClassificationDataError(f"task.split_file: {split_file!r} has no {' / '.join(theirs)!s} list")
        try:
            ids = [int(i) for i in raw[key]]
        except (TypeError, ValueError):
            raise ClassificationDataError(f"task.split_file: {key!r} must be a list of integer article ids") from None
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise ClassificationDataError(f"task.split_file: article id {missing[0]} in {key!r} is not in the data ({len(missing)} missing)")
        splits[ours] = [by_id[i] for i in ids]
    return splits


# -- the embedded corpus ----------------------------------------------------------------------------
_NEUTRAL = (
    "the council met on tuesday to discuss the budget for next year and officials said the plan would "
    "fund schools roads and parks while residents asked about taxes the report noted that growth was "
    "steady in the region and analysts expect modest changes in employment figures over the coming months "
    "according to a statement released by the office of the mayor"
).split()
_LOADED = ("outrageous", "traitors", "disgrace", "radical", "corrupt", "destroying", "lies", "elites",
           "shameful", "tyranny", "treason", "lunatic")


def write_embedded(folder: Path, *, n_articles: int, seed: int) -> Path:
    """Write a synthetic by-article corpus in the released XML layout; returns ``folder``. About 37% of
    the articles are hyperpartisan (as in the real set); the label shows in loaded words and ``!``."""
    rng = random.Random(seed)
    articles, truth = ["<?xml version=\"1.0\" encoding=\"UTF-8\"?>", "<articles>"], ["<?xml version=\"1.0\" encoding=\"UTF-8\"?>", "<articles>"]
    for i in range(n_articles):
        partisan = rng.random() < 0.37
        paragraphs = []
        for _ in range(rng.randint(1, 4)):
            sentences = []
            for _ in range(rng.randint(1, 4)):
                words = [rng.choice(_NEUTRAL) for _ in range(rng.randint(5, 12))]
                loaded = rng.random() < (0.5 if partisan else 0.03)
                if loaded:
                    words.insert(rng.randrange(len(words) + 1), rng.choice(_LOADED))
                sentences.append(" ".join(words).capitalize() + ("!" if loaded else "."))
            text = " ".join(sentences)
            if rng.random() < 0.3:  # inline markup, as in the real articles
                text += f' See <a href="https://example.org/{i}" type="external">the report &amp; data</a>.'
            paragraphs.append(f"<p>{text}</p>")
        articles.append(f'<article id="{i:07d}" published-at="2018-01-01" title="Article {i}">')
        articles.extend(paragraphs)
        articles.append("</article>")
        truth.append(f'<article id="{i:07d}" hyperpartisan="{"true" if partisan else "false"}" '
                     f'labeled-by="article" url="https://example.org/{i}"/>')
    articles.append("</articles>")
    truth.append("</articles>")
    atomic_write_text(folder / ARTICLES_XML, "\n".join(articles) + "\n")
    atomic_write_text(folder / GROUND_TRUTH_XML, "\n".join(truth) + "\n")
    return folder


# -- the task ---------------------------------------------------------------------------------------
def _fingerprint(p: HyperpartisanParams) -> dict:
    def stat(path):
        s = Path(path).stat() if Path(path).exists() else None
        return [str(Path(path).resolve()), s.st_size if s else None, s.st_mtime_ns if s else None]

    spec = {"split_file": None if p.split_file is None else stat(p.split_file), "split_seed": p.split_seed}
    if p.data_dir is not None:
        spec["data"] = [stat(Path(p.data_dir) / name) for name in (ARTICLES_XML, GROUND_TRUTH_XML)]
    elif p.source == "embedded":
        spec["embedded"] = [p.embedded_articles, p.embedded_seed]
    else:
        spec["hub"] = [p.source, p.hub_config]
    return spec


def build_hyperpartisan(p: HyperpartisanParams) -> ClassificationTask:
    root = check_folder(Path(p.cache_dir), "task.cache_dir") if p.cache_dir else default_cache_dir()

    def load_documents():
        if p.data_dir is not None:
            docs = read_byarticle_xml(p.data_dir)
        elif p.source == "embedded":
            folder = root / "classification" / f"hyperpartisan-embedded-{p.embedded_articles}-{p.embedded_seed}"
            docs = read_byarticle_xml(write_embedded(folder, n_articles=p.embedded_articles, seed=p.embedded_seed))
        else:
            docs = read_hub(p.source, p.hub_config, root)
        return split_documents(docs, split_file=p.split_file, seed=p.split_seed)

    return ClassificationTask("hyperpartisan", p, load_documents=load_documents, fingerprint=_fingerprint(p),
                              tokenizer=p.tokenizer, max_segments=p.max_segments, cache_root=root)


@hookimpl
def rmtzoo_register_tasks(register):
    register(
        TaskSpec(
            name="hyperpartisan",
            summary="SemEval-2019 hyperpartisan news, by article (docs/paper-settings.md 4): classify from the last segment; F1",
            params=HyperpartisanParams,
            build=build_hyperpartisan,
            # an HF tokenizer's size is known only once loaded: checked when the model is prepared
            vocab_size=lambda p: ByteTokenizer.vocab_size if p.tokenizer == "bytes" else 0,
            test_params={"source": "embedded", "embedded_articles": 40, "max_segments": 2},
            needs=("per_sample_mask",),  # documents are padded to a whole number of segments
        )
    )

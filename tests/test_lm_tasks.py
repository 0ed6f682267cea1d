"""Language-modelling tasks (PAPER.md 3.1): the released file layouts read through the real ``datasets``
code path, Transformer-XL's tokenisation checked against hand-computed ids, the token cache, the ordered
stream iterator and metrics, and the embedded synthetic corpus. Everything runs offline on tiny files."""

from __future__ import annotations

import math
import os
import random
import zipfile
from collections import Counter

import datasets
import pytest
import torch

import rmtzoo
from rmtzoo.tasks import _lm_data
from rmtzoo.tasks.lm import (
    Enwik8Params,
    LMDataError,
    StreamTask,
    SyntheticLMParams,
    WikiText103Params,
    build_enwik8,
    build_synthetic_lm,
    build_wikitext103,
    ordered_streams,
    stream_metric,
    stream_segments,
)

# A WikiText-103 "tokens" release in miniature: blank lines are " ", titles " = ... = ", <unk> in text.
WT_TRAIN = " \n = Title x = \n \n x y <unk> x , y . \n z x \n"
WT_VALID = " \n x q y \n"
WT_TEST = " z = \nx"  # a last line without its newline still ends with <eos>
# Counts in train: x 4, = 2, y 2, then Title, <unk>, ",", ".", z once each (ties in first-occurrence order).
WT_VOCAB = ["<eos>", "x", "=", "y", "Title", "<unk>", ",", ".", "z"]
WT_IDS = {
    "train": [0, 2, 4, 1, 2, 0, 0, 1, 3, 5, 1, 6, 3, 7, 0, 8, 1, 0],
    "valid": [0, 1, 5, 3, 0],  # q is not in train: <unk>
    "test": [8, 2, 0, 1, 0],
}

# enwik8 in miniature: 40 bytes, so valid and test are the last 2 x 2 bytes (5% each).
E8_DATA = b"aab\nba" * 6 + b"ca" + b"\nz"
E8_VOCAB = ["97", "98", "99", "122"]  # a 19, b 12, c 1, z 1 over all three splits; newline dropped
E8_IDS = {"train": [0, 0, 1, 1, 0] * 6, "valid": [2, 0], "test": [3]}


def write(folder, files: dict[str, str | bytes]):
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


def wt_folder(tmp_path, layout="tokens"):
    names = {"tokens": "wiki.{}.tokens", "raw": "wiki.{}.raw", "txt": "{}.txt"}[layout]
    texts = dict(zip(("train", "valid", "test"), (WT_TRAIN, WT_VALID, WT_TEST), strict=True))
    return write(tmp_path / f"wt-{layout}", {names.format(s): t for s, t in texts.items()})


def prep_enwik8_text(part: bytes) -> str:
    """prep_enwik8.py, verbatim in effect: ' '.join(str(c) if c != ord('\\n') else '\\n' for c in part)."""
    return " ".join(str(c) if c != ord("\n") else "\n" for c in part)


def ids(task: StreamTask) -> dict[str, list[int]]:
    return {s: task.tokens(s).tolist() for s in ("train", "valid", "test")}


@pytest.fixture
def spy(monkeypatch):
    """Wrap the real ``datasets.load_dataset`` and record its calls."""
    calls = []
    original = datasets.load_dataset

    def load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


# -- WikiText-103 ----------------------------------------------------------------------------------------


def test_wikitext_tokens_layout_exact_ids_through_datasets(tmp_path, spy):
    task = build_wikitext103(WikiText103Params(path=str(wt_folder(tmp_path)), cache_dir=str(tmp_path / "c")))
    assert (task.name, task.kind, task.metric) == ("wikitext103", "stream", "ppl")
    assert task.vocab == WT_VOCAB and task.vocab_size == len(WT_VOCAB)
    assert ids(task) == WT_IDS
    assert all(t.dtype == torch.long and t.dim() == 1 for t in map(task.tokens, ("train", "valid", "test")))
    # the real datasets path: the packaged text builder, one row per line with blank lines kept
    ((args, kwargs),) = spy
    assert args == ("text",) and set(kwargs["data_files"]) == {"train", "valid", "test"}
    assert kwargs["sample_by"] == "line" and kwargs["keep_linebreaks"] is False


def transformer_xl_reference(train: str, valid: str, test: str) -> tuple[list[str], dict[str, list[int]]]:
    """Transformer-XL's Vocab for wt103 (special=['<eos>'], lower_case=False, count train only)."""
    counter = Counter()
    for line in train.splitlines(keepends=True):
        counter.update(line.strip().split(None))
    vocab = ["<eos>"] + [s for s, _ in counter.most_common() if s != "<eos>"]
    index = {s: i for i, s in enumerate(vocab)}
    out = {}
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        out[split] = [
            index[s] for line in text.splitlines(keepends=True) for s in line.strip().split(None) + ["<eos>"]
        ]
    return vocab, out


def test_wikitext_matches_transformer_xl_vocab_on_a_larger_corpus(tmp_path):
    rng = random.Random(3)
    words = [f"w{i}" for i in range(60)]
    texts = [
        "".join(" " + " ".join(rng.choices(words, k=rng.randint(0, 12))) + " \n" for _ in range(n))
        for n in (300, 40, 40)
    ]
    folder = write(
        tmp_path / "wt",
        {f"wiki.{s}.tokens": t for s, t in zip(("train", "valid", "test"), texts, strict=True)},
    )
    task = build_wikitext103(WikiText103Params(path=str(folder), cache_dir=str(tmp_path / "c")))
    vocab, expected = transformer_xl_reference(*texts)
    if set(words) - set(vocab):  # the reference raises on unseen words; keep the draw inside train's words
        pytest.skip("draw left a word out of train")
    assert task.vocab == vocab and ids(task) == expected


def test_wikitext_raw_layout_adds_unk_for_unseen_words(tmp_path):
    folder = write(
        tmp_path / "raw", {"wiki.train.raw": "a b\nb c\n", "wiki.valid.raw": "d b\n", "wiki.test.raw": "\n"}
    )
    task = build_wikitext103(WikiText103Params(path=str(folder), cache_dir=str(tmp_path / "c")))
    assert task.vocab == ["<eos>", "<unk>", "b", "a", "c"]
    assert ids(task) == {"train": [3, 2, 0, 2, 4, 0], "valid": [1, 2, 0], "test": [0]}


def test_wikitext_txt_layout_and_zip_archive_give_the_same_stream(tmp_path):
    txt = build_wikitext103(
        WikiText103Params(path=str(wt_folder(tmp_path, "txt")), cache_dir=str(tmp_path / "c"))
    )
    archive = tmp_path / "wikitext-103-v1.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for s, text in (("train", WT_TRAIN), ("valid", WT_VALID), ("test", WT_TEST)):
            zf.writestr(f"wikitext-103/wiki.{s}.tokens", text)
    zipped = build_wikitext103(WikiText103Params(path=str(archive), cache_dir=str(tmp_path / "c")))
    assert ids(txt) == ids(zipped) == WT_IDS and zipped.vocab == WT_VOCAB
    # the unzipped parent folder (holding wikitext-103/) works too
    parent = tmp_path / "unzipped"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(parent)
    assert (
        ids(build_wikitext103(WikiText103Params(path=str(parent), cache_dir=str(tmp_path / "c")))) == WT_IDS
    )


def test_wikitext_unseen_word_without_unk_is_a_clear_error(tmp_path):
    folder = write(
        tmp_path / "wt",
        {"wiki.train.tokens": "a b\n", "wiki.valid.tokens": "a zz\n", "wiki.test.tokens": "b\n"},
    )
    task = build_wikitext103(WikiText103Params(path=str(folder), cache_dir=str(tmp_path / "c")))
    with pytest.raises(LMDataError, match=r"wikitext103: valid has the symbol 'zz'.*no <unk>"):
        task.tokens("train")


def test_encode_decode_round_trip(tmp_path):
    task = build_wikitext103(WikiText103Params(path=str(wt_folder(tmp_path)), cache_dir=str(tmp_path / "c")))
    assert task.encode("x y\n\nz q") == [1, 3, 0, 0, 8, 5, 0]
    assert task.encode("x\r\ny\rz\x85x\n") == [1, 0, 3, 0, 8, 1, 0]  # as a file reads: \x85 is a space
    assert task.decode([1, 3, 0, 0, 8]) == "x y\n\nz"
    assert task.decode(task.tokens("train")[:6]) == "\n= Title x =\n"
    e8 = build_enwik8(
        Enwik8Params(
            path=str(write(tmp_path / "e8", {"enwik8": E8_DATA}) / "enwik8"), cache_dir=str(tmp_path / "c")
        )
    )
    assert e8.encode("ab\nz") == [0, 1, 3] and e8.decode([0, 1, 3]) == "abz"
    with pytest.raises(rmtzoo.InputError, match="'100' is not in the vocabulary"):
        e8.encode("d")


# -- enwik8 ----------------------------------------------------------------------------------------------


def test_enwik8_split_bounds_are_prep_enwik8s():
    assert _lm_data.enwik8_bounds(100_000_000) == {
        "train": (0, 90_000_000),
        "valid": (90_000_000, 95_000_000),
        "test": (95_000_000, 100_000_000),
    }
    assert _lm_data.enwik8_bounds(40) == {"train": (0, 36), "valid": (36, 38), "test": (38, 40)}


def test_enwik8_raw_file_exact_split_and_ids(tmp_path, spy):
    raw = write(tmp_path / "e8", {"enwik8": E8_DATA}) / "enwik8"
    task = build_enwik8(Enwik8Params(path=str(raw), cache_dir=str(tmp_path / "c")))
    assert (task.name, task.kind, task.metric) == ("enwik8", "stream", "bpc")
    assert task.vocab == E8_VOCAB and ids(task) == E8_IDS
    assert task.decode(task.tokens("valid")) == "ca" and task.decode(task.tokens("test")) == "z"
    # converted to prep_enwik8.py's layout, then read by the datasets text builder
    ((args, kwargs),) = spy
    assert args == ("text",) and [os.path.basename(f) for f in kwargs["data_files"].values()] == [
        "train.txt",
        "valid.txt",
        "test.txt",
    ]
    assert not list((tmp_path / "c" / "lm").glob(".work-*"))  # the conversion is removed afterwards


def test_enwik8_prep_folder_and_zip_match_the_raw_file(tmp_path):
    bounds = _lm_data.enwik8_bounds(len(E8_DATA))
    prep = write(
        tmp_path / "prep", {f"{s}.txt": prep_enwik8_text(E8_DATA[a:b]) for s, (a, b) in bounds.items()}
    )
    assert (prep / "train.txt").read_text().startswith("97 97 98 \n 98 97 97 97 98 \n")
    from_prep = build_enwik8(Enwik8Params(path=str(prep), cache_dir=str(tmp_path / "c")))
    assert from_prep.vocab == E8_VOCAB and ids(from_prep) == E8_IDS
    archive = tmp_path / "enwik8.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("enwik8", E8_DATA)
    assert ids(build_enwik8(Enwik8Params(path=str(archive), cache_dir=str(tmp_path / "c")))) == E8_IDS


def test_enwik8_folder_of_text_is_rejected(tmp_path):
    folder = write(tmp_path / "e8", {f"{s}.txt": "hello world\n" for s in ("train", "valid", "test")})
    with pytest.raises(LMDataError, match="hold 'hello', not byte values"):
        build_enwik8(Enwik8Params(path=str(folder), cache_dir=str(tmp_path / "c"))).tokens("train")


# -- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "params", "layout", "match"),
    [
        (
            build_wikitext103,
            WikiText103Params,
            {},
            r"wikitext103: folder '.*' has no wiki.train.tokens \(expected the released layout",
        ),
        (
            build_wikitext103,
            WikiText103Params,
            {"wiki.train.tokens": "a\n"},
            r"has wiki.train.tokens but no wiki.valid.tokens, wiki.test.tokens",
        ),
        (build_wikitext103, WikiText103Params, None, r"wikitext103: path '.*' does not exist"),
        (
            build_enwik8,
            Enwik8Params,
            {"train.txt": "1\n"},
            r"enwik8: folder '.*' has train.txt but no valid.txt, test.txt",
        ),
        (build_enwik8, Enwik8Params, {}, r"enwik8: folder '.*' has no train.txt and no enwik8 file"),
        (build_enwik8, Enwik8Params, None, r"enwik8: path '.*' does not exist"),
    ],
)
def test_bad_paths_are_one_line_errors_naming_the_path(tmp_path, build, params, layout, match):
    folder = tmp_path / "data"
    if layout is not None:
        write(folder, layout)
    task = build(params(path=str(folder), cache_dir=str(tmp_path / "c")))  # building does no I/O
    with pytest.raises(LMDataError, match=match) as info:
        task.tokens("train")
    assert (
        isinstance(info.value, rmtzoo.RmtzooError)
        and "\n" not in str(info.value)
        and str(folder) in str(info.value)
    )


@pytest.mark.parametrize(
    ("build", "params", "hub"),
    [(build_wikitext103, WikiText103Params, "'wikitext'"), (build_enwik8, Enwik8Params, "'LTCB/enwik8'")],
)
def test_hub_offline_is_a_clear_error(tmp_path, monkeypatch, build, params, hub):
    def offline(*args, **kwargs):
        raise ConnectionError(f"Couldn't reach {args[0]!r} on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(
        LMDataError, match=rf"could not load {hub} .*from the Hugging Face Hub.*ConnectionError.*set path"
    ) as info:
        build(params(cache_dir=str(tmp_path))).tokens("train")
    assert "\n" not in str(info.value)


def test_bad_split_name(tmp_path):
    with pytest.raises(rmtzoo.RmtzooError, match="split must be one of train, valid, test"):
        build_synthetic_lm(SyntheticLMParams(cache_dir=str(tmp_path))).tokens("validation")


# -- the cache -------------------------------------------------------------------------------------------


def test_tokenised_once_then_loaded_from_the_cache(tmp_path, monkeypatch):
    params = WikiText103Params(path=str(wt_folder(tmp_path)), cache_dir=str(tmp_path / "c"))
    first = build_wikitext103(params)
    assert ids(first) == WT_IDS
    folder = first.cache_path
    assert folder.parent == tmp_path / "c" / "lm" and {p.name for p in folder.iterdir()} == {
        "meta.json",
        "train.pt",
        "valid.pt",
        "test.pt",
    }

    def forbidden(*args, **kwargs):
        raise AssertionError("tokenised or loaded again")

    monkeypatch.setattr(_lm_data, "tokenise", forbidden)
    monkeypatch.setattr(datasets, "load_dataset", forbidden)
    again = build_wikitext103(params)  # a new task object, same params: the cache
    assert again.vocab == WT_VOCAB and ids(again) == WT_IDS and again.cache_path == folder
    assert ids(first) == WT_IDS  # and the first object does not reload either

    # a changed source file (size, mtime) is a different corpus: tokenised afresh
    (tmp_path / "wt-tokens" / "wiki.test.tokens").write_text(" z = \nx x\n")
    with pytest.raises(LMDataError, match="tokenised or loaded again"):  # datasets is asked again
        build_wikitext103(params).tokens("test")
    monkeypatch.undo()
    changed = build_wikitext103(params)
    assert changed.tokens("test").tolist() == [8, 2, 0, 1, 1, 0] and changed.cache_path != folder


def test_cache_dir_defaults_to_rmtzoo_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RMTZOO_CACHE", str(tmp_path / "env"))
    task = build_synthetic_lm(SyntheticLMParams(n_train_tokens=1_000, n_eval_tokens=100))
    assert task.cache_path.parent == tmp_path / "env" / "lm"


# -- Transformer-XL's ordered iterator and the metrics ---------------------------------------------------


def test_ordered_streams_and_segments_exact():
    streams = ordered_streams(torch.arange(23), batch_size=3)  # 23 // 3 = 7; tokens 21, 22 dropped
    assert streams.tolist() == [list(range(0, 7)), list(range(7, 14)), list(range(14, 21))]
    pieces = list(stream_segments(streams, segment_length=4))
    assert [(x.shape, y.shape) for x, y in pieces] == [((3, 4), (3, 4)), ((3, 2), (3, 2))]
    (x0, y0), (x1, y1) = pieces
    assert x0.tolist() == [[0, 1, 2, 3], [7, 8, 9, 10], [14, 15, 16, 17]]
    assert y0.tolist() == [[1, 2, 3, 4], [8, 9, 10, 11], [15, 16, 17, 18]]
    assert x1.tolist() == [[4, 5], [11, 12], [18, 19]] and y1.tolist() == [[5, 6], [12, 13], [19, 20]]
    # every token but each stream's first is a target exactly once
    targets = torch.cat([y for _, y in stream_segments(streams, 3)], dim=1)
    assert torch.equal(targets, streams[:, 1:])
    assert list(stream_segments(ordered_streams(torch.arange(10), 1), 100))[0][1].tolist() == [
        list(range(1, 10))
    ]


def test_ordered_streams_rejects_streams_too_short():
    with pytest.raises(rmtzoo.InputError, match="need at least 2 tokens a stream"):
        ordered_streams(torch.arange(5), batch_size=3)
    with pytest.raises(rmtzoo.InputError):
        ordered_streams(torch.arange(6).view(2, 3), batch_size=1)


def test_stream_metric():
    assert stream_metric(10 * math.log(2), 10, "ppl") == pytest.approx(2.0)
    assert stream_metric(torch.tensor(10 * math.log(2)), 10, "bpc") == pytest.approx(1.0)
    assert stream_metric(0.0, 5, "ppl") == 1.0
    with pytest.raises(ValueError):
        stream_metric(1.0, 1, "accuracy")


# -- the embedded synthetic corpus -----------------------------------------------------------------------


def documents(text: str) -> list[list[list[str]]]:
    """Split a WikiText-style file into documents (lists of token lines) at its title lines."""
    docs: list[list[list[str]]] = []
    for line in text.split("\n"):
        words = line.split()
        if len(words) == 2 + _lm_data.N_TOPIC_WORDS and words[0] == words[-1] == "=":
            docs.append([])
        if docs and words:
            docs[-1].append(words)
    return docs


def test_synthetic_lm_is_deterministic_sized_and_offline(tmp_path, spy):
    params = SyntheticLMParams(seed=5, n_train_tokens=5_000, n_eval_tokens=700, cache_dir=str(tmp_path / "a"))
    task = build_synthetic_lm(params)
    assert task.vocab_size == _lm_data.SYNTHETIC_VOCAB_SIZE and not spy  # known without loading
    assert [task.tokens(s).numel() for s in ("train", "valid", "test")] == [5_000, 700, 700]
    assert task.vocab_size == len(task.vocab) == _lm_data.SYNTHETIC_VOCAB_SIZE  # the glossary line
    assert 300 <= task.vocab_size <= 500
    # loaded as a WikiText release through datasets
    ((args, kwargs),) = spy
    assert args == ("text",) and kwargs["data_files"]["train"].endswith("wiki.train.tokens")
    same = build_synthetic_lm(params.model_copy(update={"cache_dir": str(tmp_path / "b")}))
    assert ids(same) == ids(task) and same.vocab == task.vocab
    other = build_synthetic_lm(params.model_copy(update={"seed": 6}))
    assert other.tokens("train").tolist() != task.tokens("train").tolist()
    assert not torch.equal(task.tokens("valid"), task.tokens("test"))


def test_synthetic_lm_documents_repeat_their_topic_words():
    text = _lm_data.synthetic_split_text(seed=0, split="train", n_tokens=30_000)
    docs = documents(text)
    complete = docs[:-1]  # the last document may be cut at the token budget
    assert len(complete) >= 40
    names = set(_lm_data.LEXICON["name"])
    gaps = []
    for doc in complete:
        topic = doc[0][1:-1]
        assert len(set(topic)) == _lm_data.N_TOPIC_WORDS and set(topic) <= names
        body = [w for line in doc[1:] for w in line]
        assert {w for w in body if w in names} == set(topic)  # only the title's names, all of them
        closing = [w for w in doc[-1] if w in names]
        assert closing == topic  # the last sentence names them in title order
        gaps.append(len(body))
    # the closing line is far from the title: beyond a 150-token segment on average
    assert sum(gaps) / len(gaps) > 150


def test_synthetic_lm_matches_transformer_xl_vocab(tmp_path):
    task = build_synthetic_lm(
        SyntheticLMParams(n_train_tokens=3_000, n_eval_tokens=300, cache_dir=str(tmp_path))
    )
    source = task.cache_path / "source"
    texts = [(source / f"wiki.{s}.tokens").read_text() for s in ("train", "valid", "test")]
    vocab, expected = transformer_xl_reference(*texts)
    assert task.vocab == vocab and ids(task) == expected


def test_tasks_are_registered(tmp_path):
    registry = rmtzoo.Registry(environ={}, entry_points=False)
    for name in ("wikitext103", "enwik8", "synthetic_lm"):
        spec = registry.get("tasks", name)
        params = spec.params.model_validate({**spec.test_params, "cache_dir": str(tmp_path)})
        task = spec.build(params)
        assert isinstance(task, StreamTask) and task.kind == "stream" and task.name == name
    spec = registry.get("tasks", "synthetic_lm")
    assert spec.vocab_size(spec.params()) == _lm_data.SYNTHETIC_VOCAB_SIZE
    task = spec.build(spec.params.model_validate({**spec.test_params, "cache_dir": str(tmp_path)}))
    assert task.tokens("train").numel() == spec.test_params["n_train_tokens"]
    with pytest.raises(Exception, match="extra"):
        spec.params.model_validate({"nonsense": 1})

"""Your own data: ``text_lm``, ``text_pairs`` and ``text_classification`` from small local files, with the
byte, Transformer-XL and (offline, a tokenizer the test writes) Hugging Face tokenizers."""

from __future__ import annotations

import json

import pytest
import torch

import rmtzoo
from rmtzoo.tasks import _lm_data
from rmtzoo.train import build_task, train

TEXT = "the cat sat on the mat\nthe dog sat on the log\n\na cat and a dog\n" * 12


def _registry():
    return rmtzoo.Registry(environ={}, entry_points=False)


def _task(tmp_path, kind, **params):
    registry = _registry()
    config = rmtzoo.load_config({"task": {"kind": kind, "cache_dir": str(tmp_path / "cache"), **params},
                                 "backbone": {**TINY_TXL, "vocab_size": 300}, "segment": {"length": 8}},
                                registry=registry)
    return build_task(config, registry)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


TINY_TXL = {"kind": "transformer_xl", "n_layer": 1, "n_head": 2, "d_model": 16, "d_head": 8, "d_inner": 32,
            "dropout": 0.0}


def _train(tmp_path, task, backbone, *, memory="read_write", steps=4, segment=8, extra=None):
    registry = rmtzoo.Registry(environ={})
    config = rmtzoo.load_config({
        "task": {"cache_dir": str(tmp_path / "cache"), **task}, "backbone": backbone,
        "memory": {"kind": memory, "num_tokens": 2}, "recurrence": {"kind": "rmt"},
        "segment": {"length": segment},
        "train": {"steps": steps, "batch_size": 2, "lr": 1e-2, "log_every": 2, "schedule": "constant", **(extra or {})},
        "eval": {"every": steps, "batch_size": 2, "max_batches": 2},
    }, registry=registry)
    return train(config, tmp_path / "run", registry=registry, log=lambda *_: None), config, registry


# -- text_lm -------------------------------------------------------------------------------------------
def test_text_lm_bytes_holds_out_valid_and_test_from_the_end_of_train(tmp_path):
    (tmp_path / "corpus.txt").write_text(TEXT, encoding="utf-8")
    task = _task(tmp_path, "text_lm", train=str(tmp_path / "corpus.txt"), holdout=0.1)
    stream = torch.cat([task.tokens(s) for s in ("train", "valid", "test")])
    assert stream.tolist() == list(TEXT.encode())  # every line, its line break kept
    n = len(TEXT.encode())
    assert task.tokens("valid").numel() == task.tokens("test").numel() == int(n * 0.1)
    assert task.vocab_size == 258 and task.kind == "stream" and task.metric == "ppl"
    assert task.decode(task.tokens("test")) == TEXT[-int(n * 0.1):]
    again = _task(tmp_path, "text_lm", train=str(tmp_path / "corpus.txt"), holdout=0.1)
    assert torch.equal(again.tokens("train"), task.tokens("train"))  # from the cache


def test_text_lm_transformer_xl_vocabulary_is_the_existing_vocab_code(tmp_path):
    """Word-level ids from separate split files equal Transformer-XL's Vocab (rmtzoo's tokenise) with
    <eos>, <unk>, <pad> as specials; a valid word unseen in train is <unk>."""
    files = {}
    for split, text in (("train", TEXT), ("valid", "the cat sat\nthe zebra\n"), ("test", "a dog\n")):
        files[split] = tmp_path / f"{split}.txt"
        files[split].write_text(text, encoding="utf-8")
    task = _task(tmp_path, "text_lm", tokenizer="transformer_xl", **{s: str(f) for s, f in files.items()})
    lines = {s: [f.read_text().splitlines()] for s, f in files.items()}
    vocab, ids = _lm_data.tokenise(lines, task="t", specials=("<eos>", "<unk>", "<pad>"), vocab_splits=("train",),
                                   add_eos=True)
    assert task.tokenizer.vocab == vocab
    for split in ("train", "valid", "test"):
        assert task.tokens(split).tolist() == ids[split].tolist()
    assert task.decode(task.tokens("valid")) == "the cat sat\nthe <unk>\n"
    assert task.encode("a cat\n") == [vocab.index("a"), vocab.index("cat"), 0, 0]


def test_text_lm_streaming_gives_the_same_stream_from_a_jsonl_column(tmp_path):
    rows = [{"body": line, "other": 1} for line in TEXT.splitlines()]
    path = _jsonl(tmp_path / "corpus.jsonl", rows)
    plain = _task(tmp_path, "text_lm", train=path, column="body", tokenizer="transformer_xl")
    streamed = _task(tmp_path, "text_lm", train=path, column="body", tokenizer="transformer_xl", streaming=True)
    assert plain.tokenizer.vocab == streamed.tokenizer.vocab
    for split in ("train", "valid", "test"):
        assert torch.equal(plain.tokens(split), streamed.tokens(split))
    assert plain.tokens("train").numel() > 100


def test_text_lm_trains_with_memory(tmp_path):
    (tmp_path / "corpus.txt").write_text(TEXT, encoding="utf-8")
    results, _, _ = _train(tmp_path, {"kind": "text_lm", "train": str(tmp_path / "corpus.txt")},
                           {**TINY_TXL, "vocab_size": 258})
    assert results["step"] == 4 and results["test/ppl"] > 1


# -- text_pairs ----------------------------------------------------------------------------------------
PAIRS = [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a in range(7) for b in range(7)]


def test_text_pairs_layout(tmp_path):
    """Prompt left-padded to prompt_length, answer + end-of-text right-padded; labels are the next
    token on the answer positions only."""
    path = _jsonl(tmp_path / "pairs.jsonl", PAIRS)
    task = _task(tmp_path, "text_pairs", train=path, prompt_length=6, answer_length=4)
    ids, labels = task.tensors("train")
    assert ids.shape == labels.shape == (len(task.tensors("train")[0]), 10)
    assert sum(len(task.tensors(s)[0]) for s in ("train", "valid", "test")) == len(PAIRS)
    pad, eos = 257, 256
    row = ids[0].tolist()
    prompt = [t for t in row[:6] if t != pad]
    answer = row[6 : row.index(eos)]
    pair = next(p for p in PAIRS if p["prompt"] == bytes(prompt).decode())
    assert bytes(answer).decode() == pair["answer"]
    assert row[: 6 - len(prompt)] == [pad] * (6 - len(prompt))
    expected = [-100] * 5 + answer + [eos] + [-100] * (4 - len(answer))
    assert labels[0].tolist() == expected
    assert task.answer_start == 5 and task.sequence_length == 10
    assert task.prompt_ids("1+2=") == [pad, pad, *b"1+2="]


def test_text_pairs_train_and_generate_stop_at_end_of_text(tmp_path):
    path = _jsonl(tmp_path / "pairs.jsonl", PAIRS)
    task = {"kind": "text_pairs", "train": path, "prompt_length": 8, "answer_length": 8}
    results, config, registry = _train(tmp_path, task, {**TINY_TXL, "vocab_size": 258}, steps=4)
    assert {"test/loss", "test/accuracy"} <= set(results)
    built = build_task(config, registry)
    model = rmtzoo.build_model(config, registry=registry).eval()
    out = rmtzoo.generate(model, built.prompt_ids("3+4="), 8, stop_tokens=[built.eos_id])
    assert built.eos_id not in list(out)


# -- text_classification -------------------------------------------------------------------------------
def test_text_classification_with_named_labels_trains(tmp_path):
    rows = [{"text": ("good great fine " if i % 2 else "bad awful poor ") * 3, "label": "pos" if i % 2 else "neg"}
            for i in range(40)]
    path = _jsonl(tmp_path / "docs.jsonl", rows)
    task = _task(tmp_path, "text_classification", train=path, labels=["neg", "pos"], max_segments=3)
    ids, mask, labels = task.tensors("train", 8)
    assert ids.shape == (len(labels), 24) and task.num_labels == 2 and task.metric == "f1"
    assert sum(len(task.tensors(s, 8)[2]) for s in ("train", "valid", "test")) == 40
    results, _, _ = _train(tmp_path, {"kind": "text_classification", "train": path, "labels": ["neg", "pos"]},
                           {**TINY_TXL, "vocab_size": 257}, memory="shared")
    assert "test/f1" in results and "test/accuracy" in results


# -- errors --------------------------------------------------------------------------------------------
def test_bad_sources_are_one_line_errors(tmp_path):
    path = _jsonl(tmp_path / "rows.jsonl", [{"text": "a", "label": "7"}] * 10)
    with pytest.raises(rmtzoo.RmtzooError, match=r"no column 'body'; the data has text, label"):
        _task(tmp_path, "text_lm", train=path, column="body").tokens("train")
    with pytest.raises(rmtzoo.RmtzooError, match=r"train row 0 has label '7'; expected an integer in 0..1"):
        _task(tmp_path, "text_classification", train=path).tensors("train", 4)
    with pytest.raises(rmtzoo.RmtzooError, match=r"'.*missing.txt' is not a file"):
        _task(tmp_path, "text_lm", train=str(tmp_path / "missing.txt")).tokens("train")
    with pytest.raises(rmtzoo.ConfigError, match=r"give train .* or hub_name, exactly one"):
        _task(tmp_path, "text_lm", train=path, hub_name="someone/corpus")
    with pytest.raises(rmtzoo.RmtzooError, match=r"cannot load Hugging Face tokenizer .*no-such-tokenizer"):
        _task(tmp_path, "text_lm", train=path, tokenizer=str(tmp_path / "no-such-tokenizer")).tokens("train")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\n{"text": \n', encoding="utf-8")
    for streaming in (False, True):
        with pytest.raises(rmtzoo.RmtzooError, match=r"^text_lm: datasets could not read"):
            _task(tmp_path, "text_lm", train=str(broken), streaming=streaming).tokens("train")
    assert not list((tmp_path / "cache" / "text").glob(".*"))  # no temporary folder left behind


# -- a Hugging Face tokenizer and hf_gpt2, offline -----------------------------------------------------
def _save_word_tokenizer(folder, text):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    words = sorted(set(text.split()))
    vocab = {"<|endoftext|>": 0, "<unk>": 1, **{w: i + 2 for i, w in enumerate(words)}}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", unk_token="<unk>").save_pretrained(folder)
    return len(vocab)


def test_text_file_with_hf_tokenizer_trains_hf_gpt2_with_read_write_memory(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    rmtzoo_hf = pytest.importorskip("rmtzoo_hf", reason="pip install -e plugins/rmtzoo-hf")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    (tmp_path / "corpus.txt").write_text(TEXT, encoding="utf-8")
    n_vocab = _save_word_tokenizer(tmp_path / "tokenizer", TEXT)
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(str(tmp_path / "tokenizer"))
    task_block = {"kind": "text_lm", "train": str(tmp_path / "corpus.txt"), "tokenizer": str(tmp_path / "tokenizer")}
    task = _task(tmp_path, "text_lm", **{k: v for k, v in task_block.items() if k != "kind"})
    expected = [i for line in TEXT.splitlines() for i in reference(line + "\n", add_special_tokens=False).input_ids]
    assert torch.cat([task.tokens(s) for s in ("train", "valid", "test")]).tolist() == expected
    assert task.vocab_size == n_vocab == len(reference)

    params = rmtzoo_hf.tiny_params("gpt2")
    params["config_overrides"]["vocab_size"] = n_vocab
    results, config, registry = _train(tmp_path, task_block, {"kind": "hf_gpt2", **params})
    assert results["step"] == 4 and torch.isfinite(torch.tensor(results["test/ppl"]))
    assert config.memory.kind == "read_write" and config.backbone.kind == "hf_gpt2"
    assert (tmp_path / "run" / "results.json").exists()


# -- the example, through the command ------------------------------------------------------------------
def test_own_text_example_trains_and_generates_text(tmp_path, capsys, monkeypatch):
    from pathlib import Path

    from rmtzoo.cli import main

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)  # the example's paths are relative to the repository root
    monkeypatch.setenv("RMTZOO_CACHE", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    shrink = ["train.steps=4", "eval.every=4", "eval.max_batches=1", "train.log_every=2"]
    assert main(["--no-entry-points", "train", "examples/own_text.toml", *shrink, "--run-dir", str(run_dir)]) == 0
    assert json.loads((run_dir / "results.json").read_text())["step"] == 4
    capsys.readouterr()
    argv = ["--no-entry-points", "generate", str(run_dir), "--prompt", "The grain ship", "--max-tokens", "30",
            "--temperature", "0.8", "--top-k", "5", "--seed", "1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    registry = rmtzoo.Registry(environ={}, entry_points=False)
    from rmtzoo.train import find_checkpoint, load_checkpoint, prepare_model

    folder = find_checkpoint(run_dir, which="best")
    config = rmtzoo.load_config(folder / "config.json", registry=registry)
    task = build_task(config, registry)
    model = prepare_model(config, task, registry)
    load_checkpoint(folder, model)
    tokens = list(rmtzoo.generate(model, task.encode("The grain ship"), 30, temperature=0.8, top_k=5,
                                  generator=torch.Generator().manual_seed(1)))
    assert printed == task.decode(tokens) + "\n"  # streamed text, pieces joined as the tokenizer decodes them


def test_text_pairs_with_the_word_vocabulary_end_answers_in_one_eos(tmp_path):
    rows = [{"q": "name the cat", "a": "tom"}, {"q": "name the dog", "a": "rex the dog"}] * 10
    path = _jsonl(tmp_path / "pairs.jsonl", rows)
    task = _task(tmp_path, "text_pairs", train=path, prompt_column="q", answer_column="a", tokenizer="transformer_xl",
                 prompt_length=5, answer_length=3)
    vocab = task.tokenizer.vocab
    assert vocab[:3] == ["<eos>", "<unk>", "<pad>"]
    ids, labels = task.tensors("train")
    words = {tuple(vocab[i] for i in row) for row in ids.tolist()}
    assert words == {("<pad>", "name", "the", "cat", "<eos>", "tom", "<eos>", "<pad>"),
                     ("<pad>", "name", "the", "dog", "<eos>", "rex", "the", "<eos>")}  # answer cut to 2 + <eos>
    assert task.decode(task.prompt_ids("name the cat")) == "name the cat\n"


def test_a_dataset_folder_by_name_uses_its_validation_split(tmp_path):
    """hub_name goes through datasets.load_dataset(name): a local dataset folder works offline, its
    train / validation files become train / valid, and the missing test is held out from train."""
    folder = tmp_path / "my_corpus"
    folder.mkdir()
    _jsonl(folder / "train.jsonl", [{"text": line} for line in TEXT.splitlines()])
    _jsonl(folder / "validation.jsonl", [{"text": "a cat sat"}])
    task = _task(tmp_path, "text_lm", hub_name=str(folder), holdout=0.1)
    assert task.decode(task.tokens("valid")) == "a cat sat\n"
    n = len(TEXT.encode())
    assert task.tokens("test").numel() == int(n * 0.1)
    assert task.decode(torch.cat([task.tokens("train"), task.tokens("test")])) == TEXT

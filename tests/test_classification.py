"""Sequence classification (PAPER.md 1.8, 4): right alignment, padding masks, the pooling head, F1, the
hyperpartisan XML layout and splits, and ``rmtzoo train`` / ``eval`` / resume on the embedded corpus."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import KillAt
from safetensors.torch import load_file

import rmtzoo
from rmtzoo.cli import main
from rmtzoo.heads import PoolingHead, build_classifier
from rmtzoo.model import StepOutput
from rmtzoo.tasks import hyperpartisan as hp
from rmtzoo.tasks.classification import classification_metrics, right_align
from rmtzoo.train import Trainer, find_checkpoint, train
from rmtzoo.train._checkpoint import read_trainer_state

F64 = torch.float64
TINY = {"kind": "transformer_xl", "vocab_size": 13, "n_layer": 2, "n_head": 2, "d_model": 16, "d_head": 8,
        "d_inner": 32, "dropout": 0.0}


def registry() -> rmtzoo.Registry:
    return rmtzoo.Registry(environ={}, entry_points=False)


def tiny_model(memory="read_write", recurrence="rmt", *, backbone="transformer_xl", segment=4, **rec):
    config = {"backbone": {**TINY, "kind": backbone}, "memory": {"kind": memory, **({"num_tokens": 2} if memory != "none" else {})},
              "recurrence": {"kind": recurrence, **rec}, "attention": {"kind": "eager"}, "segment": {"length": segment}}
    model = rmtzoo.build_model(config, registry=registry())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model.classifier = build_classifier(model, 2)
    return model.to(F64).eval()


# -- right alignment -------------------------------------------------------------------------------
def test_right_align_is_exact():
    ids, mask = right_align([[1, 2, 3], list(range(1, 13)), []], segment_length=4, max_segments=2, pad_id=0)
    assert ids.tolist() == [
        [0, 0, 0, 0, 0, 1, 2, 3],  # short: left padded, its first segment is all padding
        [1, 2, 3, 4, 5, 6, 7, 8],  # long: truncated, keeping the beginning
        [0] * 8,
    ]
    assert mask.tolist() == [[False] * 5 + [True] * 3, [True] * 8, [False] * 8]


def test_leading_empty_segments_are_dropped_per_sample():
    """A sample whose first segments are all padding gives exactly what its real segments give alone,
    even batched with a sample that fills every segment (so nothing is skipped for the batch)."""
    model = tiny_model("read_write", "rmt")
    gen = torch.Generator().manual_seed(0)
    long, short = torch.randint(1, 13, (1, 12), generator=gen), torch.randint(1, 13, (1, 4), generator=gen)
    ids = torch.cat([long, torch.cat([torch.zeros(1, 8, dtype=torch.long), short], 1)])  # [2, 12]
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, :8] = False
    batched = model.classify(ids, mask)
    torch.testing.assert_close(batched[1], model.classify(short)[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(batched[0], model.classify(long)[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("recurrence, extra", [("rmt", {}), ("rmt_xl", {"cache_len": 3})])
def test_memory_is_unchanged_by_an_all_padding_segment(recurrence, extra):
    model = tiny_model("read_write", recurrence, **extra)
    state = model.initial_state(2)
    ids = torch.randint(1, 13, (2, 4), generator=torch.Generator().manual_seed(0))
    _, state = model.step(ids, state)  # a real first segment, so the memory is not the initial one
    pad = torch.tensor([[True] * 4, [False] * 4])
    _, after = model.step(ids, state, padding_mask=pad)
    assert torch.equal(after.memory[1], state.memory[1])
    assert not torch.allclose(after.memory[0], state.memory[0])
    if recurrence == "rmt_xl":  # the padded segment's cache entries are never attended to
        assert after.cache_valid[0].all() and not after.cache_valid[1, -(2 + 4 + 2):].any()


# -- padding masks ---------------------------------------------------------------------------------
@pytest.mark.parametrize("memory, recurrence, extra", [
    ("read_write", "rmt", {}), ("read_write", "rmt_xl", {"cache_len": 3}), ("none", "xl", {"cache_len": 5})])
def test_a_padded_sample_is_independent_of_its_batch_and_its_pad_ids(memory, recurrence, extra):
    model = tiny_model(memory, recurrence, **extra)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 13, (3, 12), generator=gen)
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[1, :6] = False  # half of its first segment and all of the second... (segment 4: 4 + 2 pads)
    mask[2, :9] = False
    batched = model.classify(ids, mask)
    for row in (1, 2):
        alone = model.classify(ids[row : row + 1], mask[row : row + 1])
        torch.testing.assert_close(batched[row], alone[0], rtol=1e-5, atol=1e-5)
        other_pads = ids[row : row + 1].masked_fill(~mask[row : row + 1], 7)
        torch.testing.assert_close(model.classify(other_pads, mask[row : row + 1])[0], alone[0], rtol=0, atol=1e-12)
    assert torch.isfinite(batched).all()


@pytest.mark.parametrize("backbone, memory, recurrence, extra", [
    ("transformer_xl", "none", "xl", {"cache_len": 4}), ("transformer_xl", "none", "none", {}),
    ("transformer_xl_encoder", "none", "none", {})])
def test_a_padded_sample_gives_the_unpadded_samples_logits(backbone, memory, recurrence, extra):
    """Without memory before the segment, left padding moves no real position relative to another, so
    a padded sample equals the same tokens with a shorter first segment and no padding at all."""
    model = tiny_model(memory, recurrence, backbone=backbone, **extra)
    real = torch.randint(1, 13, (1, 7), generator=torch.Generator().manual_seed(2))
    padded = torch.cat([torch.full((1, 5), 3), real], 1)  # [1, 12]: segments [pad*4], [pad, 3 real], [4 real]
    mask = torch.cat([torch.zeros(1, 5, dtype=torch.bool), torch.ones(1, 7, dtype=torch.bool)], 1)
    torch.testing.assert_close(model.classify(padded, mask), model.classify(real), rtol=1e-5, atol=1e-5)


def test_classification_needs_a_backbone_with_per_sample_masks(tmp_path):
    model = tiny_model()
    model.capabilities = rmtzoo.BackboneCapabilities(causal=True, accepts_cache=True)
    with pytest.raises(rmtzoo.InputError, match="per_sample_mask"):
        model.classify(torch.ones(1, 4, dtype=torch.long), torch.ones(1, 4, dtype=torch.bool))


# -- the head and the metric -----------------------------------------------------------------------
def _identity_head(causal: bool) -> PoolingHead:
    head = PoolingHead(3, 3, causal=causal)
    with torch.no_grad():
        head.proj.weight.copy_(torch.eye(3))
        head.proj.bias.zero_()
    return head


def test_pooling_head_reads_the_documented_positions():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)  # position t of row b: 12b + 3t
    out = StepOutput(None, hidden, None)
    mask = torch.tensor([[False, True, True, False], [True, True, True, True]])
    causal, bidirectional = _identity_head(True), _identity_head(False)
    assert causal(out, mask)[:, 0].tolist() == [6.0, 21.0]  # last real token: positions 2 and 3
    assert bidirectional(out, mask)[:, 0].tolist() == [3.0, 12.0]  # first real token: positions 1 and 0
    assert causal(out, None)[:, 0].tolist() == [9.0, 21.0] and bidirectional(out, None)[:, 0].tolist() == [0.0, 12.0]
    pooled = torch.full((2, 3), -1.0)  # the backbone's own summary wins
    assert causal(StepOutput(None, hidden, None, pooled=pooled), mask).tolist() == pooled.tolist()


def test_f1_of_the_positive_class():
    m = classification_metrics(torch.tensor([1, 1, 0, 0, 1]), torch.tensor([1, 0, 0, 1, 1]))
    assert m == pytest.approx({"accuracy": 0.6, "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})
    none = classification_metrics(torch.tensor([0, 0]), torch.tensor([0, 0]))
    assert none == {"accuracy": 1.0, "precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_backbone_output_keeps_pooled_and_unpacks_as_before():
    out = rmtzoo.BackboneOutput(torch.ones(1, 2, 3), (), pooled=torch.zeros(1, 3))
    hidden, layer_inputs = out
    assert hidden.shape == (1, 2, 3) and layer_inputs == () and out.pooled.shape == (1, 3)
    assert rmtzoo.BackboneOutput(hidden).pooled is None


# -- the released layout and splits ----------------------------------------------------------------
ARTICLES = """<?xml version="1.0" encoding="UTF-8"?>
<articles>
<article id="0000003" published-at="2017-09-10" title="Kucinich">
<p>Kucinich &amp; the <a href="https://x.org" type="external">deep state</a>!</p>
<p>Second   paragraph.</p>
</article>
<article id="0000010" published-at="2018-01-01" title="Budget">
<p>The council met.</p>
</article>
</articles>
"""
TRUTH = """<?xml version="1.0" encoding="UTF-8"?>
<articles>
<article id="0000010" hyperpartisan="false" labeled-by="article" url="https://b.org"/>
<article id="0000003" hyperpartisan="true" labeled-by="article" url="https://a.org"/>
</articles>
"""


def test_reads_the_released_by_article_xml(tmp_path):
    (tmp_path / hp.ARTICLES_XML).write_text(ARTICLES)
    (tmp_path / hp.GROUND_TRUTH_XML).write_text(TRUTH)
    docs = hp.read_byarticle_xml(tmp_path)
    assert [(d.id, d.text, d.label) for d in docs] == [
        (3, "Kucinich & the deep state! Second paragraph.", 1),
        (10, "The council met.", 0),
    ]
    assert hp.strip_html("<p>Kucinich &amp; the <a href='x'>deep state</a>!</p>") == "Kucinich & the deep state!"


def test_longformer_sized_split_of_645_articles(tmp_path):
    docs = hp.read_byarticle_xml(hp.write_embedded(tmp_path, n_articles=645, seed=3))
    assert len(docs) == 645 and 0.25 < sum(d.label for d in docs) / 645 < 0.5
    splits = hp.split_documents(docs, split_file=None, seed=0)
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [516, 64, 65]
    ids = [{d.id for d in splits[s]} for s in ("train", "valid", "test")]
    assert set.union(*ids) == set(range(645)) and sum(map(len, ids)) == 645
    assert hp.split_documents(docs, split_file=None, seed=0) == splits
    assert hp.split_documents(docs, split_file=None, seed=1)["test"] != splits["test"]
    split_file = tmp_path / "hp-splits.json"
    split_file.write_text(json.dumps({"train": [5, 1], "dev": [2], "test": [644, 0]}))
    chosen = hp.split_documents(docs, split_file=str(split_file), seed=0)
    assert {k: [d.id for d in v] for k, v in chosen.items()} == {"train": [5, 1], "valid": [2], "test": [644, 0]}


def test_bad_params_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed (and no slow import)
    spec = registry().get("tasks", "hyperpartisan")
    with pytest.raises(rmtzoo.ConfigError, match="not both"):
        rmtzoo.load_config({"backbone": TINY, "segment": {"length": 4},
                            "task": {"kind": "hyperpartisan", "source": "embedded", "data_dir": "x"}}, registry=registry())
    cases = [
        ({"data_dir": str(tmp_path / "missing")}, "not found"),
        ({"source": "embedded", "split_file": str(tmp_path / "none.json")}, "split_file"),
        ({"source": "embedded", "tokenizer": "bert-base-cased"}, "task.tokenizer: 'bert-base-cased' needs the transformers"),
    ]
    for params, message in cases:
        task = spec.build(spec.params(**params, cache_dir=str(tmp_path / "cache")))
        with pytest.raises(rmtzoo.RmtzooError, match=message) as info:
            task.tensors("train", 8)
        assert "\n" not in str(info.value)


def test_the_hub_path_fails_offline_in_one_line(tmp_path, monkeypatch, capsys):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'SemEvalWorkshop/hyperpartisan_news_detection' on the Hub\n(offline)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    config = tmp_path / "hub.json"
    config.write_text(json.dumps({**tiny_config(tmp_path), "task": {"kind": "hyperpartisan", "cache_dir": str(tmp_path)}}))
    assert main(["--no-entry-points", "train", str(config), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "task.source" in err and "SemEvalWorkshop/hyperpartisan_news_detection" in err


# -- training end to end ---------------------------------------------------------------------------
def tiny_config(tmp_path, **train) -> dict:
    return {
        "seed": 0,
        "task": {"kind": "hyperpartisan", "source": "embedded", "embedded_articles": 40, "max_segments": 2,
                 "cache_dir": str(tmp_path / "cache")},
        "backbone": {**TINY, "vocab_size": 257, "dropout": 0.1},
        "memory": {"kind": "read_write", "num_tokens": 2},
        "recurrence": {"kind": "rmt"},
        "segment": {"length": 16},
        "train": {"lr": 0.01, "batch_size": 8, "steps": 6, "log_every": 1, "checkpoint_every": 2,
                  "schedule": "constant", **train},
        "eval": {"every": 3, "batch_size": 8},
    }


def test_rmtzoo_train_and_eval_on_the_embedded_corpus(tmp_path, capsys):
    config = tmp_path / "hp.json"
    config.write_text(json.dumps(tiny_config(tmp_path)))
    run = tmp_path / "run"
    assert main(["--no-entry-points", "train", str(config), "--run-dir", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())
    assert {"test/f1", "test/accuracy", "test/loss"} <= results.keys() and 0 <= results["test/f1"] <= 1
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "valid/f1" in r] == [3, 6]
    assert any(k.startswith("classifier.") for k in load_file(str(find_checkpoint(run) / "model.safetensors")))
    capsys.readouterr()
    assert main(["--no-entry-points", "eval", str(run), "--split", "valid"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["samples"] == 4 and {"f1", "accuracy", "loss"} <= metrics.keys()


def test_a_resumed_classification_run_ends_with_the_same_weights(tmp_path):
    config = rmtzoo.load_config(tiny_config(tmp_path), registry=registry())
    quiet = lambda *a, **k: None  # noqa: E731
    full = train(config, tmp_path / "full", registry=registry(), log=quiet)
    killer = registry()
    killer.add_plugin(KillAt(5), "killer")
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, tmp_path / "killed", registry=killer, log=quiet).fit()
    assert find_checkpoint(tmp_path / "killed").name == "step-00000004"
    resumed = train(config, tmp_path / "killed", registry=registry(), log=quiet)
    a = load_file(str(find_checkpoint(tmp_path / "full") / "model.safetensors"))
    b = load_file(str(find_checkpoint(tmp_path / "killed") / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed == full
    best = json.loads((tmp_path / "full" / "checkpoints" / "best.json").read_text())
    state = read_trainer_state(Path(tmp_path / "full" / "checkpoints" / best["path"]))
    assert state["best"] <= 0  # best is chosen on validation F1 (stored negated: lower is better)


def test_a_backbone_without_per_sample_masks_is_rejected_at_validation(tmp_path, capsys):
    """hyperpartisan declares needs=("per_sample_mask",): the config is rejected before anything runs,
    in one line naming the task, the backbone, the capability and the backbones that have it."""
    from conftest import PLUGINS_DIR

    from rmtzoo.cli import main

    reg = rmtzoo.Registry(environ={}, entry_points=False, plugins_dirs=[PLUGINS_DIR])
    data = {**tiny_config(tmp_path), "backbone": {"kind": "toy_mixer", "vocab_size": 257},
            "memory": {"kind": "none"}, "recurrence": {"kind": "none"}}
    with pytest.raises(rmtzoo.ConfigError, match="task 'hyperpartisan'.*per_sample_mask.*'toy_mixer'.*transformer_xl") as info:
        rmtzoo.load_config(data, registry=reg)
    assert "\n" not in str(info.value)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    assert main(["train", str(path), "--plugins-dir", str(PLUGINS_DIR), "--no-entry-points",
                 "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "per_sample_mask" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()

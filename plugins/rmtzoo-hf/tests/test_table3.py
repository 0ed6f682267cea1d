"""The ``table3`` benchmark (Table 3, Hyperpartisan): registered by the plugin, the paper grid's 16 cells
with the repo scripts' settings, each matched to its T3 row of the paper's numbers (percent, scaled to the
trainer's fractional F1), the tiny presets' models covering the byte vocabulary, and a smoke run through the
runner and the report."""

from __future__ import annotations

import json

import pytest
import rmtzoo
import torch
from rmtzoo.bench._report import load_reference, packaged_reference, paper_value, scaled_paper_value
from rmtzoo.cli import main

pytest.importorskip("transformers")
pytest.importorskip("rmtzoo_hf", reason="pip install -e plugins/rmtzoo-hf")

REFERENCE = packaged_reference()
PAPER_F1 = {  # docs/paper-settings.md 4, Table 3
    "RMT BERT-base-cased": (91.60, 94.12, 93.06, 94.34),
    "RMT RoBERTa-base": (94.87, 97.20, 96.72, 98.11),
    "RMT DeBERTa-v3-base": (94.17, 96.78, 94.80, 94.80),
    "RMT T5-base": (94.99, 95.32, 96.12, 97.20),
}
HUB = {"RMT BERT-base-cased": ("hf_bert", "bert-base-cased"), "RMT RoBERTa-base": ("hf_roberta", "roberta-base"),
       "RMT DeBERTa-v3-base": ("hf_deberta_v2", "microsoft/deberta-v3-base"), "RMT T5-base": ("hf_t5", "t5-base")}


@pytest.fixture(scope="module")
def registry():
    return rmtzoo.Registry(environ={})


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RMTZOO_CACHE", str(tmp_path_factory.getbasetemp() / "table3-cache"))


def bench(registry):
    spec = registry.get("benchmarks", "table3")
    return spec.build(spec.params())


def test_registered_by_the_plugin_with_three_presets(registry):
    b = bench(registry)
    assert (b.artefact, b.metric, b.figure, b.paper_scale) == ("T3", "test/f1", "table", 100.0)
    assert b.presets == ("paper", "small", "smoke")
    assert all(len(b.cells(p)) == 16 for p in b.presets)


def test_paper_cells_have_the_repo_scripts_settings_and_validate(registry):
    from rmtzoo.bench._runner import expand

    jobs = expand(registry, ["table3"], preset="paper", results_dir="unused")  # validates all 16, offline
    assert sorted((j.labels["model"], j.labels["segments"]) for j in jobs) == \
        sorted((m, n) for m in PAPER_F1 for n in (1, 2, 3, 4))
    for job in jobs:
        c, (kind, hub) = job.config, HUB[job.labels["model"]]
        assert c["backbone"]["kind"] == kind and c["backbone"]["model"] == hub
        assert not c["backbone"]["random_init"]
        assert c["task"]["kind"] == "hyperpartisan" and c["task"]["tokenizer"] == hub
        assert c["task"]["source"] == "SemEvalWorkshop/hyperpartisan_news_detection"
        assert c["task"]["max_segments"] == job.labels["segments"]
        assert c["memory"] == {"kind": "shared", "num_tokens": 10, "init": "random"}
        assert c["recurrence"] == {"kind": "rmt", "bptt_depth": None}  # full BPTT
        # a 512-token segment input: [CLS] mem chunk [SEP] for the encoders, mem chunk (+ the repo's </s>) for T5
        specials = 1 if kind == "hf_t5" else 2
        assert c["segment"]["length"] + 10 + specials == 512
        t = c["train"]
        assert (t["optimizer"], t["weight_decay"], t["schedule"], t["warmup_steps"]) == ("adamw", 1e-3, "linear", 100)
        assert (t["batch_size"], t["steps"], t["grad_clip"]) == (16, 1_000, 5.0)
        assert t["lr"] == (1e-4 if kind == "hf_t5" else 1e-5)


def test_every_paper_cell_finds_its_own_t3_row(registry):
    rows = load_reference(REFERENCE)
    if not rows:
        pytest.skip("the paper's numbers come with rmtzoo-benchmarks (pip install -e benchmarks)")
    b = bench(registry)
    for cell in b.cells("paper"):
        model, n = cell.labels["model"], cell.labels["segments"]
        raw = paper_value(rows, b.artefact, dict(cell.labels), b.metric, b.match)
        assert raw["mean"] == PAPER_F1[model][n - 1]
        assert scaled_paper_value(b, rows, dict(cell.labels))["mean"] == pytest.approx(PAPER_F1[model][n - 1] / 100)
    # the comparison models have rows with no segment count: no cell matches them
    assert paper_value(rows, "T3", {"model": "Longformer"}, "test/f1", ("segments",))["mean"] == 94.80
    assert "Longformer [4096] 94.80" in b.notes["paper"]


@pytest.mark.parametrize("preset", ["small", "smoke"])
def test_tiny_models_cover_the_byte_vocabulary_and_fit_their_positions(registry, preset):
    from rmtzoo.train import build_task, prepare_model

    for model_label in PAPER_F1:
        (cell,) = [c for c in bench(registry).cells(preset) if c.labels == {"model": model_label, "segments": 2}]
        config = rmtzoo.load_config({**cell.config, "seed": 0}, registry=registry)
        assert config.backbone.params.random_init and config.task.params.tokenizer == "bytes"
        assert config.task.params.source == "embedded"
        task = build_task(config, registry)
        model = prepare_model(config, task, registry)  # rejects a vocabulary under 257
        assert model.vocab_size >= 257
        if model_label != "RMT T5-base":  # [CLS]/[SEP] are not byte ids or padding
            assert {config.backbone.params.cls_token_id, config.backbone.params.sep_token_id} == {257, 258}
        ids = torch.arange(2 * config.segment.length) % 257  # [2 * length]: bytes and the padding id
        with torch.no_grad():
            out = model.forward_sequence(ids.expand(2, -1))  # [2, 2 * length]: the longest position fits
        assert out.logits.shape[:2] == (2, 2 * config.segment.length)


def test_smoke_run_and_report(registry, tmp_path, capsys):
    if REFERENCE is None:
        pytest.skip("the paper's numbers come with rmtzoo-benchmarks (pip install -e benchmarks)")
    results, reports = tmp_path / "results", tmp_path / "reports"
    assert main(["bench", "run", "table3", "--preset", "smoke", "--filter", "segments=2",
                 "--results", str(results)]) == 0
    assert main(["bench", "report", "table3", "--preset", "smoke", "--results", str(results),
                 "--reports", str(reports), "--reference", str(REFERENCE)]) == 0
    capsys.readouterr()
    records = [json.loads(p.read_text()) for p in (results / "table3" / "smoke").glob("*.json")]
    assert sorted(r["labels"]["model"] for r in records) == sorted(PAPER_F1)
    f1 = {r["labels"]["model"]: r["metrics"]["test/f1"] for r in records}
    assert all(0.0 <= v <= 1.0 for v in f1.values())
    text = (reports / "smoke" / "table3.md").read_text()
    # smoke runs an embedded stand-in corpus, not the paper's Hyperpartisan: the paper's number for orientation
    assert "- metric: test/f1, higher is better" in text and "| segments | regenerated | paper (orientation) |" in text
    for model, values in PAPER_F1.items():  # the paper's percent, as a fraction, and no difference
        line = next(x for x in text.splitlines() if x.startswith(f"| {model} | 2 |"))
        assert line.endswith(f"| {f1[model]:.3f} (1) | {values[1] / 100:.3f} |")
    assert sum("(no result)" in x for x in text.splitlines()) == 12  # the other segment counts, not run
    assert "RMT RoBERTa-base: 4 segments are at least as good as 1: not measured" in text
    assert "paper: holds (0.9811, 0.9487)" in text  # F1 as a fraction on both sides
    assert "ERNIE-Doc-Large [640] 96.60" in text and "as a table: no figure" in text

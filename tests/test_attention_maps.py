"""Attention maps (rmtzoo.analysis) and the Figure 6 / 9 benchmark specs that draw them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import rmtzoo
from rmtzoo.analysis import attention_maps, attention_probabilities, recording_attention
from rmtzoo.attention import sdpa_attention
from rmtzoo.placements import layout_mask

TINY = {"kind": "transformer_xl", "vocab_size": 12, "n_layer": 2, "n_head": 2, "d_model": 16, "d_head": 8,
        "d_inner": 32, "dropout": 0.0}
MODELS = {
    "RMT": {"memory": {"kind": "read_write", "num_tokens": 3}, "recurrence": {"kind": "rmt"}},
    "RMT reads cache": {"memory": {"kind": "read_write", "num_tokens": 2},
                        "recurrence": {"kind": "rmt_xl", "cache_len": 4, "memory_reads_cache": True}},
    "Tr-XL": {"memory": {"kind": "none"}, "recurrence": {"kind": "xl", "cache_len": 4}},
    "Baseline": {"memory": {"kind": "none"}, "recurrence": {"kind": "none"}},
}


def build(model: str, attention: str = "sdpa", seed: int = 0):
    config = {"seed": seed, "backbone": TINY, "segment": {"length": 4}, "attention": {"kind": attention},
              **MODELS[model]}
    return rmtzoo.build_model(config)


def ids(batch=2, n=10, seed=0):
    return torch.randint(0, 12, (batch, n), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("model_name", list(MODELS))
def test_recording_leaves_outputs_unchanged_and_restores_the_kernels(model_name):
    model = build(model_name).eval()
    x = ids()
    kernels = [layer.attention for layer in model.backbone.layers]
    with torch.no_grad():
        plain = model.forward_sequence(x).logits
        with recording_attention(model) as calls:
            recorded = model.forward_sequence(x).logits
    assert len(calls) == 3 * 2  # 3 segments (4+4+2 tokens) x 2 layers
    torch.testing.assert_close(recorded, plain, rtol=0, atol=1e-6)
    assert [layer.attention for layer in model.backbone.layers] == kernels
    maps = attention_maps(model, x)
    assert [m.probs.shape[:3] for m in maps] == [(2, 2, 2)] * 3
    assert not model.training


def test_kernels_are_restored_after_an_error():
    model = build("RMT")
    kernels = [layer.attention for layer in model.backbone.layers]
    with pytest.raises(rmtzoo.InputError), recording_attention(model):
        model.forward_sequence(torch.full((1, 4), 99))
    assert [layer.attention for layer in model.backbone.layers] == kernels


@pytest.mark.parametrize("model_name", list(MODELS))
def test_probabilities_sum_to_one_over_allowed_keys_and_are_zero_elsewhere(model_name):
    model = build(model_name)
    model.train()
    maps = attention_maps(model, ids(n=11))
    assert model.training  # mode restored
    for m in maps:
        assert m.mask is not None
        allowed = m.mask.expand_as(m.probs)
        assert torch.all(m.probs[~allowed] == 0.0)
        torch.testing.assert_close(m.probs.sum(-1), torch.ones(m.probs.shape[:-1]), rtol=0, atol=1e-5)
        assert torch.all(m.probs[allowed] > 0)


def test_probabilities_reproduce_the_kernel_output():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=g, dtype=torch.float64) for _ in range(3))
    k, v = torch.cat([k, k[:, :, :2]], 2), torch.cat([v, v[:, :, :2]], 2)  # 7 keys: a cache of 2
    bias = torch.randn(2, 3, 5, 7, generator=g, dtype=torch.float64)
    mask = layout_mask(1, 3, 1, 2, causal=True, memory_reads_cache=False)
    probs = attention_probabilities(q, k, bias=bias, mask=mask, scale=0.3)
    expected = sdpa_attention(q, k, v, bias=bias, mask=mask, scale=0.3)
    torch.testing.assert_close(torch.matmul(probs.double(), v), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model_name", ["RMT", "RMT reads cache", "Tr-XL"])
def test_layout_labels_match_the_paper_mask(model_name):
    """With every score zeroed a query spreads its attention evenly over exactly the keys PAPER.md 1.2
    lets it see, so each labelled block's mass tells the mask apart block by block."""
    model = build(model_name)
    with torch.no_grad():
        for layer in model.backbone.layers:
            layer.qkv_net.weight[: 2 * 16].zero_()  # q = k = 0
            layer.r_net.weight.zero_()  # no position term
    maps = attention_maps(model, ids(batch=1, n=8))
    m = maps[1]  # the second segment: cache (if any) is full
    t, mem = 4, model.placement.num_memory
    cache = {"RMT": 0, "RMT reads cache": 4, "Tr-XL": 4}[model_name]
    reads_cache = model_name == "RMT reads cache"
    assert m.keys.get("cache", (0, 0))[1] == cache
    seg = m.block("segment", "segment")[0, 0, 0]  # [T, T]
    assert torch.all(seg.triu(1) == 0)
    for i in range(t):
        assert seg[i, i].item() == pytest.approx(1 / (cache + mem + i + 1))
    if mem:
        read_rows = 1 / (mem + (cache if reads_cache else 0))
        assert torch.allclose(m.block("read memory", "read memory"), torch.tensor(read_rows))
        assert torch.all(m.block("read memory", "segment") == 0)
        assert torch.all(m.block("read memory", "write memory") == 0)
        write_rows = 1 / (mem + t + mem + (cache if reads_cache else 0))
        assert torch.allclose(m.block("write memory", "segment"), torch.tensor(write_rows))
        assert torch.all(m.block("segment", "write memory") == 0)
    with pytest.raises(rmtzoo.InputError, match="no key block 'cache'"):
        maps[0].block("segment", "cache")


# -- the Figure 6 / 9 specs ----------------------------------------------------------------------------
def test_bands_and_measures():
    attention_maps_spec = pytest.importorskip("rmtzoo_benchmarks.attention_maps", reason="pip install -e benchmarks")
    band, measure, classify = attention_maps_spec.band, attention_maps_spec.measure, attention_maps_spec.classify
    assert torch.equal(band(3, 3), torch.eye(3, dtype=torch.bool))
    assert torch.equal(band(3, 3, anti=True), torch.eye(3, dtype=torch.bool).flip(1))
    assert band(2, 4).tolist() == [[True, True, False, False], [False, False, True, True]]  # 2 keys per row
    assert band(4, 2).tolist() == [[True, False], [True, False], [False, True], [False, True]]
    # a block holding half of each row's attention, all of it on the anti-diagonal, in layer 1 head 0 only
    block = torch.zeros(2, 3, 2, 4, 4)  # [L, B, H, Q, K]
    block[1, :, 0] = 0.5 * torch.eye(4).flip(1)
    block[0] = 0.25 / 4
    m = measure(block)
    assert m["share"][1, 0] == pytest.approx(0.5) and m["share"][0, 0] == pytest.approx(0.25)
    assert m["anti_diagonal"][1, 0] == pytest.approx(1.0) and m["diagonal"][1, 0] == pytest.approx(0.0)
    assert m["diagonal"][0, 1] == pytest.approx(0.25) and m["chance"] == pytest.approx(0.25)
    assert m["diagonal"][1, 1] == 0  # rows with no mass on the block count for nothing
    assert [classify(0.9, 0.1), classify(0.1, 0.6), classify(0.5, 0.3), classify(0.3, 0.3)] == [
        "diagonal", "anti-diagonal", "neither", "neither"]


def test_fig6_and_fig9_grids_match_the_paper(registry):
    pytest.importorskip("rmtzoo_benchmarks", reason="pip install -e benchmarks")
    fig6 = registry.get("benchmarks", "fig6").build(rmtzoo.NoParams())
    fig9 = registry.get("benchmarks", "fig9").build(rmtzoo.NoParams())
    assert fig6.presets == fig9.presets == ("paper", "small", "smoke")
    assert fig6.analyze is not None and fig6.draw is not None
    cells = {(c.labels["panel"], c.labels["model"], c.labels["task"]): c for c in fig6.cells("paper")}
    assert {k: (c.labels["segment_length"], c.labels["memory"], c.labels["segments"]) for k, c in cells.items()} == {
        ("a+b", "RMT", "copy"): (24, 24, 3), ("a+b", "RMT", "reverse"): (24, 24, 2),
        ("c", "RMT", "copy"): (8, 8, 9), ("d", "Tr-XL", "copy"): (24, 24, 3)}
    assert cells[("d", "Tr-XL", "copy")].config["recurrence"] == {"kind": "xl", "cache_len": 24, "cache_scope": "across_samples"}  # the authors carry the cache across samples
    assert cells[("c", "RMT", "copy")].config["memory"] == {"kind": "read_write", "num_tokens": 8, "init": "single_vector"}  # the authors share one init vector
    for c in cells.values():
        assert c.config["backbone"]["n_layer"] == 4 and c.config["backbone"]["d_model"] == 128
        assert c.config["train"]["lr"] == 1e-4 and c.config["train"]["batch_size"] == 32
    nine = fig9.cells("paper")
    assert [(c.labels["model"], c.labels["task"], c.labels["segments"], c.labels["segment_length"],
             c.labels["memory"]) for c in nine] == [("RMT", "reverse", 4, 12, 6), ("Tr-XL", "reverse", 4, 12, 6)]


@pytest.fixture
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RMTZOO_CACHE", str(tmp_path_factory.getbasetemp() / "bench-cache"))


def test_fig6_smoke_through_the_runner_stores_analyses_and_a_rerun_still_reports(tmp_path, _cache):
    pytest.importorskip("rmtzoo_benchmarks", reason="pip install -e benchmarks")
    pytest.importorskip("matplotlib")
    from rmtzoo.bench import report, run_benchmark

    reg = rmtzoo.Registry(environ={})
    results, reports = tmp_path / "results", tmp_path / "reports"
    summary = run_benchmark(reg, ["fig6"], preset="smoke", results_dir=results, filter_expr="task=copy")
    assert summary["done"] == summary["total"] == 3 and summary["failed"] == 0  # panels a+b, c, d
    folder = results / "fig6" / "smoke"
    for path in map(Path, summary["results"]):
        record = json.loads(path.read_text())
        analysis = record["analysis"]
        views = analysis["views"]
        assert views and all(0.0 <= v["share"] <= 1.0 + 1e-6 and 0.0 <= v["diagonal"] <= 1.0 + 1e-6 for v in views)
        panel = record["labels"]["panel"]
        assert {v["panel"] for v in views} == ({"a", "b"} if panel == "a+b" else {panel})
        layout = analysis["layout"][views[0]["shown_segment"]]
        if record["labels"]["model"] == "RMT":
            assert list(layout["keys"]) == ["read memory", "segment", "write memory"]
        else:
            assert list(layout["keys"]) == ["cache", "segment"]
        arrays = np.load(folder / analysis["file"])
        assert len(arrays.files) == record["labels"]["segments"]
        n_layer, n_head = record["config"]["backbone"]["n_layer"], record["config"]["backbone"]["n_head"]
        assert arrays["segment_0"].shape[:2] == (n_layer, n_head)
        assert np.allclose(arrays["segment_0"].astype(np.float32).sum(-1), 1.0, atol=1e-2)

    again = run_benchmark(reg, ["fig6"], preset="smoke", results_dir=results, filter_expr="task=copy")
    assert again["skipped"] == 3 and again["done"] == 0
    (md,) = report(reg, ["fig6"], preset="smoke", results_dir=results, reports_dir=reports)
    text = md.read_text()
    assert (reports / "smoke" / "fig6.png").stat().st_size > 0 and (reports / "smoke" / "fig6-blocks.png").is_file()
    assert "write memory → segment" in text and "segment → cache" in text and "write memory → read memory" in text
    assert "RMT reverse" not in text  # not run: listed as missing, not drawn
    assert "Not drawn" in text and "task=reverse" in text

"""The mamba plugin (plugins/rmtzoo-mamba) as rmtzoo sees it: registered from its entry point, what its
causal-order-only capability rejects, and a benchmark spec run with it as the backbone. Its contract and
property suites run in tests/test_contract.py and tests/test_properties.py (every registered backbone)
and, standalone, in plugins/rmtzoo-mamba/tests."""

from __future__ import annotations

import pytest

import rmtzoo

pytest.importorskip("rmtzoo_mamba")


def config(**recurrence):
    return {
        "backbone": {"kind": "mamba", "vocab_size": 12, "d_model": 8, "n_layer": 1, "d_state": 4},
        "memory": {"kind": "read_write", "num_tokens": 2},
        "recurrence": recurrence or {"kind": "rmt"},
        "segment": {"length": 4},
    }


def test_it_is_registered_from_its_entry_point():
    registry = rmtzoo.Registry(environ={})
    assert registry.provider("backbones", "mamba") == "mamba"
    assert any(p.name == "mamba" and p.source == "entry point" for p in registry.plugins())


def test_memory_that_must_not_read_the_cache_is_rejected_in_one_line():
    registry = rmtzoo.Registry(environ={})
    rmtzoo.load_config(config(kind="rmt_xl", cache_len=4, memory_reads_cache=True), registry=registry)
    with pytest.raises(rmtzoo.ConfigError) as info:
        rmtzoo.load_config(config(kind="rmt_xl", cache_len=4, memory_reads_cache=False), registry=registry)
    message = str(info.value)
    assert "\n" not in message and "recurrence.memory_reads_cache" in message and "causal order only" in message
    with pytest.raises(rmtzoo.ConfigError, match="recurrence.kind: backbone 'mamba'.*'xl' keeps memory from reading the cache"):
        rmtzoo.load_config(config(kind="xl", cache_len=4), registry=registry)


def test_the_backbone_is_never_handed_a_mask():
    registry = rmtzoo.Registry(environ={})
    model = rmtzoo.build_model(config(), registry=registry).double()
    import torch

    ids = torch.randint(0, 12, (2, 8))
    out, _ = model.step(ids[:, :4], model.initial_state(2))
    assert out.mask is not None  # the placement's mask, for observers
    with pytest.raises(rmtzoo.InputError, match="causal order only"):
        model.backbone(out.inputs, mask=out.mask)


def test_an_existing_benchmark_runs_with_mamba_as_the_backbone():
    """``rmtzoo bench run fig3a --preset small --backbone mamba``: every cell validated with the swap."""
    pytest.importorskip("rmtzoo_benchmarks")
    from rmtzoo.bench import expand

    registry = rmtzoo.Registry(environ={})
    plain = expand(registry, ["fig3a"], preset="small")
    swapped = expand(registry, ["fig3a"], preset="small", backbone="mamba")
    assert len(swapped) == len(plain) > 0
    by_labels = {tuple(sorted(j.labels.items())): j for j in plain}
    for job in swapped:
        old = by_labels[tuple(sorted(job.labels.items()))].config["backbone"]
        new = job.config["backbone"]
        assert new["kind"] == "mamba" and job.hash != by_labels[tuple(sorted(job.labels.items()))].hash
        assert {k: new[k] for k in ("vocab_size", "d_model", "n_layer")} == {k: old[k] for k in ("vocab_size", "d_model", "n_layer")}
        assert job.config["memory"] == by_labels[tuple(sorted(job.labels.items()))].config["memory"]
    with pytest.raises(rmtzoo.UnknownComponentError, match="mambo"):
        expand(registry, ["fig3a"], preset="small", backbone="mambo")

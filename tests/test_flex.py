"""The ``flex`` attention kernel (``rmtzoo/_flex.py``): Transformer-XL's relative positions as a score mod
and the memory layout as a block mask give eager attention's forward, for every placement and recurrence
(the kit's combinations), with padding, unfused and fused; forward only on CPU (its capabilities say so
and training is refused before the first step); the fused kernel compiles once per shape, within its
budget. Backward is a GPU check (skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch

import rmtzoo
from rmtzoo.testing import all_combos, is_valid
from rmtzoo.testing._combos import capabilities
from rmtzoo.train._loop import train

REGISTRY = rmtzoo.Registry(environ={})
UNFUSED = {"kind": "flex", "compile": False}
COMBOS = [c for c in all_combos(REGISTRY) if c.backbone.startswith("transformer_xl") and is_valid(c, REGISTRY)]


def _pair(config, flex):
    eager = rmtzoo.build_model({**config, "attention": {"kind": "eager"}}, registry=REGISTRY).eval()
    other = rmtzoo.build_model({**config, "attention": flex}, registry=REGISTRY).eval()
    return eager, other


def test_flex_is_registered_as_inference_only_on_cpu_below_the_builtin_auto_choice():
    spec = REGISTRY.get("attention_backends", "flex")
    assert spec.inference_only_on == ("cpu",) and spec.available() is None
    assert spec.priority < REGISTRY.get("attention_backends", "sdpa").priority
    assert rmtzoo.build_model(COMBOS[0].config(attention="auto"), registry=REGISTRY).attention_name == "auto"
    kernel = spec.build(spec.params())
    assert kernel.takes_position and not kernel.mask_in_bias


@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: c.id)
def test_flex_forward_equals_eager_for_every_layout(combo):
    eager, flex = _pair(combo.config(segment_length=4), UNFUSED)
    ids = torch.randint(0, 13, (2, 11), generator=torch.Generator().manual_seed(0))  # 4 + 4 + 3 tokens
    with torch.no_grad():
        want, got = eager.forward_sequence(ids), flex.forward_sequence(ids)
        torch.testing.assert_close(got.logits, want.logits, rtol=1e-5, atol=1e-5)
        if want.state.memory is not None:
            torch.testing.assert_close(got.state.memory, want.state.memory, rtol=1e-5, atol=1e-5)
        if capabilities(combo, REGISTRY).per_sample_mask:  # padding: a per-sample block mask
            pad = torch.tensor([[False, True, True, True], [True, True, True, True]])
            a, _ = eager.step(ids[:, :4], eager.initial_state(2), padding_mask=pad)
            b, _ = flex.step(ids[:, :4], flex.initial_state(2), padding_mask=pad)
            torch.testing.assert_close(b.logits, a.logits, rtol=1e-5, atol=1e-5)


def test_flex_lm_rmt_distances_take_the_dense_bias():
    combo = next(c for c in COMBOS if c.memory == "read_write" and c.recurrence == "rmt")
    config = combo.config(segment_length=4)
    config["backbone"] = {**config["backbone"], "relative_distances": "lm_rmt"}
    eager, flex = _pair(config, UNFUSED)
    ids = torch.randint(0, 13, (2, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(flex.forward_sequence(ids).logits, eager.forward_sequence(ids).logits,
                                   rtol=1e-5, atol=1e-5)


def test_flex_refuses_a_backward_on_cpu_and_training_is_rejected_before_the_first_step(tmp_path):
    _, flex = _pair(COMBOS[0].config(segment_length=4), UNFUSED)
    ids = torch.randint(0, 13, (1, 4))
    with pytest.raises(rmtzoo.UnavailableError, match="forward only on CPU"):
        flex.forward_sequence(ids)  # a gradient is being recorded
    config = {**COMBOS[0].config(segment_length=4), "attention": UNFUSED,
              "task": {"kind": "copy", "src_len": 4, "train_size": 8, "valid_size": 4, "test_size": 4},
              "train": {"steps": 1, "batch_size": 2}}
    with pytest.raises(rmtzoo.UnavailableError, match="runs forward only on cpu"):
        train(rmtzoo.load_config(config, registry=REGISTRY), tmp_path / "run", registry=REGISTRY,
                     device="cpu", log=lambda *a: None)
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())


FUSED_CONFIG = {
    "backbone": {"kind": "transformer_xl", "vocab_size": 13, "n_layer": 2, "n_head": 2, "d_model": 32,
                 "d_head": 16, "d_inner": 64, "dropout": 0.0},
    "memory": {"kind": "read_write", "num_tokens": 2},
    "recurrence": {"kind": "rmt"},
    "segment": {"length": 16},
    "seed": 0,
}


def _unique_graphs() -> int:
    """Graphs dynamo compiled in this process so far (a cumulative counter ``reset`` leaves alone)."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def test_fused_flex_equals_eager_and_compiles_once_per_shape():
    """One shape (full segments of an ``rmt`` model, no cache): one graph, reused by every layer and
    segment and by a second pass."""
    torch._dynamo.reset()
    before = _unique_graphs()
    eager, flex = _pair(FUSED_CONFIG, {"kind": "flex"})
    ids = torch.randint(0, 13, (2, 48), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = eager.forward_sequence(ids).logits
        got = flex.forward_sequence(ids).logits
        graphs = _unique_graphs()
        again = flex.forward_sequence(ids).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(again, got)
    assert graphs - before == 1 and _unique_graphs() == graphs


@pytest.mark.slow
def test_fused_flex_with_a_cache_and_a_shorter_last_segment_compiles_a_bounded_number_of_graphs():
    torch._dynamo.reset()
    before = _unique_graphs()
    config = {**FUSED_CONFIG, "recurrence": {"kind": "rmt_xl", "cache_len": 8}}
    eager, flex = _pair(config, {"kind": "flex", "max_shapes": 2})
    ids = torch.randint(0, 13, (2, 56), generator=torch.Generator().manual_seed(0))  # 16 x 3 + 8
    with torch.no_grad():
        torch.testing.assert_close(flex.forward_sequence(ids).logits, eager.forward_sequence(ids).logits,
                                   rtol=1e-5, atol=1e-5)
        graphs = _unique_graphs()
        flex.forward_sequence(ids)
    # no cache yet, full cache; the shorter last segment is past the budget of 2 and runs eager math
    assert graphs - before == 2 and _unique_graphs() == graphs


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlexAttention's backward needs a GPU here")
@pytest.mark.parametrize("fused", [True, False])
def test_flex_backward_equals_eager_on_gpu(fused):
    config = {**FUSED_CONFIG, "recurrence": {"kind": "rmt_xl", "cache_len": 8}}
    eager, flex = _pair(config, {"kind": "flex", "compile": fused})
    eager, flex = eager.cuda().train(), flex.cuda().train()
    ids = torch.randint(0, 13, (2, 40), generator=torch.Generator().manual_seed(0)).cuda()
    grads = []
    for model in (eager, flex):
        logits = model.forward_sequence(ids).logits
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids.flatten()).backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, rtol=1e-4, atol=1e-5, msg=name)

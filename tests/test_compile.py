"""``train.compile``: the per-segment computation under ``torch.compile`` gives eager's results, compiles a
bounded number of graphs (segment shapes, the shorter last segment, a first segment without cache, train
vs eval), none more once each has been seen, and is wired through the trainer and left out of the hash."""

from __future__ import annotations

import pytest
import torch

import rmtzoo

REGISTRY = rmtzoo.Registry(environ={})
CONFIG = {
    "backbone": {"kind": "transformer_xl", "vocab_size": 13, "n_layer": 2, "n_head": 2, "d_model": 16,
                 "d_head": 8, "d_inner": 32, "dropout": 0.0},
    "memory": {"kind": "read_write", "num_tokens": 2},
    "recurrence": {"kind": "rmt_xl", "cache_len": 3, "bptt_depth": 1},
    "attention": {"kind": "eager"},
    "segment": {"length": 4},
    "seed": 3,
}


class CountingBackend:
    """A torch.compile backend that counts the graphs it is handed and runs them through aot_eager."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        from functorch.compile import make_boxed_func
        from torch._dynamo.backends.common import aot_autograd

        self.graphs += 1
        return aot_autograd(fw_compiler=lambda g, _: make_boxed_func(g.forward))(gm, example_inputs)


def _loss_and_grads(model, ids):
    model.zero_grad(set_to_none=True)
    state, loss = model.initial_state(ids.shape[0]), 0.0
    for segment in model.split_segments(ids[:, :-1]):
        start = state.n_segments * model.segment_length
        target = ids[:, start + 1 : start + 1 + segment.shape[1]]
        out, state = model.step(segment, state, return_logits=False, targets=target)
        loss = loss + out.nll.mean()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_compiled_segments_equal_eager_with_a_bounded_number_of_graphs():
    torch._dynamo.reset()
    ids = torch.randint(0, 13, (2, 15), generator=torch.Generator().manual_seed(0))  # 4 + 4 + 4 + 2 tokens
    eager = rmtzoo.build_model(CONFIG, registry=REGISTRY)
    compiled = rmtzoo.build_model(CONFIG, registry=REGISTRY)
    backend = CountingBackend()
    compiled.compile_segments(backend=backend)
    loss, grads = _loss_and_grads(eager, ids)
    loss_c, grads_c = _loss_and_grads(compiled, ids)
    torch.testing.assert_close(loss_c, loss, rtol=1e-6, atol=1e-6)
    assert grads.keys() == grads_c.keys() and "placement.memory" in grads
    for name, g in grads.items():
        torch.testing.assert_close(grads_c[name], g, rtol=1e-5, atol=1e-6, msg=name)
    with torch.no_grad():
        eager.eval(), compiled.eval()
        torch.testing.assert_close(compiled.forward_sequence(ids).logits, eager.forward_sequence(ids).logits,
                                   rtol=1e-5, atol=1e-6)
    seen = backend.graphs
    # first segment (no cache), full segments with a cache, the shorter last one; x train and eval
    assert 0 < seen <= 8, seen
    compiled.train()
    _loss_and_grads(compiled, ids)
    with torch.no_grad():
        compiled.eval().forward_sequence(ids)
    assert backend.graphs == seen  # nothing recompiles once every shape and mode has been seen


def test_train_compile_is_a_config_option_used_by_the_trainer_and_left_out_of_the_hash(tmp_path, monkeypatch):
    off = rmtzoo.load_config(CONFIG, registry=REGISTRY)
    on = rmtzoo.load_config({**CONFIG, "train": {"compile": True}}, registry=REGISTRY)
    assert "compile" not in off.model_dump()["train"] and on.model_dump()["train"]["compile"] is True
    assert on.content_hash() != off.content_hash()
    with pytest.raises(rmtzoo.ConfigError, match=r"^config: train\.compile: "):
        rmtzoo.load_config({**CONFIG, "train": {"compile": "fast"}}, registry=REGISTRY)
    calls = []
    original = rmtzoo.RecurrentMemoryModel.compile_segments
    monkeypatch.setattr(rmtzoo.RecurrentMemoryModel, "compile_segments",
                        lambda self, backend="inductor": calls.append(backend) or original(self, backend="eager"))
    from rmtzoo.train import Trainer

    config = rmtzoo.load_config({**CONFIG, "task": {"kind": "copy", "src_len": 4, "n_symbols": 5, "train_size": 8,
                                                    "valid_size": 4, "test_size": 4},
                                 "train": {"compile": True, "steps": 1, "batch_size": 4}}, registry=REGISTRY)
    trainer = Trainer(config, tmp_path, registry=REGISTRY, log=lambda *a: None)
    assert calls == ["inductor"]
    assert trainer.model._run_segment is not type(trainer.model)._run_segment


def test_every_compiled_model_gets_its_own_recompile_budget():
    """Graphs of one model do not count against another's: with the recompile limit at what one model
    needs, a third model in the same process still compiles every graph (before, the models shared one
    code object, and from the second model on dynamo fell back to eager)."""
    torch._dynamo.reset()
    ids = torch.randint(0, 13, (2, 15), generator=torch.Generator().manual_seed(0))
    first = CountingBackend()
    _loss_and_grads(rmtzoo.build_model(CONFIG, registry=REGISTRY).compile_segments(backend=first), ids)
    assert first.graphs >= 2
    limit = torch._dynamo.config.recompile_limit
    # dynamo's own patcher (monkeypatch's undo deletes the option, which breaks every later compile)
    with torch._dynamo.config.patch(recompile_limit=first.graphs):
        for _ in range(2):
            backend = CountingBackend()
            _loss_and_grads(rmtzoo.build_model(CONFIG, registry=REGISTRY).compile_segments(backend=backend), ids)
            assert backend.graphs == first.graphs
    assert torch._dynamo.config.recompile_limit == limit  # restored

"""rmtzoo-hf: the backbones load through the entry point, build offline from tiny random configs, match the
Hugging Face model's own forward without memory, honour rmtzoo's masks, and load from a local directory."""

from __future__ import annotations

import pytest
import rmtzoo
import torch

pytest.importorskip("transformers")
rmtzoo_hf = pytest.importorskip("rmtzoo_hf", reason="pip install -e plugins/rmtzoo-hf")

FAMILIES = [
    ("hf_encoder", "bert"),
    ("hf_encoder", "roberta"),
    ("hf_encoder", "deberta-v2"),
    ("hf_decoder", "gpt2"),
    ("hf_decoder", "llama"),
    ("hf_t5", "t5"),
]
IDS = [f"{k}-{t}" for k, t in FAMILIES]
BACKBONES = [
    "hf_encoder",
    "hf_decoder",
    "hf_t5",
    "hf_bert",
    "hf_roberta",
    "hf_deberta_v2",
    "hf_gpt2",
    "hf_llama",
]
F64 = torch.float64


@pytest.fixture(scope="module")
def registry():
    # entry points on, no plugin directories
    return rmtzoo.Registry(environ={})


def config(kind, model_type, *, memory=None, recurrence=None, **backbone):
    params = {**rmtzoo_hf.tiny_params(model_type), **backbone}
    data = {"backbone": {"kind": kind, **params}, "segment": {"length": 4}, "attention": {"kind": "eager"}}
    if memory:
        data["memory"] = memory
    if recurrence:
        data["recurrence"] = recurrence
    return data


def test_backbones_come_from_the_entry_point(registry):
    names = set(registry.names("backbones"))
    assert set(BACKBONES) <= names
    plugin = next(p for p in registry.plugins() if p.name == "hf")
    assert plugin.source == "entry point"
    for name in BACKBONES:
        caps = registry.get("backbones", name).capabilities
        assert caps.causal == (name in ("hf_decoder", "hf_gpt2", "hf_llama")), name
        assert caps.accepts_cache is False
        assert getattr(caps, "per_sample_mask", True) is True


@pytest.mark.parametrize(("kind", "model_type"), FAMILIES, ids=IDS)
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_plain_model_logits_equal_the_hf_forward(registry, kind, model_type, attn):
    """placement none, recurrence none: each segment's logits are the HF model's own logits on its ids
    (encoders: on ``[CLS] ids [SEP]``, the specials' positions left out)."""
    model = rmtzoo.build_model(config(kind, model_type, attn_implementation=attn), registry=registry)
    model = model.to(F64).eval()
    # RoBERTa numbers positions from input_ids skipping padding (id 1); through inputs_embeds every
    # position counts, so the two agree only on ids without the padding id
    low = 2 if model_type == "roberta" else 0
    ids = torch.randint(low, model.vocab_size, (2, 10), generator=torch.Generator().manual_seed(0))
    out = model.forward_sequence(ids).logits
    hf = model.backbone.hf
    if kind == "hf_encoder":
        expected = torch.cat([hf(input_ids=wrap(seg)).logits[:, 1:-1] for seg in ids.split(4, dim=1)], dim=1)
    elif kind == "hf_t5":  # the tied LM head on encoder states, with T5's d_model ** -0.5 rescaling
        states = [hf.encoder(input_ids=seg).last_hidden_state for seg in ids.split(4, dim=1)]
        expected = hf.lm_head(torch.cat(states, dim=1) * hf.config.d_model**-0.5)
    else:
        expected = torch.cat([hf(input_ids=seg).logits for seg in ids.split(4, dim=1)], dim=1)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def wrap(ids, cls=2, sep=3):
    """``[CLS] ids [SEP]`` with the tiny encoders' special ids."""
    b = ids.shape[0]
    return torch.cat([torch.full((b, 1), cls), ids, torch.full((b, 1), sep)], dim=1)


@pytest.mark.parametrize(("kind", "model_type"), FAMILIES, ids=IDS)
def test_arbitrary_mask_is_respected(registry, kind, model_type):
    """A key the mask hides from a query changes nothing in that query's output (one layer, so no
    transitive reach), a visible key changes it."""
    spec = registry.get("backbones", kind)
    params = spec.params.model_validate(
        {
            **rmtzoo_hf.tiny_params(model_type),
            "config_overrides": {**rmtzoo_hf.TINY_OVERRIDES[model_type], _layers(model_type): 1},
        }
    )
    torch.manual_seed(0)
    bb = spec.build(params, attention=None).to(F64).eval()
    s = 6
    gen = torch.Generator().manual_seed(1)
    mask = (torch.rand(s, s, generator=gen) < 0.4) | torch.eye(s, dtype=torch.bool)
    x = bb.embed(torch.randint(0, bb.vocab_size, (2, s), generator=gen))
    base = bb(x, mask=mask).hidden
    for key in range(s):
        changed = x.clone()
        changed[:, key] = torch.randn(2, bb.d_model, generator=gen, dtype=F64) * 3
        out = bb(changed, mask=mask).hidden
        for query in range(s):
            same = torch.allclose(out[:, query], base[:, query], rtol=0, atol=1e-12)
            assert same == (not mask[query, key]), (query, key)


def _layers(model_type):
    return {"gpt2": "n_layer", "t5": "num_layers"}.get(model_type, "num_hidden_layers")


@pytest.mark.parametrize(("kind", "model_type"), FAMILIES, ids=IDS)
def test_memory_runs_and_segment_tokens_read_it(registry, kind, model_type):
    """With memory carried (shared for encoders, read_write for decoders) the logits depend on memory."""
    memory = {"kind": "read_write" if kind == "hf_decoder" else "shared", "num_tokens": 2}
    model = rmtzoo.build_model(
        config(kind, model_type, memory=memory, recurrence={"kind": "rmt"}), registry=registry
    )
    model = model.to(F64).eval()
    ids = torch.randint(0, model.vocab_size, (2, 8), generator=torch.Generator().manual_seed(0))
    a = model.forward_sequence(ids)
    assert a.logits.shape == (2, 8, model.vocab_size) and torch.isfinite(a.logits).all()
    with torch.no_grad():  # not a constant shift: LayerNorm-first models cannot see one
        model.placement.memory.add_(torch.randn(model.placement.memory.shape, dtype=F64))
    b = model.forward_sequence(ids)
    assert not torch.allclose(a.logits, b.logits)


@pytest.mark.parametrize(("kind", "model_type"), FAMILIES, ids=IDS)
def test_local_directory_loads_offline(registry, kind, model_type, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    first = rmtzoo.build_model(config(kind, model_type), registry=registry).eval()
    first.backbone.hf.save_pretrained(tmp_path / "tiny")
    specials = rmtzoo_hf._tiny.TINY_SPECIALS if kind == "hf_encoder" else {}  # no tokenizer saved
    loaded = rmtzoo.build_model(
        {
            "backbone": {"kind": kind, "model": str(tmp_path / "tiny"), **specials},
            "segment": {"length": 4},
            "seed": 7,
        },
        registry=registry,
    ).eval()
    assert loaded.backbone.model_type == model_type
    ids = torch.randint(0, first.vocab_size, (1, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward_sequence(ids).logits, first.forward_sequence(ids).logits)
    # model_type, when given, is checked against what was loaded
    other = {"hf_encoder": "roberta", "hf_decoder": "llama", "hf_t5": "mt5"}[kind]
    other = "bert" if other == model_type else other
    bad = {"kind": kind, "model": str(tmp_path / "tiny"), "model_type": model_type, **specials}
    rmtzoo.load_config({"backbone": bad, "segment": {"length": 4}}, registry=registry)
    with pytest.raises(rmtzoo.ConfigError):
        rmtzoo.build_model(
            {"backbone": {**bad, "model_type": other}, "segment": {"length": 4}}, registry=registry
        )


def test_freeze_backbone(registry):
    model = rmtzoo.build_model(
        config("hf_decoder", "gpt2", freeze_backbone=True, memory={"kind": "read_write", "num_tokens": 2}),
        registry=registry,
    )
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["placement.memory"]


def one_line_error(data, registry, exc=rmtzoo.ConfigError):
    with pytest.raises(exc) as info:
        rmtzoo.build_model(data, registry=registry)
    message = str(info.value)
    assert "\n" not in message.strip(), message
    return message


def test_unknown_model_type_is_a_one_line_config_error(registry):
    message = one_line_error(
        {
            "backbone": {"kind": "hf_encoder", "model_type": "gpt2", "random_init": True},
            "segment": {"length": 4},
        },
        registry,
    )
    assert "backbone" in message and "model_type" in message
    message = one_line_error(
        {
            "backbone": {"kind": "hf_decoder", "model_type": "t5", "random_init": True},
            "segment": {"length": 4},
        },
        registry,
    )
    assert "model_type" in message
    message = one_line_error({"backbone": {"kind": "hf_decoder"}, "segment": {"length": 4}}, registry)
    assert "model" in message


def test_missing_local_directory_is_a_one_line_config_error(registry, tmp_path):
    missing = tmp_path / "no" / "such_model"
    message = one_line_error(
        {"backbone": {"kind": "hf_decoder", "model": str(missing)}, "segment": {"length": 4}}, registry
    )
    assert message == f"backbone.model: local directory {str(missing)!r} does not exist"


def test_directory_of_the_wrong_family_is_rejected(registry, tmp_path):
    model = rmtzoo.build_model(config("hf_decoder", "gpt2"), registry=registry)
    model.backbone.hf.save_pretrained(tmp_path / "gpt2")
    message = one_line_error(
        {"backbone": {"kind": "hf_encoder", "model": str(tmp_path / "gpt2")}, "segment": {"length": 4}},
        registry,
    )
    assert "'gpt2'" in message and "bert" in message


def test_lora_without_peft_is_a_config_error(registry):
    try:
        import peft  # noqa: F401
    except ImportError:
        one_line_error(config("hf_decoder", "gpt2", lora={"r": 2, "target_modules": ["c_attn"]}), registry)
    else:
        model = rmtzoo.build_model(
            config("hf_decoder", "gpt2", lora={"r": 2, "target_modules": ["c_attn"]}), registry=registry
        )
        assert any("lora_" in n for n, p in model.named_parameters() if p.requires_grad)

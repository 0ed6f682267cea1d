"""rmtzoo-hf: memory after [CLS] (docs/paper-settings.md 1.8), T5 with the decoder generating the label, padding masks,
capabilities failing at validation, LoRA and freezing. Tiny random models, float64."""

from __future__ import annotations

import pytest
import rmtzoo
import torch

pytest.importorskip("transformers")
rmtzoo_hf = pytest.importorskip("rmtzoo_hf", reason="pip install -e plugins/rmtzoo-hf")
TINY_SPECIALS = rmtzoo_hf._tiny.TINY_SPECIALS

F64 = torch.float64
TIGHT = {"rtol": 1e-10, "atol": 1e-10}
CLS, SEP = TINY_SPECIALS["cls_token_id"], TINY_SPECIALS["sep_token_id"]
FAMILY = {
    "hf_bert": "bert",
    "hf_roberta": "roberta",
    "hf_deberta_v2": "deberta-v2",
    "hf_gpt2": "gpt2",
    "hf_llama": "llama",
    "hf_t5": "t5",
}
ENCODERS = ["hf_bert", "hf_roberta", "hf_deberta_v2"]


@pytest.fixture(scope="module")
def registry():
    return rmtzoo.Registry(environ={})


def build(registry, kind, *, memory=0, recurrence="none", **backbone):
    data = {
        "backbone": {"kind": kind, **rmtzoo_hf.tiny_params(FAMILY[kind]), **backbone},
        "segment": {"length": 5},
        "recurrence": {"kind": recurrence},
    }
    if memory:
        placement = "read_write" if kind in ("hf_gpt2", "hf_llama") else "shared"
        data["memory"] = {"kind": placement, "num_tokens": memory}
    return rmtzoo.build_model(data, registry=registry).to(F64).eval()


def ids_(b, t, seed=0, low=2):
    return torch.randint(low, 50, (b, t), generator=torch.Generator().manual_seed(seed))


# -- [CLS] memory tokens [SEP] ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ENCODERS)
def test_cls_wrapping_strips_specials_and_pools_the_cls_state(registry, kind):
    model = build(registry, kind, memory=2, recurrence="rmt")
    bb, hf = model.backbone, model.backbone.hf
    ids = ids_(2, 5)
    out = bb(bb.embed(ids))
    assert out.hidden.shape == (2, 5, bb.d_model)
    reference = hf.base_model(input_ids=torch.cat([torch.full((2, 1), CLS), ids, torch.full((2, 1), SEP)], 1))
    torch.testing.assert_close(out.hidden, reference.last_hidden_state[:, 1:-1], **TIGHT)
    torch.testing.assert_close(out.pooled, reference.last_hidden_state[:, 0], **TIGHT)
    # through the model: [CLS] [mem x 2] tokens [SEP]; the written memory is the final state at 1..2
    step, _ = model.step(ids, model.initial_state(2))
    memory = model.placement.initial_memory(2)
    x = torch.cat(
        [bb.embed(torch.full((2, 1), CLS)), memory, bb.embed(ids), bb.embed(torch.full((2, 1), SEP))], 1
    )
    full = (
        hf.base_model(inputs_embeds=x).last_hidden_state if kind != "hf_deberta_v2" else bb._deberta(x, None)
    )
    torch.testing.assert_close(step.written, full[:, 1:3], **TIGHT)
    torch.testing.assert_close(step.hidden, full[:, 3:-1], **TIGHT)
    torch.testing.assert_close(step.pooled, full[:, 0], **TIGHT)


def test_special_ids_come_from_params_config_or_fail(registry):
    tiny = rmtzoo_hf.tiny_params("bert")
    del tiny["cls_token_id"], tiny["sep_token_id"]
    with pytest.raises(rmtzoo.ConfigError, match=r"^backbone\.cls_token_id: "):
        rmtzoo.build_model(
            {"backbone": {"kind": "hf_bert", **tiny}, "segment": {"length": 2}}, registry=registry
        )
    no_specials = {"backbone": {"kind": "hf_bert", **tiny, "special_tokens": False}, "segment": {"length": 2}}
    assert rmtzoo.build_model(no_specials, registry=registry).backbone.specials is None
    roberta = rmtzoo_hf.tiny_params("roberta")
    del roberta["cls_token_id"], roberta["sep_token_id"]
    model = rmtzoo.build_model(
        {"backbone": {"kind": "hf_roberta", **roberta}, "segment": {"length": 2}}, registry=registry
    )
    assert model.backbone.specials == (0, 2)  # RoBERTa's <s> and </s> (bos / eos in its config)


# -- padding --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(FAMILY))
def test_padded_keys_change_nothing(registry, kind):
    """Right padding: the padded ids' values change no real token's output, nor the written memory."""
    model = build(registry, kind, memory=2, recurrence="rmt")
    ids = ids_(2, 5)
    pad = torch.tensor([[True] * 5, [True, True, True, False, False]])
    other = ids.clone()
    other[1, 3:] = (other[1, 3:] + 7) % 48 + 2
    state = model.initial_state(2)
    a, _ = model.step(ids, state, padding_mask=pad)
    b, _ = model.step(other, state, padding_mask=pad)
    torch.testing.assert_close(a.logits[pad], b.logits[pad], **TIGHT)
    torch.testing.assert_close(a.written, b.written, **TIGHT)
    c, _ = model.step(other, state)  # without the mask they are read (memory is written after them)
    assert not torch.allclose(a.written[1], c.written[1], **TIGHT)


@pytest.mark.parametrize("kind", ["hf_t5", "hf_gpt2", "hf_llama"])
def test_padded_sample_equals_the_sample_alone(registry, kind):
    """A right-padded sample's real tokens are the sample alone (no [SEP] after the padding); the memory too
    where nothing is placed after the padding (T5's ``shared`` layout; read_write's write memory follows the
    padding, so its positions differ)."""
    model = build(registry, kind, memory=2, recurrence="rmt")
    ids = ids_(2, 5)
    pad = torch.tensor([[True] * 5, [True, True, True, False, False]])
    padded, _ = model.step(ids, model.initial_state(2), padding_mask=pad)
    alone, _ = model.step(ids[1:, :3], model.initial_state(1))
    torch.testing.assert_close(padded.logits[1, :3], alone.logits[0], **TIGHT)
    if kind == "hf_t5":
        torch.testing.assert_close(padded.written[1], alone.written[0], **TIGHT)


# -- T5: the decoder generates the label ---------------------------------------------------------------
def test_t5_label_head_is_one_decoder_step(registry):
    model = build(registry, "hf_t5", memory=2, recurrence="rmt")
    hf = model.backbone.hf
    head = model.backbone.classification_head(2)
    assert not list(head.parameters()), "the head registers no weights of its own (no duplicates)"
    ids = ids_(2, 5)
    pad = torch.tensor([[True] * 5, [True, True, True, True, False]])
    out, _ = model.step(ids, model.initial_state(2), padding_mask=pad)
    logits = head(out, pad)
    assert logits.shape == (2, 2)
    states = torch.cat([out.written, out.hidden], dim=1)  # [B, 2+5, D]
    keep = torch.cat([torch.ones(2, 2, dtype=torch.long), pad.long()], dim=1)
    decoded = hf.decoder(
        input_ids=torch.zeros(2, 1, dtype=torch.long),
        encoder_hidden_states=states,
        encoder_attention_mask=keep,
    ).last_hidden_state
    expected = hf.lm_head(decoded * hf.config.d_model**-0.5)[:, 0, 2:4]
    torch.testing.assert_close(logits, expected, **TIGHT)
    # without memory, the head is HF's own seq2seq forward on the segment, first decoder step
    plain = build(registry, "hf_t5")
    seg = ids_(2, 5, seed=1)
    out, _ = plain.step(seg, plain.initial_state(2))
    reference = plain.backbone.hf(input_ids=seg, decoder_input_ids=torch.zeros(2, 1, dtype=torch.long)).logits
    torch.testing.assert_close(
        plain.backbone.classification_head(3)(out, None), reference[:, 0, 2:5], **TIGHT
    )


def _save_tiny_t5_with_tokenizer(path, registry):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "false": 7, "true": 9, "maybe": 11}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    build(registry, "hf_t5").backbone.hf.save_pretrained(path)
    fast.save_pretrained(path)


def test_t5_label_words_are_tokenised_with_the_saved_tokenizer(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _save_tiny_t5_with_tokenizer(tmp_path / "t5", registry)
    data = {"backbone": {"kind": "hf_t5", "model": str(tmp_path / "t5")}, "segment": {"length": 5}}
    model = rmtzoo.build_model(data, registry=registry).to(F64).eval()
    assert model.backbone.label_ids == (7, 9)
    out, _ = model.step(ids_(1, 5), model.initial_state(1))
    full = model.backbone.first_token_logits(out.hidden, None)  # [1, V]
    torch.testing.assert_close(model.backbone.classification_head(2)(out, None), full[:, [7, 9]], **TIGHT)
    with pytest.raises(rmtzoo.ConfigError, match=r"^backbone\.label_words: 2 label words for a task with 3"):
        model.backbone.classification_head(3)
    data["backbone"]["label_words"] = ["false", "true", "maybe"]
    assert rmtzoo.build_model(data, registry=registry).backbone.label_ids == (7, 9, 11)


# -- capabilities: invalid combinations fail at validation, in one line ----------------------------------
@pytest.mark.parametrize("kind", [*FAMILY, "hf_encoder", "hf_decoder"])
def test_invalid_combinations_fail_at_validation(registry, kind):
    model_type = {"hf_encoder": "bert", "hf_decoder": "gpt2"}.get(kind, FAMILY.get(kind))
    backbone = {"kind": kind, **rmtzoo_hf.tiny_params(model_type)}
    causal = kind in ("hf_gpt2", "hf_llama", "hf_decoder")
    for recurrence in ("xl", "rmt_xl"):
        data = {
            "backbone": backbone,
            "segment": {"length": 3},
            "memory": {"kind": "shared", "num_tokens": 1},
            "recurrence": {"kind": recurrence},
        }
        with pytest.raises(rmtzoo.ConfigError) as info:
            rmtzoo.load_config(data, registry=registry)
        assert f"recurrence.kind: '{recurrence}' needs a backbone that accepts a Transformer-XL cache" in str(
            info.value
        )
        assert f"backbone '{kind}' does not" in str(info.value)
        assert "\n" not in str(info.value)
    data = {"backbone": backbone, "segment": {"length": 3}, "memory": {"kind": "read_write", "num_tokens": 1}}
    if causal:
        rmtzoo.load_config(data, registry=registry)
    else:
        with pytest.raises(rmtzoo.ConfigError, match=r"memory\.kind: 'read_write' needs a causal backbone"):
            rmtzoo.load_config(data, registry=registry)


# -- freezing and LoRA -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "targets"), [("hf_gpt2", ["c_attn"]), ("hf_t5", ["q", "v"]), ("hf_bert", ["query"])]
)
def test_lora_trains_only_the_adapters_and_starts_as_the_base_model(registry, kind, targets):
    pytest.importorskip("peft")
    base = build(registry, kind, memory=2, recurrence="rmt")
    lora = build(registry, kind, memory=2, recurrence="rmt", lora={"r": 2, "target_modules": targets})
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert "placement.memory" in trainable and len(trainable) > 1
    assert all(n == "placement.memory" or ".lora_" in n for n in trainable), trainable
    ids = ids_(2, 10)
    with torch.no_grad():  # the adapters' initialisation drew from the RNG before the memory vectors did
        lora.placement.memory.copy_(base.placement.memory)
    with torch.no_grad():  # LoRA's B starts at zero: the adapted model is the base model
        torch.testing.assert_close(
            lora.forward_sequence(ids).logits, base.forward_sequence(ids).logits, **TIGHT
        )
    lora.forward_sequence(ids).logits.sum().backward()
    with_grad = {n for n, p in lora.named_parameters() if p.grad is not None}
    # every adapter the segment path uses gets a gradient (T5's decoder adapters only in the label head)
    assert {n for n in trainable if ".decoder." not in n} <= with_grad <= set(trainable)


def test_freeze_backbone_t5(registry):
    model = build(registry, "hf_t5", memory=2, recurrence="rmt", freeze_backbone=True)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["placement.memory"]

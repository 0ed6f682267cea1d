"""Hugging Face models as rmtzoo backbones, through ``inputs_embeds``.

Registered through the ``rmtzoo`` entry-point group (name ``hf``):

- ``hf_encoder``: BERT, RoBERTa and DeBERTa-v2/v3 (``AutoModelForMaskedLM``: the encoder is the
  ``AutoModel`` inside it, the masked-LM head gives ``logits``). Bidirectional; each segment call is
  wrapped as ``[CLS] x [SEP]`` (``special_tokens``), so with the ``shared`` placement memory sits after
  [CLS] and ``pooled`` is the [CLS] final state (docs/paper-settings.md 1.8).
- ``hf_decoder``: GPT-2 and Llama-style models (``AutoModelForCausalLM``); ``causal=True``: rmtzoo's masks
  (the ``read_write`` placement's, docs/paper-settings.md 1.2) are honoured exactly.
- ``hf_t5``: T5 / T5 v1.1 / mT5 (``AutoModelForSeq2SeqLM``): the encoder is the segment backbone, the
  decoder generates the label (``classification_head``).
- ``hf_bert``, ``hf_roberta``, ``hf_deberta_v2``, ``hf_gpt2``, ``hf_llama``: the same backbones with the
  family fixed, one spec per family so rmtzoo's contract and property suites (which build each spec from
  its ``test_params``) cover every family.

Also registered: the ``table3`` benchmark (``rmtzoo_hf.table3``), Table 3's Hyperpartisan grid on these
backbones (``rmtzoo bench run table3``).

None takes a Transformer-XL cache, so ``xl`` / ``rmt_xl`` fail at config validation, and the encoders and
T5 are bidirectional, so ``read_write`` does too.
"""

from __future__ import annotations

from typing import Any, Literal

import rmtzoo
from pydantic import Field, NonNegativeFloat, PositiveInt, model_validator

from rmtzoo_hf._tiny import TINY_OVERRIDES, tiny_params

__version__ = "0.2.0"
__all__ = ["TINY_OVERRIDES", "tiny_params", "ENCODER_TYPES", "DECODER_TYPES", "T5_TYPES"]

ENCODER_TYPES = ("bert", "roberta", "deberta-v2")
DECODER_TYPES = ("gpt2", "llama")
T5_TYPES = ("t5", "mt5")


class LoraParams(rmtzoo.Params):
    """LoRA adapters (needs ``peft``): injected into ``target_modules``; with them, only the adapters train."""

    r: PositiveInt = 8
    alpha: PositiveInt = 16
    dropout: NonNegativeFloat = Field(0.0, lt=1)
    target_modules: tuple[str, ...] = ()


class _HFParams(rmtzoo.Params):
    """model: a Hub name or a local directory (``save_pretrained`` layout). With ``random_init`` the weights
    are drawn from rmtzoo's seed instead of loaded: from ``model``'s config when ``model`` is set, else from
    ``AutoConfig.for_model(model_type, **config_overrides)`` (nothing is downloaded). ``model_type`` checks
    what a loaded model is, when given. ``config_overrides`` are config attributes set before building
    (e.g. ``hidden_dropout_prob``). ``freeze_backbone`` stops gradients to every HF weight (memory vectors,
    owned by the placement, still train). ``attn_implementation``: the HF attention kernel."""

    model: str | None = None
    model_type: str | None = None
    random_init: bool = False
    config_overrides: dict[str, Any] = Field(default_factory=dict)
    freeze_backbone: bool = False
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"
    lora: LoraParams | None = None

    @model_validator(mode="after")
    def _source(self):
        if self.model is None and not (self.random_init and self.model_type):
            raise ValueError(
                "set model (a Hub name or local directory), or random_init = true with model_type"
            )
        return self


class HFEncoderParams(_HFParams):
    """special_tokens: wrap each segment call as ``[CLS] x [SEP]`` (memory after [CLS]). The ids come from
    ``cls_token_id`` / ``sep_token_id`` when set, else from ``model``'s tokenizer, else from the config's
    ``bos_token_id`` / ``eos_token_id``."""

    model_type: Literal["bert", "roberta", "deberta-v2"] | None = None
    special_tokens: bool = True
    cls_token_id: int | None = Field(None, ge=0)
    sep_token_id: int | None = Field(None, ge=0)


class HFDecoderParams(_HFParams):
    model_type: Literal["gpt2", "llama"] | None = None


class HFT5Params(_HFParams):
    """label_words: the words whose first token the decoder generates for each class, tokenised with
    ``model``'s tokenizer (random-init models without one use token ids 2, 3, ...)."""

    model_type: Literal["t5", "mt5"] | None = "t5"
    label_words: tuple[str, ...] = ("false", "true")


class BertParams(HFEncoderParams):
    model_type: Literal["bert"] = "bert"


class RobertaParams(HFEncoderParams):
    model_type: Literal["roberta"] = "roberta"


class DebertaV2Params(HFEncoderParams):
    model_type: Literal["deberta-v2"] = "deberta-v2"


class GPT2Params(HFDecoderParams):
    model_type: Literal["gpt2"] = "gpt2"


class LlamaParams(HFDecoderParams):
    model_type: Literal["llama"] = "llama"


# -- builders (transformers is imported here, lazily) -----------------------------------------------------
def _build_encoder(p: HFEncoderParams, *, attention=None):
    from rmtzoo_hf._backbone import HFBackbone
    from rmtzoo_hf._load import load, tokenizer

    model = load(p, ENCODER_TYPES, "AutoModelForMaskedLM")
    specials = _special_ids(p, model.config, tokenizer) if p.special_tokens else None
    return HFBackbone(model, causal=False, p=p, specials=specials)


def _special_ids(p: HFEncoderParams, config, tokenizer) -> tuple[int, int]:
    cls, sep = p.cls_token_id, p.sep_token_id
    if cls is None or sep is None:
        tok = tokenizer(p)
        cls = cls if cls is not None else getattr(tok, "cls_token_id", None)
        sep = sep if sep is not None else getattr(tok, "sep_token_id", None)
        cls = cls if cls is not None else config.bos_token_id
        sep = sep if sep is not None else config.eos_token_id
    if cls is None or sep is None:
        missing = "cls_token_id" if cls is None else "sep_token_id"
        raise rmtzoo.ConfigError(
            f"backbone.{missing}: no tokenizer or config names it; set it, or special_tokens = false"
        )
    return int(cls), int(sep)


def _build_decoder(p: HFDecoderParams, *, attention=None):
    from rmtzoo_hf._backbone import HFBackbone
    from rmtzoo_hf._load import load

    return HFBackbone(load(p, DECODER_TYPES, "AutoModelForCausalLM"), causal=True, p=p)


def _build_t5(p: HFT5Params, *, attention=None):
    from rmtzoo_hf._load import load, tokenizer
    from rmtzoo_hf._t5 import T5Backbone

    model = load(p, T5_TYPES, "AutoModelForSeq2SeqLM")
    tok = tokenizer(p)
    label_ids = None
    if tok is not None:
        label_ids = tuple(tok(word, add_special_tokens=False).input_ids[0] for word in p.label_words)
        if len(set(label_ids)) != len(label_ids):
            raise rmtzoo.ConfigError(
                f"backbone.label_words: {list(p.label_words)} start with the same token; use distinct words"
            )
    return T5Backbone(model, p=p, label_ids=label_ids)


def _capabilities(causal: bool):
    from rmtzoo_hf._backbone import capabilities

    return capabilities(causal=causal)


@rmtzoo.hookimpl
def rmtzoo_register_backbones(register):
    encoder, decoder = _capabilities(False), _capabilities(True)
    specs = [
        (
            "hf_encoder",
            "Hugging Face BERT / RoBERTa / DeBERTa-v2 encoder; memory after [CLS]",
            HFEncoderParams,
            _build_encoder,
            encoder,
            "bert",
        ),
        (
            "hf_decoder",
            "Hugging Face GPT-2 / Llama-style causal LM; takes rmtzoo's masks as 4D masks",
            HFDecoderParams,
            _build_decoder,
            decoder,
            "gpt2",
        ),
        (
            "hf_t5",
            "Hugging Face T5 / mT5: memory in the encoder input, the decoder generates the label",
            HFT5Params,
            _build_t5,
            encoder,
            "t5",
        ),
        ("hf_bert", "hf_encoder for BERT checkpoints", BertParams, _build_encoder, encoder, "bert"),
        (
            "hf_roberta",
            "hf_encoder for RoBERTa checkpoints",
            RobertaParams,
            _build_encoder,
            encoder,
            "roberta",
        ),
        (
            "hf_deberta_v2",
            "hf_encoder for DeBERTa-v2 / v3 checkpoints",
            DebertaV2Params,
            _build_encoder,
            encoder,
            "deberta-v2",
        ),
        ("hf_gpt2", "hf_decoder for GPT-2 checkpoints", GPT2Params, _build_decoder, decoder, "gpt2"),
        ("hf_llama", "hf_decoder for Llama-style checkpoints", LlamaParams, _build_decoder, decoder, "llama"),
    ]
    # the generic specs' suites take the paths the family specs do not: no [CLS]/[SEP], the eager kernel
    variants = {"hf_encoder": {"special_tokens": False}, "hf_decoder": {"attn_implementation": "eager"}}
    for name, summary, params, build, caps, tiny in specs:
        register(
            rmtzoo.BackboneSpec(
                name=name,
                summary=summary,
                params=params,
                build=build,
                capabilities=caps,
                test_params={**tiny_params(tiny), **variants.get(name, {})},
            )
        )


@rmtzoo.hookimpl
def rmtzoo_register_benchmarks(register):
    from rmtzoo_hf.table3 import SPECS  # rmtzoo.bench, only when benchmarks are listed

    for name, (summary, build) in SPECS.items():
        register(rmtzoo.BenchmarkSpec(name=name, summary=summary, build=build))

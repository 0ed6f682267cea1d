"""Hugging Face models as rmtzoo backbones, through ``inputs_embeds``.

Two backbones, registered through the ``rmtzoo`` entry-point group:

- ``hf_encoder``: BERT, RoBERTa and DeBERTa-v2/v3 (``AutoModelForMaskedLM``: the encoder is the
  ``AutoModel`` inside it, the masked-LM head gives ``logits``). Bidirectional: ``causal=False``.
- ``hf_decoder``: GPT-2 and Llama-style models (``AutoModelForCausalLM``). ``causal=True``: rmtzoo's
  boolean mask ``[S, S]`` goes in as a 4D additive mask ``[B, 1, S, S]``, which transformers >= 5 passes
  to the attention unchanged (``masking_utils._preprocess_mask_arguments`` returns a 4D mask as is), so
  the ``read_write`` placement's mask (PAPER.md 1.2) is honoured exactly.

Memory tokens are not new vocabulary rows: rmtzoo's placement owns the memory vectors and concatenates
them with ``embed(ids)``, which is the model's word-embedding lookup only. Everything the HF model adds to
``inputs_embeds`` (absolute position embeddings for BERT/RoBERTa/GPT-2/DeBERTa with
``position_biased_input``, token-type 0 embeddings, the embedding LayerNorm, rotary positions for Llama,
relative buckets for DeBERTa-v3) is applied to the whole assembled sequence, so memory positions get
positions like any token: read memory takes positions 0..m-1 and the segment is shifted by m.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import rmtzoo
import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeFloat, PositiveInt, model_validator
from torch import nn

__version__ = "0.1.0"

ENCODER_TYPES = ("bert", "roberta", "deberta-v2")
DECODER_TYPES = ("gpt2", "llama")


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
    model_type: Literal["bert", "roberta", "deberta-v2"] | None = None


class HFDecoderParams(_HFParams):
    model_type: Literal["gpt2", "llama"] | None = None


def _source(model: str) -> str:
    """A local directory as is; a path-like name that is not a directory is an error; else a Hub name."""
    expanded = os.path.expanduser(model)
    if os.path.isdir(expanded):
        return expanded
    pathlike = model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model
    if pathlike or os.path.exists(expanded):
        raise rmtzoo.ConfigError(f"backbone.model: local directory {model!r} does not exist")
    return model


def _one_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _load(p: _HFParams, allowed: tuple[str, ...], auto_name: str):
    import transformers
    from transformers import AutoConfig

    auto = getattr(transformers, auto_name)
    overrides = dict(p.config_overrides)
    try:
        if p.model is None:
            config = AutoConfig.for_model(p.model_type, **overrides)
        else:
            config = AutoConfig.from_pretrained(_source(p.model), **overrides)
    except rmtzoo.ConfigError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise rmtzoo.ConfigError(
            f"backbone.model: cannot load the config of {p.model!r}: {_one_line(err)}"
        ) from None
    if config.model_type not in allowed:
        raise rmtzoo.ConfigError(
            f"backbone.model: {p.model or p.model_type!r} is a {config.model_type!r} model; "
            f"this backbone takes {', '.join(allowed)}"
        )
    if p.model_type is not None and config.model_type != p.model_type:
        raise rmtzoo.ConfigError(
            f"backbone.model_type: {p.model!r} is a {config.model_type!r} model, not {p.model_type!r}"
        )
    # DeBERTa-v2 has its own (disentangled) attention: no kernel choice
    impl = None if config.model_type == "deberta-v2" else p.attn_implementation
    kwargs = {} if impl is None else {"attn_implementation": impl}
    try:
        if p.random_init:
            model = auto.from_config(config, **kwargs)
        else:
            model = auto.from_pretrained(_source(p.model), config=config, **kwargs)
    except (OSError, ValueError) as err:
        raise rmtzoo.ConfigError(f"backbone.model: cannot load {p.model!r}: {_one_line(err)}") from None
    return model


class HFBackbone(nn.Module):
    """The rmtzoo backbone protocol over a Hugging Face ``*ForMaskedLM`` / ``*ForCausalLM`` model."""

    def __init__(self, model: nn.Module, *, causal: bool, p: _HFParams) -> None:
        super().__init__()
        config = model.config
        self.hf = model
        self.model_type = config.model_type
        self.causal = causal
        self.vocab_size = int(config.vocab_size)
        self.d_model = int(model.get_input_embeddings().embedding_dim)
        if self.d_model != config.hidden_size:
            raise rmtzoo.ConfigError(
                f"backbone: {self.model_type!r} with embedding size {self.d_model} != hidden size "
                f"{config.hidden_size} is not supported (written memory must match the input width)"
            )
        if self.model_type == "deberta-v2" and getattr(model.deberta, "z_steps", 0) > 1:
            raise rmtzoo.ConfigError("backbone: DeBERTa-v2 with z_steps > 1 is not supported")
        self.max_positions = _position_limit(config)
        self.attn_implementation = getattr(config, "_attn_implementation", None)
        if p.freeze_backbone:
            model.requires_grad_(False)
        if p.lora is not None:
            _add_lora(model, p.lora)

    # -- backbone protocol ------------------------------------------------------------------------
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.hf.get_input_embeddings()(ids)  # [B, T, D]: word embeddings only

    def forward(
        self, x: torch.Tensor, *, mask: torch.Tensor | None = None, cache=None
    ) -> rmtzoo.BackboneOutput:
        """x [B, S, D], mask [S, S] bool (True: may attend) or None (natural attention)."""
        if cache is not None:
            raise ValueError(f"{type(self).__name__} takes no Transformer-XL cache")
        b, s, _ = x.shape
        if mask is not None and tuple(mask.shape) != (s, s):
            raise ValueError(f"mask must be [{s}, {s}], got {tuple(mask.shape)}")
        if self.max_positions is not None and s > self.max_positions:
            raise rmtzoo.InputError(
                f"{self.model_type} takes at most {self.max_positions} positions; this segment call has {s} "
                "(memory tokens included): shorten segment.length or memory.num_tokens"
            )
        if self.model_type == "deberta-v2":
            hidden = self._deberta(x, mask)
        else:
            attn = None
            if mask is not None:
                mask = mask.to(x.device)
                if self.attn_implementation != "sdpa":  # HF eager kernels add the mask to the scores
                    mask = torch.zeros(s, s, dtype=x.dtype, device=x.device).masked_fill(
                        ~mask, torch.finfo(x.dtype).min
                    )
                attn = mask[None, None].expand(b, 1, s, s)  # [B, 1, S, S]: bool for sdpa, additive for eager
            kwargs = {"use_cache": False} if self.causal else {}
            hidden = self.hf.base_model(inputs_embeds=x, attention_mask=attn, **kwargs).last_hidden_state
        return rmtzoo.BackboneOutput(hidden, ())

    def _deberta(self, x, mask):
        """DeBERTa's top-level forward multiplies the embeddings by a (2D) mask, so a 4D mask goes straight
        to the encoder; with ``mask=None`` this is exactly what ``DebertaV2Model`` does for an all-ones mask."""
        base = self.hf.deberta
        b, s, _ = x.shape
        if mask is None:
            mask = torch.ones(s, s, dtype=torch.bool, device=x.device)
        attn = mask.to(x.device)[None, None].expand(b, 1, s, s)  # [B, 1, S, S] bool
        emb = base.embeddings(inputs_embeds=x)
        return base.encoder(emb, attn, output_hidden_states=False, return_dict=True).last_hidden_state

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        hf = self.hf
        if self.model_type == "bert":
            return hf.cls(hidden)
        if self.model_type == "roberta":
            return hf.lm_head(hidden)
        if self.model_type == "deberta-v2":
            if hf.legacy:
                return hf.cls(hidden)
            return hf.lm_predictions(hidden, hf.deberta.embeddings.word_embeddings)
        return hf.get_output_embeddings()(hidden)  # GPT-2, Llama: the final norm is in the base model

    def nll(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        b, t, _ = hidden.shape
        logits = (
            self.logits(hidden).float()
            if hidden.dtype in (torch.float16, torch.bfloat16)
            else self.logits(hidden)
        )
        return F.cross_entropy(logits.flatten(0, 1), targets.reshape(-1), reduction="none").view(b, t)


def _position_limit(config) -> int | None:
    """How many inputs the absolute position table allows (None: rotary or relative positions only)."""
    t = config.model_type
    if t in ("bert", "gpt2") or (t == "deberta-v2" and config.position_biased_input):
        return int(config.max_position_embeddings)
    if t == "roberta":  # positions start after the padding index
        return int(config.max_position_embeddings) - int(config.pad_token_id) - 1
    return None


def _add_lora(model: nn.Module, lora: LoraParams) -> None:
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise rmtzoo.ConfigError("backbone.lora: needs peft (pip install 'rmtzoo-hf[lora]')") from None
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules) or None,
    )
    inject_adapter_in_model(config, model)
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)


def _build(p: _HFParams, *, allowed, auto_name, causal):
    return HFBackbone(_load(p, allowed, auto_name), causal=causal, p=p)


# Tiny random configs (no download): what rmtzoo's contract and property suites build. Dropout 0.
TINY_OVERRIDES: dict[str, dict[str, Any]] = {
    "bert": {
        "vocab_size": 50,
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "max_position_embeddings": 64,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    },
    "roberta": {
        "vocab_size": 50,
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "max_position_embeddings": 64,
        "pad_token_id": 1,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    },
    "deberta-v2": {  # DeBERTa-v3 layout: relative attention, no absolute positions
        "vocab_size": 50,
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "max_position_embeddings": 64,
        "relative_attention": True,
        "position_biased_input": False,
        "pos_att_type": ["p2c", "c2p"],
        "position_buckets": 8,
        "max_relative_positions": -1,
        "norm_rel_ebd": "layer_norm",
        "share_att_key": True,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    },
    "gpt2": {
        "vocab_size": 50,
        "n_embd": 16,
        "n_layer": 2,
        "n_head": 2,
        "n_positions": 64,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "bos_token_id": 0,
        "eos_token_id": 0,
    },
    "llama": {
        "vocab_size": 50,
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "intermediate_size": 32,
        "max_position_embeddings": 64,
        "tie_word_embeddings": False,
    },
}


def tiny_params(model_type: str) -> dict[str, Any]:
    """Backbone params for a tiny random ``model_type`` model (hidden 16, 2 layers, vocab 50)."""
    return {
        "model_type": model_type,
        "random_init": True,
        "config_overrides": dict(TINY_OVERRIDES[model_type]),
    }


@rmtzoo.hookimpl
def rmtzoo_register_backbones(register):
    register(
        rmtzoo.BackboneSpec(
            name="hf_encoder",
            summary="Hugging Face BERT / RoBERTa / DeBERTa-v2 encoder (bidirectional) with its masked-LM head",
            params=HFEncoderParams,
            build=lambda p, *, attention: _build(
                p, allowed=ENCODER_TYPES, auto_name="AutoModelForMaskedLM", causal=False
            ),
            capabilities=rmtzoo.BackboneCapabilities(causal=False, accepts_cache=False),
            test_params=tiny_params("bert"),
        )
    )
    register(
        rmtzoo.BackboneSpec(
            name="hf_decoder",
            summary="Hugging Face GPT-2 / Llama-style causal LM; takes rmtzoo's masks as 4D attention masks",
            params=HFDecoderParams,
            build=lambda p, *, attention: _build(
                p, allowed=DECODER_TYPES, auto_name="AutoModelForCausalLM", causal=True
            ),
            capabilities=rmtzoo.BackboneCapabilities(causal=True, accepts_cache=False),
            test_params=tiny_params("gpt2"),
        )
    )

"""The rmtzoo backbone protocol over a Hugging Face ``*ForMaskedLM`` / ``*ForCausalLM`` model, and the mask
helpers the T5 backbone shares.

Masks. rmtzoo hands a boolean mask ``[S, S]`` (one layout for the batch) or ``[B, S, S]`` (per sample, when
a batch has padding); True: may attend. It goes to the HF model as a 4D mask ``[B, 1, S, S]``: boolean for
the sdpa kernel and DeBERTa, additive (0 / dtype minimum) for the eager kernels, which add it to the
scores. transformers >= 5 hands a 4D mask to the attention unchanged (``masking_utils``).

[CLS] and [SEP] (encoders, ``special_tokens``). The segment call is wrapped as ``[CLS] x [SEP]``, x being
what the placement assembled (with ``shared``: ``[mem x m] tokens``), so the layout is docs/paper-settings.md 1.8's
``[CLS] [mem x m] chunk [SEP]`` without its [SEP] after the memory: the backbone protocol does not say
where the placement's memory ends, and the memory vectors are learned, so they can take that separator's
role. In the mask, [CLS] and [SEP] are copies of one anchor position (they see what it sees and are seen
by whoever sees it; the anchor is the position most queries see, so a real one under padding): under the
natural (full) mask this is plain bidirectional attention, and under any other mask nothing reaches a
query through them that it could not reach through the anchor already.
"""

from __future__ import annotations

import dataclasses
import inspect

import rmtzoo
import torch
import torch.nn.functional as F
from torch import nn

from rmtzoo_hf._load import add_lora


# -- the core API this plugin builds against (BackboneOutput.pooled, BackboneCapabilities.per_sample_mask)
def backbone_output(hidden: torch.Tensor, pooled: torch.Tensor | None = None) -> rmtzoo.BackboneOutput:
    if pooled is not None and "pooled" in inspect.signature(rmtzoo.BackboneOutput.__new__).parameters:
        return rmtzoo.BackboneOutput(hidden, (), pooled=pooled)
    return rmtzoo.BackboneOutput(hidden, ())


def capabilities(*, causal: bool) -> rmtzoo.BackboneCapabilities:
    """No Transformer-XL cache (HF's key/value cache is not a per-layer cache of past inputs with memory
    in it); per-sample padding masks are taken (as 4D masks) where the core knows the field."""
    fields = {f.name for f in dataclasses.fields(rmtzoo.BackboneCapabilities)}
    extra = {"per_sample_mask": True} if "per_sample_mask" in fields else {}
    return rmtzoo.BackboneCapabilities(causal=causal, accepts_cache=False, **extra)


# -- masks ------------------------------------------------------------------------------------------------
def batch_mask(mask: torch.Tensor | None, b: int, s: int, device) -> torch.Tensor | None:
    """``[S, S]`` or ``[B, S, S]`` bool (no cache: keys == queries) as ``[B, S, S]``; None stays None."""
    if mask is None:
        return None
    if tuple(mask.shape) == (s, s):
        return mask.to(device)[None].expand(b, s, s)  # [B, S, S]
    if tuple(mask.shape) == (b, s, s):
        return mask.to(device)
    raise ValueError(f"mask must be [{s}, {s}] or [{b}, {s}, {s}] (no cache), got {tuple(mask.shape)}")


def wrap_mask(mask: torch.Tensor) -> torch.Tensor:
    """``[B, S, S]`` -> ``[B, S+2, S+2]`` for ``[CLS] x [SEP]``: both specials are copies of one anchor
    position per sample, the one the most queries see (the first such): under padding a real position."""
    b, s, _ = mask.shape
    anchor = mask.sum(dim=1).argmax(dim=-1, keepdim=True)  # [B, 1]
    inner = torch.arange(s, device=mask.device).expand(b, s)  # [B, S]
    index = torch.cat([anchor, inner, anchor], dim=1)  # [B, S+2]: wrapped position -> position in x
    rows = mask.gather(1, index[:, :, None].expand(b, s + 2, s))  # [B, S+2, S]
    return rows.gather(2, index[:, None, :].expand(b, s + 2, s + 2))  # [B, S+2, S+2]


def four_d(mask: torch.Tensor, dtype: torch.dtype, *, additive: bool) -> torch.Tensor:
    """``[B, S, K]`` bool -> ``[B, 1, S, K]``: bool, or 0 / dtype minimum for kernels that add it."""
    mask = mask[:, None]  # [B, 1, S, K]
    if not additive:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


def nll_of(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    b, t, _ = logits.shape
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return F.cross_entropy(logits.flatten(0, 1), targets.reshape(-1), reduction="none").view(b, t)


# -- the backbone --------------------------------------------------------------------------------------
class HFBackbone(nn.Module):
    """``embed`` is the word-embedding lookup only: rmtzoo's placement owns the memory vectors (the paper's
    code added them as new embedding rows; a learned vector concatenated after the lookup is the same
    thing). ``specials``: the (CLS, SEP) ids to wrap each segment call with, or None."""

    def __init__(self, model: nn.Module, *, causal: bool, p, specials: tuple[int, int] | None = None) -> None:
        super().__init__()
        config = model.config
        self.hf = model
        self.model_type = config.model_type
        self.causal = causal
        self.specials = specials
        self.vocab_size = int(config.vocab_size)
        self.d_model = int(model.get_input_embeddings().embedding_dim)
        if self.d_model != config.hidden_size:
            raise rmtzoo.ConfigError(
                f"backbone: {self.model_type!r} with embedding size {self.d_model} != hidden size "
                f"{config.hidden_size} is not supported (written memory must match the input width)"
            )
        if self.model_type == "deberta-v2" and getattr(model.deberta, "z_steps", 0) > 1:
            raise rmtzoo.ConfigError("backbone: DeBERTa-v2 with z_steps > 1 is not supported")
        for name, token in zip(("cls_token_id", "sep_token_id"), specials or (), strict=False):
            if not 0 <= token < self.vocab_size:
                raise rmtzoo.ConfigError(
                    f"backbone.{name}: {token} is outside the vocabulary [0, {self.vocab_size})"
                )
        self.max_positions = _position_limit(config)
        self.attn_implementation = getattr(config, "_attn_implementation", None)
        if p.freeze_backbone:
            model.requires_grad_(False)
        if p.lora is not None:
            add_lora(model, p.lora)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.hf.get_input_embeddings()(ids)  # [B, T, D]: word embeddings only

    def forward(
        self, x: torch.Tensor, *, mask: torch.Tensor | None = None, cache=None
    ) -> rmtzoo.BackboneOutput:
        """x [B, S, D]; mask [S, S] or [B, S, S] bool (True: may attend), or None (natural attention).
        With ``specials``, ``pooled`` is the [CLS] final state and ``hidden`` leaves out [CLS] and [SEP]."""
        if cache is not None:
            raise ValueError(f"{type(self).__name__} takes no Transformer-XL cache")
        b, s, _ = x.shape
        mask = batch_mask(mask, b, s, x.device)  # [B, S, S] | None
        if self.specials is not None:
            ids = torch.tensor(self.specials, device=x.device)[None].expand(b, 2)  # [B, 2]
            cls, sep = self.hf.get_input_embeddings()(ids).to(x.dtype).split(1, dim=1)  # [B, 1, D] each
            x = torch.cat([cls, x, sep], dim=1)  # [B, S+2, D]
            mask = None if mask is None else wrap_mask(mask)  # [B, S+2, S+2]
        n = x.shape[1]
        if self.max_positions is not None and n > self.max_positions:
            extra = ", [CLS] and [SEP]" if self.specials else ""
            raise rmtzoo.InputError(
                f"{self.model_type} takes at most {self.max_positions} positions; this segment call has {n} "
                f"(memory tokens{extra} included): shorten segment.length or memory.num_tokens"
            )
        if self.model_type == "deberta-v2":
            hidden = self._deberta(x, mask)
        else:
            attn = (
                None if mask is None else four_d(mask, x.dtype, additive=self.attn_implementation != "sdpa")
            )
            kwargs = {"use_cache": False} if self.causal else {}
            hidden = self.hf.base_model(inputs_embeds=x, attention_mask=attn, **kwargs).last_hidden_state
        if self.specials is None:
            return backbone_output(hidden)  # [B, S, D]
        return backbone_output(hidden[:, 1:-1], pooled=hidden[:, 0])  # [B, S, D], [B, D]

    def _deberta(self, x, mask):
        """DeBERTa's top-level forward multiplies the embeddings by a (2D) mask, so a 4D mask goes straight
        to the encoder; with ``mask=None`` this is exactly what ``DebertaV2Model`` does for an all-ones mask."""
        base = self.hf.deberta
        b, s, _ = x.shape
        if mask is None:
            mask = torch.ones(b, s, s, dtype=torch.bool, device=x.device)
        emb = base.embeddings(inputs_embeds=x)
        attn = four_d(mask, x.dtype, additive=False)  # [B, 1, S, S] bool
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
        return nll_of(self.logits(hidden), targets)  # [B, T]


def _position_limit(config) -> int | None:
    """How many inputs the absolute position table allows (None: rotary or relative positions only)."""
    t = config.model_type
    if t in ("bert", "gpt2") or (t == "deberta-v2" and config.position_biased_input):
        return int(config.max_position_embeddings)
    if t == "roberta":  # positions start after the padding index
        return int(config.max_position_embeddings) - int(config.pad_token_id) - 1
    return None

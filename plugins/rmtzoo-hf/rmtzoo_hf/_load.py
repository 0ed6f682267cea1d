"""Loading a Hugging Face model (Hub name, local directory, or random weights from a config), its
tokenizer's special ids, and LoRA adapters. Every failure is a one-line ``rmtzoo.ConfigError``."""

from __future__ import annotations

import os

import rmtzoo
from torch import nn

TOKENIZER_FILES = {
    "tokenizer.json",
    "tokenizer_config.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "spm.model",
    "vocab.txt",
    "vocab.json",
}


def source(model: str) -> str:
    """A local directory as is; a path-like name that is not a directory is an error; else a Hub name."""
    expanded = os.path.expanduser(model)
    if os.path.isdir(expanded):
        return expanded
    pathlike = model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model
    if pathlike or os.path.exists(expanded):
        raise rmtzoo.ConfigError(f"backbone.model: local directory {model!r} does not exist")
    return model


def one_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def load(p, allowed: tuple[str, ...], auto_name: str):
    """The HF model for params ``p`` (``model`` / ``model_type`` / ``random_init`` / ``config_overrides`` /
    ``attn_implementation``), checked to be one of the ``allowed`` families."""
    import transformers
    from transformers import AutoConfig

    auto = getattr(transformers, auto_name)
    overrides = dict(p.config_overrides)
    try:
        if p.model is None:
            config = AutoConfig.for_model(p.model_type, **overrides)
        else:
            config = AutoConfig.from_pretrained(source(p.model), **overrides)
    except rmtzoo.ConfigError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise rmtzoo.ConfigError(
            f"backbone.model: cannot load the config of {p.model!r}: {one_line(err)}"
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
            model = auto.from_pretrained(source(p.model), config=config, **kwargs)
    except (OSError, ValueError) as err:
        raise rmtzoo.ConfigError(f"backbone.model: cannot load {p.model!r}: {one_line(err)}") from None
    return model


def tokenizer(p):
    """The tokenizer saved with ``p.model``, or None (random init without a model, or none saved)."""
    if p.model is None:
        return None
    from transformers import AutoTokenizer

    where = source(p.model)
    # transformers 5 builds an empty-vocabulary tokenizer for a directory that has none saved
    if os.path.isdir(where) and not any(name in TOKENIZER_FILES for name in os.listdir(where)):
        return None
    try:
        return AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def add_lora(model: nn.Module, lora) -> None:
    """Inject peft LoRA adapters into ``lora.target_modules``; only the adapters keep ``requires_grad``."""
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
    try:
        inject_adapter_in_model(config, model)
    except ValueError as err:  # e.g. no target_modules and an architecture peft has no default for
        raise rmtzoo.ConfigError(f"backbone.lora.target_modules: {one_line(err)}") from None
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)

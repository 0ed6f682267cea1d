"""Turn a validated config into a model: the only code that calls the component builders."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from rmtzoo._config import ExperimentConfig, check_capabilities, load_config
from rmtzoo._errors import UnavailableError
from rmtzoo._registry import Registry
from rmtzoo.attention import resolve_attention
from rmtzoo.model import RecurrentMemoryModel


def build_model(
    config: ExperimentConfig | Mapping[str, Any] | str | os.PathLike,
    *,
    registry: Registry | None = None,
    device: torch.device | str | None = None,
) -> RecurrentMemoryModel:
    """Build the model a config describes. Weights depend only on ``config.seed``; the global RNG
    is left untouched."""
    registry = registry if registry is not None else Registry()
    if isinstance(config, ExperimentConfig):
        check_capabilities(config, registry)
    else:
        config = load_config(config, registry=registry)
    attention_spec = resolve_attention(config.attention.kind, registry)
    reason = attention_spec.available()
    if reason is not None:
        raise UnavailableError(f"attention.kind: {attention_spec.name!r} cannot run here: {reason}")
    attention_params = config.attention.params if attention_spec.name == config.attention.kind else None
    attention = attention_spec.build(attention_params or attention_spec.params())
    backbone_spec = registry.get("backbones", config.backbone.kind)
    placement_spec = registry.get("memory_placements", config.memory.kind)
    recurrence_spec = registry.get("recurrences", config.recurrence.kind)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        backbone = backbone_spec.build(config.backbone.params, attention=attention)
        placement = placement_spec.build(config.memory.params, d_model=backbone.d_model)
    model = RecurrentMemoryModel(
        backbone=backbone,
        placement=placement,
        policy=recurrence_spec.build(config.recurrence.params),
        capabilities=backbone_spec.capabilities_for(config.backbone.params),
        segment_length=config.segment.length,
        last_segment=config.segment.last,
        checkpoint_activations=config.segment.checkpoint_activations,
    )
    model.attention_name = attention_spec.name
    return model.to(device) if device is not None else model

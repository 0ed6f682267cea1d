"""rmtzoo: the Recurrent Memory Transformer as composable, plugin-registered components.

Public surface (plugins import only from here)::

    import rmtzoo
    config = rmtzoo.load_config("examples/copy.toml", ["train.lr=3e-4"])
    model = rmtzoo.build_model(config)
    state = model.initial_state(batch_size=2)
    out, state = model.step(segment_ids, state)
    tokens = list(rmtzoo.generate(model, prompt_ids, max_new_tokens=20, top_k=5, temperature=0.8))

    pretrained = rmtzoo.load("runs/copy-<hash>")      # a run, checkpoint or pretrained folder, or a Hub id
    pretrained.save_pretrained("my-rmt")               # config.json + model.safetensors + a model card
    pretrained = rmtzoo.from_pretrained("my-rmt")      # .model, .config, .tokenizer, .results
"""

from rmtzoo._build import build_model
from rmtzoo._components import (
    AttentionSpec,
    BackboneCapabilities,
    BackboneOutput,
    BackboneSpec,
    BenchmarkSpec,
    NoParams,
    Params,
    PlacementSpec,
    RecurrencePolicy,
    RecurrenceSpec,
    RunInfo,
    TaskSpec,
)
from rmtzoo._config import (
    ExperimentConfig,
    config_json_schema,
    dump_config,
    format_validation_error,
    load_config,
)
from rmtzoo._errors import (
    CheckpointError,
    ConfigError,
    DuplicateComponentError,
    InputError,
    RmtzooError,
    UnavailableError,
    UnknownComponentError,
)
from rmtzoo._pretrained import Pretrained, from_pretrained, load, push_to_hub, save_pretrained
from rmtzoo._registry import PluginInfo, Registry, hookimpl
from rmtzoo._runtime import default_threads, resolve_device, set_threads
from rmtzoo.heads import PoolingHead
from rmtzoo.model import RecurrentMemoryModel, RecurrentState, SequenceOutput, StepOutput
from rmtzoo.train._generate import generate, generate_batch

__version__ = "0.1.0"

__all__ = [
    "AttentionSpec",
    "BackboneCapabilities",
    "BackboneOutput",
    "BackboneSpec",
    "BenchmarkSpec",
    "CheckpointError",
    "ConfigError",
    "DuplicateComponentError",
    "ExperimentConfig",
    "InputError",
    "NoParams",
    "Params",
    "PlacementSpec",
    "PluginInfo",
    "Pretrained",
    "PoolingHead",
    "RecurrenceSpec",
    "RecurrencePolicy",
    "RecurrentMemoryModel",
    "RecurrentState",
    "Registry",
    "RunInfo",
    "RmtzooError",
    "SequenceOutput",
    "StepOutput",
    "TaskSpec",
    "UnavailableError",
    "UnknownComponentError",
    "build_model",
    "config_json_schema",
    "default_threads",
    "dump_config",
    "format_validation_error",
    "from_pretrained",
    "generate",
    "generate_batch",
    "hookimpl",
    "load",
    "load_config",
    "push_to_hub",
    "resolve_device",
    "save_pretrained",
    "set_threads",
]

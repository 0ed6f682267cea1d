"""Validated experiment configs: frozen pydantic data with one ``{kind: NAME, ...params}`` block per axis.

Each block is validated against the params class the registry supplies for ``kind``, so plugin
components validate, dump and hash exactly like the built-ins. Combinations a component cannot support
(say, a Transformer-XL cache on a backbone that takes none) fail here, naming the field and the choices
that would work, before anything is built or run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SerializationInfo,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from rmtzoo._components import Params
from rmtzoo._errors import ConfigError, UnknownComponentError
from rmtzoo._io import atomic_write_text
from rmtzoo._registry import Registry

_ACTIVE_REGISTRY: ContextVar[Registry | None] = ContextVar("rmtzoo_active_registry", default=None)


def _registry(info: ValidationInfo | None) -> Registry:
    context = (info.context if info is not None else None) or {}
    registry = context.get("registry") or _ACTIVE_REGISTRY.get()
    return registry if registry is not None else Registry()


class AxisBlock(Params):
    """``{kind: NAME, ...params}``: a component by name with its validated parameters."""

    axis: ClassVar[str] = ""
    kind: str
    params: SerializeAsAny[Params]

    @model_validator(mode="before")
    @classmethod
    def _validate_against_registry(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, AxisBlock):
            data = data.model_dump()
        if not isinstance(data, Mapping):
            raise PydanticCustomError(
                "rmtzoo_block", "must be a table like {kind = NAME, ...}, got {got}", {"got": repr(data)}
            )
        data = dict(data)
        if "params" in data and isinstance(data["params"], Params):
            return data
        kind = data.pop("kind", None)
        if kind is None:
            raise PydanticCustomError("rmtzoo_block", "missing 'kind' (the component's registered name)")
        try:
            spec = _registry(info).get(cls.axis, kind)
        except UnknownComponentError as exc:
            raise PydanticCustomError("rmtzoo_block", "{msg}", {"msg": str(exc), "path": "kind"}) from None
        try:
            params = spec.params.model_validate(data, context=info.context)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise PydanticCustomError(
                "rmtzoo_block",
                "{msg}",
                {"msg": _message(first), "path": ".".join(str(p) for p in first["loc"])},
            ) from None
        return {"kind": kind, "params": params}

    @model_serializer(mode="plain")
    def _flat(self, info: SerializationInfo) -> dict[str, Any]:
        return {"kind": self.kind, **self.params.model_dump(mode=info.mode)}


class BackboneBlock(AxisBlock):
    axis: ClassVar[str] = "backbones"


class MemoryBlock(AxisBlock):
    axis: ClassVar[str] = "memory_placements"


class RecurrenceBlock(AxisBlock):
    axis: ClassVar[str] = "recurrences"


class AttentionBlock(AxisBlock):
    axis: ClassVar[str] = "attention_backends"


class TaskBlock(AxisBlock):
    axis: ClassVar[str] = "tasks"


class SegmentConfig(Params):
    """How a sequence is cut into segments.

    last: what happens to a last partial segment of a sequence whose length is not a multiple of
        ``length``: ``shorter`` processes it as a shorter segment with the same memory layout;
        ``error`` rejects such sequences.
    checkpoint_activations: per-segment activation checkpointing while a gradient is recorded: each
        segment's forward (and its loss) runs under ``torch.utils.checkpoint``, so BPTT through S
        segments keeps only what crosses segment boundaries (memory, cache, outputs) and recomputes one
        segment at a time in backward: the same gradients for about one more forward pass.
        ``"selective"``: selective activation checkpointing inside each segment instead: matmul outputs
        (the expensive ops) are kept, the cheap elementwise ops (norms, activations, softmax, adds) are
        recomputed in backward; less memory than none, less recomputation than ``true``. Left out of the
        dumped config (and so of ``content_hash``) while false: results do not depend on it.
    """

    length: PositiveInt
    last: Literal["shorter", "error"] = "shorter"
    checkpoint_activations: bool | Literal["selective"] = Field(False, exclude_if=lambda on: not on)

    @field_validator("checkpoint_activations", mode="plain")
    @classmethod
    def _checkpoint_mode(cls, value):
        if isinstance(value, bool) or value == "selective":
            return value
        raise ValueError("must be a boolean (true: per segment) or 'selective'")


class CurriculumConfig(Params):
    """Grow the number of segments a sample is cut into (the later RMT work's curriculum; not in the
    NeurIPS paper): train with ``segments[0]``, move to the next count when validation accuracy reaches
    ``advance_at``. Each count must tile the task's sample length."""

    segments: tuple[PositiveInt, ...]
    advance_at: float = Field(0.99, gt=0, le=1)


class TrainConfig(Params):
    """Defaults follow the paper's synthetic-task training (docs/paper-settings.md 2): Adam, constant lr halved on a
    validation plateau, clip 0.25. Language modelling used cosine annealing (docs/paper-settings.md 3.1)."""

    lr: PositiveFloat = 1e-4
    batch_size: PositiveInt = 32
    steps: PositiveInt = 1000
    grad_clip: PositiveFloat | None = 0.25
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["plateau", "constant", "cosine", "linear"] = "plateau"
    warmup_steps: NonNegativeInt = 0
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    plateau_patience: NonNegativeInt = 8
    min_lr: float = Field(1e-6, ge=0)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    log_every: PositiveInt = 50
    checkpoint_every: PositiveInt | None = None
    stop_at: float | None = Field(None, gt=0, le=1)
    curriculum: CurriculumConfig | None = None
    # torch.compile of the per-segment computation (RecurrentMemoryModel.compile_segments); the same
    # results up to float rounding, so left out of the dumped config (and the hash) while false
    compile: bool = Field(False, exclude_if=lambda on: not on)


class EvalConfig(Params):
    """every: evaluate on the validation split every N steps (and keep the best checkpoint).
    max_batches: cap evaluation at N batches, as the authors' ``max_eval_steps`` did (docs/paper-settings.md 2).
    test_max_batches: a cap for the test split (the final test run included), as the authors'
        ``max_test_steps`` did; unset, the final test covers the whole test split. Left out of the
        dumped config (and the hash) while unset."""

    batch_size: PositiveInt = 32
    every: PositiveInt = 1000
    max_batches: PositiveInt | None = None
    test_max_batches: PositiveInt | None = Field(None, exclude_if=lambda v: v is None)


class ExperimentConfig(Params):
    """One experiment: a component per axis plus segment, train and eval settings."""

    backbone: BackboneBlock
    memory: MemoryBlock = Field(default={"kind": "none"}, validate_default=True)
    recurrence: RecurrenceBlock = Field(default={"kind": "none"}, validate_default=True)
    attention: AttentionBlock = Field(default={"kind": "auto"}, validate_default=True)
    task: TaskBlock | None = None
    segment: SegmentConfig
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    seed: NonNegativeInt = 0

    @model_validator(mode="wrap")
    @classmethod
    def _with_registry(cls, data: Any, handler, info: ValidationInfo) -> ExperimentConfig:
        registry = _registry(info)
        registry.check()  # a broken plugin fails once, here, not once per axis block
        token = _ACTIVE_REGISTRY.set(registry)
        try:
            config = handler(data)
        finally:
            _ACTIVE_REGISTRY.reset(token)
        if isinstance(config, ExperimentConfig):
            check_capabilities(config, registry)
        return config

    def content_hash(self) -> str:
        """A stable hash of the config's content (results are keyed by it)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def check_capabilities(config: ExperimentConfig, registry: Registry) -> None:
    """Reject combinations a component cannot support; the message names the field and what would work."""
    backbone = registry.get("backbones", config.backbone.kind)
    caps = backbone.capabilities_for(config.backbone.params)
    placement = registry.get("memory_placements", config.memory.kind)
    recurrence = registry.get("recurrences", config.recurrence.kind)
    ok_placements = [p.name for p in registry.specs("memory_placements") if caps.causal or not p.requires_causal]
    if placement.requires_causal and not caps.causal:
        raise ConfigError(
            f"memory.kind: {placement.name!r} needs a causal backbone and backbone {backbone.name!r} is "
            f"bidirectional; allowed with it: {', '.join(ok_placements)}"
        )
    ok_recurrences = [
        r.name
        for r in registry.specs("recurrences")
        if (placement.has_memory or not r.carries_memory)
        and (caps.accepts_cache or not r.uses_cache)
        and (caps.associative_memory or not r.carries_associative)
    ]
    if recurrence.carries_memory and not placement.has_memory:
        with_memory = [p.name for p in registry.specs("memory_placements") if p.has_memory and p.name in ok_placements]
        raise ConfigError(
            f"recurrence.kind: {recurrence.name!r} carries memory between segments but memory.kind "
            f"{placement.name!r} places no memory tokens; use memory.kind one of: {', '.join(with_memory)}, "
            f"or recurrence.kind one of: {', '.join(ok_recurrences)}"
        )
    if recurrence.uses_cache and not caps.accepts_cache:
        raise ConfigError(
            f"recurrence.kind: {recurrence.name!r} needs a backbone that accepts a Transformer-XL cache and "
            f"backbone {backbone.name!r} does not; allowed with it: {', '.join(ok_recurrences)}"
        )
    if recurrence.carries_associative and not caps.associative_memory:
        able = [b.name for b in registry.specs("backbones") if _declares(b, "associative_memory")]
        raise ConfigError(
            f"recurrence.kind: {recurrence.name!r} carries an associative memory and backbone "
            f"{backbone.name!r} has none; use backbone.kind one of: {', '.join(able) or '(none registered)'}, "
            f"or recurrence.kind one of: {', '.join(ok_recurrences)}"
        )
    if not caps.arbitrary_mask:
        _check_causal_order(config, registry, backbone.name)
    if config.task is not None:
        task = registry.get("tasks", config.task.kind)
        for flag in task.needs:
            if not getattr(caps, flag, False):
                able = [b.name for b in registry.specs("backbones") if _declares(b, flag)]
                raise ConfigError(
                    f"backbone.kind: task {task.name!r} needs a backbone with the {flag} capability and "
                    f"{backbone.name!r} does not declare it" + (f"; backbones that do: {', '.join(able)}" if able else "")
                )
        if task.vocab_size is not None:
            need = task.vocab_size(config.task.params)
            have = getattr(config.backbone.params, "vocab_size", None)
            if have is not None and have < need:
                raise ConfigError(
                    f"backbone.vocab_size: {have} is smaller than task {task.name!r}'s vocabulary of {need}"
                )


def _check_causal_order(config: ExperimentConfig, registry: Registry, backbone: str) -> None:
    """A causal-order-only backbone shows each position every earlier one: the placement's mask must not
    hide any of those keys (checked on a small layout; placement masks are structural)."""
    import torch

    with torch.random.fork_rng(devices=[]):  # validation leaves the global RNG alone
        placement = registry.get("memory_placements", config.memory.kind).build(config.memory.params, d_model=1)
    policy = registry.get("recurrences", config.recurrence.kind).build(config.recurrence.params)
    n_cache = 2 if policy.cache_len else 0
    mask = placement.mask(3, n_cache, causal=True, memory_reads_cache=policy.memory_reads_cache)  # [S, C+S]
    order = torch.ones(mask.shape, dtype=torch.bool).tril(n_cache)
    if (order & ~mask).any():
        if policy.cache_len and "memory_reads_cache" in type(config.recurrence.params).model_fields:
            fix = "recurrence.memory_reads_cache: set it to true (memory tokens then read the Transformer-XL cache)"
        elif policy.cache_len:
            fix = f"recurrence.kind: {config.recurrence.kind!r} keeps memory from reading the cache"
        else:
            fix = f"memory.kind: {config.memory.kind!r} hides keys that come earlier in the sequence"
        raise ConfigError(
            f"{fix.split(':')[0]}: backbone {backbone!r} follows its causal order only and cannot hide what the "
            f"{config.memory.kind!r} placement's mask hides; {fix.split(': ', 1)[1]}"
        )


def _declares(spec, flag: str) -> bool:
    """Whether a backbone declares a capability flag (for one whose capabilities depend on its params:
    with its ``test_params``)."""
    try:
        return bool(getattr(spec.capabilities_for(spec.params(**spec.test_params)), flag, False))
    except Exception:  # a plugin's params that do not build from its test_params: not listed
        return False


# -- loading, overrides, dumping -------------------------------------------------------------------
def load_config(
    source: str | os.PathLike | Mapping[str, Any] | ExperimentConfig,
    overrides: Sequence[str] = (),
    *,
    registry: Registry | None = None,
) -> ExperimentConfig:
    """Load and validate a config from a TOML/YAML/JSON file, a mapping or a config, plus overrides.

    Overrides are dotted ``key.path=value`` strings; the value is read as JSON when it parses
    (``3e-4``, ``true``, ``[1, 2]``, ``null``) and as a plain string otherwise.
    """
    if isinstance(source, ExperimentConfig):
        data = source.model_dump(mode="json")
    elif isinstance(source, Mapping):
        data = json.loads(json.dumps(source))  # a deep copy we may mutate
    else:
        data = read_config_file(source)
    for item in overrides:
        apply_override(data, item)
    registry = registry if registry is not None else Registry()
    registry.check()  # a plugin that raises or registers a name twice: its own one-line error
    try:
        return ExperimentConfig.model_validate(data, context={"registry": registry})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    suffix = path.suffix.lower()
    if suffix not in {".toml", ".yaml", ".yml", ".json"}:
        raise ConfigError(f"config file {str(path)!r}: unknown format {suffix!r}; use .toml, .yaml, .yml or .json")
    try:
        text = path.read_text(encoding="utf-8")
        if suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
        elif suffix in {".yaml", ".yml"}:
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"config file {str(path)!r} is not valid {suffix[1:].upper()}: {detail}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a table/mapping at top level")
    return data


def apply_override(data: dict[str, Any], item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not all(key.strip().split(".")):
        raise ConfigError(f"override {item!r} must look like key.path=value (e.g. train.lr=3e-4)")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    try:
        set_dotted(data, key.strip(), value)
    except ConfigError as exc:
        raise ConfigError(f"override {item!r}: {exc}") from None


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(d, "train.lr", 1e-3)`` sets ``d["train"]["lr"]``, creating tables on the way."""
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(parts[: i + 1])} is not a table")
        node = child
    node[parts[-1]] = value


def dump_config(config: ExperimentConfig, path: str | os.PathLike) -> Path:
    """Write ``config`` as JSON or YAML (by suffix), atomically."""
    path = Path(path)
    data = config.model_dump(mode="json")
    if path.suffix.lower() in {".yaml", ".yml"}:
        import yaml

        text = yaml.safe_dump(data, sort_keys=False)
    elif path.suffix.lower() == ".json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        raise ConfigError(f"dump path {str(path)!r}: use .json, .yaml or .yml")
    atomic_write_text(path, text)
    return path


def format_validation_error(exc: ValidationError) -> str:
    """One line: ``field.path: message`` for each error, joined by '; '."""
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        ctx = err.get("ctx") or {}
        if err["type"] == "rmtzoo_block" and ctx.get("path"):
            loc.append(ctx["path"])
        # a whole-config (capability) error already names its field path
        parts.append(f"{'.'.join(loc)}: {_message(err)}" if loc else _message(err, show_input=False))
    return "config: " + "; ".join(parts)


def _message(err: Mapping[str, Any], *, show_input: bool = True) -> str:
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        return "unknown key (not a field of this block)"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if show_input and err["type"] not in {"missing", "rmtzoo_block"} and "input" in err:
        got = repr(err["input"])
        msg += f" (got {got if len(got) < 60 else got[:57] + '...'})"
    return " ".join(msg.split())


def config_json_schema(registry: Registry | None = None) -> dict[str, Any]:
    """The JSON Schema of :class:`ExperimentConfig` with every registered component's parameters."""
    from typing import Annotated, Union

    from pydantic import create_model

    registry = registry if registry is not None else Registry()

    def union(axis: str):
        variants = [
            create_model(
                f"{axis}__{spec.name}",
                __base__=spec.params,
                __doc__=spec.summary,
                kind=(Literal[spec.name], ...),
            )
            for spec in registry.specs(axis)
        ]
        return Annotated[Union[tuple(variants)], Field(discriminator="kind")]  # noqa: UP007

    fields: dict[str, Any] = {
        "backbone": (union("backbones"), ...),
        "memory": (union("memory_placements"), {"kind": "none"}),
        "recurrence": (union("recurrences"), {"kind": "none"}),
        "attention": (union("attention_backends"), {"kind": "auto"}),
        "segment": (SegmentConfig, ...),
        "train": (TrainConfig, TrainConfig()),
        "eval": (EvalConfig, EvalConfig()),
        "seed": (NonNegativeInt, 0),
    }
    if registry.names("tasks"):
        fields["task"] = (union("tasks") | None, None)
    schema_model = create_model("ExperimentConfig", __base__=Params, **fields)
    return schema_model.model_json_schema()

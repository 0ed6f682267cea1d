"""Configs: file formats, overrides, validation messages, plugin params, hashing and the JSON schema."""

from __future__ import annotations

import json
import textwrap

import pydantic
import pytest
import yaml

import rmtzoo
from rmtzoo._config import apply_override, read_config_file
from rmtzoo._registry import HOOK_OF_AXIS

TOML = """\
seed = 3

[backbone]
kind = "transformer_xl"
vocab_size = 12
n_layer = 2
d_model = 32

[memory]
kind = "read_write"
num_tokens = 4

[recurrence]
kind = "rmt"
bptt_depth = 2

[segment]
length = 8

[train]
lr = 0.001
steps = 5
"""

DATA = {
    "seed": 3,
    "backbone": {"kind": "transformer_xl", "vocab_size": 12, "n_layer": 2, "d_model": 32},
    "memory": {"kind": "read_write", "num_tokens": 4},
    "recurrence": {"kind": "rmt", "bptt_depth": 2},
    "segment": {"length": 8},
    "train": {"lr": 0.001, "steps": 5},
}

# a small valid base for the error cases
BASE = {"backbone": {"kind": "transformer_xl", "vocab_size": 12}, "segment": {"length": 4}}
TOY = {"backbone": {"kind": "toy_mixer", "vocab_size": 11, "d_model": 8}, "segment": {"length": 4}}


@pytest.fixture
def toml_file(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(TOML)
    return path


def check_config(config: rmtzoo.ExperimentConfig) -> None:
    assert config.seed == 3
    assert config.backbone.kind == "transformer_xl"
    assert (config.backbone.params.vocab_size, config.backbone.params.n_layer, config.backbone.params.d_model) == (
        12,
        2,
        32,
    )
    assert config.backbone.params.n_head == 4  # a default filled in
    assert config.memory.kind == "read_write" and config.memory.params.num_tokens == 4
    assert config.recurrence.kind == "rmt" and config.recurrence.params.bptt_depth == 2
    assert config.attention.kind == "auto"
    assert config.segment.length == 8 and config.segment.last == "shorter"
    assert config.train.lr == 0.001 and config.train.steps == 5 and config.train.batch_size == 32


# -- loading ----------------------------------------------------------------------------------------------
def test_load_toml(toml_file, registry):
    check_config(rmtzoo.load_config(toml_file, registry=registry))
    check_config(rmtzoo.load_config(str(toml_file), registry=registry))


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_load_yaml(tmp_path, registry, suffix):
    path = tmp_path / f"exp{suffix}"
    path.write_text(yaml.safe_dump(DATA))
    check_config(rmtzoo.load_config(path, registry=registry))


def test_load_json(tmp_path, registry):
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(DATA))
    check_config(rmtzoo.load_config(path, registry=registry))


def test_load_mapping_and_config(registry):
    config = rmtzoo.load_config(DATA, registry=registry)
    check_config(config)
    again = rmtzoo.load_config(config, ["seed=4"], registry=registry)
    assert again.seed == 4 and config.seed == 3
    assert DATA["seed"] == 3  # the mapping given is not mutated by overrides
    rmtzoo.load_config(DATA, ["backbone.vocab_size=13"], registry=registry)
    assert DATA["backbone"]["vocab_size"] == 12


def test_same_content_in_every_format_has_the_same_hash(tmp_path, toml_file, registry):
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(DATA))
    (tmp_path / "exp.json").write_text(json.dumps(DATA))
    hashes = {
        rmtzoo.load_config(p, registry=registry).content_hash()
        for p in [toml_file, tmp_path / "exp.yaml", tmp_path / "exp.json"]
    }
    assert len(hashes) == 1
    assert rmtzoo.load_config(DATA, registry=registry).content_hash() in hashes


# -- overrides --------------------------------------------------------------------------------------------
def test_override_number_is_parsed(toml_file, registry):
    config = rmtzoo.load_config(toml_file, ["train.lr=3e-4"], registry=registry)
    assert isinstance(config.train.lr, float) and config.train.lr == pytest.approx(3e-4)
    config = rmtzoo.load_config(toml_file, ["train.steps=7", "eval.max_batches=null"], registry=registry)
    assert config.train.steps == 7 and config.eval.max_batches is None


def test_override_string_kind(toml_file, registry):
    config = rmtzoo.load_config(toml_file, ["memory.kind=shared"], registry=registry)
    assert config.memory.kind == "shared"
    # the other keys of the block are kept and validated against the new kind
    assert config.memory.params.num_tokens == 4


def test_override_bool_and_list(registry):
    config = rmtzoo.load_config(
        BASE, ["backbone.pre_lnorm=true", "backbone.adaptive_cutoffs=[4, 8]"], registry=registry
    )
    assert config.backbone.params.pre_lnorm is True
    assert config.backbone.params.adaptive_cutoffs == (4, 8)


def test_override_creates_nested_tables(registry):
    config = rmtzoo.load_config(
        BASE, ["memory.kind=shared", "memory.num_tokens=3", "eval.every=5", "recurrence.kind=rmt"], registry=registry
    )
    assert config.memory.kind == "shared" and config.memory.params.num_tokens == 3
    assert config.eval.every == 5 and config.recurrence.kind == "rmt"
    data: dict = {}
    apply_override(data, "a.b.c=1")
    assert data == {"a": {"b": {"c": 1}}}


def test_override_later_wins(registry):
    config = rmtzoo.load_config(BASE, ["seed=1", "seed=2"], registry=registry)
    assert config.seed == 2


def test_override_value_may_contain_equals(registry):
    data: dict = {}
    apply_override(data, "note=a=b")
    assert data == {"note": "a=b"}


@pytest.mark.parametrize("item", ["train.lr", "=3", "train..lr=3", ".lr=1", "train.=1", ""])
def test_malformed_override(item, registry):
    with pytest.raises(rmtzoo.ConfigError) as err:
        rmtzoo.load_config(BASE, [item], registry=registry)
    assert f"override {item!r} must look like key.path=value" in str(err.value)


def test_override_through_a_value_is_rejected(registry):
    with pytest.raises(rmtzoo.ConfigError, match=r"override 'segment.length.x=1': segment.length is not a table"):
        rmtzoo.load_config(BASE, ["segment.length.x=1"], registry=registry)


# -- frozen -----------------------------------------------------------------------------------------------
def test_config_is_frozen(registry):
    config = rmtzoo.load_config(BASE, registry=registry)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        config.seed = 5
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        config.train.lr = 1.0
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        config.backbone.params.vocab_size = 20
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        config.backbone.kind = "transformer_xl_encoder"
    assert config.seed == 0 and config.backbone.params.vocab_size == 12


# -- unknown keys and invalid values ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["colour=1"], "config: colour: unknown key"),
        (["train.bogus=1"], "config: train.bogus: unknown key"),
        (["segment.lenght=4"], "config: segment.lenght: unknown key"),
        (["backbone.n_layers=3"], "config: backbone.n_layers: unknown key"),
        (["memory.kind=read_write", "memory.size=3"], "config: memory.size: unknown key"),
        (["recurrence.kind=none", "recurrence.bptt_depth=1"], "config: recurrence.bptt_depth: unknown key"),
        (["attention.kind=eager", "attention.heads=2"], "config: attention.heads: unknown key"),
    ],
)
def test_unknown_keys_rejected_with_path(overrides, expected, registry):
    with pytest.raises(rmtzoo.ConfigError) as err:
        rmtzoo.load_config(BASE, overrides, registry=registry)
    assert str(err.value).startswith(expected)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["memory.kind=read_write", "memory.num_tokens=-1"], "config: memory.num_tokens: Input should be greater than 0"),
        (["memory.kind=shared", "memory.num_tokens=0"], "config: memory.num_tokens: Input should be greater than 0"),
        (["segment.length=0"], "config: segment.length: Input should be greater than 0"),
        (["segment.length=-2"], "config: segment.length: Input should be greater than 0 (got -2)"),
        (["segment.last=drop"], "config: segment.last: Input should be 'shorter' or 'error'"),
        (["train.lr=0"], "config: train.lr: Input should be greater than 0"),
        (["train.lr=fast"], "config: train.lr: Input should be a valid number"),
        (["seed=-1"], "config: seed: Input should be greater than or equal to 0"),
        (["backbone.vocab_size=0"], "config: backbone.vocab_size: Input should be greater than 0"),
        (["backbone.dropout=1.5"], "config: backbone.dropout: Input should be less than 1"),
        (["recurrence.kind=xl", "recurrence.cache_len=0"], "config: recurrence.cache_len: Input should be greater than 0"),
        (["backbone.adaptive_cutoffs=[8, 4]"], "config: backbone: adaptive_cutoffs must increase strictly"),
        (["backbone.kind=transfomer_xl"], "config: backbone.kind: unknown backbone 'transfomer_xl'; did you mean 'transformer_xl'"),
        (["memory.kind=sharde"], "config: memory.kind: unknown memory placement 'sharde'; did you mean 'shared'"),
        (["attention.kind=flash"], "config: attention.kind: unknown attention backend 'flash'"),
        (["backbone=3"], "config: backbone: must be a table like {kind = NAME, ...}, got 3"),
        (["memory.num_tokens=3"], "config: memory: missing 'kind'"),
    ],
)
def test_invalid_values(overrides, expected, registry):
    with pytest.raises(rmtzoo.ConfigError) as err:
        rmtzoo.load_config(BASE, overrides, registry=registry)
    assert str(err.value).startswith(expected), str(err.value)
    assert "\n" not in str(err.value)


def test_missing_required_fields(registry):
    with pytest.raises(rmtzoo.ConfigError) as err:
        rmtzoo.load_config({"backbone": {"kind": "transformer_xl", "vocab_size": 12}}, registry=registry)
    assert str(err.value) == "config: segment: Field required"
    with pytest.raises(rmtzoo.ConfigError, match="config: backbone: Field required"):
        rmtzoo.load_config({"segment": {"length": 4}}, registry=registry)
    with pytest.raises(rmtzoo.ConfigError, match="backbone.vocab_size: Field required"):
        rmtzoo.load_config({"backbone": {"kind": "transformer_xl"}, "segment": {"length": 4}}, registry=registry)


def test_several_errors_in_one_line(registry):
    with pytest.raises(rmtzoo.ConfigError) as err:
        rmtzoo.load_config(BASE, ["segment.length=0", "train.steps=0", "colour=red"], registry=registry)
    message = str(err.value)
    assert "\n" not in message
    for part in ["segment.length:", "train.steps:", "colour: unknown key"]:
        assert part in message


# -- capability checks ------------------------------------------------------------------------------------
def test_read_write_on_bidirectional_backbone(registry):
    with pytest.raises(rmtzoo.ConfigError) as err:
        rmtzoo.load_config(BASE, ["backbone.kind=transformer_xl_encoder", "memory.kind=read_write"], registry=registry)
    message = str(err.value)
    assert message.startswith("config: memory.kind: 'read_write' needs a causal backbone")
    assert "'transformer_xl_encoder' is bidirectional" in message
    assert message.endswith("allowed with it: none, shared")
    # the allowed ones do validate
    for kind in ["none", "shared"]:
        rmtzoo.load_config(BASE, ["backbone.kind=transformer_xl_encoder", f"memory.kind={kind}"], registry=registry)


@pytest.mark.parametrize("recurrence", ["rmt", "rmt_xl"])
def test_memory_recurrence_without_memory(recurrence, registry):
    with pytest.raises(rmtzoo.ConfigError) as err:
        rmtzoo.load_config(BASE, [f"recurrence.kind={recurrence}"], registry=registry)
    message = str(err.value)
    assert message.startswith(f"config: recurrence.kind: '{recurrence}' carries memory between segments")
    assert "memory.kind 'none' places no memory tokens" in message
    assert "use memory.kind one of: read_write, shared, or recurrence.kind one of: none, xl" in message


@pytest.mark.parametrize("recurrence", ["xl", "rmt_xl"])
def test_cache_recurrence_on_toy_mixer(recurrence, registry):
    overrides = [f"recurrence.kind={recurrence}", "memory.kind=read_write"]
    with pytest.raises(rmtzoo.ConfigError) as err:
        rmtzoo.load_config(TOY, overrides, registry=registry)
    message = str(err.value)
    assert message.startswith(f"config: recurrence.kind: '{recurrence}' needs a backbone that accepts a Transformer-XL cache")
    assert "backbone 'toy_mixer' does not" in message
    assert message.endswith("allowed with it: none, rmt")
    # and the same recurrence validates on the built-in decoder
    rmtzoo.load_config(BASE, overrides, registry=registry)


def test_cache_recurrence_on_encoder(registry):
    with pytest.raises(rmtzoo.ConfigError, match="recurrence.kind: 'xl'.*'transformer_xl_encoder' does not"):
        rmtzoo.load_config(BASE, ["backbone.kind=transformer_xl_encoder", "recurrence.kind=xl"], registry=registry)


def test_every_supported_combination_validates(registry):
    ok = 0
    for backbone in ["transformer_xl", "transformer_xl_encoder", "toy_mixer"]:
        spec = registry.get("backbones", backbone)
        for placement in registry.specs("memory_placements"):
            for rec in registry.specs("recurrences"):
                caps = spec.capabilities
                allowed = (
                    (caps.causal or not placement.requires_causal)
                    and (placement.has_memory or not rec.carries_memory)
                    and (caps.accepts_cache or not rec.uses_cache)
                    and (caps.associative_memory or not rec.carries_associative)
                )
                data = {
                    "backbone": {"kind": backbone, **spec.test_params},
                    "memory": {"kind": placement.name},
                    "recurrence": {"kind": rec.name},
                    "segment": {"length": 4},
                }
                if allowed:
                    rmtzoo.load_config(data, registry=registry)
                    ok += 1
                else:
                    with pytest.raises(rmtzoo.ConfigError):
                        rmtzoo.load_config(data, registry=registry)
    # decoder: 3 placements x 4 recurrences minus 2 (memory recurrences without memory) = 10
    # encoder: 2 placements (none, shared) x 2 recurrences (none, rmt) minus 1 (rmt without memory) = 3
    # toy_mixer: 3 placements x 2 recurrences (none, rmt) minus 1 = 5
    assert ok == 18


# -- malformed, missing and unknown files -----------------------------------------------------------------
@pytest.mark.parametrize(
    "name, text, kind",
    [
        ("bad.toml", "[backbone\nkind = 1\n", "TOML"),
        ("bad.toml", "seed = = 3\n", "TOML"),
        ("bad.yaml", "backbone: [1,\n  kind\n", "YAML"),
        ("bad.yml", "a: b: c\n", "YML"),
        ("bad.json", '{"backbone": ', "JSON"),
        ("bad.json", "{'single': 'quotes'}", "JSON"),
    ],
)
def test_malformed_file_gives_one_line_naming_the_file(tmp_path, name, text, kind, registry):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(rmtzoo.ConfigError) as err:
        rmtzoo.load_config(path, registry=registry)
    message = str(err.value)
    assert message.startswith(f"config file {str(path)!r} is not valid {kind}: ")
    assert "\n" not in message


def test_file_that_is_not_utf8(tmp_path, registry):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[backbone]\nkind = "caf\xe9"\n')
    with pytest.raises(rmtzoo.ConfigError) as err:
        rmtzoo.load_config(path, registry=registry)
    assert str(err.value).startswith(f"config file {str(path)!r} is not valid TOML: ")
    assert "utf-8" in str(err.value)


@pytest.mark.parametrize("name, text", [("list.yaml", "- 1\n- 2\n"), ("empty.yaml", ""), ("num.json", "3")])
def test_file_without_a_table(tmp_path, name, text, registry):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(rmtzoo.ConfigError, match="must hold a table/mapping at top level"):
        rmtzoo.load_config(path, registry=registry)


def test_missing_file(tmp_path, registry):
    path = tmp_path / "nope.toml"
    with pytest.raises(rmtzoo.ConfigError) as err:
        rmtzoo.load_config(path, registry=registry)
    assert str(err.value) == f"config file {str(path)!r} not found"
    with pytest.raises(rmtzoo.ConfigError, match="not found"):
        rmtzoo.load_config(tmp_path, registry=registry)  # a directory is not a config file


@pytest.mark.parametrize("name", ["exp.ini", "exp.txt", "exp"])
def test_unknown_suffix(tmp_path, name, registry):
    path = tmp_path / name
    path.write_bytes(b"\xff\xfe not even text")
    with pytest.raises(rmtzoo.ConfigError) as err:
        rmtzoo.load_config(path, registry=registry)
    assert str(err.value).startswith(f"config file {str(path)!r}: unknown format")
    assert "use .toml, .yaml, .yml or .json" in str(err.value)


def test_uppercase_suffix(tmp_path, registry):
    path = tmp_path / "EXP.TOML"
    path.write_text(TOML)
    check_config(rmtzoo.load_config(path, registry=registry))


def test_read_config_file_returns_plain_data(toml_file):
    assert read_config_file(toml_file) == DATA


# -- plugin params ----------------------------------------------------------------------------------------
def test_plugin_params_validate(registry):
    config = rmtzoo.load_config(TOY, ["memory.kind=read_write", "recurrence.kind=rmt"], registry=registry)
    params = config.backbone.params
    assert type(params).__name__ == "ToyMixerParams"
    assert (params.vocab_size, params.d_model, params.n_layer) == (11, 8, 2)
    with pytest.raises(rmtzoo.ConfigError, match="config: backbone.n_head: unknown key"):
        rmtzoo.load_config(TOY, ["backbone.n_head=2"], registry=registry)
    with pytest.raises(rmtzoo.ConfigError, match="config: backbone.d_model: Input should be greater than 0"):
        rmtzoo.load_config(TOY, ["backbone.d_model=0"], registry=registry)


def test_plugin_config_needs_the_plugin(registry):
    bare = rmtzoo.Registry(environ={}, entry_points=False)
    with pytest.raises(rmtzoo.ConfigError, match="backbone.kind: unknown backbone 'toy_mixer'"):
        rmtzoo.load_config(TOY, registry=bare)


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_plugin_params_round_trip(tmp_path, suffix, registry):
    config = rmtzoo.load_config(
        TOY, ["memory.kind=shared", "memory.init=single_vector", "recurrence.kind=rmt", "train.lr=3e-4"], registry=registry
    )
    path = rmtzoo.dump_config(config, tmp_path / f"dumped{suffix}")
    assert path.is_file()
    again = rmtzoo.load_config(path, registry=registry)
    assert again == config
    assert again.content_hash() == config.content_hash()
    assert again.model_dump(mode="json") == config.model_dump(mode="json")
    assert again.model_dump(mode="json")["backbone"] == {"kind": "toy_mixer", "vocab_size": 11, "d_model": 8, "n_layer": 2}
    assert again.train.lr == pytest.approx(3e-4)
    # no temporary files are left beside the dump
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_dump_unknown_suffix(tmp_path, registry):
    config = rmtzoo.load_config(BASE, registry=registry)
    with pytest.raises(rmtzoo.ConfigError, match="use .json, .yaml or .yml"):
        rmtzoo.dump_config(config, tmp_path / "out.toml")
    assert list(tmp_path.iterdir()) == []


# -- content hash -----------------------------------------------------------------------------------------
def test_hash_is_stable_under_key_order(tmp_path, registry):
    reordered = textwrap.dedent(
        """\
        [train]
        steps = 5
        lr = 0.001

        [segment]
        length = 8

        [recurrence]
        bptt_depth = 2
        kind = "rmt"

        [memory]
        num_tokens = 4
        kind = "read_write"

        [backbone]
        d_model = 32
        n_layer = 2
        vocab_size = 12
        kind = "transformer_xl"
        """
    ).replace("[train]", "seed = 3\n\n[train]")
    (tmp_path / "a.toml").write_text(TOML)
    (tmp_path / "b.toml").write_text(reordered)
    a = rmtzoo.load_config(tmp_path / "a.toml", registry=registry)
    b = rmtzoo.load_config(tmp_path / "b.toml", registry=registry)
    assert a.content_hash() == b.content_hash()
    assert len(a.content_hash()) == 16 and int(a.content_hash(), 16) >= 0
    # the same value written explicitly as its default is the same content
    assert rmtzoo.load_config(tmp_path / "a.toml", ["train.batch_size=32"], registry=registry).content_hash() == a.content_hash()
    # the hash does not depend on the registry object, only on the content
    assert rmtzoo.load_config(tmp_path / "a.toml", registry=rmtzoo.Registry(environ={})).content_hash() == a.content_hash()


@pytest.mark.parametrize(
    "override",
    ["seed=4", "train.lr=0.002", "backbone.d_model=64", "memory.num_tokens=5", "recurrence.bptt_depth=1",
     "memory.kind=shared", "attention.kind=eager", "segment.last=error", "eval.every=7"],
)
def test_hash_changes_with_any_value(toml_file, override, registry):
    base = rmtzoo.load_config(toml_file, registry=registry).content_hash()
    assert rmtzoo.load_config(toml_file, [override], registry=registry).content_hash() != base


def test_hash_is_deterministic_value(registry):
    """The hash is a pure function of the content: recomputing it from a dump gives the same string."""
    import hashlib

    config = rmtzoo.load_config(BASE, registry=registry)
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    assert config.content_hash() == hashlib.sha256(canonical.encode()).hexdigest()[:16]


# -- JSON schema ------------------------------------------------------------------------------------------
SCHEMA_FIELDS = {
    "backbone": "backbones",
    "memory": "memory_placements",
    "recurrence": "recurrences",
    "attention": "attention_backends",
}


def test_schema_has_every_registered_kind_as_a_variant(registry):
    schema = rmtzoo.config_json_schema(registry)
    json.dumps(schema)  # serialisable
    assert set(schema["required"]) == {"backbone", "segment"}
    for field, axis in SCHEMA_FIELDS.items():
        prop = schema["properties"][field]
        assert prop["discriminator"]["propertyName"] == "kind"
        names = registry.names(axis)
        assert names and sorted(prop["discriminator"]["mapping"]) == names
        assert len(prop["oneOf"]) == len(names)
        for name in names:
            ref = prop["discriminator"]["mapping"][name]
            variant = schema["$defs"][ref.rsplit("/", 1)[1]]
            assert variant["properties"]["kind"]["const"] == name
            assert "kind" in variant["required"]
            assert variant["additionalProperties"] is False
            assert variant["description"] == registry.get(axis, name).summary


def test_schema_includes_plugin_params(registry):
    schema = rmtzoo.config_json_schema(registry)
    toy = schema["$defs"]["backbones__toy_mixer"]
    assert set(toy["properties"]) == {"kind", "vocab_size", "d_model", "n_layer"}
    assert toy["properties"]["d_model"]["default"] == 16
    assert set(toy["required"]) == {"kind", "vocab_size"}
    assert schema["properties"]["backbone"]["discriminator"]["mapping"]["toy_mixer"] == "#/$defs/backbones__toy_mixer"
    xl = schema["$defs"]["recurrences__xl"]
    assert xl["properties"]["cache_len"]["default"] == 150


def test_schema_follows_the_registry():
    from rmtzoo import _builtins

    sample_tasks = {"copy", "reverse", "associative_retrieval", "quadratic_equations"}
    task_builtins = [name for name, plugin in _builtins.PLUGINS if hasattr(plugin, "rmtzoo_register_tasks")]
    registry = rmtzoo.Registry(environ={}, entry_points=False)
    bare = rmtzoo.config_json_schema(registry)
    assert "backbones__toy_mixer" not in bare["$defs"]
    assert sorted(bare["properties"]["backbone"]["discriminator"]["mapping"]) == ["armt", "transformer_xl", "transformer_xl_encoder"]
    # the built-in task plugins give an optional task field with one variant per task
    (task_union,) = [v for v in bare["properties"]["task"]["anyOf"] if "discriminator" in v]
    assert sorted(task_union["discriminator"]["mapping"]) == registry.names("tasks")
    assert sample_tasks <= set(task_union["discriminator"]["mapping"])
    assert "task" not in bare["required"]
    # blocking the samples plugin drops its tasks from the schema
    no_samples = rmtzoo.config_json_schema(rmtzoo.Registry(environ={}, entry_points=False, block=["rmtzoo.tasks.samples"]))
    assert not {f"tasks__{t}" for t in sample_tasks} & set(no_samples["$defs"])
    remaining = [v for v in no_samples["properties"].get("task", {}).get("anyOf", []) if "discriminator" in v]
    assert {n for v in remaining for n in v["discriminator"]["mapping"]} == set(registry.names("tasks")) - sample_tasks
    # no task plugin at all: no task field
    no_tasks = rmtzoo.config_json_schema(rmtzoo.Registry(environ={}, entry_points=False, block=task_builtins))
    assert "task" not in no_tasks["properties"]
    assert not any(name.startswith("tasks__") for name in no_tasks["$defs"])


def test_schema_default_registry_has_builtins():
    schema = rmtzoo.config_json_schema()
    assert {"transformer_xl", "transformer_xl_encoder"} <= set(schema["properties"]["backbone"]["discriminator"]["mapping"])


# -- every message is one line ------------------------------------------------------------------------------
def test_every_config_error_is_one_line(tmp_path, registry):
    (tmp_path / "bad.yaml").write_text("a:\n  - [\n  b: c\n")
    (tmp_path / "bad.json").write_text('{\n  "a": 1,\n  "b":\n}\n')
    cases = [
        (tmp_path / "bad.yaml", []),
        (tmp_path / "bad.json", []),
        (tmp_path / "missing.toml", []),
        (BASE, ["segment.length=0", "train.lr=-1", "memory.kind=nope", "colour=1"]),
        (BASE, ["backbone.kind=transformer_xl_encoder", "memory.kind=read_write"]),
        (BASE, ["recurrence.kind=rmt"]),
        (TOY, ["recurrence.kind=xl"]),
        (BASE, ["train"]),
        (BASE, ["backbone.adaptive_cutoffs=[4, 4]"]),
        (BASE, ["train.lr=" + "x" * 200]),
    ]
    for source, overrides in cases:
        with pytest.raises(rmtzoo.ConfigError) as err:
            rmtzoo.load_config(source, overrides, registry=registry)
        message = str(err.value)
        assert message and "\n" not in message and "\r" not in message, (source, overrides, message)
        assert len(message) < 600
        assert "Traceback" not in message and "pydantic" not in message.lower()


def test_config_error_is_an_rmtzoo_error():
    assert issubclass(rmtzoo.ConfigError, rmtzoo.RmtzooError)
    assert issubclass(rmtzoo.UnknownComponentError, rmtzoo.ConfigError)
    assert set(HOOK_OF_AXIS)  # the axes the schema draws from exist

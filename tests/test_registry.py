"""The registry: discovery order, isolation, switches, blocking, and the errors a broken plugin causes."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import PLUGINS_DIR

import rmtzoo
from rmtzoo import _builtins
from rmtzoo._registry import HOOK_OF_AXIS

BUILTINS = [name for name, _ in _builtins.PLUGINS]  # built-ins load first, in this order
# the built-ins that register tasks, and those that observe runs (the loggers)
TASK_BUILTINS = [name for name, plugin in _builtins.PLUGINS if hasattr(plugin, "rmtzoo_register_tasks")]
OBSERVER_HOOKS = ("rmtzoo_metrics_logged", "rmtzoo_run_finished", "rmtzoo_run_resumed", "rmtzoo_run_started")
OBSERVER_BUILTINS = [name for name, plugin in _builtins.PLUGINS if any(hasattr(plugin, h) for h in OBSERVER_HOOKS)]
SAMPLE_TASKS = {"copy", "reverse", "associative_retrieval", "quadratic_equations"}
REPO = Path(__file__).resolve().parent.parent


def write_plugin(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    path.write_text("import rmtzoo\n" + textwrap.dedent(body))
    return path


def backbone_plugin(name: str, *, override: bool = False, summary: str = "from a test plugin") -> str:
    """Source of a plugin that registers a copy of the built-in Transformer-XL spec as ``name``."""
    return f"""
    import dataclasses
    from rmtzoo.backbones import transformer_xl

    @rmtzoo.hookimpl
    def rmtzoo_register_backbones(register):
        calls.append("backbones")
        def grab(spec, *, override=False):
            grabbed.append(spec)
        transformer_xl.rmtzoo_register_backbones(grab)
        register(dataclasses.replace(grabbed[0], name={name!r}, summary={summary!r}), override={override})

    calls, grabbed = [], []
    """


# -- a third-party distribution installed through an entry point --------------------------------------
TOY_EP_SOURCE = '''
"""A third-party backbone shipped as an installed distribution (entry point group ``rmtzoo``)."""

import torch
import torch.nn.functional as F
from torch import nn

import rmtzoo


class BagParams(rmtzoo.Params):
    vocab_size: int
    d_model: int = 8


class Bag(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.vocab_size, self.d_model = p.vocab_size, p.d_model
        self.emb = nn.Embedding(p.vocab_size, p.d_model)
        self.mix = nn.Linear(2 * p.d_model, p.d_model)
        self.out = nn.Linear(p.d_model, p.vocab_size)

    def embed(self, ids):
        return self.emb(ids)

    def forward(self, x, *, mask=None, cache=None):
        s = x.shape[1]
        if mask is None:
            mask = torch.ones(s, s, dtype=torch.bool, device=x.device).tril()
        w = mask.to(x.dtype)
        w = w / w.sum(-1, keepdim=True)
        return rmtzoo.BackboneOutput(x + torch.tanh(self.mix(torch.cat([x, w @ x], dim=-1))), ())

    def logits(self, hidden):
        return self.out(hidden)

    def nll(self, hidden, targets):
        b, t, _ = hidden.shape
        return F.cross_entropy(self.logits(hidden).flatten(0, 1), targets.reshape(-1), reduction="none").view(b, t)


@rmtzoo.hookimpl
def rmtzoo_register_backbones(register):
    register(
        rmtzoo.BackboneSpec(
            name="toy_ep",
            summary="entry-point fixture: mask-weighted bag of embeddings",
            params=BagParams,
            build=lambda p, *, attention: Bag(p),
            capabilities=rmtzoo.BackboneCapabilities(causal=True, accepts_cache=False),
            test_params={"vocab_size": 7},
        )
    )
'''


def install_toy_ep(site: Path) -> Path:
    """Write ``toy_ep_plugin.py`` and its ``.dist-info`` into ``site`` (a sys.path entry)."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "toy_ep_plugin.py").write_text(TOY_EP_SOURCE)
    info = site / "rmtzoo_toy_ep-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rmtzoo_toy_ep\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[rmtzoo]\ntoy_ep = toy_ep_plugin\n")
    return site


@pytest.fixture
def toy_ep(tmp_path, monkeypatch):
    """The toy_ep distribution, installed on sys.path for this test only."""
    site = install_toy_ep(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield site
    sys.modules.pop("toy_ep_plugin", None)
    importlib.invalidate_caches()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RMTZOO_")}
    env.update(extra)
    return env


# -- built-ins and discovery order ----------------------------------------------------------------------
def test_builtins_only():
    registry = rmtzoo.Registry(environ={}, entry_points=False)
    infos = registry.plugins()
    assert [p.name for p in infos] == BUILTINS
    assert {p.source for p in infos} == {"builtin"}
    assert registry.names("backbones") == ["armt", "transformer_xl", "transformer_xl_encoder"]
    assert registry.names("memory_placements") == ["none", "read_write", "shared"]
    assert registry.names("recurrences") == ["armt", "none", "rmt", "rmt_xl", "xl"]
    assert registry.names("attention_backends") == ["auto", "eager", "flex", "sdpa"]
    assert SAMPLE_TASKS <= set(registry.names("tasks"))
    assert registry.names("benchmarks") == []
    assert registry.provider("backbones", "transformer_xl") == "rmtzoo.backbones"
    for task in SAMPLE_TASKS:
        assert registry.provider("tasks", task) == "rmtzoo.tasks.samples"
    hooks = {p.name: p.hooks for p in infos}
    assert hooks["rmtzoo.placements"] == ("rmtzoo_register_memory_placements",)
    assert hooks["rmtzoo.attention"] == ("rmtzoo_register_attention_backends",)
    assert "rmtzoo.tasks.samples" in TASK_BUILTINS
    for name in TASK_BUILTINS:
        assert hooks[name] == ("rmtzoo_register_tasks",)
    # every task comes from a task built-in
    assert {registry.provider("tasks", t) for t in registry.names("tasks")} <= set(TASK_BUILTINS)
    assert OBSERVER_BUILTINS == ["rmtzoo.loggers.jsonl", "rmtzoo.loggers.tensorboard", "rmtzoo.loggers.wandb"]
    assert hooks["rmtzoo.loggers.jsonl"] == OBSERVER_HOOKS
    assert hooks["rmtzoo.loggers.tensorboard"] == ("rmtzoo_metrics_logged", "rmtzoo_run_finished", "rmtzoo_run_resumed")
    assert hooks["rmtzoo.loggers.wandb"] == ("rmtzoo_metrics_logged", "rmtzoo_run_finished", "rmtzoo_run_started")


def test_axis_aliases():
    registry = rmtzoo.Registry(environ={}, entry_points=False)
    assert registry.names("backbone") == registry.names("backbones")
    assert registry.names("placement") == registry.names("memory") == registry.names("memory_placements")
    assert registry.names("kernels") == registry.names("attention_backends")
    with pytest.raises(rmtzoo.UnknownComponentError, match=r"unknown axis 'backbonez'; did you mean 'backbones'"):
        registry.names("backbonez")


def test_discovery_order_builtins_then_entry_points_then_dirs(toy_ep, tmp_path):
    write_plugin(tmp_path / "d1", "zz_first_dir", backbone_plugin("dir_one"))
    write_plugin(tmp_path / "d2", "aa_second_dir", backbone_plugin("dir_two"))
    registry = rmtzoo.Registry(environ={}, plugins_dirs=[tmp_path / "d1", tmp_path / "d2"])
    infos = registry.plugins()
    names = [p.name for p in infos]
    # other distributions installed in this environment may add entry points of their own
    assert names[: len(BUILTINS)] == BUILTINS and names[-2:] == ["zz_first_dir", "aa_second_dir"]
    n = len(BUILTINS)
    assert "toy_ep" in names[n:-2]
    assert [p.source for p in infos[:n]] == ["builtin"] * n
    assert {p.source for p in infos[n:-2]} == {"entry point"}
    assert [p.source for p in infos[-2:]] == ["directory", "directory"]
    assert {"dir_one", "dir_two", "toy_ep", "transformer_xl", "transformer_xl_encoder"} <= set(registry.names("backbones"))


def test_registration_hooks_run_in_load_order(toy_ep, tmp_path):
    """A later-loaded plugin sees the earlier registrations: the entry point's name clashes with the
    directory plugin's, and the message names the entry point first."""
    write_plugin(tmp_path / "d", "late", backbone_plugin("toy_ep"))
    registry = rmtzoo.Registry(environ={}, plugins_dirs=[tmp_path / "d"])
    with pytest.raises(rmtzoo.DuplicateComponentError) as err:
        registry.names("backbones")
    assert "by plugin 'toy_ep' and by plugin 'late'" in str(err.value)


def test_directory_plugin_overrides_entry_point(toy_ep, tmp_path):
    write_plugin(tmp_path / "d", "late", backbone_plugin("toy_ep", override=True, summary="replaced"))
    registry = rmtzoo.Registry(environ={}, plugins_dirs=[tmp_path / "d"])
    assert registry.provider("backbones", "toy_ep") == "late"
    assert registry.get("backbones", "toy_ep").summary == "replaced"


def test_each_registry_has_its_own_plugin_manager():
    with_dir = rmtzoo.Registry(environ={}, plugins_dirs=[PLUGINS_DIR])
    plain = rmtzoo.Registry(environ={})
    assert "toy_mixer" in with_dir.names("backbones")
    assert "toy_mixer" not in plain.names("backbones")
    assert "toy_mixer" not in [p.name for p in plain.plugins()]

    class Extra:
        @rmtzoo.hookimpl
        def rmtzoo_register_memory_placements(self, register):
            register(rmtzoo.PlacementSpec("extra_place", "x", rmtzoo.NoParams, lambda p, *, d_model: None, False, False))

    plain.add_plugin(Extra(), "extra")
    assert "extra_place" in plain.names("memory_placements")
    assert "extra_place" not in with_dir.names("memory_placements")
    assert "extra_place" not in rmtzoo.Registry(environ={}).names("memory_placements")
    assert plain.hook is not with_dir.hook


def test_added_plugin_after_first_lookup_is_seen():
    registry = rmtzoo.Registry(environ={}, entry_points=False)
    assert "late_rec" not in registry.names("recurrences")

    class Late:
        @rmtzoo.hookimpl
        def rmtzoo_register_recurrences(self, register):
            register(rmtzoo.RecurrenceSpec("late_rec", "x", rmtzoo.NoParams, lambda p: None, False, False))

    registry.add_plugin(Late(), "late")
    assert "late_rec" in registry.names("recurrences")
    assert registry.provider("recurrences", "late_rec") == "late"
    assert registry.plugins()[-1].source == "added"


# -- plugin directories -----------------------------------------------------------------------------------
def test_plugins_dir_argument():
    registry = rmtzoo.Registry(environ={}, plugins_dirs=[PLUGINS_DIR])
    info = {p.name: p for p in registry.plugins()}["toy_mixer"]
    assert info.source == "directory"
    assert info.version == "0.3.1"
    assert Path(info.location) == PLUGINS_DIR / "toy_mixer.py"
    assert info.hooks == ("rmtzoo_register_backbones",)
    assert registry.provider("backbones", "toy_mixer") == "toy_mixer"
    assert registry.get("backbones", "toy_mixer").capabilities.accepts_cache is False


def test_plugins_dir_environment(tmp_path):
    write_plugin(tmp_path / "other", "second", backbone_plugin("from_env_two"))
    environ = {"RMTZOO_PLUGINS_DIR": os.pathsep.join([str(PLUGINS_DIR), str(tmp_path / "other")])}
    registry = rmtzoo.Registry(environ=environ)
    assert {"toy_mixer", "from_env_two"} <= set(registry.names("backbones"))
    # the environment does not leak into a registry built without it
    assert "toy_mixer" not in rmtzoo.Registry(environ={}).names("backbones")


def test_plugins_dir_argument_loads_before_environment(tmp_path):
    write_plugin(tmp_path / "arg", "from_arg", backbone_plugin("clash"))
    write_plugin(tmp_path / "env", "from_env", backbone_plugin("clash", override=True, summary="env wins"))
    registry = rmtzoo.Registry(environ={"RMTZOO_PLUGINS_DIR": str(tmp_path / "env")}, plugins_dirs=[tmp_path / "arg"])
    assert [p.name for p in registry.plugins()][-2:] == ["from_arg", "from_env"]
    assert registry.provider("backbones", "clash") == "from_env"


def test_plugins_dir_skips_private_and_non_python_and_loads_packages(tmp_path):
    d = tmp_path / "plugins"
    write_plugin(d, "_private", "raise RuntimeError('must not be imported')\n")
    (d / "notes.txt").write_text("not a plugin")
    (d / "data").mkdir()  # a folder without __init__.py is not a plugin
    pkg = d / "pkgplugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import rmtzoo\n__version__ = '2.5'\n" + textwrap.dedent(backbone_plugin("from_pkg")))
    registry = rmtzoo.Registry(environ={}, entry_points=False, plugins_dirs=[d])
    assert [p.name for p in registry.plugins()] == [*BUILTINS, "pkgplugin"]
    assert {p.name: p for p in registry.plugins()}["pkgplugin"].version == "2.5"
    assert "from_pkg" in registry.names("backbones")


def test_missing_plugins_dir(tmp_path):
    with pytest.raises(rmtzoo.RmtzooError, match="does-not-exist.*does not exist"):
        rmtzoo.Registry(environ={}, plugins_dirs=[tmp_path / "does-not-exist"])


def test_same_plugin_name_in_two_dirs(tmp_path):
    write_plugin(tmp_path / "a", "same", backbone_plugin("one"))
    write_plugin(tmp_path / "b", "same", backbone_plugin("two"))
    with pytest.raises(rmtzoo.DuplicateComponentError) as err:
        rmtzoo.Registry(environ={}, plugins_dirs=[tmp_path / "a", tmp_path / "b"])
    message = str(err.value)
    assert "'same'" in message
    assert str(tmp_path / "a" / "same.py") in message and str(tmp_path / "b" / "same.py") in message


# -- entry points and the switches that turn them off ---------------------------------------------------
def test_entry_point_plugin_is_listed(toy_ep):
    registry = rmtzoo.Registry(environ={})
    info = {p.name: p for p in registry.plugins()}["toy_ep"]
    assert info.source == "entry point"
    assert info.version == "1.0"
    assert info.location == "rmtzoo_toy_ep 1.0"
    assert info.hooks == ("rmtzoo_register_backbones",)
    assert "toy_ep" in registry.names("backbones")
    assert registry.provider("backbones", "toy_ep") == "toy_ep"


def test_entry_point_backbone_builds_and_runs(toy_ep):
    registry = rmtzoo.Registry(environ={})
    base = {
        "backbone": {"kind": "toy_ep", "vocab_size": 7, "d_model": 8},
        "memory": {"kind": "read_write", "num_tokens": 2},
        "recurrence": {"kind": "rmt"},
        "segment": {"length": 3},
    }
    model = rmtzoo.build_model(base, registry=registry)
    ids = torch.randint(0, 7, (2, 9), generator=torch.Generator().manual_seed(0))
    out = model.forward_sequence(ids)
    assert out.logits.shape == (2, 9, 7)
    assert torch.isfinite(out.logits).all()
    assert out.state.n_segments == 3
    # memory carries the first segment into the last one; without recurrence it does not
    changed = ids.clone()
    changed[:, 0] = (changed[:, 0] + 1) % 7
    assert not torch.allclose(model.forward_sequence(changed).logits[:, 6:], out.logits[:, 6:])
    no_rec = rmtzoo.build_model({**base, "recurrence": {"kind": "none"}}, registry=registry)
    assert torch.equal(no_rec.forward_sequence(changed).logits[:, 6:], no_rec.forward_sequence(ids).logits[:, 6:])
    # no cache: the Transformer-XL recurrence is rejected at validation
    with pytest.raises(rmtzoo.ConfigError, match="recurrence.kind: 'xl'.*'toy_ep'"):
        rmtzoo.load_config({**base, "recurrence": {"kind": "xl"}}, registry=registry)


def test_entry_point_backbone_in_cli_subprocess(toy_ep):
    env = clean_env(PYTHONPATH=os.pathsep.join([str(toy_ep), str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "rmtzoo.cli", "list", "backbones"], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if "toy_ep" in line)
    assert "mask-weighted bag of embeddings" in line and line.rstrip().endswith("[toy_ep]")
    assert "transformer_xl" in proc.stdout

    proc = subprocess.run(
        [sys.executable, "-m", "rmtzoo.cli", "--no-entry-points", "list", "backbones"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "toy_ep" not in proc.stdout and "transformer_xl" in proc.stdout


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_disable_autoload_environment(toy_ep, value):
    registry = rmtzoo.Registry(environ={"RMTZOO_DISABLE_PLUGIN_AUTOLOAD": value})
    assert "toy_ep" not in [p.name for p in registry.plugins()]
    assert "toy_ep" not in registry.names("backbones")


def test_autoload_environment_other_values_keep_entry_points(toy_ep):
    assert "toy_ep" in rmtzoo.Registry(environ={"RMTZOO_DISABLE_PLUGIN_AUTOLOAD": "0"}).names("backbones")
    assert "toy_ep" in rmtzoo.Registry(environ={"RMTZOO_DISABLE_PLUGIN_AUTOLOAD": ""}).names("backbones")


def test_entry_points_argument(toy_ep):
    assert "toy_ep" not in rmtzoo.Registry(environ={}, entry_points=False).names("backbones")
    # an explicit argument wins over the environment
    assert "toy_ep" in rmtzoo.Registry(
        environ={"RMTZOO_DISABLE_PLUGIN_AUTOLOAD": "1"}, entry_points=True
    ).names("backbones")


def test_entry_points_off_still_loads_dirs(toy_ep):
    registry = rmtzoo.Registry(environ={"RMTZOO_DISABLE_PLUGIN_AUTOLOAD": "1"}, plugins_dirs=[PLUGINS_DIR])
    assert [p.name for p in registry.plugins()] == [*BUILTINS, "toy_mixer"]


def test_broken_entry_point_names_itself(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "broken_ep_plugin.py").write_text("raise ImportError('needs a package that is not installed')\n")
    info = site / "rmtzoo_broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rmtzoo_broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[rmtzoo]\nbroken_ep = broken_ep_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    try:
        with pytest.raises(rmtzoo.RmtzooError) as err:
            rmtzoo.Registry(environ={})
        assert "'broken_ep'" in str(err.value) and "needs a package that is not installed" in str(err.value)
        # blocking it by name is the way out
        registry = rmtzoo.Registry(environ={"RMTZOO_BLOCK_PLUGINS": "broken_ep"})
        assert "broken_ep" not in [p.name for p in registry.plugins()]
        assert "transformer_xl" in registry.names("backbones")
    finally:
        sys.modules.pop("broken_ep_plugin", None)
        importlib.invalidate_caches()


# -- blocking -------------------------------------------------------------------------------------------
def test_block_directory_plugin_by_argument_and_environment():
    assert "toy_mixer" not in rmtzoo.Registry(environ={}, plugins_dirs=[PLUGINS_DIR], block=["toy_mixer"]).names(
        "backbones"
    )
    registry = rmtzoo.Registry(environ={"RMTZOO_BLOCK_PLUGINS": " other , toy_mixer "}, plugins_dirs=[PLUGINS_DIR])
    assert "toy_mixer" not in registry.names("backbones")
    assert "toy_mixer" not in [p.name for p in registry.plugins()]


def test_block_entry_point(toy_ep):
    assert "toy_ep" not in rmtzoo.Registry(environ={}, block=["toy_ep"]).names("backbones")
    assert "toy_ep" not in rmtzoo.Registry(environ={"RMTZOO_BLOCK_PLUGINS": "toy_ep"}).names("backbones")


def test_block_builtin():
    registry = rmtzoo.Registry(environ={}, entry_points=False, block=["rmtzoo.recurrences", "rmtzoo.armt"])
    assert [p.name for p in registry.plugins()] == [n for n in BUILTINS if n not in ("rmtzoo.recurrences", "rmtzoo.armt")]
    assert registry.names("recurrences") == []
    assert registry.names("backbones") == ["transformer_xl", "transformer_xl_encoder"]
    with pytest.raises(rmtzoo.UnknownComponentError, match="unknown recurrence 'rmt'.*registered: none\\)"):
        registry.get("recurrences", "rmt")
    registry = rmtzoo.Registry(
        environ={"RMTZOO_BLOCK_PLUGINS": "rmtzoo.attention,rmtzoo.placements", "RMTZOO_DISABLE_PLUGIN_AUTOLOAD": "1"}
    )
    assert registry.names("attention_backends") == [] and registry.names("memory_placements") == []


def test_block_builtin_task_plugin():
    full = rmtzoo.Registry(environ={}, entry_points=False).names("tasks")
    assert SAMPLE_TASKS <= set(full)
    registry = rmtzoo.Registry(environ={}, entry_points=False, block=["rmtzoo.tasks.samples"])
    assert [p.name for p in registry.plugins()] == [n for n in BUILTINS if n != "rmtzoo.tasks.samples"]
    assert registry.names("tasks") == sorted(set(full) - SAMPLE_TASKS)
    with pytest.raises(rmtzoo.UnknownComponentError, match="unknown task 'copy'"):
        registry.get("tasks", "copy")
    # the other built-ins are untouched
    assert registry.names("backbones") == ["armt", "transformer_xl", "transformer_xl_encoder"]
    # with every task built-in blocked (through the environment too), no task is left
    registry = rmtzoo.Registry(
        environ={"RMTZOO_BLOCK_PLUGINS": ",".join(TASK_BUILTINS), "RMTZOO_DISABLE_PLUGIN_AUTOLOAD": "1"}
    )
    assert registry.names("tasks") == []
    assert not set(TASK_BUILTINS) & {p.name for p in registry.plugins()}


def test_block_builtin_loggers(tmp_path):
    registry = rmtzoo.Registry(environ={}, entry_points=False, block=OBSERVER_BUILTINS)
    assert [p.name for p in registry.plugins()] == [n for n in BUILTINS if n not in OBSERVER_BUILTINS]
    run = rmtzoo.RunInfo(run_dir=str(tmp_path / "run"), config=None, config_hash="x")
    registry.hook.rmtzoo_run_started(run=run)
    registry.hook.rmtzoo_metrics_logged(run=run, step=1, metrics={"train/loss": 1.0})
    registry.hook.rmtzoo_run_finished(run=run, status="completed", metrics={})
    assert not (tmp_path / "run").exists()  # nobody listened


def test_blocked_builtin_can_be_replaced_without_override(tmp_path):
    """With the built-in blocked, a plugin may register the same name without ``override``."""
    write_plugin(tmp_path / "d", "my_backbones", backbone_plugin("transformer_xl", summary="mine"))
    registry = rmtzoo.Registry(environ={}, entry_points=False, plugins_dirs=[tmp_path / "d"], block=["rmtzoo.backbones"])
    assert registry.names("backbones") == ["armt", "transformer_xl"]  # armt is another built-in's
    assert registry.provider("backbones", "transformer_xl") == "my_backbones"
    assert registry.get("backbones", "transformer_xl").summary == "mine"


# -- duplicate and overridden components ----------------------------------------------------------------
def test_duplicate_of_builtin_names_both_providers(tmp_path):
    write_plugin(tmp_path / "d", "copycat", backbone_plugin("transformer_xl"))
    registry = rmtzoo.Registry(environ={}, entry_points=False, plugins_dirs=[tmp_path / "d"])
    with pytest.raises(rmtzoo.DuplicateComponentError) as err:
        registry.get("backbones", "transformer_xl")
    message = str(err.value)
    assert "backbone 'transformer_xl' is registered twice" in message
    assert "'rmtzoo.backbones'" in message and "'copycat'" in message
    assert "override=True" in message


def test_duplicate_between_two_plugins_names_both(tmp_path):
    write_plugin(tmp_path / "d", "alpha", backbone_plugin("shared_name"))
    write_plugin(tmp_path / "d", "beta", backbone_plugin("shared_name"))
    with pytest.raises(rmtzoo.DuplicateComponentError, match="by plugin 'alpha' and by plugin 'beta'"):
        rmtzoo.Registry(environ={}, entry_points=False, plugins_dirs=[tmp_path / "d"]).names("backbones")


def test_duplicate_within_one_plugin(tmp_path):
    write_plugin(
        tmp_path / "d",
        "twice",
        """
        @rmtzoo.hookimpl
        def rmtzoo_register_benchmarks(register):
            register(rmtzoo.BenchmarkSpec(name="b", summary="one", build=lambda p: None))
            register(rmtzoo.BenchmarkSpec(name="b", summary="two", build=lambda p: None))
        """,
    )
    with pytest.raises(rmtzoo.DuplicateComponentError, match="benchmark 'b'.*'twice' and by plugin 'twice'"):
        rmtzoo.Registry(environ={}, entry_points=False, plugins_dirs=[tmp_path / "d"]).names("benchmarks")


def test_override_replaces_builtin(tmp_path):
    write_plugin(tmp_path / "d", "replacer", backbone_plugin("transformer_xl", override=True, summary="patched"))
    registry = rmtzoo.Registry(environ={}, entry_points=False, plugins_dirs=[tmp_path / "d"])
    assert registry.names("backbones") == ["armt", "transformer_xl", "transformer_xl_encoder"]
    assert registry.provider("backbones", "transformer_xl") == "replacer"
    assert registry.get("backbones", "transformer_xl").summary == "patched"
    # the other built-in backbone is untouched
    assert registry.provider("backbones", "transformer_xl_encoder") == "rmtzoo.backbones"


def test_override_of_a_new_name_just_registers(tmp_path):
    write_plugin(tmp_path / "d", "newcomer", backbone_plugin("brand_new", override=True))
    assert rmtzoo.Registry(environ={}, entry_points=False, plugins_dirs=[tmp_path / "d"]).provider("backbones", "brand_new") == "newcomer"


# -- unknown names ----------------------------------------------------------------------------------------
def test_unknown_name_lists_closest():
    registry = rmtzoo.Registry(environ={}, entry_points=False)
    with pytest.raises(rmtzoo.UnknownComponentError) as err:
        registry.get("backbones", "transfomer_xl")
    message = str(err.value)
    assert message.startswith("unknown backbone 'transfomer_xl'; did you mean 'transformer_xl'")
    assert "registered: armt, transformer_xl, transformer_xl_encoder" in message
    assert isinstance(err.value, rmtzoo.ConfigError) and isinstance(err.value, KeyError)


def test_unknown_name_without_close_match():
    registry = rmtzoo.Registry(environ={}, entry_points=False)
    with pytest.raises(rmtzoo.UnknownComponentError) as err:
        registry.get("recurrences", "qqqqqq")
    assert "did you mean" not in str(err.value)
    assert "registered: armt, none, rmt, rmt_xl, xl" in str(err.value)
    with pytest.raises(rmtzoo.UnknownComponentError, match="unknown memory placement 'sharde'; did you mean 'shared'"):
        registry.provider("memory", "sharde")


# -- plugins that break the contract ---------------------------------------------------------------------
def test_wrong_spec_type_names_plugin(tmp_path):
    write_plugin(
        tmp_path / "d",
        "confused",
        """
        @rmtzoo.hookimpl
        def rmtzoo_register_backbones(register):
            register(rmtzoo.PlacementSpec("p", "s", rmtzoo.NoParams, lambda p, *, d_model: None, False, False))
        """,
    )
    registry = rmtzoo.Registry(environ={}, plugins_dirs=[tmp_path / "d"])
    with pytest.raises(rmtzoo.RmtzooError) as err:
        registry.names("backbones")
    assert str(err.value) == (
        "plugin 'confused' registered PlacementSpec through the backbones hook; expected BackboneSpec"
    )


def test_invalid_component_name_names_plugin(tmp_path):
    write_plugin(
        tmp_path / "d",
        "spacey",
        """
        @rmtzoo.hookimpl
        def rmtzoo_register_tasks(register):
            register(rmtzoo.TaskSpec(name="has space", summary="s", params=rmtzoo.NoParams, build=lambda p: None))
        """,
    )
    with pytest.raises(rmtzoo.RmtzooError, match="plugin 'spacey' registered a tasks component with invalid name 'has space'"):
        rmtzoo.Registry(environ={}, plugins_dirs=[tmp_path / "d"]).names("tasks")


@pytest.mark.parametrize(
    "body, detail",
    [
        ("import package_that_is_not_installed_xyz\n", "package_that_is_not_installed_xyz"),
        ("def broken(:\n", "invalid syntax"),
        ("raise RuntimeError('boom at import')\n", "boom at import"),
    ],
)
def test_plugin_file_that_fails_to_import_names_plugin(tmp_path, body, detail):
    path = write_plugin(tmp_path / "d", "broken_plugin", body)
    with pytest.raises(rmtzoo.RmtzooError) as err:
        rmtzoo.Registry(environ={}, plugins_dirs=[tmp_path / "d"])
    message = str(err.value)
    assert message.startswith("plugin 'broken_plugin'")
    assert str(path) in message and "failed to load" in message and detail in message
    assert not any(name.endswith("_broken_plugin") for name in sys.modules)
    # blocking the broken plugin lets everything else load
    registry = rmtzoo.Registry(environ={}, plugins_dirs=[tmp_path / "d"], block=["broken_plugin"])
    assert "broken_plugin" not in [p.name for p in registry.plugins()]


def test_hookimpl_with_wrong_signature_names_plugin(tmp_path):
    write_plugin(
        tmp_path / "d",
        "misnamed_arg",
        """
        @rmtzoo.hookimpl
        def rmtzoo_register_backbones(registrar):
            pass
        """,
    )
    with pytest.raises(rmtzoo.RmtzooError) as err:
        rmtzoo.Registry(environ={}, plugins_dirs=[tmp_path / "d"])
    assert str(err.value).startswith("plugin 'misnamed_arg'")
    assert "registrar" in str(err.value) and "\n" not in str(err.value)


def test_misspelt_hook_name_names_plugin():
    registry = rmtzoo.Registry(environ={}, entry_points=False)

    class Typo:
        @rmtzoo.hookimpl
        def rmtzoo_register_backbone(self, register):  # missing the final "s"
            raise AssertionError("never called")

    with pytest.raises(rmtzoo.RmtzooError, match="plugin 'typo'.*unknown hook 'rmtzoo_register_backbone'"):
        registry.add_plugin(Typo(), "typo")
    # the registry is left as it was
    assert [p.name for p in registry.plugins()] == BUILTINS
    assert registry.names("backbones") == ["armt", "transformer_xl", "transformer_xl_encoder"]


def test_hook_without_register_argument_is_called(tmp_path):
    """pluggy lets an implementation take fewer arguments than the spec; the registry calls it anyway."""
    write_plugin(
        tmp_path / "d",
        "noarg",
        """
        CALLED = []

        @rmtzoo.hookimpl
        def rmtzoo_register_tasks():
            CALLED.append(True)
        """,
    )
    # the task built-ins are blocked so that the table shows the plugin registered nothing
    registry = rmtzoo.Registry(environ={}, plugins_dirs=[tmp_path / "d"], block=TASK_BUILTINS)
    assert registry.names("tasks") == []
    module = next(m for n, m in sys.modules.items() if n.endswith("_noarg"))
    assert module.CALLED == [True]


# -- a plugin implementing every hook ----------------------------------------------------------------------
EVERY_HOOK_PLUGIN = """
from rmtzoo.backbones import transformer_xl
import dataclasses

@rmtzoo.hookimpl
def rmtzoo_register_backbones(register):
    specs = []
    transformer_xl.rmtzoo_register_backbones(lambda spec, **kw: specs.append(spec))
    register(dataclasses.replace(specs[0], name="every_backbone"))

@rmtzoo.hookimpl
def rmtzoo_register_memory_placements(register):
    register(rmtzoo.PlacementSpec("every_place", "s", rmtzoo.NoParams, lambda p, *, d_model: None, False, False))

@rmtzoo.hookimpl
def rmtzoo_register_recurrences(register):
    register(rmtzoo.RecurrenceSpec("every_rec", "s", rmtzoo.NoParams, lambda p: None, False, False))

@rmtzoo.hookimpl
def rmtzoo_register_attention_backends(register):
    register(rmtzoo.AttentionSpec("every_attn", "s", build=lambda p: None, available=lambda: "never here"))

@rmtzoo.hookimpl
def rmtzoo_register_tasks(register):
    register(rmtzoo.TaskSpec("every_task", "s", rmtzoo.NoParams, lambda p: None))

@rmtzoo.hookimpl
def rmtzoo_register_benchmarks(register):
    register(rmtzoo.BenchmarkSpec("every_bench", "s", lambda p: None))

EVENTS = []

@rmtzoo.hookimpl
def rmtzoo_run_started(run):
    EVENTS.append(("started", run))

@rmtzoo.hookimpl
def rmtzoo_metrics_logged(run, step, metrics):
    EVENTS.append(("metrics", step, dict(metrics)))

@rmtzoo.hookimpl
def rmtzoo_run_finished(run, status, metrics):
    EVENTS.append(("finished", status))
"""


def test_plugin_implementing_every_hook(tmp_path):
    write_plugin(tmp_path / "d", "every", EVERY_HOOK_PLUGIN)
    registry = rmtzoo.Registry(environ={}, entry_points=False, plugins_dirs=[tmp_path / "d"])
    info = {p.name: p for p in registry.plugins()}["every"]
    assert info.hooks == tuple(
        sorted([*HOOK_OF_AXIS.values(), "rmtzoo_run_started", "rmtzoo_metrics_logged", "rmtzoo_run_finished"])
    )
    for axis, name in [
        ("backbones", "every_backbone"),
        ("memory_placements", "every_place"),
        ("recurrences", "every_rec"),
        ("attention_backends", "every_attn"),
        ("tasks", "every_task"),
        ("benchmarks", "every_bench"),
    ]:
        assert registry.provider(axis, name) == "every"
    # an unavailable attention kernel is never what ``auto`` resolves to
    from rmtzoo.attention import resolve_attention

    # (here the built-ins win, so ``auto`` stays itself and picks eager or sdpa per call)
    assert resolve_attention("auto", registry).name == "auto"

    run = rmtzoo.RunInfo(run_dir=str(tmp_path / "run"), config=None, config_hash="x")
    registry.hook.rmtzoo_run_started(run=run)
    registry.hook.rmtzoo_metrics_logged(run=run, step=7, metrics={"train/loss": 0.5})
    registry.hook.rmtzoo_run_finished(run=run, status="completed", metrics={})
    module = next(m for n, m in sys.modules.items() if n.endswith("_every") and hasattr(m, "EVENTS"))
    assert module.EVENTS == [("started", run), ("metrics", 7, {"train/loss": 0.5}), ("finished", "completed")]
    # the built-in JSONL logger saw the same calls
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in r.items() if k != "time"} for r in records] == [
        {"event": "started", "config_hash": "x"},
        {"step": 7, "train/loss": 0.5},
        {"event": "finished", "status": "completed"},
    ]

"""The ``rmtzoo`` command, in-process through ``rmtzoo.cli.main`` and as a subprocess."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import rmtzoo
from rmtzoo import _builtins
from rmtzoo.cli import main

REPO = Path(__file__).resolve().parent.parent
PLUGINS_DIR = REPO / "tests" / "fixtures" / "plugins_dir"
BUILTINS = [name for name, _ in _builtins.PLUGINS]  # in load order
TASK_BUILTINS = [name for name, plugin in _builtins.PLUGINS if hasattr(plugin, "rmtzoo_register_tasks")]
SAMPLE_TASKS = {"copy", "reverse", "associative_retrieval", "quadratic_equations"}
# the tasks the built-ins register (no entry points, no environment)
BUILTIN_TASKS = rmtzoo.Registry(environ={}, entry_points=False).names("tasks")
# tiny sizes so the demo takes well under a second
SMALL = ["backbone.n_layer=1", "backbone.d_model=16", "backbone.d_head=8", "backbone.n_head=2", "backbone.d_inner=32",
         "train.batch_size=4"]

CONFIG_TOML = """\
[backbone]
kind = "transformer_xl"
vocab_size = 12
n_layer = 1
d_model = 16

[memory]
kind = "read_write"
num_tokens = 2

[recurrence]
kind = "rmt"

[segment]
length = 4
"""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for key in list(os.environ):
        if key.startswith("RMTZOO_"):
            monkeypatch.delenv(key)


@pytest.fixture
def one_thread(restore_threads):
    """The demo's tiny model gains nothing from intra-op threads, and on a busy machine OpenMP hand-offs
    make it orders of magnitude slower; run it on one thread (conftest's restore_threads puts the setting
    back afterwards)."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(CONFIG_TOML)
    return path


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def run_subprocess(*argv, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RMTZOO_")}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "rmtzoo.cli", *map(str, argv)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )


def sections(out: str) -> dict[str, list[str]]:
    """``list`` output as {axis: [names]}."""
    result: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        if line and not line.startswith(" "):
            current = line.rstrip(":")
            result[current] = []
        elif line.strip() and line.strip() != "(none)":
            result[current].append(line.split()[0])
    return result


def assert_one_line_error(rc, out, err, *fragments):
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.splitlines()
    assert len(lines) == 1, err
    # "rmtzoo: error: ..." (or "rmtzoo config: error: ..." for a subcommand's usage error)
    assert re.match(r"rmtzoo( \w+)?: error: ", lines[0]), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, err)


# -- list ----------------------------------------------------------------------------------------------------
def test_list_everything(capsys):
    rc, out, err = run_cli(capsys, "--no-entry-points", "list")
    assert rc == 0 and err == ""
    assert sections(out) == {
        "backbones": ["armt", "transformer_xl", "transformer_xl_encoder"],
        "memory_placements": ["none", "read_write", "shared"],
        "recurrences": ["armt", "none", "rmt", "rmt_xl", "xl"],
        "attention_backends": ["auto", "eager", "flex", "sdpa"],
        "tasks": BUILTIN_TASKS,
    }
    assert SAMPLE_TASKS <= set(BUILTIN_TASKS)
    line = next(line for line in out.splitlines() if line.strip().startswith("read_write"))
    assert line.endswith("[rmtzoo.placements]")
    assert "RMT: read memory before the segment" in line
    line = next(line for line in out.splitlines() if line.strip().startswith("copy "))
    assert line.endswith("[rmtzoo.tasks.samples]")


def test_list_with_installed_plugins_keeps_builtins(capsys):
    rc, out, _ = run_cli(capsys, "list")
    assert rc == 0
    found = sections(out)
    assert {"transformer_xl", "transformer_xl_encoder"} <= set(found["backbones"])
    assert len(found["memory_placements"]) >= 3 and len(found["recurrences"]) >= 4
    assert {"auto", "eager", "flex", "sdpa"} <= set(found["attention_backends"])
    assert SAMPLE_TASKS <= set(found["tasks"])


def test_list_one_axis(capsys):
    rc, out, _ = run_cli(capsys, "--no-entry-points", "list", "recurrences")
    assert rc == 0 and sections(out) == {"recurrences": ["armt", "none", "rmt", "rmt_xl", "xl"]}
    rc, out, _ = run_cli(capsys, "--no-entry-points", "list", "kernels")  # an alias
    assert rc == 0 and sections(out) == {"attention_backends": ["auto", "eager", "flex", "sdpa"]}
    rc, out, _ = run_cli(capsys, "--no-entry-points", "list", "tasks")
    assert rc == 0 and sections(out) == {"tasks": BUILTIN_TASKS}
    rc, out, _ = run_cli(capsys, "--no-entry-points", "--block", "rmtzoo.tasks.samples", "list", "tasks")
    assert rc == 0 and sections(out) == {"tasks": sorted(set(BUILTIN_TASKS) - SAMPLE_TASKS)}
    rc, out, _ = run_cli(capsys, "--no-entry-points", "list", "benchmarks")  # an empty axis says so
    assert rc == 0 and out.splitlines() == ["benchmarks:", "  (none)"]
    blocks = [arg for name in TASK_BUILTINS for arg in ("--block", name)]
    rc, out, _ = run_cli(capsys, "--no-entry-points", *blocks, "list", "tasks")
    assert rc == 0 and out.splitlines() == ["tasks:", "  (none)"]


def test_list_filters_by_pattern(capsys):
    rc, out, _ = run_cli(capsys, "--no-entry-points", "list", "backbones", "transformer*")
    assert rc == 0 and sections(out) == {"backbones": ["transformer_xl", "transformer_xl_encoder"]}
    rc, out, _ = run_cli(capsys, "--no-entry-points", "list", "backbones", "*encoder")
    assert rc == 0 and sections(out) == {"backbones": ["transformer_xl_encoder"]}
    rc, out, _ = run_cli(capsys, "list", "backbones", "zzz*")
    assert rc == 0 and sections(out) == {"backbones": []}


def test_list_pattern_over_every_axis(capsys):
    rc, out, _ = run_cli(capsys, "--no-entry-points", "list", "r*")
    assert rc == 0
    r_tasks = fnmatch.filter(BUILTIN_TASKS, "r*")
    assert "reverse" in r_tasks
    assert sections(out) == {"memory_placements": ["read_write"], "recurrences": ["rmt", "rmt_xl"], "tasks": r_tasks}
    rc, out, _ = run_cli(capsys, "--no-entry-points", "list", "none")
    assert sections(out) == {"memory_placements": ["none"], "recurrences": ["none"]}


@pytest.mark.parametrize("argv", [["list", "backbonez", "*"], ["list", "backbonez"], ["list", "colours", "x*"]])
def test_list_unknown_axis(capsys, argv):
    rc, out, err = run_cli(capsys, *argv)
    assert_one_line_error(rc, out, err, f"unknown axis {argv[1]!r}")
    assert out == ""
    if argv[1] == "backbonez":
        assert "did you mean 'backbones'" in err


def test_list_plugin_dir(capsys):
    rc, out, _ = run_cli(capsys, "--plugins-dir", PLUGINS_DIR, "list", "backbones")
    assert rc == 0
    assert "toy_mixer" in sections(out)["backbones"]
    line = next(line for line in out.splitlines() if line.strip().startswith("toy_mixer"))
    assert "masked-mean token mixer" in line and line.endswith("[toy_mixer]")


def test_list_plugin_dir_relative_path(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    rc, out, _ = run_cli(capsys, "--plugins-dir", "tests/fixtures/plugins_dir", "list", "backbones")
    assert rc == 0 and "toy_mixer" in sections(out)["backbones"]


def test_list_plugin_dir_from_environment(capsys, monkeypatch):
    monkeypatch.setenv("RMTZOO_PLUGINS_DIR", str(PLUGINS_DIR))
    rc, out, _ = run_cli(capsys, "list", "backbones")
    assert rc == 0 and "toy_mixer" in sections(out)["backbones"]


def test_block_option_and_environment(capsys, monkeypatch):
    rc, out, _ = run_cli(capsys, "--plugins-dir", PLUGINS_DIR, "--block", "toy_mixer", "list", "backbones")
    assert rc == 0 and "toy_mixer" not in out
    monkeypatch.setenv("RMTZOO_BLOCK_PLUGINS", "rmtzoo.recurrences,rmtzoo.armt")
    rc, out, _ = run_cli(capsys, "--no-entry-points", "list", "recurrences")
    assert rc == 0 and sections(out) == {"recurrences": []}


# -- plugins ---------------------------------------------------------------------------------------------------
def parse_plugins(out: str) -> dict[str, dict]:
    result, lines = {}, out.splitlines()
    for first, second in zip(lines[::2], lines[1::2], strict=True):
        name, version, *rest = first.split()
        source = "entry point" if rest[:2] == ["entry", "point"] else rest[0]
        assert second.strip().startswith("hooks: ")
        result[name] = {"version": version, "source": source, "hooks": second.strip()[len("hooks: "):].split(", ")}
    return result


def test_plugins_lists_builtins(capsys):
    rc, out, err = run_cli(capsys, "--no-entry-points", "plugins")
    assert rc == 0 and err == ""
    plugins = parse_plugins(out)
    assert list(plugins) == BUILTINS
    assert {p["source"] for p in plugins.values()} == {"builtin"}
    assert plugins["rmtzoo.backbones"]["hooks"] == ["rmtzoo_register_backbones"]
    assert plugins["rmtzoo.recurrences"]["hooks"] == ["rmtzoo_register_recurrences"]
    assert plugins["rmtzoo.attention"]["hooks"] == ["rmtzoo_register_attention_backends"]
    assert "rmtzoo.tasks.samples" in TASK_BUILTINS
    for name in TASK_BUILTINS:
        assert plugins[name]["hooks"] == ["rmtzoo_register_tasks"]
    assert plugins["rmtzoo.loggers.jsonl"]["hooks"] == [
        "rmtzoo_metrics_logged", "rmtzoo_run_finished", "rmtzoo_run_resumed", "rmtzoo_run_started"
    ]
    assert plugins["rmtzoo.loggers.tensorboard"]["hooks"] == [
        "rmtzoo_metrics_logged", "rmtzoo_run_finished", "rmtzoo_run_resumed"]
    assert "rmtzoo.train._loggers.JsonlLogger" in out


def test_plugins_with_a_directory_plugin(capsys):
    rc, out, _ = run_cli(capsys, "--no-entry-points", "--plugins-dir", PLUGINS_DIR, "plugins")
    assert rc == 0
    plugins = parse_plugins(out)
    assert list(plugins)[-1] == "toy_mixer"
    assert plugins["toy_mixer"] == {"version": "0.3.1", "source": "directory", "hooks": ["rmtzoo_register_backbones"]}
    assert str(PLUGINS_DIR / "toy_mixer.py") in out


def test_plugins_with_a_blocked_builtin(capsys):
    rc, out, err = run_cli(capsys, "--no-entry-points", "--block", "rmtzoo.attention", "plugins")
    assert rc == 0, err
    assert list(parse_plugins(out)) == [name for name in BUILTINS if name != "rmtzoo.attention"]
    rc, out, err = run_cli(
        capsys, "--no-entry-points", "--block", "rmtzoo.loggers.jsonl", "--block", "rmtzoo.tasks.samples", "plugins"
    )
    assert rc == 0, err
    assert list(parse_plugins(out)) == [
        name for name in BUILTINS if name not in {"rmtzoo.loggers.jsonl", "rmtzoo.tasks.samples"}
    ]


# -- schema ----------------------------------------------------------------------------------------------------
def test_schema_is_valid_json(capsys):
    rc, out, err = run_cli(capsys, "--no-entry-points", "--plugins-dir", PLUGINS_DIR, "schema")
    assert rc == 0 and err == ""
    schema = json.loads(out)
    assert schema["title"] == "ExperimentConfig"
    mapping = schema["properties"]["backbone"]["discriminator"]["mapping"]
    assert sorted(mapping) == ["armt", "toy_mixer", "transformer_xl", "transformer_xl_encoder"]
    assert sorted(schema["properties"]["recurrence"]["discriminator"]["mapping"]) == ["armt", "none", "rmt", "rmt_xl", "xl"]
    assert "vocab_size" in schema["$defs"]["backbones__toy_mixer"]["properties"]


# -- config ----------------------------------------------------------------------------------------------------
def split_config_output(out: str, err: str) -> tuple[dict, str]:
    """stdout is the config as JSON alone; the content hash is the one line on stderr."""
    match = re.fullmatch(r"content hash: ([0-9a-f]{16})\n", err)
    assert match, err
    return json.loads(out), match.group(1)


def test_config_prints_config_and_hash(capsys, config_file):
    rc, out, err = run_cli(capsys, "config", config_file, "train.lr=3e-4", "memory.num_tokens=3")
    assert rc == 0
    data, digest = split_config_output(out, err)
    assert data["train"]["lr"] == pytest.approx(3e-4)
    assert data["memory"] == {"kind": "read_write", "num_tokens": 3, "init": "random"}
    assert data["backbone"]["kind"] == "transformer_xl" and data["backbone"]["n_head"] == 4  # defaults shown
    expected = rmtzoo.load_config(config_file, ["train.lr=3e-4", "memory.num_tokens=3"], registry=rmtzoo.Registry())
    assert digest == expected.content_hash()
    rc, out, err = run_cli(capsys, "config", config_file)
    assert split_config_output(out, err)[1] != digest


def test_config_stdout_pipes_into_json_tool(config_file):
    """`rmtzoo config X | python -m json.tool` works: nothing but the JSON document on stdout."""
    rmtzoo_cmd = [sys.executable, "-m", "rmtzoo", "--no-entry-points", "config", str(config_file)]
    config = subprocess.run(rmtzoo_cmd, capture_output=True, text=True, check=True)
    tool = subprocess.run([sys.executable, "-m", "json.tool"], input=config.stdout, capture_output=True, text=True)
    assert tool.returncode == 0, tool.stderr
    assert json.loads(tool.stdout)["backbone"]["kind"] == "transformer_xl"
    assert "content hash: " in config.stderr


def test_config_output_round_trips(capsys, config_file, tmp_path):
    rc, out, err = run_cli(capsys, "config", config_file, "seed=9")
    data, digest = split_config_output(out, err)
    dumped = tmp_path / "printed.json"
    dumped.write_text(out)
    rc, out, err = run_cli(capsys, "config", dumped)
    assert rc == 0 and split_config_output(out, err) == (data, digest)


def test_config_with_plugin_backbone(capsys, tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text("backbone:\n  kind: toy_mixer\n  vocab_size: 11\nsegment:\n  length: 4\n")
    rc, out, err = run_cli(capsys, "--plugins-dir", PLUGINS_DIR, "config", path)
    assert rc == 0, err
    data, _ = split_config_output(out, err)
    assert data["backbone"] == {"kind": "toy_mixer", "vocab_size": 11, "d_model": 16, "n_layer": 2}
    rc, out, err = run_cli(capsys, "config", path)  # without the plugin
    assert_one_line_error(rc, out, err, "backbone.kind: unknown backbone 'toy_mixer'")


# -- demo ------------------------------------------------------------------------------------------------------
def check_demo_output(out: str, err: str, steps: int) -> tuple[float, float]:
    """stdout: the model, the task, the trainer's test line, the accuracy; stderr: the trainer's progress."""
    lines = out.splitlines()
    assert lines[0].startswith("model: backbone=transformer_xl memory=read_write recurrence=rmt ")
    assert [line for line in err.splitlines() if line.startswith(f"step {steps}/{steps}  loss ")]
    test = re.search(rf"^test: test/loss (\d+\.\d+)  test/accuracy \d\.\d+.*  step {steps}$", out, re.M)
    assert test, out
    acc = re.fullmatch(r"held-out greedy target accuracy: (\d\.\d{3}) \(chance 0\.10\)", lines[-1])
    assert acc, lines[-1]
    loss, accuracy = float(test.group(1)), float(acc.group(1))
    assert 0.0 < loss < 10.0 and 0.0 <= accuracy <= 1.0
    return loss, accuracy


def test_demo_runs(capsys, one_thread):
    rc, out, err = run_cli(capsys, "--no-entry-points", "demo", "train.steps=3", *SMALL)
    assert rc == 0, err
    check_demo_output(out, err, 3)
    assert "task: copy 6 -> 12 symbols, 18 tokens in 3 segments of 6" in out


def test_demo_with_config_file_and_overrides(capsys, one_thread, config_file):
    rc, out, err = run_cli(capsys, "--no-entry-points", "demo", config_file, "train.steps=2", "train.batch_size=2")
    assert rc == 0, err
    check_demo_output(out, err, 2)
    assert "3 segments of 4" in out


def test_demo_is_deterministic(capsys, one_thread):
    argv = ["--no-entry-points", "demo", "train.steps=2", *SMALL, "attention.kind=eager"]
    _, first, first_err = run_cli(capsys, *argv)
    second = run_cli(capsys, *argv)[1]
    assert first == second
    _, other, other_err = run_cli(capsys, *argv, "seed=1")
    assert check_demo_output(other, other_err, 2)[0] != check_demo_output(first, first_err, 2)[0]


def test_demo_rejects_small_vocabulary(capsys, one_thread):
    rc, out, err = run_cli(capsys, "demo", "train.steps=1", "backbone.vocab_size=8", *SMALL)
    assert_one_line_error(rc, "", err, "backbone.vocab_size", "at least 12")


# -- user errors: exit 2, one line, no traceback -----------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["config", "{tmp}/missing.toml"], ["missing.toml", "not found"]),
        (["config", "{config}", "backbone.kind=transfomer_xl"], ["unknown backbone 'transfomer_xl'", "did you mean"]),
        (["config", "{config}", "memory.kind=nowhere"], ["memory.kind: unknown memory placement 'nowhere'"]),
        (["config", "{config}", "train.lr"], ["override 'train.lr' must look like key.path=value"]),
        (["config", "{config}", "train.lr=-1"], ["train.lr: Input should be greater than 0"]),
        (["config", "{config}", "backbone.kind=transformer_xl_encoder"], ["memory.kind: 'read_write' needs a causal backbone"]),
        (["config", "{nomem}", "recurrence.kind=rmt"], ["recurrence.kind: 'rmt' carries memory", "memory.kind 'none'"]),
        (["config", "{nomem}", "recurrence.kind=xl", "backbone.kind=transformer_xl_encoder"],
         ["recurrence.kind: 'xl' needs a backbone that accepts a Transformer-XL cache"]),
        (["config", "{config}", "bogus.key=1"], ["bogus: unknown key"]),
        (["config", "{tmp}/bad.yaml"], ["bad.yaml", "is not valid YAML"]),
        (["config", "{tmp}/exp.ini"], ["unknown format '.ini'"]),
        (["demo", "train.steps=0"], ["train.steps: Input should be greater than 0"]),
        (["demo", "{tmp}/missing.toml"], ["missing.toml", "not found"]),
        (["--plugins-dir", "{tmp}/no-such-dir", "list"], ["no-such-dir", "does not exist"]),
        (["--plugins-dir", "{tmp}/broken", "list"], ["plugin 'kaputt'", "failed to load", "kaputt at import"]),
        (["--plugins-dir", "{tmp}/raising", "list", "backbones"],
         ["plugin 'boom'", "failed in rmtzoo_register_backbones", "RuntimeError: boom"]),
        (["--plugins-dir", "{tmp}/raising", "config", "{config}"], ["plugin 'boom'", "RuntimeError: boom"]),
        (["--plugins-dir", "{tmp}/multiline", "list"], ["plugin 'twolines'", "first half second half"]),
        (["--plugins-dir", "{tmp}/twins", "config", "{config}"], ["backbone 'twin' is registered twice"]),
        (["config", "{copy}"], ["task: src_len=2 with n_symbols=2 gives 4 distinct inputs", "115000"]),
        (["train", "{copy}", "--run-dir", "{tmp}/run"], ["task", "gives 4 distinct inputs"]),
        (["frobnicate"], ["invalid choice: 'frobnicate'"]),
        ([], ["the following arguments are required: command"]),
        (["list", "a", "b", "c"], ["unrecognized arguments: c"]),
        (["--bogus", "list"], ["unrecognized arguments: --bogus"]),
        (["config"], ["the following arguments are required: config"]),
        (["list", "backbones", "--nope"], ["unrecognized arguments: --nope"]),
    ],
)
def test_user_errors(capsys, tmp_path, config_file, argv, fragments):
    (tmp_path / "bad.yaml").write_text("backbone: [1,\n  kind\n")
    (tmp_path / "nomem.json").write_text(json.dumps({"backbone": {"kind": "transformer_xl", "vocab_size": 12},
                                                     "segment": {"length": 4}}))
    (tmp_path / "exp.ini").write_text("[backbone]\n")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "kaputt.py").write_text("raise RuntimeError('kaputt at import')\n")
    write_raising_plugin(tmp_path / "raising")
    (tmp_path / "multiline").mkdir()
    (tmp_path / "multiline" / "twolines.py").write_text("raise ImportError('first half\\n  second half')\n")
    (tmp_path / "twins").mkdir()
    for name in ("twin_a", "twin_b"):
        (tmp_path / "twins" / f"{name}.py").write_text(TWIN_PLUGIN)
    copy = tmp_path / "copy.toml"
    copy.write_text(CONFIG_TOML + '\n[task]\nkind = "copy"\nsrc_len = 2\nn_symbols = 2\n')
    argv = [a.format(tmp=tmp_path, config=config_file, nomem=tmp_path / "nomem.json", copy=copy) for a in argv]
    rc, out, err = run_cli(capsys, *argv)
    assert_one_line_error(rc, out, err, *fragments)
    assert out == "" and not (tmp_path / "run").exists()
    assert len(err) < 300 or "failed to load" in err, err  # one statement, not the same one per axis block


# two plugin files registering the same backbone name (never built: validation stops first)
TWIN_PLUGIN = """\
import rmtzoo

@rmtzoo.hookimpl
def rmtzoo_register_backbones(register):
    caps = rmtzoo.BackboneCapabilities(causal=True, accepts_cache=False)
    register(rmtzoo.BackboneSpec(name="twin", summary="-", params=rmtzoo.NoParams, build=None, capabilities=caps))
"""


def write_raising_plugin(folder: Path) -> None:
    folder.mkdir()
    (folder / "boom.py").write_text(
        "import rmtzoo\n\n@rmtzoo.hookimpl\ndef rmtzoo_register_backbones(register):\n"
        "    raise RuntimeError('boom')\n"
    )


def test_plugins_reports_a_registration_hook_that_raises(capsys, tmp_path):
    """``rmtzoo plugins`` lists what loaded, then names the plugin whose hook raised (exit 2)."""
    write_raising_plugin(tmp_path / "raising")
    rc, out, err = run_cli(capsys, "--no-entry-points", "--plugins-dir", tmp_path / "raising", "plugins")
    assert_one_line_error(rc, "", err, "plugin 'boom'", "failed in rmtzoo_register_backbones", "RuntimeError: boom")
    assert "boom" in out and "rmtzoo_register_backbones" in out  # the listing still came first


def test_help_exits_zero(capsys):
    rc, out, err = run_cli(capsys, "--help")
    assert rc == 0 and "list" in out and "demo" in out and err == ""


# -- as a subprocess -----------------------------------------------------------------------------------------------
def test_subprocess_list():
    proc = run_subprocess("--no-entry-points", "list")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    found = sections(proc.stdout)
    assert [len(found[a]) for a in ["backbones", "memory_placements", "recurrences"]] == [3, 3, 5]
    assert found["attention_backends"] == ["auto", "eager", "flex", "sdpa"]
    assert found["tasks"] == BUILTIN_TASKS


def test_subprocess_plugin_dir_from_environment():
    proc = run_subprocess("list", "backbones", "toy*", env_extra={"RMTZOO_PLUGINS_DIR": str(PLUGINS_DIR)})
    assert proc.returncode == 0, proc.stderr
    assert sections(proc.stdout) == {"backbones": ["toy_mixer"]}


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["config", "does/not/exist.toml"], "config file 'does/not/exist.toml' not found"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_subprocess_user_errors(argv, fragment):
    proc = run_subprocess(*argv)
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, fragment)
    assert proc.stdout == ""


def test_demo_runs_through_the_trainer(one_thread):
    """The demo is the trainer on a copy task (its observer hooks fire, greedy test accuracy), not a loop of its own."""
    from rmtzoo._demo import run_demo

    events = []

    class Spy:
        @rmtzoo.hookimpl
        def rmtzoo_run_started(self, run):
            events.append(("started", run.config.task.kind))

        @rmtzoo.hookimpl
        def rmtzoo_run_finished(self, run, status, metrics):
            events.append(("finished", status))

    registry = rmtzoo.Registry(environ={}, entry_points=False)
    registry.add_plugin(Spy(), name="spy")
    source = rmtzoo.load_config(REPO / "rmtzoo" / "configs" / "demo.toml", ["train.steps=2", *SMALL], registry=registry)
    results = run_demo(source, registry=registry, log=lambda *a: None, device="cpu")
    assert events == [("started", "copy"), ("finished", "completed")]
    assert results["test/decoding"] == "greedy" and results["test/samples"] == 256

"""The hook contract: documented, exercised by the tests, and dispatched to plugins."""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
from pathlib import Path

import pytest
from pydantic import PositiveInt

import rmtzoo
from rmtzoo import _builtins, hookspecs
from rmtzoo._registry import HOOK_OF_AXIS

TESTS = Path(__file__).resolve().parent
OBSERVER_HOOKS = ["rmtzoo_run_started", "rmtzoo_run_resumed", "rmtzoo_metrics_logged", "rmtzoo_run_finished"]
# the built-in plugins that observe runs (the loggers) and those that register tasks
OBSERVER_BUILTINS = [n for n, p in _builtins.PLUGINS if any(hasattr(p, h) for h in OBSERVER_HOOKS)]
TASK_BUILTINS = [n for n, p in _builtins.PLUGINS if hasattr(p, "rmtzoo_register_tasks")]
SAMPLE_TASKS = {"copy", "reverse", "associative_retrieval", "quadratic_equations"}


def hookspec_functions() -> dict[str, object]:
    return {
        name: fn
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, "rmtzoo_spec")  # marked by pluggy's HookspecMarker("rmtzoo")
    }


HOOKS = sorted(hookspec_functions())


def test_hookspecs_found():
    # six registration hooks (one per axis) and four run observers, nothing else
    assert set(HOOKS) == set(HOOK_OF_AXIS.values()) | set(OBSERVER_HOOKS)
    assert len(HOOKS) == 10
    assert all(name.startswith("rmtzoo_") for name in HOOKS)


@pytest.mark.parametrize("name", HOOKS)
def test_hookspec_is_documented(name):
    fn = hookspec_functions()[name]
    doc = inspect.getdoc(fn)
    assert doc, f"{name} has no docstring"
    summary = doc.splitlines()[0]
    assert len(summary) > 20 and summary.endswith("."), f"{name}: first line should be a one-sentence summary"
    params = list(inspect.signature(fn).parameters)
    assert params, f"{name} takes no arguments"
    documented = re.findall(r"^:param (\w+):", doc, flags=re.MULTILINE)
    assert documented == params, f"{name}: :param lines {documented} do not match the arguments {params}"
    for param in params:
        body = re.search(rf"^:param {param}:(.*)$", doc, flags=re.MULTILINE).group(1).strip()
        assert body, f"{name}: :param {param}: has no description"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_exercised_by_another_test_file(name):
    """datasette-style: a hook that no test mentions is a hook nobody has checked."""
    sources = [p for p in TESTS.rglob("test_*.py") if p.resolve() != Path(__file__).resolve()]
    users = [p.name for p in sources if name in p.read_text(encoding="utf-8")]
    assert users, f"hook {name} is not used by any test file other than {Path(__file__).name}"


def test_registration_hooks_cover_every_axis():
    from rmtzoo._components import AXES

    assert set(HOOK_OF_AXIS) == set(AXES)
    for axis, hook in HOOK_OF_AXIS.items():
        assert list(inspect.signature(hookspec_functions()[hook]).parameters) == ["register"], axis


# -- observer hooks -------------------------------------------------------------------------------------
class Recorder:
    def __init__(self, tag: str, log: list) -> None:
        self.tag, self.log = tag, log

    @rmtzoo.hookimpl
    def rmtzoo_run_started(self, run):
        self.log.append((self.tag, "started", run))
        return "ignored"

    @rmtzoo.hookimpl
    def rmtzoo_run_resumed(self, run, step):
        self.log.append((self.tag, "resumed", run, step))

    @rmtzoo.hookimpl
    def rmtzoo_metrics_logged(self, run, step, metrics):
        self.log.append((self.tag, "metrics", run, step, dict(metrics)))

    @rmtzoo.hookimpl
    def rmtzoo_run_finished(self, run, status, metrics):
        self.log.append((self.tag, "finished", run, status, dict(metrics)))


@pytest.fixture
def bare_registry():
    return rmtzoo.Registry(environ={}, entry_points=False)


@pytest.fixture
def quiet_registry():
    """No entry points and the built-in loggers blocked: the test's observers are the only ones."""
    return rmtzoo.Registry(environ={}, entry_points=False, block=OBSERVER_BUILTINS)


@pytest.fixture
def run(tmp_path):
    return rmtzoo.RunInfo(run_dir=str(tmp_path), config=None, config_hash="x")


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def without_time(records: list[dict]) -> list[dict]:
    for record in records:
        assert isinstance(record.pop("time"), float | int)
    return records


def test_builtin_loggers_are_observers(bare_registry):
    assert OBSERVER_BUILTINS == ["rmtzoo.loggers.jsonl", "rmtzoo.loggers.tensorboard", "rmtzoo.loggers.wandb"]
    infos = {p.name: p for p in bare_registry.plugins()}
    assert infos["rmtzoo.loggers.jsonl"].source == "builtin"
    assert infos["rmtzoo.loggers.jsonl"].hooks == tuple(sorted(OBSERVER_HOOKS))
    assert infos["rmtzoo.loggers.tensorboard"].hooks == ("rmtzoo_metrics_logged", "rmtzoo_run_finished", "rmtzoo_run_resumed")
    assert infos["rmtzoo.loggers.wandb"].hooks == ("rmtzoo_metrics_logged", "rmtzoo_run_finished", "rmtzoo_run_started")


def test_builtin_jsonl_logger_writes_metrics(bare_registry, tmp_path):
    run = rmtzoo.RunInfo(run_dir=str(tmp_path / "runs" / "r1"), config=None, config_hash="x")
    assert bare_registry.hook.rmtzoo_run_started(run=run) == []  # loggers return nothing
    bare_registry.hook.rmtzoo_metrics_logged(run=run, step=10, metrics={"train/loss": 1.25, "train/acc": 0.5})
    bare_registry.hook.rmtzoo_metrics_logged(run=run, step=20, metrics={"eval/loss": 1.0})
    bare_registry.hook.rmtzoo_run_finished(run=run, status="completed", metrics={"eval/loss": 1.0})
    path = tmp_path / "runs" / "r1" / "metrics.jsonl"  # the run folder is created by run_started
    records = read_jsonl(path)
    times = [r["time"] for r in records]
    assert times == sorted(times)
    assert without_time(records) == [
        {"event": "started", "config_hash": "x"},
        {"step": 10, "train/loss": 1.25, "train/acc": 0.5},
        {"step": 20, "eval/loss": 1.0},
        {"event": "finished", "status": "completed", "eval/loss": 1.0},
    ]
    # TensorBoard event files only where tensorboard is installed
    has_tensorboard = importlib.util.find_spec("tensorboard") is not None
    assert (tmp_path / "runs" / "r1" / "tensorboard").is_dir() == has_tensorboard
    # a second run appends to its own folder only
    other = rmtzoo.RunInfo(run_dir=str(tmp_path / "runs" / "r2"), config=None, config_hash="y")
    bare_registry.hook.rmtzoo_run_started(run=other)
    bare_registry.hook.rmtzoo_run_finished(run=other, status="failed", metrics={})
    assert len(read_jsonl(path)) == 4
    assert without_time(read_jsonl(tmp_path / "runs" / "r2" / "metrics.jsonl")) == [
        {"event": "started", "config_hash": "y"},
        {"event": "finished", "status": "failed"},
    ]


def test_blocked_jsonl_logger_writes_nothing(tmp_path):
    registry = rmtzoo.Registry(environ={}, entry_points=False, block=["rmtzoo.loggers.jsonl"])
    assert "rmtzoo.loggers.jsonl" not in [p.name for p in registry.plugins()]
    assert "rmtzoo.loggers.tensorboard" in [p.name for p in registry.plugins()]
    run = rmtzoo.RunInfo(run_dir=str(tmp_path / "run"), config=None, config_hash="x")
    registry.hook.rmtzoo_run_started(run=run)
    registry.hook.rmtzoo_metrics_logged(run=run, step=1, metrics={"train/loss": 1.0})
    registry.hook.rmtzoo_run_finished(run=run, status="completed", metrics={})
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_observer_receives_lifecycle_calls(bare_registry, run, tmp_path):
    log: list = []
    bare_registry.add_plugin(Recorder("a", log), "recorder")
    bare_registry.hook.rmtzoo_run_started(run=run)
    bare_registry.hook.rmtzoo_metrics_logged(run=run, step=10, metrics={"train/loss": 1.25, "train/acc": 0.5})
    bare_registry.hook.rmtzoo_metrics_logged(run=run, step=20, metrics={"eval/loss": 1.0})
    bare_registry.hook.rmtzoo_run_finished(run=run, status="completed", metrics={"eval/loss": 1.0})
    assert log == [
        ("a", "started", run),
        ("a", "metrics", run, 10, {"train/loss": 1.25, "train/acc": 0.5}),
        ("a", "metrics", run, 20, {"eval/loss": 1.0}),
        ("a", "finished", run, "completed", {"eval/loss": 1.0}),
    ]
    info = {p.name: p for p in bare_registry.plugins()}["recorder"]
    assert info.source == "added"
    assert info.hooks == tuple(sorted(OBSERVER_HOOKS))
    # the built-in JSONL logger, called alongside, recorded the same run
    assert [r.get("step", r.get("event")) for r in read_jsonl(tmp_path / "metrics.jsonl")] == [
        "started", 10, 20, "finished"
    ]


def test_every_observer_is_called(quiet_registry, run):
    log: list = []
    quiet_registry.add_plugin(Recorder("first", log), "first")
    quiet_registry.add_plugin(Recorder("second", log), "second")
    results = quiet_registry.hook.rmtzoo_run_started(run=run)
    assert sorted(tag for tag, *_ in log) == ["first", "second"]
    assert results == ["ignored", "ignored"]


def test_every_observer_is_called_alongside_the_builtin_loggers(bare_registry, run, tmp_path):
    log: list = []
    bare_registry.add_plugin(Recorder("first", log), "first")
    bare_registry.add_plugin(Recorder("second", log), "second")
    results = bare_registry.hook.rmtzoo_run_started(run=run)
    assert sorted(tag for tag, *_ in log) == ["first", "second"]
    assert results == ["ignored", "ignored"]  # the loggers return None, which pluggy leaves out
    assert without_time(read_jsonl(tmp_path / "metrics.jsonl")) == [{"event": "started", "config_hash": "x"}]


def test_observer_may_implement_a_subset_with_fewer_arguments(quiet_registry):
    seen: list = []

    class FinishOnly:
        @rmtzoo.hookimpl
        def rmtzoo_run_finished(self, status):
            seen.append(status)

    quiet_registry.add_plugin(FinishOnly(), "finish_only")
    quiet_registry.hook.rmtzoo_run_started(run="r")  # nobody listens (the loggers are blocked): a no-op
    quiet_registry.hook.rmtzoo_metrics_logged(run="r", step=1, metrics={})
    quiet_registry.hook.rmtzoo_run_finished(run="r", status="failed", metrics={})
    assert seen == ["failed"]


def test_observers_are_per_registry(bare_registry, run, tmp_path):
    log: list = []
    bare_registry.add_plugin(Recorder("a", log), "recorder")
    other = rmtzoo.Registry(environ={}, entry_points=False)
    other.hook.rmtzoo_run_started(run=run)
    assert log == []
    # the other registry's own built-in logger did see it
    assert without_time(read_jsonl(tmp_path / "metrics.jsonl")) == [{"event": "started", "config_hash": "x"}]


def test_observer_hooks_take_keyword_arguments_only(bare_registry):
    bare_registry.add_plugin(Recorder("a", []), "recorder")
    with pytest.raises(TypeError):
        bare_registry.hook.rmtzoo_run_started("positional")


def test_observer_with_unknown_argument_is_rejected(bare_registry):
    class Wrong:
        @rmtzoo.hookimpl
        def rmtzoo_metrics_logged(self, run, step, metrics, extra):
            pass

    with pytest.raises(rmtzoo.RmtzooError, match="plugin 'wrong'.*extra"):
        bare_registry.add_plugin(Wrong(), "wrong")
    assert "wrong" not in [p.name for p in bare_registry.plugins()]


def test_registration_hooks_are_not_observers(bare_registry, run):
    """Observers do not trigger registration and vice versa: the registration tables stay as they were."""
    log: list = []
    bare_registry.add_plugin(Recorder("a", log), "recorder")
    before = {axis: bare_registry.names(axis) for axis in HOOK_OF_AXIS}
    bare_registry.hook.rmtzoo_run_finished(run=run, status="interrupted", metrics={})
    assert {axis: bare_registry.names(axis) for axis in HOOK_OF_AXIS} == before
    assert log == [("a", "finished", run, "interrupted", {})]


# -- task and benchmark registration ---------------------------------------------------------------------
class CopyParams(rmtzoo.Params):
    length: PositiveInt = 4
    symbols: PositiveInt = 10


class TaskAndBenchmarkPlugin:
    @rmtzoo.hookimpl
    def rmtzoo_register_tasks(self, register):
        register(
            rmtzoo.TaskSpec(
                name="toy_copy",
                summary="copy task from a test plugin",
                params=CopyParams,
                build=lambda p: ("task", p.length),
                vocab_size=lambda p: p.symbols + 2,
                test_params={"length": 2},
            )
        )

    @rmtzoo.hookimpl
    def rmtzoo_register_benchmarks(self, register):
        register(rmtzoo.BenchmarkSpec(name="toy_grid", summary="grid from a test plugin", build=lambda p: ["a", "b"]))


def test_task_and_benchmark_registration(bare_registry):
    builtin_tasks = bare_registry.names("tasks")
    assert SAMPLE_TASKS <= set(builtin_tasks)
    bare_registry.add_plugin(TaskAndBenchmarkPlugin(), "tb")
    assert bare_registry.names("tasks") == sorted([*builtin_tasks, "toy_copy"])
    # with the task built-ins blocked, the plugin's task is the only one
    no_builtin_tasks = rmtzoo.Registry(environ={}, entry_points=False, block=TASK_BUILTINS)
    no_builtin_tasks.add_plugin(TaskAndBenchmarkPlugin(), "tb")
    assert no_builtin_tasks.names("tasks") == ["toy_copy"]
    assert bare_registry.names("benchmarks") == ["toy_grid"]
    assert bare_registry.provider("tasks", "toy_copy") == "tb"
    assert bare_registry.provider("benchmarks", "toy_grid") == "tb"
    task = bare_registry.get("task", "toy_copy")
    assert isinstance(task, rmtzoo.TaskSpec)
    assert task.build(task.params(**task.test_params)) == ("task", 2)
    bench = bare_registry.get("benchmark", "toy_grid")
    assert bench.params is rmtzoo.NoParams and bench.build(bench.params()) == ["a", "b"]
    hooks = {p.name: p.hooks for p in bare_registry.plugins()}["tb"]
    assert hooks == ("rmtzoo_register_benchmarks", "rmtzoo_register_tasks")


def test_registered_task_validates_in_config(bare_registry):
    bare_registry.add_plugin(TaskAndBenchmarkPlugin(), "tb")
    base = {
        "backbone": {"kind": "transformer_xl", "vocab_size": 12},
        "segment": {"length": 4},
        "task": {"kind": "toy_copy", "length": 3},
    }
    config = rmtzoo.load_config(base, registry=bare_registry)
    assert config.task.kind == "toy_copy" and config.task.params == CopyParams(length=3)
    assert config.model_dump(mode="json")["task"] == {"kind": "toy_copy", "length": 3, "symbols": 10}
    # the task's vocabulary is checked against the backbone's
    with pytest.raises(rmtzoo.ConfigError, match="backbone.vocab_size: 12 is smaller than task 'toy_copy'.* 14"):
        rmtzoo.load_config(base, ["task.symbols=12"], registry=bare_registry)
    with pytest.raises(rmtzoo.ConfigError, match="task.length"):
        rmtzoo.load_config(base, ["task.length=0"], registry=bare_registry)
    # the schema lists the task as a discriminated variant
    schema = rmtzoo.config_json_schema(bare_registry)
    assert "tasks__toy_copy" in schema["$defs"]
    assert schema["$defs"]["tasks__toy_copy"]["properties"]["kind"]["const"] == "toy_copy"


def test_task_hook_with_wrong_spec_type_names_plugin(bare_registry):
    class Wrong:
        @rmtzoo.hookimpl
        def rmtzoo_register_benchmarks(self, register):
            register(rmtzoo.TaskSpec(name="t", summary="s", params=rmtzoo.NoParams, build=lambda p: None))

    bare_registry.add_plugin(Wrong(), "wrong_bench")
    with pytest.raises(rmtzoo.RmtzooError, match="plugin 'wrong_bench' registered TaskSpec through the benchmarks hook"):
        bare_registry.names("benchmarks")


def test_duplicate_task_names_both_plugins(bare_registry):
    bare_registry.add_plugin(TaskAndBenchmarkPlugin(), "tb_one")
    bare_registry.add_plugin(TaskAndBenchmarkPlugin(), "tb_two")
    with pytest.raises(rmtzoo.DuplicateComponentError, match="task 'toy_copy'.*'tb_one'.*'tb_two'"):
        bare_registry.names("tasks")

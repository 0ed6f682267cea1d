"""What a run folder promises (README, "Checkpoints"): nothing is unpickled, one trainer at a time, a
damaged file is one line and exit 2 with nothing overwritten, a NaN never becomes the good checkpoint,
a finished run stays finished, the test score covers the whole test set, and files follow the umask."""

from __future__ import annotations

import copy
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import KillAt, builtin_registry, quiet, tiny_copy
from safetensors.torch import load_file

import rmtzoo
from rmtzoo.cli import main
from rmtzoo.train import Trainer, find_checkpoint, train
from rmtzoo.train._checkpoint import read_trainer_state

REPO = Path(__file__).resolve().parents[1]

# copy with src_len 4: 12-token samples in 3 segments of 4.
BASE = tiny_copy(task={"src_len": 4, "train_size": 32, "valid_size": 8}, backbone={"n_layer": 1},
                 memory={"num_tokens": 2}, segment={"length": 4}, train={"steps": 8, "checkpoint_every": 2},
                 eval={"every": 4, "batch_size": 4})


def config(*overrides: str):
    return rmtzoo.load_config(copy.deepcopy(BASE), list(overrides), registry=builtin_registry())


@pytest.fixture(autouse=True)
def _isolated(isolated_trainer, monkeypatch):
    monkeypatch.setenv("RMTZOO_DISABLE_PLUGIN_AUTOLOAD", "1")


@pytest.fixture
def config_file(tmp_path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(BASE))
    return path


def cli(capsys, *args) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("step ")]  # progress lines
    assert len(lines) == 1 and lines[0].startswith("rmtzoo: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def tree(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, but the lock file (a trainer that starts writes its pid there)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, task_cache) -> Path:
    """A finished 8-step run (checkpoints 6 and 8 kept, best among them or 4)."""
    os.environ["RMTZOO_CACHE"] = str(task_cache)
    run_dir = tmp_path_factory.mktemp("finished")
    state = torch.get_rng_state()
    train(config(), run_dir, registry=builtin_registry(), log=quiet)
    torch.set_rng_state(state)
    return run_dir


@pytest.fixture
def run_copy(finished, tmp_path) -> Path:
    import shutil

    target = tmp_path / "run"
    shutil.copytree(finished, target)
    (target / ".lock").unlink(missing_ok=True)
    return target


# -- no pickle -----------------------------------------------------------------------------------------
class Payload:
    """Unpickling this creates ``marker``: what a planted trainer.pt would do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_planted_pickle_payload_does_not_run(run_copy, config_file, tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    # Beside the current format a trainer.pt is never read.
    for folder in (run_copy / "checkpoints").glob("step-*"):
        torch.save({"step": Payload(str(marker))}, folder / "trainer.pt")
    rc, out, err = cli(capsys, "eval", str(run_copy))
    assert rc == 0, err
    assert not marker.exists()
    # As old-format checkpoints (trainer.pt only): eval and generate need the weights alone, and a
    # resume (which reads the trainer state) is refused with one line; the payload never runs.
    for folder in (run_copy / "checkpoints").glob("step-*"):
        for name in ("trainer.json", "trainer.safetensors"):
            (folder / name).unlink()
    for command in (["eval", str(run_copy)], ["generate", str(run_copy), "--ids", "1,2", "--max-tokens", "2"]):
        rc, out, err = cli(capsys, *command)
        assert rc == 0, err
    before = tree(run_copy)
    rc, out, err = cli(capsys, "train", str(config_file), "--run-dir", str(run_copy))
    one_line_error(rc, err, "trainer.pt", "refused", "never runs code")
    assert not marker.exists()
    assert tree(run_copy) == before


def test_an_old_run_folder_with_trainer_pt_still_loads_and_resumes(run_copy, capsys):
    """A run written before trainer.json (trainer.pt of tensors and plain data) evaluates and resumes."""
    for folder in (run_copy / "checkpoints").glob("step-*"):
        state = read_trainer_state(folder)
        for name in ("trainer.json", "trainer.safetensors"):
            (folder / name).unlink()
        state.pop("finished")
        torch.save(state, folder / "trainer.pt")
    rc, out, err = cli(capsys, "eval", str(run_copy))
    assert rc == 0, err
    assert json.loads(out)["split"] == "test"
    before = (run_copy / "results.json").read_bytes()
    results = train(config(), run_copy, registry=builtin_registry(), log=quiet)  # finished before: stays finished
    assert (run_copy / "results.json").read_bytes() == before and results["step"] == 8
    results = train(config("train.steps=10"), run_copy, registry=builtin_registry(), continue_run=True, log=quiet)
    assert results["step"] == 10
    assert (find_checkpoint(run_copy) / "trainer.json").is_file()  # the resumed run writes the new format


# -- one trainer per run folder ------------------------------------------------------------------------
WAITER = """\
import os, sys, time
from pathlib import Path
import rmtzoo
from rmtzoo.train import train

class Wait:
    @rmtzoo.hookimpl
    def rmtzoo_metrics_logged(self, run, step, metrics):
        if step == 1 and "train/loss" in metrics:
            Path(sys.argv[2], "ready").write_text(str(os.getpid()))
            while not Path(sys.argv[2], "go").exists():
                time.sleep(0.05)

registry = rmtzoo.Registry(environ={}, entry_points=False)
registry.add_plugin(Wait(), "wait")
config = rmtzoo.load_config(sys.argv[1], ["train.lr=0.05"], registry=registry)
train(config, Path(sys.argv[2]) / "run", registry=registry, log=lambda *a: None)
"""


def test_a_second_trainer_on_a_run_folder_is_refused_naming_the_holder(tmp_path, config_file, capsys):
    script = tmp_path / "waiter.py"
    script.write_text(WAITER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen([sys.executable, str(script), str(config_file), str(tmp_path)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "ready").exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        run_dir = tmp_path / "run"
        before = tree(run_dir)
        rc, out, err = cli(capsys, "train", str(config_file), "--run-dir", str(run_dir))
        one_line_error(rc, err, "in use by another trainer", f"pid {first.pid}")
        assert tree(run_dir) == before  # the second trainer wrote nothing
    finally:
        (tmp_path / "go").write_text("")
        _, first_err = first.communicate(timeout=240)
    assert first.returncode == 0, first_err.decode()
    # The holder is gone, and so is its lock: the folder is usable again.
    rc, out, err = cli(capsys, "train", str(config_file), "train.lr=0.05", "--run-dir", str(run_dir))
    assert rc == 0, err


# -- damaged pointers and checkpoints ------------------------------------------------------------------
@pytest.mark.parametrize("pointer", ["latest.json", "best.json"])
@pytest.mark.parametrize("content", ["{garbage", '{"path": "step-00000099", "step": 99}', '["not a pointer"]'])
def test_a_damaged_pointer_is_an_error_naming_it_and_the_newest_intact_checkpoint(
        run_copy, config_file, capsys, pointer, content):
    (run_copy / "checkpoints" / pointer).write_text(content)
    before = tree(run_copy)
    command = ["train", str(config_file), "--run-dir", str(run_copy)] if pointer == "latest.json" else \
        ["eval", str(run_copy)]
    rc, out, err = cli(capsys, *command)
    one_line_error(rc, err, str(run_copy / "checkpoints" / pointer), "step-00000008", f"delete {pointer}")
    assert tree(run_copy) == before  # metrics.jsonl, results.json, the pointers: nothing overwritten


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(("damage", "needle"), [
    (lambda f: _truncate(f / "model.safetensors"), "model.safetensors is damaged"),
    (lambda f: (f / "model.safetensors").write_bytes(b"\x00garbage" * 64), "model.safetensors is damaged"),
    (lambda f: (f / "config.json").write_text(
        json.dumps({**json.loads((f / "config.json").read_text()),
                    "backbone": {**BASE["backbone"], "n_layer": 2}})), "does not fit the model its config.json"),
])
def test_eval_of_a_damaged_checkpoint_is_one_line(run_copy, capsys, damage, needle):
    folder = find_checkpoint(run_copy, which="best")
    damage(folder)
    before = tree(run_copy)
    rc, out, err = cli(capsys, "eval", str(run_copy))
    one_line_error(rc, err, needle)
    assert tree(run_copy) == before


def test_resume_falls_back_from_a_truncated_newest_checkpoint(tmp_path):
    reference_dir = tmp_path / "full"
    train(config("train.steps=12"), reference_dir, registry=builtin_registry(), log=quiet)
    reference = load_file(str(find_checkpoint(reference_dir) / "model.safetensors"))

    killer = builtin_registry()
    killer.add_plugin(KillAt(11), "killer")
    with pytest.raises(KeyboardInterrupt):
        Trainer(config("train.steps=12"), tmp_path / "killed", registry=killer, log=quiet).fit()
    newest = find_checkpoint(tmp_path / "killed")
    assert newest.name == "step-00000010"
    _truncate(newest / "model.safetensors")
    said = []
    train(config("train.steps=12"), tmp_path / "killed", registry=builtin_registry(), log=said.append)
    assert any("step-00000010 is damaged" in s and "resuming from step-00000008" in s for s in said), said
    resumed = load_file(str(find_checkpoint(tmp_path / "killed") / "model.safetensors"))
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)


def test_stale_temporaries_are_removed_and_metrics_are_not_doubled_by_a_resume(tmp_path):
    run_dir = tmp_path / "run"
    killer = builtin_registry()
    killer.add_plugin(KillAt(7), "killer")
    with pytest.raises(KeyboardInterrupt):
        Trainer(config(), run_dir, registry=killer, log=quiet).fit()  # checkpoints at 2, 4, 6; steps 7 logged
    stale = run_dir / "checkpoints" / ".tmp-step-00000008-deadbeef"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    (run_dir / "checkpoints" / ".latest.json.abc123").write_text("{")
    train(config(), run_dir, registry=builtin_registry(), log=quiet)
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))
    assert not list((run_dir / "checkpoints").glob(".latest.json.*"))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "train/loss" in r]
    assert steps == list(range(1, 9))  # step 7, logged before the kill and trained again, once
    assert [r["event"] for r in records if "event" in r] == ["started", "finished", "resumed", "finished"]
    assert next(r for r in records if r.get("event") == "resumed")["step"] == 6


# -- divergence ----------------------------------------------------------------------------------------
def test_nan_weights_are_never_checkpointed_as_good(tmp_path, config_file, capsys, monkeypatch):
    """The loss of step 4 is finite but its optimizer step leaves NaN weights: the run stops before
    saving them, and the checkpoint it names loads and is finite."""
    original = torch.optim.AdamW.step
    calls = []

    def step(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 4:
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("nan"))
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    run_dir = tmp_path / "run"
    rc, out, err = cli(capsys, "train", str(config_file), "train.optimizer=adamw", "train.checkpoint_every=1",
                       "--run-dir", str(run_dir))
    one_line_error(rc, err, "at step 4", "step-00000003", "intact")
    good = find_checkpoint(run_dir)
    assert good.name == "step-00000003"
    assert all(torch.isfinite(t).all() for t in load_file(str(good / "model.safetensors")).values())
    assert not (run_dir / "results.json").exists()


def test_a_nan_loss_is_one_line_and_exit_2(tmp_path, config_file, capsys):
    rc, out, err = cli(capsys, "train", str(config_file), "train.lr=1e6", "train.grad_clip=null",
                       "backbone.dropout=0.0", "train.checkpoint_every=1", "--run-dir", str(tmp_path / "run"))
    one_line_error(rc, err, "became", "at step", "intact")


# -- paths that are files, a full disk, curriculum -----------------------------------------------------
def test_paths_that_are_regular_files_are_one_line(tmp_path, config_file, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me\n")
    for args, needle in [
        (["--run-dir", str(a_file)], "is a file, not a folder"),
        (["--run-dir", str(a_file / "below")], "is a file, not a folder"),
        ([f"task.cache_dir={a_file}", "--run-dir", str(tmp_path / "r1")], "task.cache_dir"),
    ]:
        rc, out, err = cli(capsys, "train", str(config_file), *args)
        one_line_error(rc, err, needle, str(a_file))
    assert a_file.read_text() == "keep me\n"
    (tmp_path / "r2").mkdir()
    (tmp_path / "r2" / "checkpoints").write_text("not a folder\n")
    rc, out, err = cli(capsys, "train", str(config_file), "--run-dir", str(tmp_path / "r2"))
    one_line_error(rc, err, "checkpoints", "is a file, not a folder")
    assert (tmp_path / "r2" / "checkpoints").read_text() == "not a folder\n"


FSIZE_RUNNER = """\
import resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
from rmtzoo.cli import main
raise SystemExit(main(sys.argv[2:]))
"""


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so_in_one_line(run_copy, config_file, tmp_path):
    """A file-size limit (RLIMIT_FSIZE; Python ignores SIGXFSZ) makes the next checkpoint's write fail."""
    limit = (find_checkpoint(run_copy) / "model.safetensors").stat().st_size // 2
    assert (run_copy / "metrics.jsonl").stat().st_size < limit  # only the checkpoint hits the limit
    before = tree(run_copy / "checkpoints")
    script = tmp_path / "fsize.py"
    script.write_text(FSIZE_RUNNER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(script), str(limit), "train", str(config_file), "train.steps=12",
                           "--continue", "--run-dir", str(run_copy)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if not line.startswith("step ")]
    assert len(lines) == 1 and "could not write checkpoint" in lines[0] and "step-00000008 is intact" in lines[0]
    assert "File too large" in lines[0]
    assert tree(run_copy / "checkpoints") == before  # the previous checkpoint and the pointers as they were


def test_curriculum_segments_that_do_not_tile_a_sample_are_rejected(tmp_path, config_file, capsys):
    rc, out, err = cli(capsys, "train", str(config_file), "train.curriculum.segments=[1, 5]",
                       "--run-dir", str(tmp_path / "run"))
    one_line_error(rc, err, "train.curriculum.segments", "5", "12-token", "[1, 2, 3, 4, 6, 12]")
    assert not (tmp_path / "run").exists()


# -- a finished run is finished (issue 12.2) -------------------------------------------------------------
def test_a_finished_run_stays_finished_and_continuing_is_explicit(tmp_path, config_file, capsys):
    run_dir = tmp_path / "run"
    args = ["train", str(config_file), "--run-dir", str(run_dir)]
    rc, out, err = cli(capsys, *args)
    assert rc == 0, err
    assert json.loads((run_dir / "results.json").read_text())["step"] == 8
    before = tree(run_dir)
    rc, out, err = cli(capsys, *args)
    assert rc == 0, err
    assert "finished run (step 8" in out and "--continue" in out
    assert tree(run_dir) == before  # not evaluated or trained again; results.json and metrics.jsonl untouched

    # A longer run in the same folder needs --continue; with it the run trains on.
    longer = ["train", str(config_file), "train.steps=12", "--run-dir", str(run_dir)]
    rc, out, err = cli(capsys, *longer)
    one_line_error(rc, err, "another config", "--continue")
    assert tree(run_dir) == before
    rc, out, err = cli(capsys, *longer, "--continue")
    assert rc == 0, err
    assert json.loads((run_dir / "results.json").read_text())["step"] == 12
    assert find_checkpoint(run_dir).name == "step-00000012"


# -- the final test (issue 12.3) -----------------------------------------------------------------------
def test_the_final_test_uses_the_whole_test_set_and_reaches_the_loggers(tmp_path):
    run_dir = tmp_path / "run"
    results = train(config("eval.max_batches=1"), run_dir, registry=builtin_registry(), log=quiet)
    assert results["test/samples"] == BASE["task"]["test_size"]  # not eval.max_batches * eval.batch_size
    finished = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert finished["event"] == "finished" and finished["status"] == "completed"
    assert finished["test/accuracy"] == results["test/accuracy"] and finished["test/samples"] == 16


# -- the umask (issue 12.6) ----------------------------------------------------------------------------
def test_files_and_folders_follow_the_umask(tmp_path, monkeypatch):
    from rmtzoo._io import atomic_write_text, make_temp_dir

    monkeypatch.setenv("RMTZOO_CACHE", str(tmp_path / "cache"))
    old = os.umask(0o022)
    try:
        train(config(), tmp_path / "run", registry=builtin_registry(), log=quiet)
        atomic_write_text(tmp_path / "results" / "cell.json", "{}\n")
        folder = make_temp_dir(tmp_path, ".tmp-")
    finally:
        os.umask(old)
    wrong = []
    for root in (tmp_path / "run", tmp_path / "cache", tmp_path / "results"):
        for path in [root, *root.rglob("*")]:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode != (0o755 if path.is_dir() else 0o644):
                wrong.append(f"{path.relative_to(tmp_path)} {oct(mode)}")
    assert not wrong
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755

"""Load, save and share (issue 12 item 4): rmtzoo.load, save_pretrained / from_pretrained in the Hugging
Face layout, push_to_hub against a stand-in for the Hub, and plain load_state_dict on the weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import rmtzoo
from rmtzoo.cli import main
from rmtzoo.train import train

COPY = {
    "seed": 0,
    "task": {"kind": "copy", "src_len": 4, "train_size": 16, "valid_size": 8, "test_size": 8},
    "backbone": {"kind": "transformer_xl", "vocab_size": 12, "n_layer": 1, "n_head": 2, "d_model": 16,
                 "d_head": 8, "d_inner": 32},
    "memory": {"kind": "read_write", "num_tokens": 2},
    "recurrence": {"kind": "rmt"},
    "segment": {"length": 4},
    "train": {"batch_size": 4, "steps": 3, "lr": 0.01},
    "eval": {"every": 3, "batch_size": 8},
}


@pytest.fixture(scope="module")
def copy_run(tmp_path_factory):
    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("copy") / "run"
    registry = rmtzoo.Registry(entry_points=False)
    results = train(rmtzoo.load_config(COPY, registry=registry), run_dir, registry=registry, log=lambda *a: None)
    return run_dir, results


def logits(model, ids):
    with torch.no_grad():
        return model.forward_sequence(ids).logits  # [B, T, V]


IDS = torch.tensor([[2, 3, 4, 5, 1, 2, 3, 4, 5, 2, 3, 4]])


def test_checkpoint_weights_load_with_plain_load_state_dict(copy_run):
    """The tied embedding / output weight is stored under both names, so the obvious call works."""
    run_dir, _ = copy_run
    folder = rmtzoo.train.find_checkpoint(run_dir, which="best")
    model = rmtzoo.build_model(rmtzoo.load_config(folder / "config.json"))
    model.load_state_dict(load_file(str(folder / "model.safetensors")))  # strict
    assert model.backbone.out.weight.data_ptr() == model.backbone.word_emb.weight.data_ptr()  # still tied


def test_load_save_from_pretrained_round_trip_is_exact(copy_run, tmp_path):
    run_dir, results = copy_run
    loaded = rmtzoo.load(run_dir)
    assert not loaded.model.training
    assert loaded.results["test/accuracy"] == results["test/accuracy"]
    out = loaded.save_pretrained(tmp_path / "tiny-rmt")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors", "rmtzoo_model.json"]
    again = rmtzoo.from_pretrained(out)
    assert torch.equal(logits(again.model, IDS), logits(loaded.model, IDS))  # 0 difference
    assert again.config == loaded.config and again.results == loaded.results
    assert rmtzoo.load(out).config.content_hash() == loaded.config.content_hash()  # load takes it too
    # config.json is the experiment config as it is, and the weights load into a model built from it
    fresh = rmtzoo.build_model(rmtzoo.load_config(out / "config.json"))
    fresh.load_state_dict(load_file(str(out / "model.safetensors")))
    assert torch.equal(logits(fresh.eval(), IDS), logits(loaded.model, IDS))


def test_model_card_has_metadata_config_and_results(copy_run, tmp_path):
    run_dir, results = copy_run
    card = (rmtzoo.load(run_dir).save_pretrained(tmp_path / "m") / "README.md").read_text()
    front = card.split("---")[1]
    assert "library_name: rmtzoo" in front and "- recurrent-memory-transformer" in front
    assert f"value: {results['test/accuracy']}" in front
    assert f"| test/accuracy | {results['test/accuracy']:.4f} |" in card
    assert json.loads(card.split("```json")[1].split("```")[0])["memory"]["num_tokens"] == 2


class LocalHub:
    """A stand-in for huggingface_hub.HfApi: repositories are folders under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root, self.calls = root, []

    def create_repo(self, *, repo_id, repo_type, private, exist_ok):
        self.calls.append(("create_repo", repo_id, private))
        (self.root / repo_id).mkdir(parents=True, exist_ok=exist_ok)

    def upload_folder(self, *, repo_id, repo_type, folder_path, commit_message):
        self.calls.append(("upload_folder", repo_id, commit_message))
        shutil.copytree(folder_path, self.root / repo_id, dirs_exist_ok=True)
        return f"https://huggingface.co/{repo_id}/commit/0"

    def snapshot_download(self, *, repo_id, revision=None, **kwargs):
        if not (self.root / repo_id).is_dir():
            raise FileNotFoundError(f"Repository Not Found for url: https://huggingface.co/api/models/{repo_id}")
        return str(self.root / repo_id)


def test_push_to_hub_then_load_by_hub_id(copy_run, tmp_path, monkeypatch):
    import huggingface_hub

    hub = LocalHub(tmp_path / "hub")
    run_dir, _ = copy_run
    loaded = rmtzoo.load(run_dir)
    assert loaded.push_to_hub("someone/tiny-rmt", api=hub).endswith("/commit/0")
    assert [c[0] for c in hub.calls] == ["create_repo", "upload_folder"]
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub.snapshot_download)
    from_hub = rmtzoo.load("someone/tiny-rmt")
    assert torch.equal(logits(from_hub.model, IDS), logits(loaded.model, IDS))
    with pytest.raises(rmtzoo.RmtzooError, match="cannot download from the Hugging Face Hub: Repository Not Found"):
        rmtzoo.from_pretrained("someone/absent")


def test_cli_export_and_push(copy_run, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    run_dir, _ = copy_run
    assert main(["--no-entry-points", "export", str(run_dir), str(tmp_path / "exported")]) == 0
    assert (tmp_path / "exported" / "rmtzoo_model.json").is_file()
    hub = LocalHub(tmp_path / "hub")
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda token=None: hub)
    assert main(["--no-entry-points", "push", str(run_dir), "someone/m", "--private"]) == 0
    assert ("create_repo", "someone/m", True) in hub.calls and (tmp_path / "hub/someone/m/model.safetensors").is_file()
    capsys.readouterr()


@pytest.mark.parametrize("source, fragment", [
    ("nowhere/at/all", "no such pretrained folder"),
    ("./missing", "no such pretrained folder"),
])
def test_bad_sources_are_one_line(source, fragment, capsys, tmp_path):
    with pytest.raises(rmtzoo.RmtzooError, match=fragment):
        rmtzoo.load(source)
    rc = main(["--no-entry-points", "export", source, str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1 and fragment in err
    assert not (tmp_path / "out").exists()


def test_a_plain_folder_is_not_a_pretrained_one(tmp_path):
    with pytest.raises(rmtzoo.RmtzooError, match="no checkpoint in"):
        rmtzoo.load(tmp_path)


@pytest.mark.parametrize("tokenizer", ["bytes", "transformer_xl"])
def test_text_task_tokenizer_travels_with_the_model(tokenizer, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the ship came in\nthe lamp was lit\n" * 20)
    config = {
        **COPY,
        "task": {"kind": "text_lm", "train": str(corpus), "tokenizer": tokenizer, "cache_dir": str(tmp_path / "cache")},
        "backbone": {**COPY["backbone"], "vocab_size": 258},
        "recurrence": {"kind": "rmt", "bptt_depth": 1},
        "train": {"batch_size": 2, "steps": 2, "schedule": "constant"},
        "eval": {"every": 2, "batch_size": 2, "max_batches": 1},
    }
    registry = rmtzoo.Registry(entry_points=False)
    torch.set_num_threads(1)
    train(rmtzoo.load_config(config, registry=registry), tmp_path / "run", registry=registry, log=lambda *a: None)
    loaded = rmtzoo.load(tmp_path / "run", registry=registry)
    again = rmtzoo.from_pretrained(loaded.save_pretrained(tmp_path / "m"), registry=registry)
    text = "the lamp was lit\n"
    assert again.tokenizer.encode(text) == loaded.tokenizer.encode(text)
    assert again.tokenizer.decode(again.tokenizer.encode(text)).startswith("the lamp was lit\n")
    ids = torch.tensor([loaded.tokenizer.encode(text)])
    assert torch.equal(logits(again.model, ids), logits(loaded.model, ids))
    assert isinstance(again.generate("the ", max_new_tokens=3), str)

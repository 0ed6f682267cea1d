"""Trained models that load, save and share: ``rmtzoo.load``, ``save_pretrained`` / ``from_pretrained``
in the Hugging Face layout, and ``push_to_hub`` through ``huggingface_hub``.

A pretrained folder (the files a Hub model repository holds)::

    config.json           the experiment config, exactly as ``rmtzoo config`` prints it (loadable as is)
    model.safetensors     every state-dict key, the tied embedding under both of its names, so that
                          ``model.load_state_dict(safetensors.torch.load_file(...))`` works as is
    rmtzoo_model.json     what fitting the model to its task decided (segment length, classifier
                          labels), the tokenizer's kind and the run's test results
    README.md             a model card: YAML metadata, the config and the results
    tokenizer files       a Hugging Face tokenizer's own files, or ``vocab.json`` for a word vocabulary

Nothing in it is unpickled: weights are safetensors, the rest JSON.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmtzoo._errors import RmtzooError
from rmtzoo._io import atomic_write, atomic_write_text

FORMAT = 1
MODEL_INFO = "rmtzoo_model.json"


def save_weights(model, path) -> None:
    """Write every state-dict key as safetensors (atomically). Tensors that share storage (a tied
    embedding and output layer) are written once per name: larger, but loadable with plain
    ``load_state_dict``."""
    from safetensors.torch import save

    state, seen = {}, set()
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        storage = tensor.untyped_storage().data_ptr()
        state[key] = tensor.clone().contiguous() if storage in seen or not tensor.is_contiguous() else tensor
        seen.add(storage)
    data = save(state, metadata={"format": "pt"})
    atomic_write(Path(path), lambda fh: fh.write(data), binary=True)


def load_weights(model, path, *, device="cpu") -> None:
    """Load a safetensors file into ``model`` (strict), also one written with each tied weight once."""
    from safetensors.torch import load_file, load_model

    state = load_file(str(path), device=str(device))
    if set(state) == set(model.state_dict()):
        model.load_state_dict(state)
    else:  # written by safetensors' save_model (a tied weight under one name): it resolves the aliases
        load_model(model, str(path), device=str(device))


@dataclass
class Pretrained:
    """A ready model with what belongs to it.

    model: the :class:`rmtzoo.RecurrentMemoryModel`, in eval mode. config: its
    :class:`rmtzoo.ExperimentConfig`. tokenizer: an object with ``encode(text)`` / ``decode(ids)`` (and
    ``eos_id``) for text tasks, else None. results: the run's test metrics (empty when unknown).
    task: the built task when loaded from a run folder (None from a pretrained folder).
    """

    model: Any
    config: Any
    tokenizer: Any = None
    results: dict = field(default_factory=dict)
    task: Any = field(default=None, repr=False)

    def save_pretrained(self, directory) -> Path:
        return save_pretrained(self.model, self.config, directory, tokenizer=self.tokenizer, results=self.results)

    def push_to_hub(self, repo_id: str, **kwargs):
        return push_to_hub(self.model, self.config, repo_id, tokenizer=self.tokenizer, results=self.results, **kwargs)

    def generate(self, prompt, max_new_tokens: int = 100, **options):
        """Text in, text out (ids in, ids out without a tokenizer), memory carried across segments."""
        from rmtzoo.train._generate import generate

        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        tokens = list(generate(self.model, ids, max_new_tokens, **options))
        return self.tokenizer.decode(tokens) if isinstance(prompt, str) else tokens


# -- saving ------------------------------------------------------------------------------------------
def save_pretrained(model, config, directory, *, tokenizer=None, results: dict | None = None) -> Path:
    """Write ``model`` and ``config`` as a pretrained folder (see the module docstring); each file atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    info = {
        "format": FORMAT,
        "segment_length": int(model.segment_length),
        "num_labels": _num_labels(model),
        "tokenizer": _save_tokenizer(tokenizer, directory),
        "results": _plain(results or {}),
    }
    save_weights(model, directory / "model.safetensors")
    atomic_write_text(directory / "config.json", json.dumps(config.model_dump(mode="json"), indent=2) + "\n")
    atomic_write_text(directory / MODEL_INFO, json.dumps(info, indent=2) + "\n")
    atomic_write_text(directory / "README.md", model_card(config, info, name=directory.name))
    return directory


def _num_labels(model) -> int | None:
    head = getattr(model, "classifier", None)
    if head is None:
        return None
    out = [m for m in head.modules() if hasattr(m, "out_features")]
    return int(out[-1].out_features) if out else None


def _plain(results: dict) -> dict:
    return {k: v for k, v in results.items() if isinstance(v, (int, float, str))}


def _save_tokenizer(tokenizer, directory: Path) -> dict | None:
    """The tokenizer as files beside the weights; its description (None: not saved)."""
    if tokenizer is None:
        return None
    inner = getattr(tokenizer, "_tok", None)
    if inner is not None and hasattr(inner, "save_pretrained"):  # a Hugging Face tokenizer
        inner.save_pretrained(str(directory))
        return {"kind": "huggingface"}
    name = getattr(tokenizer, "name", None)
    if name == "bytes":
        return {"kind": "bytes"}
    vocab = getattr(tokenizer, "vocab", None)
    codec = (getattr(tokenizer, "_meta", None) or {}).get("codec", "words")
    if isinstance(vocab, list) and codec == "words":  # Transformer-XL's word vocabulary (a text or LM task)
        atomic_write_text(directory / "vocab.json", json.dumps(vocab) + "\n")
        return {"kind": "words"}
    return None


def model_card(config, info: dict, *, name: str) -> str:
    """A Hub model card: metadata the Hub indexes, then the config and the results."""
    task = config.task.kind if config.task is not None else None
    tags = ["rmtzoo", "recurrent-memory-transformer", config.backbone.kind, config.memory.kind]
    meta = ["---", "library_name: rmtzoo", "tags:", *[f"- {t}" for t in dict.fromkeys(tags)]]
    if info["results"]:
        meta.append("model-index:")
        meta.append(f"- name: {name}")
        meta.append("  results:")
        meta.append(f"  - task: {{type: {json.dumps(task or 'none')}}}")
        meta.append("    metrics:")
        for key, value in info["results"].items():
            if isinstance(value, float):
                meta.append(f"    - {{type: {json.dumps(key)}, value: {value}}}")
    meta.append("---")
    lines = [
        *meta, "", f"# {name}", "",
        f"A Recurrent Memory Transformer trained with rmtzoo: backbone `{config.backbone.kind}`, memory "
        f"`{config.memory.kind}`, recurrence `{config.recurrence.kind}`, segments of {info['segment_length']} "
        f"tokens{f', task `{task}`' if task else ''}. Config hash `{config.content_hash()}`.", "",
        "```python", "import rmtzoo", "", f'pretrained = rmtzoo.from_pretrained("{name}")  # a folder or a Hub id',
        "model, tokenizer = pretrained.model, pretrained.tokenizer", "```", "",
        "## Results", "",
    ]
    if info["results"]:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in info["results"].items()]
    else:
        lines.append("No test results were recorded with this model.")
    lines += ["", "## Config", "", "```json", json.dumps(config.model_dump(mode="json"), indent=2), "```", ""]
    return "\n".join(lines)


def push_to_hub(model, config, repo_id: str, *, tokenizer=None, results: dict | None = None, private: bool | None = None,
                token: str | None = None, commit_message: str = "Upload rmtzoo model", api=None):
    """Save a pretrained folder and upload it to the Hub repository ``repo_id`` (created if needed) through
    ``huggingface_hub``; returns its commit info. ``api``: an ``HfApi`` (default: ``HfApi(token=token)``)."""
    if api is None:
        try:
            from huggingface_hub import HfApi
        except ImportError:
            raise RmtzooError("push_to_hub needs huggingface_hub (pip install huggingface_hub)") from None
        api = HfApi(token=token)
    api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rmtzoo-push-") as tmp:
        folder = save_pretrained(model, config, Path(tmp) / repo_id.split("/")[-1], tokenizer=tokenizer, results=results)
        return api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(folder),
                                 commit_message=commit_message)


# -- loading -----------------------------------------------------------------------------------------
def from_pretrained(source, *, revision: str | None = None, device="cpu", registry=None) -> Pretrained:
    """A :class:`Pretrained` from a pretrained folder or a Hub model id (downloaded through
    ``huggingface_hub.snapshot_download``, which caches it)."""
    import torch
    from safetensors.torch import load_file

    from rmtzoo._config import load_config
    from rmtzoo._registry import Registry

    folder = _pretrained_folder(source, revision)
    registry = registry if registry is not None else Registry()
    try:
        info = json.loads((folder / MODEL_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RmtzooError(f"{str(source)!r}: {MODEL_INFO} is missing or not JSON ({exc})") from None
    if info.get("format") != FORMAT:
        raise RmtzooError(f"{str(source)!r}: {MODEL_INFO} has format {info.get('format')!r}; this rmtzoo reads {FORMAT}")
    config = load_config(folder / "config.json", registry=registry)
    from rmtzoo._build import build_model

    model = build_model(config, registry=registry)
    if info.get("num_labels"):
        from rmtzoo.heads import build_classifier

        model.classifier = build_classifier(model, info["num_labels"])
    model.segment_length = info["segment_length"]
    try:
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
    except (OSError, RuntimeError) as exc:
        raise RmtzooError(f"{str(source)!r}: model.safetensors does not fit its config.json: {_first_line(exc)}") from None
    model.to(torch.device(str(device))).eval()
    return Pretrained(model, config, _load_tokenizer(info.get("tokenizer"), folder), info.get("results") or {})


def _first_line(exc) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _pretrained_folder(source, revision) -> Path:
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / MODEL_INFO).is_file():
            raise RmtzooError(f"{str(source)!r} is a folder but not a pretrained one (no {MODEL_INFO}); "
                              "rmtzoo.load also takes run and checkpoint folders")
        return path
    text = str(source)
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise RmtzooError(f"{text!r}: no such pretrained folder (and not a Hub id like 'user/model')")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise RmtzooError(f"{text!r} is not a folder; loading a Hub id needs huggingface_hub "
                          "(pip install huggingface_hub)") from None
    try:
        return Path(snapshot_download(repo_id=text, revision=revision, library_name="rmtzoo"))
    except Exception as exc:  # not found, offline, gated: the Hub's own message in one line
        raise RmtzooError(f"{text!r}: cannot download from the Hugging Face Hub: {_first_line(exc)}") from None


def _load_tokenizer(described: dict | None, folder: Path):
    if not described:
        return None
    from rmtzoo.tasks import text

    kind = described.get("kind")
    if kind == "bytes":
        return text.BytesTokenizer()
    if kind == "words":
        return text.WordTokenizer(json.loads((folder / "vocab.json").read_text(encoding="utf-8")))
    if kind == "huggingface":
        return text.HFTextTokenizer(str(folder))
    raise RmtzooError(f"{str(folder)!r}: unknown tokenizer kind {kind!r} in {MODEL_INFO}")


def load(source, *, which: str = "best", device="cpu", registry=None, revision: str | None = None) -> Pretrained:
    """A ready model from a run folder (its ``which`` checkpoint: best or latest), a checkpoint folder, a
    pretrained folder or a Hub model id."""
    from rmtzoo.train._checkpoint import find_checkpoint

    path = Path(source).expanduser()
    if path.is_dir() and not (path / MODEL_INFO).is_file():
        folder = find_checkpoint(path, which=which) or find_checkpoint(path)
        if folder is None:
            raise RmtzooError(f"no checkpoint in {str(source)!r} (expected a run, checkpoint or pretrained folder)")
        return load_run(folder, device=device, registry=registry)
    return from_pretrained(source, revision=revision, device=device, registry=registry)


def load_run(folder: Path, *, device="cpu", registry=None) -> Pretrained:
    """A checkpoint folder as a :class:`Pretrained` (the task is built: its data must be at hand)."""
    import torch

    from rmtzoo._config import load_config
    from rmtzoo._registry import Registry
    from rmtzoo.train import build_task, load_checkpoint, prepare_model, set_segment_count

    registry = registry if registry is not None else Registry()
    device = torch.device(str(device))
    config = load_config(folder / "config.json", registry=registry)
    task = build_task(config, registry)
    model = prepare_model(config, task, registry).to(device)
    if config.train.curriculum is not None:  # the segment count the checkpoint was trained at (trainer state)
        state = load_checkpoint(folder, model, map_location=device)
        set_segment_count(model, task, config.train.curriculum.segments[state["curriculum_index"]])
    else:  # the weights alone
        from rmtzoo.train._checkpoint import load_weights as load_checkpoint_weights

        load_checkpoint_weights(folder, model, map_location=device)  # a damaged file: one line
    model.eval()
    results_file = folder.parent.parent / "results.json"
    results = {}
    if folder.parent.name == "checkpoints" and results_file.is_file():
        results = _plain(json.loads(results_file.read_text(encoding="utf-8")))
    return Pretrained(model, config, _task_tokenizer(task), results, task)


def _task_tokenizer(task):
    tokenizer = getattr(task, "tokenizer", None)
    if tokenizer is not None:
        return tokenizer
    return task if hasattr(task, "encode") and hasattr(task, "decode") else None



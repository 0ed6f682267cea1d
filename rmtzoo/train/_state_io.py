"""Trainer state on disk without pickle: tensors in a safetensors file, everything else in JSON.

A state is a tree of dicts, lists, tuples, numbers, strings, None, tensors and the model's recurrent
state dataclasses. :func:`encode` replaces each tensor by ``{"__tensor__": key}`` and collects the
tensors; tuples, dicts with non-string keys and the two dataclasses get tagged JSON objects.
:func:`decode` rebuilds only those: a file cannot name a class or a function, so loading one runs no
code of its author.
"""

from __future__ import annotations

import dataclasses
import json

import torch


def _state_classes() -> dict:
    from rmtzoo.model import PastSegment, RecurrentState

    return {"RecurrentState": RecurrentState, "PastSegment": PastSegment}


def encode(obj, tensors: dict[str, torch.Tensor]):
    """``obj`` as JSON data; its tensors are added to ``tensors`` under fresh keys."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous().clone()  # safetensors stores no shared or strided views
        return {"__tensor__": key}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [encode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: encode(v, tensors) for k, v in obj.items()}
        return {"__items__": [[encode(k, tensors), encode(v, tensors)] for k, v in obj.items()]}
    name = type(obj).__name__
    if dataclasses.is_dataclass(obj) and _state_classes().get(name) is type(obj):
        fields = {f.name: encode(getattr(obj, f.name), tensors) for f in dataclasses.fields(obj)}
        return {"__state__": name, "fields": fields}
    raise TypeError(f"trainer state: cannot store a {type(obj).__qualname__} (tensors, numbers, strings, "
                    "lists, tuples, dicts and recurrent states only)")


def decode(data, tensors: dict[str, torch.Tensor]):
    """The inverse of :func:`encode`; a ``ValueError`` for anything it would not have written."""
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(v, tensors) for v in data]
    if not isinstance(data, dict):
        raise ValueError(f"unexpected {type(data).__name__}")
    if "__tensor__" in data:
        if data["__tensor__"] not in tensors:
            raise ValueError(f"tensor {data['__tensor__']!r} is not in the tensor file")
        return tensors[data["__tensor__"]]
    if "__tuple__" in data:
        return tuple(decode(v, tensors) for v in data["__tuple__"])
    if "__items__" in data:
        return {decode(k, tensors): decode(v, tensors) for k, v in data["__items__"]}
    if "__state__" in data:
        cls = _state_classes().get(data["__state__"])
        if cls is None:
            raise ValueError(f"unknown state type {data['__state__']!r}")
        return cls(**{k: decode(v, tensors) for k, v in data["fields"].items()})
    return {k: decode(v, tensors) for k, v in data.items()}


def dumps(state: dict) -> tuple[str, dict[str, torch.Tensor]]:
    """``state`` as (JSON text, tensors) for ``trainer.json`` and ``trainer.safetensors``."""
    tensors: dict[str, torch.Tensor] = {}
    text = json.dumps({"format": "rmtzoo-trainer-state", "version": 1, "state": encode(state, tensors)})
    return text + "\n", tensors


def loads(text: str, tensors: dict[str, torch.Tensor]) -> dict:
    document = json.loads(text)
    if not isinstance(document, dict) or document.get("format") != "rmtzoo-trainer-state":
        raise ValueError("not an rmtzoo trainer state")
    if document.get("version") != 1:
        raise ValueError(f"trainer state version {document.get('version')!r} is newer than this rmtzoo reads (1)")
    return decode(document["state"], tensors)

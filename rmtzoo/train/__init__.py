"""Training, evaluation and generation."""

from rmtzoo.train._checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from rmtzoo.train._generate import generate, generate_batch, stream_batch
from rmtzoo.train._loop import (
    Trainer,
    TrainingDiverged,
    build_task,
    make_autocast,
    prepare_model,
    set_segment_count,
    train,
)

__all__ = [
    "Trainer",
    "TrainingDiverged",
    "build_task",
    "find_checkpoint",
    "generate",
    "generate_batch",
    "load_checkpoint",
    "make_autocast",
    "prepare_model",
    "save_checkpoint",
    "set_segment_count",
    "stream_batch",
    "train",
]

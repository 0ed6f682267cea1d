"""The built-in plugins, registered through the same hooks as third-party ones: (name, module or class).
A class is instantiated afresh for every Registry, so a plugin with state (a logger) never leaks
between registries."""

from rmtzoo import attention, placements, recurrences
from rmtzoo.backbones import armt, transformer_xl
from rmtzoo.tasks import babilong, hyperpartisan, lm, samples, text
from rmtzoo.train import _loggers, _wandb

PLUGINS = [
    ("rmtzoo.backbones", transformer_xl),
    ("rmtzoo.placements", placements),
    ("rmtzoo.recurrences", recurrences),
    ("rmtzoo.armt", armt),
    ("rmtzoo.attention", attention),
    ("rmtzoo.tasks.samples", samples),
    ("rmtzoo.tasks.lm", lm),
    ("rmtzoo.tasks.hyperpartisan", hyperpartisan),
    ("rmtzoo.tasks.text", text),
    ("rmtzoo.tasks.babilong", babilong),
    ("rmtzoo.loggers.jsonl", _loggers.JsonlLogger),
    ("rmtzoo.loggers.tensorboard", _loggers.TensorBoardLogger),
    ("rmtzoo.loggers.wandb", _wandb.WandbLogger),
]

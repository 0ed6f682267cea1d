"""The built-in plugins, registered through the same hooks as third-party ones (name, module)."""

from rmtzoo import attention, placements, recurrences
from rmtzoo.backbones import transformer_xl

PLUGINS = [
    ("rmtzoo.backbones", transformer_xl),
    ("rmtzoo.placements", placements),
    ("rmtzoo.recurrences", recurrences),
    ("rmtzoo.attention", attention),
]

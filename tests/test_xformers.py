"""The xformers plugin's tests, run by the core suite wherever rmtzoo-xformers is installed.

They live with the plugin (plugins/rmtzoo-xformers/tests), which is its own distribution; this module
loads that file instead of copying it, so there is one source of truth.
"""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip(
    "rmtzoo_xformers", reason="rmtzoo-xformers is not installed (pip install -e plugins/rmtzoo-xformers)"
)

_FILE = Path(__file__).resolve().parents[1] / "plugins/rmtzoo-xformers/tests/test_xformers_plugin.py"
if not _FILE.is_file():
    pytest.skip(f"the plugin's tests are not at {_FILE}", allow_module_level=True)

_spec = importlib.util.spec_from_file_location("rmtzoo_xformers_plugin_tests", _FILE)
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
# Tests and fixtures are collected from this module's namespace.
globals().update({name: value for name, value in vars(_module).items() if not name.startswith("__")})

"""The public kit ``rmtzoo.testing`` as an outside plugin uses it: a distribution written to a temporary
folder (its own pyproject, one backbone, a test file of a few lines), installed, and its tests run in a
fresh pytest process; then the same backbone with the mask read backwards, which must fail naming the mask.

The distribution is installed with ``--target`` into the temporary folder (offline: ``--no-deps
--no-build-isolation``), so the environment running this suite never sees it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PYPROJECT = """\
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "tinyattn-{tag}"
version = "0.0.1"

[project.entry-points.rmtzoo]
tinyattn = "tinyattn"

[tool.setuptools]
py-modules = ["tinyattn"]
"""

# One causal attention layer. ``scaled_dot_product_attention`` takes a boolean mask with rmtzoo's polarity
# (True: may attend); the broken copy inverts it, as nn.MultiheadAttention's attn_mask would want.
BACKBONE = '''\
import torch
import torch.nn.functional as F
from torch import nn

import rmtzoo


class Params(rmtzoo.Params):
    vocab_size: int = 11
    d_model: int = 8


class TinyAttention(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.vocab_size, self.d_model = p.vocab_size, p.d_model
        self.emb = nn.Embedding(p.vocab_size, p.d_model)
        self.qkv = nn.Linear(p.d_model, 3 * p.d_model)
        self.out = nn.Linear(p.d_model, p.vocab_size)

    def embed(self, ids):
        return self.emb(ids)  # [B, T, D]

    def forward(self, x, *, mask=None, cache=None):
        s = x.shape[1]
        if mask is None:
            mask = torch.ones(s, s, dtype=torch.bool, device=x.device).tril()
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # [B, S, D] each
        h = x + F.scaled_dot_product_attention(q, k, v, attn_mask={mask_expr})  # [B, S, D]
        return rmtzoo.BackboneOutput(h, ())

    def logits(self, hidden):
        return self.out(hidden)  # [B, T, V]

    def nll(self, hidden, targets):
        logits = self.logits(hidden)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(targets.shape)


@rmtzoo.hookimpl
def rmtzoo_register_backbones(register):
    register(rmtzoo.BackboneSpec(
        name="tiny_attention", summary="one causal attention layer", params=Params,
        build=lambda p, *, attention: TinyAttention(p),
        capabilities=rmtzoo.BackboneCapabilities(causal=True, accepts_cache=False),
    ))
'''

TESTS = """\
import rmtzoo.testing as kit


class TestTinyAttention(kit.BackboneContract):
    backbones = ["tiny_attention"]
"""


def make_distribution(root: Path, *, inverted: bool) -> Path:
    tag = "inverted" if inverted else "ok"
    src = root / f"tinyattn-{tag}"
    (src / "tests").mkdir(parents=True)
    (src / "pyproject.toml").write_text(PYPROJECT.format(tag=tag))
    (src / "tinyattn.py").write_text(BACKBONE.replace("{mask_expr}", "~mask" if inverted else "mask"))
    (src / "tests" / "test_tinyattn.py").write_text(TESTS)
    site = root / f"site-{tag}"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site), str(src)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    return src


def run_its_tests(src: Path, site: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RMTZOO_", "PYTEST_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["HYPOTHESIS_PROFILE"] = "ci"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(src), "tests"],
        cwd=src, env=env, capture_output=True, text=True, timeout=600,
    )


@pytest.fixture(scope="module")
def distributions(tmp_path_factory):
    root = tmp_path_factory.mktemp("outside")
    return {tag: (make_distribution(root, inverted=tag == "inverted"), root / f"site-{tag}") for tag in ("ok", "inverted")}


def test_an_outside_plugin_passes_the_backbone_contract(distributions):
    src, site = distributions["ok"]
    proc = run_its_tests(src, site)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert "passed" in summary and "failed" not in summary
    assert "test_mask_polarity" not in proc.stdout


def test_the_same_plugin_with_the_mask_inverted_fails_naming_the_mask(distributions):
    src, site = distributions["inverted"]
    proc = run_its_tests(src, site)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "FAILED tests/test_tinyattn.py::TestTinyAttention::test_mask_polarity[tiny_attention]" in proc.stdout
    assert "does not honour the attention mask's polarity" in proc.stdout
    assert "True where a query MAY attend" in proc.stdout


def test_the_kit_does_not_touch_this_environment(distributions):
    import rmtzoo

    assert "tiny_attention" not in rmtzoo.Registry(environ={}).names("backbones")


def test_a_selection_naming_an_unregistered_component_fails_loudly():
    import rmtzoo
    import rmtzoo.testing as kit

    class Wrong(kit.BackboneContract):
        backbones = ["no_such_backbone"]

        @classmethod
        def make_registry(cls):
            return rmtzoo.Registry(environ={}, entry_points=False)

    with pytest.raises(rmtzoo.UnknownComponentError, match="no_such_backbone"):
        Wrong.selected("backbones")


def test_docs_show_the_kit():
    text = (Path(__file__).resolve().parent.parent / "docs" / "plugins.md").read_text()
    assert "import rmtzoo.testing as kit" in text and "kit.BackboneContract" in text and "kit.ContractSuite" in text

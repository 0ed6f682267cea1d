"""User-facing text cites the project's own documents: no file a user gets names PAPER.md (a background
file of the workspace, not part of the project), and every section of docs/paper-settings.md that the code
or docs cite exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
USER_FACING = ("rmtzoo", "benchmarks", "plugins", "examples", "docs", "README.md")
TEXT = (".py", ".md", ".toml", ".csv", ".txt", ".cfg", ".ini")


def _files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "--", *USER_FACING], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / line for line in out.splitlines()
            if line.endswith(TEXT) and "/tests/" not in f"/{line}" and (ROOT / line).is_file()]


def test_no_user_facing_file_cites_paper_md():
    hits = [f"{path.relative_to(ROOT)}:{i}" for path in _files()
            for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if "PAPER.md" in line]
    assert not hits, "cite docs/paper-settings.md instead of PAPER.md: " + ", ".join(hits[:20])


def test_every_cited_section_of_paper_settings_exists():
    doc = (ROOT / "docs" / "paper-settings.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^#+ (\d+(?:\.\d+)?)[ .]", doc, flags=re.M))
    cited = set()
    for path in _files():
        for match in re.finditer(r"paper-settings\.md(?:,? (?:section |§)?)(\d+(?:\.\d+)?)",
                                 path.read_text(encoding="utf-8", errors="replace")):
            cited.add(match.group(1).rstrip("."))
    assert cited, "nothing cites docs/paper-settings.md"
    assert not cited - sections, f"cited but not in docs/paper-settings.md: {sorted(cited - sections)}"

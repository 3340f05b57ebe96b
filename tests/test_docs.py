"""The README and docs/ stay true: the site builds in strict mode, and every file and module they name exists."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REPO_PATH = re.compile(r"(?:src|conf|tests|benchmarks|notebooks|deploy|docs)/[\w./-]+")
MODULE = re.compile(r"\bprn(?:\.\w+)+")
EXPORTED_FILES = ("onnx", "xml", "bin", "pt2")  # `prn.onnx` etc. name export files, not modules
README_MAX_LINES = 250


def _inline_code(page: Path) -> list[str]:
    return [token.strip() for token in re.findall(r"`([^`\n]+)`", page.read_text(encoding="utf-8"))]


def _layout_entries() -> list[str]:
    """The unindented paths of the layout tree in docs/architecture.md (``src/prn/checkpoints.py`` ...)."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    tree = text.split("```", 2)[1]
    return [line.split()[0].rstrip(",") for line in tree.splitlines()[1:] if line and not line[0].isspace()]


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        try:
            for name in parts[cut:]:
                target = getattr(target, name)
        except AttributeError:
            return False
        return True
    return False


def test_the_docs_site_builds_in_strict_mode(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "moving-parts" / "index.html").is_file()


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_repository_path_a_page_names_exists(page: Path) -> None:
    named = [token for token in _inline_code(page) if REPO_PATH.fullmatch(token)]
    if page.name == "architecture.md":
        named += _layout_entries()
    missing = [path for path in named if not (ROOT / path).exists()]
    assert not missing, f"{page.name} names paths that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_prn_module_a_page_names_imports(page: Path) -> None:
    named = {match for token in _inline_code(page) for match in MODULE.findall(token)}
    broken = sorted(name for name in named if name.rsplit(".", 1)[-1] not in EXPORTED_FILES and not _resolves(name))
    assert not broken, f"{page.name} names prn objects that do not import: {broken}"


def test_every_link_of_the_readme_reaches_a_file() -> None:
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert links, "the README links to the docs"
    missing = [link for link in links if not link.startswith("http") and not (ROOT / link).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_the_readme_stays_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move details to docs/ (at most {README_MAX_LINES})"

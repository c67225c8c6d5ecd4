"""docs/invariants.md names tests by path and function: each must exist, so the page cannot drift from the suite."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "invariants.md"


def functions_in(path: Path) -> set[str]:
    """Every function (test or helper) defined anywhere in a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_the_page_lists_the_eight_invariants() -> None:
    headings = re.findall(r"^## (\d+)\. ", PAGE.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert headings == [str(n) for n in range(1, 9)]


def test_every_test_file_and_function_the_page_names_exists() -> None:
    text = PAGE.read_text(encoding="utf-8")
    paths = sorted(set(re.findall(r"`(tests/[\w/]+\.py)`", text)))
    assert len(paths) > 20
    missing_files = [p for p in paths if not (ROOT / p).is_file()]
    assert not missing_files, f"docs/invariants.md names files that do not exist: {missing_files}"
    defined = set().union(*(functions_in(ROOT / p) for p in paths))
    named = set(re.findall(r"`(_?(?:test|check)_\w+)(?:\(\))?`", text))
    assert named, "the page names no test functions"
    assert not named - defined, f"docs/invariants.md names functions that do not exist: {sorted(named - defined)}"

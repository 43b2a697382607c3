"""The domain stays below the wiring: a module of `airq_app/domain/` imports no other part of airq."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

DOMAIN = Path(__file__).resolve().parents[2] / "airq_app" / "domain"


def airq_imports(path: Path) -> list[str]:
    """Every module of airq that `path` imports, at the top or inside a function."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))  # relative: flagged below
    return [n for n in names if n.startswith(("airq_app", "airq_dev", "."))]


def test_the_domain_imports_only_the_domain() -> None:
    files = sorted(DOMAIN.rglob("*.py"))
    assert len(files) > 10
    outside = {
        f"{path.relative_to(DOMAIN)}: {name}"
        for path in files
        for name in airq_imports(path)
        if not name.startswith("airq_app.domain.")
    }
    assert not outside, sorted(outside)

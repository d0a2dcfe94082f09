"""The parts share code only through `sferum_shared`, and tests never lean on `bench/`.

Walks every import statement (top-level and nested, as written in the source) so that a
crossing cannot hide in a function body or behind TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PARTS = ("synapse_sferum", "bridges", "sfu", "sferum_shared")
#: What each part may import of the project's own packages.
ALLOWED = {
    "synapse_sferum": {"synapse_sferum", "sferum_shared"},
    "bridges": {"bridges", "sferum_shared"},
    "sfu": {"sfu", "sferum_shared"},
    "sferum_shared": {"sferum_shared"},
}
#: Libraries the shared package must not pull into the parts that do not have them.
FOREIGN_TO_SHARED = {"synapse", "twisted", "nio", "aiortc", "av", "livekit", "jwt"}
OWN = {*PARTS, "tests", "bench"}


def imported_roots(path: Path) -> Iterator[tuple[int, str]]:
    """(line, top-level package) of every absolute import in a file."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


def crossings(folder: str, allowed: set[str], forbidden: set[str] | None = None) -> list[str]:
    found = []
    for path in sorted((REPO / folder).rglob("*.py")):
        for line, root in imported_roots(path):
            if (root in OWN and root not in allowed) or root in (forbidden or set()):
                found.append(f"{path.relative_to(REPO)}:{line}: imports {root}")
    return found


@pytest.mark.parametrize("part", PARTS)
def test_parts_import_only_themselves_and_the_shared_package(part: str) -> None:
    forbidden = FOREIGN_TO_SHARED if part == "sferum_shared" else set()
    assert crossings(part, ALLOWED[part], forbidden) == []


def test_tests_do_not_import_the_benches() -> None:
    assert crossings("tests", OWN - {"bench"}) == []


def test_a_crossing_is_found(tmp_path: Path) -> None:
    source = tmp_path / "x.py"
    source.write_text("def f():\n    from synapse_sferum.rooms import RoomKind\n")
    assert list(imported_roots(source)) == [(2, "synapse_sferum")]

"""Architecture rules that import-linter cannot express: no module reaches into another's
underscore names, every module stays small enough to find one's way in, and the repository
has the design card's layout (top-level folders, hotpatch/models/, recipes/)."""

from __future__ import annotations

import ast
from pathlib import Path

import hotpatch
from hotpatch import models

PACKAGE = Path(hotpatch.__file__).parent
ROOT = Path(__file__).resolve().parent.parent  # the checkout these tests belong to
#: The design card's layout (/work/shared/DESIGN.md, "Layout"): what the repository's top level holds.
CARD_LAYOUT = ("hotpatch/", "recipes/", "benchmarks/", "tests/", "pyproject.toml", "CHANGELOG.md")
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 250


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_uses(path: Path) -> list[str]:
    """``from hotpatch.x import _name`` and ``mod._name`` on an imported hotpatch module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found, modules = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hotpatch") and node.level == 0:
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{path.name}:{node.lineno} imports {node.module}.{alias.name}")
                else:
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("hotpatch") and alias.asname:
                    modules.add(alias.asname)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in modules and _private(node.attr)):
            found.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


def test_no_module_imports_another_modules_underscore_names():
    found = [use for path in _modules() for use in _private_uses(path)]
    assert found == []


def test_the_private_use_check_sees_both_forms(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from hotpatch.engine.analyse import _hidden\nfrom hotpatch.engine import trace as t\nt._inner(1)\n")
    assert [u.split(" ", 1)[1] for u in _private_uses(sample)] == [
        "imports hotpatch.engine.analyse._hidden", "uses t._inner"]


def test_modules_and_classes_stay_small():
    too_big = []
    for path in _modules():
        text = path.read_text()
        lines = text.count("\n")
        if lines > MAX_MODULE_LINES:
            too_big.append(f"{path.relative_to(PACKAGE)}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                too_big.append(f"{path.relative_to(PACKAGE)}: class {node.name} {node.end_lineno - node.lineno + 1} lines")
    assert too_big == []


def test_the_repository_has_the_design_cards_top_level_layout():
    missing = [name for name in CARD_LAYOUT
               if not ((ROOT / name).is_dir() if name.endswith("/") else (ROOT / name).is_file())]
    assert missing == []


def test_architectures_live_in_hotpatch_models_and_each_has_recipes():
    """``hotpatch/models/<family>.py`` per architecture, and ``recipes/<family>/*.toml`` for each."""
    folder = ROOT / "hotpatch" / "models"
    assert {f"{name}.py" for name in models.names()} <= {p.name for p in folder.glob("*.py")}
    assert sorted(p.name for p in (ROOT / "recipes").iterdir() if p.is_dir()) == models.names()
    assert all(list((ROOT / "recipes" / name).glob("*.toml")) for name in models.names())
    assert not list((ROOT / "hotpatch" / "recipes").glob("*.toml"))  # recipes/ is their only source

"""The import rule of docs/architecture.md: no module imports from a floor
above its own (inside a function too); a module may import from its own
package. ``FLOORS`` is the table of that document."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fastconv

PACKAGE = Path(fastconv.__file__).parent

#: Each unit of the package and its floor; fractions order the ground floor.
FLOORS = {
    "fastconv._validation": 0.0,
    "fastconv._files": 0.0,
    "fastconv.cost": 0.5,
    "fastconv.timing": 0.5,
    "fastconv._keras_graph": 0.5,
    "fastconv.kernels": 1,
    "fastconv.decomposition": 1,
    "fastconv.datasets": 1,
    "fastconv.layers": 2,
    "fastconv.profile": 2,
    "fastconv.convert": 3,
    "fastconv.export": 3,
    "fastconv.bench": 4,
    "fastconv.cli": 5,
    "fastconv": 6,
}


def _unit(module: str) -> str:
    """The entry of ``FLOORS`` that ``module`` belongs to."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in FLOORS:
            return name
    raise KeyError(module)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(tree: ast.AST, module: str, is_package: bool):
    """``(line, name)`` of every fastconv module that ``tree`` imports."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                # `from fastconv import timing` imports the module fastconv.timing.
                candidate = f"{target}.{alias.name}"
                is_module = (PACKAGE.parent / Path(*candidate.split("."))).exists() or (
                    PACKAGE.parent / (Path(*candidate.split(".")).as_posix() + ".py")
                ).exists()
                yield node.lineno, candidate if is_module else target


def _violations():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        own = _unit(module)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for line, name in _imported(tree, module, path.name == "__init__.py"):
            if name != "fastconv" and not name.startswith("fastconv."):
                continue
            target = _unit(name)
            if target != own and FLOORS[target] >= FLOORS[own]:
                found.append(
                    f"{path.relative_to(PACKAGE.parent)}:{line} ({own}, floor "
                    f"{FLOORS[own]}) imports {name} ({target}, floor {FLOORS[target]})"
                )
    return found


def test_every_module_has_a_floor():
    missing = []
    for path in PACKAGE.rglob("*.py"):
        try:
            _unit(_module_name(path))
        except KeyError:
            missing.append(str(path.relative_to(PACKAGE.parent)))
    assert not missing, f"modules without a floor in FLOORS: {missing}"


def test_no_module_imports_from_a_floor_above_its_own():
    violations = _violations()
    assert not violations, "imports against the floors:\n" + "\n".join(violations)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import fastconv", ["fastconv"]),
        ("from fastconv import timing", ["fastconv.timing"]),
        ("from fastconv.layers.base import BaseFastConv", ["fastconv.layers.base"]),
        ("def f():\n    from fastconv.bench import models", ["fastconv.bench.models"]),
    ],
)
def test_the_checker_sees_every_form_of_import(source, expected):
    names = [name for _, name in _imported(ast.parse(source), "fastconv.cost", False)]
    assert names == expected

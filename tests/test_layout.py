"""The layout is the architecture: no engine module imports a higher wing, no import circle, the TUI
talks to the engine through engine.api (plus the demo and bench entry points) only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = {"engine.params", "engine.events", "engine.errors", "engine.paths", "engine.store", "engine.config"}
# Lowest first: a module may import its own rank and those before it (engine.api, the façade, is last).
WINGS = ("contract", "output", "pipeline", "kernels", "runtime", "toy", "demo", "bench", "quality", "api")
TUI_MAY_IMPORT = {"engine.api", "engine.demo", "engine.bench.cli", "engine.quality.cli"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, top_level_only: bool) -> set[str]:
    """Modules ``path`` imports (relative imports resolved); with ``top_level_only``, not those inside
    functions or under ``if TYPE_CHECKING``."""
    tree = ast.parse(path.read_text())
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from . import x` may be a module
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def package_modules(package: str) -> dict[str, Path]:
    return {module_name(p): p for p in (ROOT / package).rglob("*.py")}


def engine_modules() -> dict[str, Path]:
    return package_modules("engine")


def wing(module: str) -> str:
    if module in CONTRACT:
        return "contract"
    if module == "engine.api":
        return "api"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in WINGS else "contract"


def test_no_engine_module_imports_a_higher_wing():
    modules = engine_modules()
    upward = []
    for name, path in modules.items():
        for target in imports(path, top_level_only=False) & set(modules):
            if WINGS.index(wing(target)) > WINGS.index(wing(name)):
                upward.append(f"{name} -> {target}")
    assert not upward


@pytest.mark.parametrize("package", ["engine", "tui"])
def test_no_import_circle(package):
    modules = package_modules(package)
    graph = {name: imports(path, top_level_only=True) & set(modules) - {name} for name, path in modules.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in graph[node]:
            assert state.get(target) != 1, " -> ".join([*trail, node, target])
            if target not in state:
                visit(target, [*trail, node])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [])


def test_tui_imports_only_the_engine_api():
    stray = []
    for path in (ROOT / "tui").rglob("*.py"):
        for module in imports(path, top_level_only=False):
            if module.startswith("engine") and not any(module == m or module.startswith(m + ".")
                                                       for m in TUI_MAY_IMPORT):
                stray.append(f"{path.relative_to(ROOT)}: {module}")
    assert not stray


def test_no_product_file_is_over_400_lines():
    long = [f"{p.relative_to(ROOT)}: {n}" for p in [*ROOT.glob("engine/**/*.py"), *ROOT.glob("tui/**/*.py")]
            if (n := len(p.read_text().splitlines())) > 400]
    assert not long

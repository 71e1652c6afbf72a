"""Layers import one way: every `bench` module sits on a floor and imports only from its own floor or below.

The floors are the README's layout section; function-local imports count too (they are still dependencies)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "bench"

FLOORS = (  # lowest first
    ("core", ("bench", "bench.errors", "bench.registry", "bench.config", "bench.seeding", "bench.envinfo",
              "bench.weights", "bench.plugins")),
    ("results", ("bench.results",)),  # the record, predictions and metrics contract: below every reader and writer
    ("store", ("bench.store",)),
    ("protocols", ("bench.protocols",)),
    ("models", ("bench.models",)),
    ("testbed", ("bench.testbed",)),
    ("datasets", ("bench.datasets",)),
    ("engine", ("bench.engine",)),
    ("methods", ("bench.methods",)),
    ("leaderboard", ("bench.leaderboard",)),
    ("application", ("bench.runner", "bench.benchmarking", "bench.data_cli", "bench.sweep", "bench.tracking",
                     "bench.estimate")),
    ("cli", ("bench.cli", "bench.cli_output", "bench.__main__")),
)


def floor_of(module: str) -> int:
    best = None
    for level, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if module == prefix or (prefix != "bench" and module.startswith(prefix + ".")):
                if best is None or len(prefix) > best[1]:
                    best = (level, len(prefix))
    if best is None:
        raise AssertionError(f"module {module} is on no floor: add it to FLOORS and to the README's layout")
    return best[0]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def bench_imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "bench"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "bench":
            out.append((node.lineno, node.module))
    return out


MODULES = sorted(ROOT.rglob("*.py"))


def test_every_module_has_a_floor():
    assert len(MODULES) > 40
    for path in MODULES:
        floor_of(module_name(path))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_imports_go_down_only(path):
    here = module_name(path)
    level = floor_of(here)
    upward = [f"line {line}: {target} ({FLOORS[floor_of(target)][0]})" for line, target in bench_imports(path)
              if floor_of(target) > level]
    assert not upward, f"{here} ({FLOORS[level][0]}) imports from a higher floor: {upward}"


def test_the_checker_sees_an_upward_import(tmp_path):
    # The check itself must fail on a violation, including a function-local import.
    fake = ROOT / "protocols" / "_probe.py"
    source = "def f():\n    from bench.engine.trainer import fine_tune\n"
    tree_imports = [(n.lineno, n.module) for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)]
    assert tree_imports == [(2, "bench.engine.trainer")]
    assert floor_of("bench.engine.trainer") > floor_of(module_name(fake))


def test_the_results_contract_imports_only_core_and_itself():
    # The store and the readers import it, never the other way round (the old store <-> records cycle).
    for path in sorted((ROOT / "results").glob("*.py")):
        targets = {target for _, target in bench_imports(path)}
        assert all(t.startswith("bench.results") or floor_of(t) == 0 for t in targets), (path.name, targets)

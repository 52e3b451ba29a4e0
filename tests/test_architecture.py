"""The two layers: the core imports neither MLflow nor Optuna nor the experiment layer, and no import cycle hides
anywhere, function-level imports included. Read from the source (ast), so nothing needs to be importable; and the
command line parses without loading TensorFlow or MLflow."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "seqrec"
FORBIDDEN_IN_CORE = ("mlflow", "optuna", "seqrec.experiment")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, imported names, line) of every import statement in the file, wherever it stands."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names], node.lineno))
    return found


def seqrec_graph() -> dict[str, set[str]]:
    """Module -> the seqrec modules it imports (``from seqrec.core import data`` counts as seqrec.core.data)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for module, names, _ in imports(path):
            if not module.startswith("seqrec"):
                continue
            targets = {f"{module}.{imported}" for imported in names} & set(modules) or {module}
            graph[name] |= {target for target in targets if target in modules and target != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph (a list of modules, first = last), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    return next((cycle for node in sorted(graph) if node not in state and (cycle := visit(node))), None)


def test_no_import_cycle():
    assert find_cycle(seqrec_graph()) is None


def test_find_cycle_sees_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("path", sorted((PACKAGE / "core").rglob("*.py")), ids=lambda path: path.name)
def test_the_core_imports_neither_mlflow_nor_optuna_nor_the_experiment_layer(path):
    offending = [(module, line) for module, _, line in imports(path)
                 if any(module == name or module.startswith(name + ".") for name in FORBIDDEN_IN_CORE)]
    assert not offending, f"{path.relative_to(ROOT)} imports {offending}"


def test_no_private_name_is_imported_across_modules():
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "benchmarks").glob("*.py"), *(ROOT / "tuning").glob("*.py")]
    private = [(str(path.relative_to(ROOT)), line, module, name) for path in files
               for module, names, line in imports(path) if module.startswith("seqrec")
               for name in names if name.startswith("_")]
    assert not private


def test_every_module_of_the_package_is_in_one_layer():
    top_level = {path.name for path in PACKAGE.glob("*.py")}
    assert top_level == {"__init__.py", "__main__.py"}
    assert {path.name for path in PACKAGE.iterdir() if path.is_dir() and path.name != "__pycache__"} == {
        "core", "experiment"}


def test_the_command_line_parses_without_loading_tensorflow_or_mlflow():
    # every seqrec invocation (--help, a refused option, stack up/down) pays for what the CLI module imports
    probe = ("import sys; import seqrec.experiment.cli; "
             "print(sorted(m for m in ('tensorflow', 'keras', 'mlflow', 'optuna') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"

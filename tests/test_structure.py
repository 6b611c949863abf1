"""The code stays a shape a maintainer can hold in their head: small files and functions, public names only
across modules, no import cycle (the bounds issue "One Store, one Task, one API" set)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = sorted([*(ROOT / "featx").rglob("*.py"), *(ROOT / "seqmodels").rglob("*.py"), ROOT / "cli.py"])


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


MODULES = {_module(p): p for p in LIBRARY}


def _imports(path: Path):
    """(module imported, name or None) for every featx / seqmodels import in `path`, at any depth."""
    me = _module(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                yield (f"{target}.{alias.name}", None) if f"{target}.{alias.name}" in MODULES else (target, alias.name)
        elif isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names)


def test_no_library_file_over_400_lines_and_no_function_over_60():
    long_files = [p.name for p in LIBRARY if p.read_text().count("\n") > 400]
    long_functions = [f"{p.relative_to(ROOT)}:{n.lineno} {n.name}" for p in LIBRARY
                      for n in ast.walk(ast.parse(p.read_text()))
                      if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno >= 60]
    assert not long_files and not long_functions, (long_files, long_functions)


def test_no_module_imports_another_modules_private_name():
    private = [f"{_module(p)} <- {target}.{name}" for p in LIBRARY for target, name in _imports(p)
               if name and name.startswith("_") and not name.startswith("__") and target in MODULES]
    assert not private, private


def test_no_import_cycle():
    graph = {m: {t for t, _ in _imports(p) if t in MODULES and t != m} for m, p in MODULES.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                return path + [t]
            if t not in state and (cycle := visit(t, path + [t])):
                return cycle
        state[m] = 2
        return None

    cycles = [c for m in sorted(MODULES) if m not in state and (c := visit(m, [m]))]
    assert not cycles, cycles

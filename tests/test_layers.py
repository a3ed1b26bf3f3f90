"""The library sits below the tools: nothing under jetattn/nn, jetattn/datasets or the weaver boundary imports a
``python -m`` command module (a module with a ``__main__`` guard, or a package's ``__main__``)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "jetattn"
LIBRARY = (
    "jetattn.nn",
    "jetattn.datasets",
    "jetattn.weaver",
    "jetattn.io",
    "jetattn.deps",
    "jetattn.plotting",
    "jetattn.loader_settings",
    "jetattn.weaver_options",
    "jetattn.measure",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_command(path: Path) -> bool:
    """A ``python -m`` entry point: ``if __name__ == "__main__":`` in the module, or a package's ``__main__``."""
    if path.name == "__main__.py":
        return True
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            names = [n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)]
            constants = [n.value for n in ast.walk(node.test) if isinstance(n, ast.Constant)]
            if "__name__" in names and "__main__" in constants:
                return True
    return False


def imported_modules(path: Path) -> set[str]:
    """Every jetattn module ``path`` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("jetattn")}


def test_the_library_imports_no_command():
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    commands = {name for name, path in files.items() if is_command(path)}
    # a package's __main__ makes the package itself the command (``python -m jetattn.explain``)
    commands |= {name.removesuffix(".__main__") for name in commands if name.endswith(".__main__")}
    assert {"jetattn.bench", "jetattn.metrics", "jetattn.quantize", "jetattn.explain"} <= commands
    violations = []
    for name, path in files.items():
        if not name.startswith(LIBRARY) or name in commands:
            continue
        for imported in imported_modules(path):
            if imported in commands or any(imported.startswith(c + ".") for c in commands if c != "jetattn"):
                violations.append(f"{name} imports the command {imported}")
    assert not violations, violations

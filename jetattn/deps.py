"""One line instead of a traceback when a third-party package is missing, as when a command runs outside the
environment `make` made. Standard library only, so that it works in any Python:

    with exit_if_missing():
        sys.exit(main())
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

VENV = Path(__file__).resolve().parents[1] / ".venv"  # what `make` creates when no environment is active
EXTRAS = {  # packages of the optional extras in pyproject.toml
    "matplotlib": "plot",
    "mplhep": "plot",
    "pythia8mc": "generate",
    "fastjet": "generate",
    "onnx": "export",
    "onnxruntime": "export",
}


class ToolError(Exception):
    """A problem with the user's files or options, told in one line (``error: ...``) by the ``python -m`` tools."""


def missing_dependency(exc: ModuleNotFoundError) -> str | None:
    """The error line for a third-party module that cannot be imported; None when the module is ours (a bug)."""
    package = (exc.name or "").partition(".")[0]
    if not package or package == "jetattn":
        return None
    extra = f"[{EXTRAS[package]}]" if package in EXTRAS else ""
    hint = f"run 'make install' or 'pip install -e .{extra}'"
    if VENV.is_dir() and Path(sys.prefix).resolve() != VENV.resolve():
        hint = f"enter the environment make made ('. {os.path.relpath(VENV / 'bin' / 'activate')}'), or {hint}"
    return f"error: missing dependency {package!r}: {hint}"


@contextlib.contextmanager
def exit_if_missing() -> Iterator[None]:
    """Exit with status 1 and the line of `missing_dependency` when the block misses a third-party module."""
    try:
        yield
    except ModuleNotFoundError as exc:
        line = missing_dependency(exc)
        if line is None:
            raise
        print(line, file=sys.stderr)
        raise SystemExit(1) from None

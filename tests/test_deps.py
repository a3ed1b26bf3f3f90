"""A command run outside the project's environment says in one line which package is missing and how to get it.

The subprocesses run this interpreter either with `-S` (no site-packages: every third-party package is missing)
or with a sitecustomize.py that blocks one package, as a Python without it would.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from jetattn import deps

REPO = Path(__file__).resolve().parents[1]


def _without(package: str, folder: Path) -> dict:
    """An environment in which `import package` fails with ModuleNotFoundError."""
    (folder / "sitecustomize.py").write_text(f"import sys\nsys.modules[{package!r}] = None\n")
    return {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(folder)}


@pytest.mark.parametrize(
    ("command", "blocked", "missing"),
    [
        (["get_datasets.py", "--help"], "tqdm", "tqdm"),  # the newcomer's command with a python lacking tqdm
        (["-S", "get_datasets.py", "TopLandscape"], None, "requests"),  # a python without any of our packages
        (["get_datasets.py", "models", "-d", "{tmp}/models", "--mirror", "http://127.0.0.1:9"], "torch", "torch"),
        (["-m", "jetattn.metrics", "{tmp}/pred.root", "--signal", "s"], "uproot", "uproot"),  # imported on use
    ],
    ids=["tqdm", "no-site", "torch-on-use", "python-m"],
)
def test_missing_dependency_is_one_line(command, blocked, missing, tmp_path):
    env = _without(blocked, tmp_path) if blocked else {"PATH": "/usr/bin:/bin"}
    (tmp_path / "pred.root").write_bytes(b"")
    command = [arg.format(tmp=tmp_path) for arg in command]
    proc = subprocess.run([sys.executable, *command], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if "B/s]" not in line]  # without a progress bar
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: missing dependency {missing!r}: ") and "make install" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "models").exists()  # nothing downloaded before the check


def test_install_hint(monkeypatch, tmp_path):
    monkeypatch.setattr(deps, "VENV", tmp_path / "absent")
    assert deps.missing_dependency(ModuleNotFoundError(name="uproot.models")) == (
        "error: missing dependency 'uproot': run 'make install' or 'pip install -e .'"
    )
    assert deps.missing_dependency(ModuleNotFoundError(name="mplhep")).endswith("'pip install -e .[plot]'")
    assert deps.missing_dependency(ModuleNotFoundError(name="jetattn.nn.nothing")) is None  # our bug: a traceback

    # `make` made .venv and this python is not its: entering it is the fix
    venv = tmp_path / ".venv"
    venv.mkdir()
    monkeypatch.setattr(deps, "VENV", venv)
    monkeypatch.chdir(tmp_path)
    line = deps.missing_dependency(ModuleNotFoundError(name="tqdm"))
    assert "'. .venv/bin/activate'" in line and "make install" in line

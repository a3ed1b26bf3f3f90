"""Keep env.sh's `export DATADIR_<dataset>=...` lines pointing at the dataset folders.

Each line reads `export DATADIR_X="${DATADIR_X:-/path}"`, so a DATADIR_X already set by the caller wins when a
train script sources env.sh. Other lines are kept as they are.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

from jetattn.io import write_text_atomic

_DOUBLE_QUOTE_SPECIAL = re.compile(r'([\\$`"}])')  # '}' would otherwise close the ${...:-...}


def variable_name(dataset: str) -> str:
    return f"DATADIR_{dataset}"


def export_line(dataset: str, folder: Path | str) -> str:
    """`export DATADIR_<dataset>="${DATADIR_<dataset>:-<folder>}"`, the folder quoted for bash."""
    name = variable_name(dataset)
    default = _DOUBLE_QUOTE_SPECIAL.sub(r"\\\1", str(folder))
    return f'export {name}="${{{name}:-{default}}}"\n'


def set_datadir(envfile: Path, dataset: str, folder: Path) -> None:
    """Point DATADIR_<dataset> in `envfile` at `folder` (absolute), replacing its line or appending one.

    The file is rewritten through a temporary file and os.replace, so a crash never leaves it half-written.
    """
    envfile = Path(envfile).resolve()
    line = export_line(dataset, Path(folder).resolve())
    defines = re.compile(rf"^\s*(export\s+)?{re.escape(variable_name(dataset))}=")
    lines = envfile.read_text().splitlines(keepends=True) if envfile.exists() else []
    found = False
    for i, old in enumerate(lines):
        if defines.match(old):
            lines[i], found = line, True
    if not found:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(line)
    mode = stat.S_IMODE(envfile.stat().st_mode) if envfile.exists() else 0o644
    write_text_atomic(envfile, "".join(lines), mode)

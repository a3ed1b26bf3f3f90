"""Writing files so that a crash or Ctrl-C never leaves a half-written file under the final name."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: Path, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; it is renamed over ``path`` when the block succeeds
    and removed when it fails. For writers that want a file name (``torch.save``, ONNX tools). The file gets
    ``mode``, or the permissions a plain ``open`` would give it under the umask."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    if mode is None:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    try:
        yield Path(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    with atomic_path(path, mode) as tmp:
        tmp.write_text(text)


def write_json(path: Path, data: dict | list) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def prepare_outputs(files: dict[str, Path | None] = None, folders: dict[str, Path | None] = None) -> None:
    """Before a tool does its work: create the folder of each output file and each output folder, keyed by the
    option that named it, or raise ToolError in one line naming the option and the path that cannot be made."""
    from jetattn.deps import ToolError

    wanted = [(option, Path(path).parent) for option, path in (files or {}).items() if path is not None]
    wanted += [(option, Path(path)) for option, path in (folders or {}).items() if path is not None]
    for option, folder in wanted:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ToolError(f"{option} {folder}: cannot create the folder ({err.strerror or err})") from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ToolError(f"{option} {folder}: the folder is not writable")

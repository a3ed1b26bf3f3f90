"""What the studies share: one training through a train_*.sh script, resumable, timed, its log kept."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def slug(name: str) -> str:
    """A folder name for a run's display name: 'ParT (kin)' -> 'part_kin'."""
    text = "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")
    while "__" in text:
        text = text.replace("__", "_")
    return text


def unfinished(folder: Path) -> Path:
    """Where a run writes its predictions until it has finished."""
    return folder / "unfinished"


def train(
    folder: Path, name: str, cmd: list[str], threads: int, env: dict[str, str] | None = None, **record_items
) -> dict:
    """Run ``cmd`` (a train script and its options) with ``threads`` torch threads, logging to
    ``folder/stdout.log``; ``folder/run.json`` (name, seconds, command) marks it finished, so a finished run is
    not trained again. ``cmd`` must write its predictions into :func:`unfinished` ``(folder)``: they move up into
    ``folder`` only on success, so a killed run leaves no prediction file under a final name. ``record_items`` go
    into run.json too."""
    record_path = folder / "run.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    staging = unfinished(folder)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    run_env = {**os.environ, "OMP_NUM_THREADS": str(threads), "JETATTN_ASSUME_CUDA": "0", **(env or {})}
    start = time.time()
    with open(folder / "stdout.log", "w") as log:
        proc = subprocess.run(cmd, env=run_env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    if proc.returncode:
        raise RuntimeError(f"{name} failed ({proc.returncode}): see {folder / 'stdout.log'}")
    predictions = sorted(staging.glob("*.root"))
    if not predictions:
        raise RuntimeError(f"{name}: weaver wrote no prediction file; see {folder / 'stdout.log'}")
    for path in predictions:
        path.rename(folder / path.name)
    staging.rmdir()
    record = {"model": name, **record_items, "seconds": round(time.time() - start, 1), "command": shlex.join(cmd)}
    from jetattn.io import write_json

    write_json(record_path, record)
    print(f"done: {name}, {record['seconds']:.0f} s", flush=True)
    return record

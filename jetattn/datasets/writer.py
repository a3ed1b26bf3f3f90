"""ROOT output: a TTree `tree` written under a temporary name and renamed only once complete."""

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

TMP_SUFFIX = ".tmp"


def temp_path(path: Path) -> Path:
    return path.with_name(path.name + TMP_SUFFIX)


def _counter_name(record: str) -> str:
    return f"n_{record}"  # n_part, as in the public JetClass, TopLandscape and QuarkGluon files


def _field_name(record: str, field: str) -> str:
    return f"{record}_{field}"


def _branch_types(columns: dict) -> dict:
    return {name: (value.type if isinstance(value, ak.Array) else value.dtype) for name, value in columns.items()}


class TreeWriter:
    """Appends column batches to the TTree `tree_name` of `path` (via `path.tmp`); `close()` renames, `abort()`
    deletes.

    Columns are numpy arrays (one value per jet) or awkward records of jagged arrays: a record `part` with
    field `px` becomes branch `part_px` with the counter branch `n_part`, as in the JetClass files.
    """

    def __init__(self, path: Path, tree_name: str = "tree"):
        self.path = Path(path)
        self.tree_name = tree_name
        self.num_entries = 0
        self._file = uproot.recreate(temp_path(self.path))
        self._tree = None

    def extend(self, columns: dict) -> None:
        if self._tree is None:
            self._tree = self._file.mktree(
                self.tree_name, _branch_types(columns), counter_name=_counter_name, field_name=_field_name
            )
        self._tree.extend(columns)
        self.num_entries += len(next(iter(columns.values())))

    def close(self) -> None:
        """Finish the file and move it to its final name."""
        if self._tree is None:
            self.abort()
            raise ValueError(f"no jets were written to {self.path}")
        self._file.close()
        os.replace(temp_path(self.path), self.path)

    def abort(self) -> None:
        self._file.close()
        temp_path(self.path).unlink(missing_ok=True)

    def __enter__(self) -> "TreeWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # BaseException included: a KeyboardInterrupt must not leave the temporary file behind
        if exc_type is None:
            self.close()
        else:
            self.abort()


def read_columns(path: Path, entry_start: int, entry_stop: int, records: Sequence[str]) -> dict:
    """Read back jets [start, stop) of a file written by TreeWriter, in the layout `extend` takes;
    `records` names the jagged collections (branch `part_px` belongs to record `part`)."""
    arrays = uproot.open(path)["tree"].arrays(entry_start=entry_start, entry_stop=entry_stop)
    counters = {_counter_name(record) for record in records}
    columns: dict = {}
    fields: dict[str, dict] = {record: {} for record in records}
    for name in arrays.fields:
        record = next((r for r in records if name.startswith(f"{r}_")), None)
        if record is not None:
            fields[record][name[len(record) + 1 :]] = arrays[name]
        elif name not in counters:
            columns[name] = ak.to_numpy(arrays[name])
    columns.update({record: ak.zip(values) for record, values in fields.items() if values})
    return columns


def _blocks(path: Path, num_blocks: int) -> Iterator[tuple[int, int]]:
    total = uproot.open(path)["tree"].num_entries
    edges = np.linspace(0, total, num_blocks + 1).round().astype(int)
    yield from zip(edges[:-1], edges[1:], strict=True)


# Jets per shuffled block of a merged file, and so per ROOT basket: weaver's fetch decompresses whole baskets, so a
# 20,000-jet basket cost a fetch of a few jets 4 to 7 s, a 1,000-jet one under 1 s (docs/benchmarks.md, the loader)
MERGE_BLOCK_JETS = 2000


def merge_shuffled(
    parts: Sequence[Path],
    dest: Path,
    records: Sequence[str],
    rng: np.random.Generator,
    block_jets: int = MERGE_BLOCK_JETS,
    transform: Callable[[dict], dict] | None = None,
) -> int:
    """Concatenate part files into `dest`, mixing them: each output block takes an equal share of every part
    and is shuffled, so memory stays at about one block whatever the dataset size. `transform`, if given, maps
    each block's columns before it is written (e.g. adds a column). Returns the number of jets."""
    total = sum(uproot.open(p)["tree"].num_entries for p in parts)
    num_blocks = max(1, -(-total // block_jets))
    with TreeWriter(dest) as writer:
        for ranges in zip(*(_blocks(p, num_blocks) for p in parts), strict=True):
            pieces = [
                read_columns(p, start, stop, records)
                for p, (start, stop) in zip(parts, ranges, strict=True)
                if stop > start
            ]
            if not pieces:
                continue
            block = {name: _concat([piece[name] for piece in pieces]) for name in pieces[0]}
            if transform is not None:
                block = transform(block)
            order = rng.permutation(len(next(iter(block.values()))))
            writer.extend({name: value[order] for name, value in block.items()})
    return total


def _concat(values: list):
    if isinstance(values[0], ak.Array):
        return ak.concatenate(values)
    return np.concatenate(values)

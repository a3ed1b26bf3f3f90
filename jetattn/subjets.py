"""The coarse scale of a jet for the multi-scale transformer: its exclusive-kT subjets and its global features.

    python -m jetattn.subjets FILES... -o OUTDIR [--tree tree] [--radius 0.8]

For every jet, the constituents (``part_px, part_py, part_pz, part_energy``) are clustered with the kT algorithm
(E-scheme, no beam distance) down to exactly N = 2, 3 and 4 subjets; the 2 + 3 + 4 = 9 subjets become the jagged
branches ``subjet_{pt,deta,dphi,mass,energy,nsub}`` (counter ``n_subjet``), grouped by N (``subjet_nsub``) and
pT-ordered within each N. ``subjet_deta`` and ``subjet_dphi`` follow ``part_deta`` and ``part_dphi``:
(η − η_jet)·sign(η_jet) and φ − φ_jet wrapped to [−π, π). A jet with fewer than N constituents has one subjet per
constituent for that N (so fewer subjets: weaver's mask covers the rest). pT, mass and energy are in GeV.

The jet's global features are branches of their own: ``jet_pt``, ``jet_eta``, ``jet_mass`` come with the input,
and ``jet_sdmass``, ``jet_tau1`` … ``jet_tau4`` are computed (soft drop and N-subjettiness with R0 = --radius, as
the generator does) where the input lacks them (TopLandscape, the real samples); the feature YAMLs
``*_multiscale.yaml`` hand them to every subjet as extra channels.

Each output file holds every branch of the input plus these, in ROOT (a parquet input gives a ``.root`` file of
the same name), written under a temporary name and renamed once complete. The input is read in chunks.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import awkward as ak

from jetattn.datasets.observables import SUBSTRUCTURE, add_subjets, subjet_columns  # noqa: F401 (the CLI's names)
from jetattn.deps import ToolError, exit_if_missing

NEEDED = ("part_px", "part_py", "part_pz", "part_energy", "jet_eta", "jet_phi")
CHUNK_JETS = 5000


# ---------------------------------------------------------------------------------------------------------------
# Files


def _records_of_tree(tree) -> list[str]:
    """Jagged collections of a TTree: ``part`` for ``part_px`` counted by ``n_part`` (or, without a counter
    branch, the name up to its first underscore)."""
    records = set()
    for branch in tree.branches:
        if not str(branch.interpretation).startswith("AsJagged"):
            continue
        counter = branch.count_branch.name if branch.count_branch is not None else ""
        record = counter.removeprefix("n_")
        if not (counter.startswith("n_") and branch.name.startswith(record + "_")):
            record = branch.name.partition("_")[0]
        records.add(record)
    return sorted(records)


def _group(arrays: ak.Array, records: list[str], skip: set[str]) -> dict:
    """Flat branches as numpy arrays, jagged ones zipped into their records (``part_px`` -> ``part.px``)."""
    columns: dict = {}
    fields: dict[str, dict] = {record: {} for record in records}
    for name in arrays.fields:
        if name in skip:
            continue
        record = next((r for r in records if name.startswith(r + "_")), None)
        if record is not None:
            fields[record][name[len(record) + 1 :]] = arrays[name]
        else:
            columns[name] = ak.to_numpy(arrays[name])
    for record, values in fields.items():
        if not values:
            continue
        try:
            columns[record] = ak.zip(values)
        except ValueError as err:
            raise ToolError(f"branches {record}_*: lists of different lengths in one jet ({err})") from None
    return columns


def _one_line(err: Exception) -> str:
    return f"{type(err).__name__}: " + " ".join(str(err).split())


class _Input:
    """One input file: its jet count and its jets in chunks, in the layout TreeWriter takes."""

    def __init__(self, path: Path, tree_name: str):
        self.path = path
        if not path.is_file():
            raise ToolError(f"{path}: no such file")
        if path.suffix == ".parquet":
            self._open_parquet()
        else:
            self._open_root(tree_name)
        lacking = [name for name in NEEDED if name not in self.branches]
        if lacking:
            raise ToolError(f"{path}: no branch {lacking[0]!r} (subjets need {', '.join(NEEDED)})")
        if self.num_jets == 0:
            raise ToolError(f"{path}: no jets")

    def _open_root(self, tree_name: str) -> None:
        import uproot

        try:
            self._file = uproot.open(self.path)
        except Exception as err:
            raise ToolError(f"{self.path}: not a ROOT file ({_one_line(err)})") from None
        tree = self._file.get(tree_name) if tree_name in self._file else None
        if tree is None or not hasattr(tree, "num_entries"):
            holds = ", ".join(self._file.keys(cycle=False)) or "nothing"
            raise ToolError(f"{self.path}: no TTree {tree_name!r} (it holds {holds}; pick one with --tree)")
        self._tree = tree
        self.branches = set(tree.keys())
        self.num_jets = tree.num_entries
        self._records = _records_of_tree(tree)

    def _open_parquet(self) -> None:
        import pyarrow.parquet as pq

        try:
            self._file = pq.ParquetFile(self.path)
        except Exception as err:
            raise ToolError(f"{self.path}: not a parquet file ({_one_line(err)})") from None
        schema = self._file.schema_arrow
        self.branches = set(schema.names)
        self.num_jets = self._file.metadata.num_rows
        self._tree = None
        self._records = sorted(
            {
                name.partition("_")[0]
                for name in schema.names
                if str(schema.field(name).type).startswith(("list", "large_list"))
            }
        )

    def chunks(self, chunk_jets: int) -> Iterator[dict]:
        skip = {"n_subjet"} | {f"subjet_{f}" for f in ("pt", "deta", "dphi", "mass", "energy", "nsub")}
        skip |= {f"n_{record}" for record in self._records}  # counters: the writer makes them again
        if self._tree is not None:
            for arrays in self._tree.iterate(step_size=chunk_jets, library="ak"):
                yield _group(arrays, self._records, skip)
        else:
            for batch in self._file.iter_batches(batch_size=chunk_jets):
                yield _group(ak.from_arrow(batch), self._records, skip)

    def close(self) -> None:
        if self._tree is not None:
            self._file.close()


def output_path(path: Path, outdir: Path) -> Path:
    return outdir / (path.stem + ".root")


def convert(
    inputs: list[Path],
    outdir: Path,
    tree_name: str = "tree",
    radius: float = 0.8,
    chunk_jets: int = CHUNK_JETS,
    progress: bool = True,
) -> list[Path]:
    """Write each input with the subjet branches added to ``outdir``; returns the output files. Every input is
    checked before anything is written."""
    from tqdm import tqdm

    from jetattn.datasets.writer import TreeWriter

    opened = [_Input(Path(path), tree_name) for path in inputs]
    outputs = [output_path(source.path, outdir) for source in opened]
    for source, out in zip(opened, outputs, strict=True):
        if out.resolve() == source.path.resolve():
            raise ToolError(f"{out}: the output would replace its input; choose another -o folder")
    if len(set(outputs)) < len(outputs):
        raise ToolError("two inputs have the same file name; their outputs would collide in " + str(outdir))
    outdir.mkdir(parents=True, exist_ok=True)
    with tqdm(total=sum(s.num_jets for s in opened), unit="jet", disable=not progress) as bar:
        for source, out in zip(opened, outputs, strict=True):
            bar.set_description(source.path.name)
            with TreeWriter(out, tree_name) as writer:
                for columns in source.chunks(chunk_jets):
                    writer.extend(add_subjets(columns, radius))
                    bar.update(len(columns["jet_eta"]))
            source.close()
    return outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jetattn.subjets", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILES",
        help="JetClass/TopLandscape/QuarkGluon-format files (ROOT, or parquet)",
    )
    parser.add_argument("-o", "--outdir", type=Path, required=True, help="folder for the output files")
    parser.add_argument("--tree", default="tree", help="name of the TTree in ROOT inputs (default: %(default)s)")
    parser.add_argument(
        "--radius",
        type=float,
        default=0.8,
        help="jet radius R0 of soft drop and N-subjettiness where they are computed "
        "(default: %(default)s; QuarkGluon jets: 0.4)",
    )
    parser.add_argument("--chunk", type=int, default=CHUNK_JETS, help="jets read at a time (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        if args.radius <= 0 or args.chunk < 1:
            raise ToolError("--radius and --chunk must be positive")
        outputs = convert(args.files, args.outdir, args.tree, args.radius, args.chunk)
    except ToolError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print("\n".join(str(out) for out in outputs))
    return 0


if __name__ == "__main__":
    with exit_if_missing():
        sys.exit(main())

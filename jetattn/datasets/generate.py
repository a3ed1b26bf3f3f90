"""Offline datasets from Pythia 8 and FastJet: `generate(recipe, outdir, number, ...)` runs one recipe.

A recipe says what a dataset is: the Pythia settings of each class, the selection of jets (or events) and the
branches written, and the layout of the files (`recipes.JetDataset` for JetClass, TopLandscape and QuarkGluon,
`dihiggs.DiHiggs`). `generate` checks the arguments, plans the tasks (chunks of one class each), runs the write
loop on the worker pool, merges and cleans up. The stages, each a module: `events` (Pythia and the event record
in numpy, truth), `detector` (the measured particles of a whole batch at once), `jets` (anti-kT clustering,
selection, truth matching, branches) and `pool` (worker processes, progress). Files are written under temporary
names and renamed once complete. docs/generator.md lists the processes, the truth matching and the measured speed.
"""

import math
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from jetattn.datasets.events import EVENTS_PER_BATCH, EventBatch, ParticleTable, require_generators, start_pythia
from jetattn.datasets.pool import Progress, Task, run_tasks
from jetattn.datasets.recipes import jet_dataset
from jetattn.datasets.writer import TMP_SUFFIX, TreeWriter, merge_shuffled, temp_path

MAX_JETS_PER_FILE = 100_000  # as in the official JetClass files
MIN_JETS_PER_CHUNK = 1000  # a Pythia initialisation (~1 s) costs about 10 % of a chunk this small
# JetClass-style files per class and split (--files-per-class overrides): 4 below 8,000 jets per class, else 8 of at
# least MIN_JETS_PER_FILE; see default_files_per_class and docs/benchmarks.md (the loader)
FILES_PER_CLASS_SMALL, FILES_PER_CLASS_LARGE, MIN_JETS_PER_FILE = 4, 8, 1000
TASKS_PER_WORKER = 4  # several chunks per worker, so that the slow classes do not leave a long tail


class Recipe(Protocol):
    """What one dataset is, for `generate`. An entry is what one row of the files holds: a jet or an event."""

    name: str
    unit: str  # "jet" or "event": what `number` counts and the progress bar shows
    classes: tuple[str, ...]  # class (process) names, each made by a Pythia run of its own; file prefixes
    seed_stream: int  # keeps the random streams of each recipe's tasks apart from the others'
    sqrt_s: float  # collision energy (GeV)
    min_entries: int  # the fewest entries per class a run may ask for
    splits: tuple[str, ...]  # ("train", "val", "test"), or ("train", "test") with the validation fraction in train
    merged: bool  # one shuffled file per split (merged from staged parts); else per-class files in split folders
    records: tuple[str, ...]  # the jagged records of the files (branch part_px belongs to record part)
    merge_block: int  # entries per shuffled block of the merge
    shuffle_entropy: tuple[int, ...]  # the merge's random stream: entropy after the seed
    report_entries: int  # progress messages to the parent every this many entries
    flush_entries: int  # entries held in memory before they are appended to the file

    def folder(self, outdir: Path) -> Path:
        """The dataset's folder under `outdir`, the one to record in env.sh."""

    def merged_name(self, split: str) -> str:
        """The file of a split of a merged dataset."""

    def entries_per_class(self, number: int) -> list[int]:
        """Entries each class makes when a run asks for `number`."""

    def check(self) -> None:
        """Raise ValueError on settings of the recipe's own that cannot work."""

    def pythia_settings(self, class_index: int, seed: int) -> list[str]:
        """Pythia's `readString` lines for one class and random seed."""

    def selection(self, class_index: int, particles: ParticleTable, rng: np.random.Generator) -> Any:
        """An object whose `select(events)` yields (position of the event in the batch, entry) for each entry
        selected from an `EventBatch`; `rng` is the detector's."""

    def columns(self, class_index: int, entries: list) -> dict:
        """The branches of a block of entries of one class, as `TreeWriter.extend` takes them."""

    def finish(self, root: Path, results: list[dict], merge: Callable) -> list[str]:
        """A merged dataset, once every task has written its parts: call ``merge(transform=None)`` (`transform`
        maps each block's columns, as in `merge_shuffled`) and write anything else; returns lines for stderr."""


# ---------------------------------------------------------------------------------------------------------------
# One task, run inside a worker (or in-process for workers=1 and the benchmark)


def task_pythia(task: Task):
    """An initialised Pythia for the task's class, seeded from the task."""
    pythia_seed, _ = task.seeds()
    return start_pythia(task.recipe.pythia_settings(task.class_index, pythia_seed), f"class {task.class_name}")


def selected_batches(task: Task, pythia) -> Iterator[tuple[int, list]]:
    """(events in the batch, its selected entries as (position of the event, entry)) for each batch of events
    of the task's class, without end."""
    _, rng = task.seeds()
    selection = task.recipe.selection(task.class_index, ParticleTable(pythia.particleData), rng)
    while True:
        events = EventBatch.from_awkward(pythia.nextBatch(EVENTS_PER_BATCH))
        yield events.num_events, list(selection.select(events))


def selected_entries(task: Task, pythia) -> Iterator[tuple[int, Any]]:
    """(events generated up to and including this entry's, entry) for each selected entry, without end."""
    generated = 0
    for num_events, selected in selected_batches(task, pythia):
        for position, entry in selected:
            yield generated + position + 1, entry
        generated += num_events


def write_task(task: Task, report: Callable[[str, int], None]) -> dict:
    """Generate the task's entries and write them to its files in order. Returns the class, the entries written,
    the events generated up to the last one kept, Pythia's cross-section (pb), seconds and peak memory (MB)."""
    recipe = task.recipe
    start = time.perf_counter()
    pythia = task_pythia(task)
    entries = selected_entries(task, pythia)
    generated = 0
    for path, n_entries in task.outputs:
        with TreeWriter(path) as writer:
            pending: list = []
            unreported = 0
            for made in range(n_entries):
                generated, entry = next(entries)
                pending.append(entry)
                unreported += 1
                if unreported == recipe.report_entries:
                    report(task.class_name, unreported)
                    unreported = 0
                if len(pending) == recipe.flush_entries or made == n_entries - 1:
                    writer.extend(recipe.columns(task.class_index, pending))
                    pending = []
            report(task.class_name, unreported)
    return {
        "class": task.class_name,
        "entries": task.num_entries,
        "generated": generated,
        "sigma_pb": pythia.infoPython().sigmaGen() * 1e9,
        "seconds": time.perf_counter() - start,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# ---------------------------------------------------------------------------------------------------------------
# Arguments and planning


def check_arguments(
    recipe: Recipe,
    number: int,
    split: tuple[float, float, float],
    workers: int | None,
    files_per_class: int | None = None,
) -> None:
    """Raise ValueError, before anything is made, on arguments that cannot work."""
    if isinstance(number, bool) or not isinstance(number, int) or number < recipe.min_entries:
        least = "a positive integer" if recipe.min_entries == 1 else f"an integer of at least {recipe.min_entries}"
        raise ValueError(f"num_{recipe.unit}s must be {least} ({recipe.unit}s per class), got {number!r}")
    if len(split) != 3 or any(f < 0 for f in split) or not math.isclose(sum(split), 1.0, abs_tol=1e-6):
        raise ValueError(f"split must be three non-negative fractions (train, val, test) summing to 1, got {split!r}")
    if split[0] <= 0:
        raise ValueError(f"split must give the training set a positive fraction, got {split!r}")
    if workers is not None and (not isinstance(workers, int) or workers <= 0):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if not recipe.sqrt_s > 0:
        raise ValueError(f"sqrt_s must be positive (GeV), got {recipe.sqrt_s!r}")
    recipe.check()
    if files_per_class is not None and recipe.merged:
        raise ValueError(f"files_per_class applies to JetClass-style datasets; {recipe.name} is one file per split")
    if files_per_class is not None and (
        isinstance(files_per_class, bool) or not isinstance(files_per_class, int) or files_per_class <= 0
    ):
        raise ValueError(f"files_per_class must be a positive integer, got {files_per_class!r}")


def _check_writable(folder: Path) -> None:
    """Fail before any generation if the output folder cannot be made or written to."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise type(err)(err.errno, f"output folder {folder} is not writable: {err.strerror}") from err


def _split_counts(num_jets: int, fractions: list[float]) -> list[int]:
    """Largest-remainder split of num_jets; every split with a positive fraction gets at least one jet."""
    exact = [num_jets * f for f in fractions]
    counts = [int(x) for x in exact]
    for k in sorted(range(len(exact)), key=lambda k: exact[k] - counts[k], reverse=True)[: num_jets - sum(counts)]:
        counts[k] += 1
    for k, f in enumerate(fractions):
        if f > 0 and counts[k] == 0:
            raise ValueError(f"num_jets={num_jets} is too small to fill every split of {fractions}")
    return counts


def _num_chunks(num_jets: int, num_classes: int, workers: int) -> int:
    """Chunks per class: files stay below MAX_JETS_PER_FILE, and there are enough tasks to keep every worker
    busy while chunks stay above MIN_JETS_PER_CHUNK."""
    by_size = -(-num_jets // MAX_JETS_PER_FILE)
    by_workers = -(-TASKS_PER_WORKER * workers // num_classes) if workers > 1 else 1
    return max(by_size, min(by_workers, max(1, num_jets // MIN_JETS_PER_CHUNK)))


def default_files_per_class(num_jets: int) -> int:
    """Files per class and split of a JetClass-style sample: enough for the train scripts' loader workers under
    DDP (2 workers x 2-4 processes; weaver gives each its own files of every class), as few as keep files of about
    a thousand jets or more, and files below MAX_JETS_PER_FILE."""
    return max(
        FILES_PER_CLASS_SMALL if num_jets < 8 * MIN_JETS_PER_FILE else FILES_PER_CLASS_LARGE,
        -(-num_jets // MAX_JETS_PER_FILE),
    )


def _class_files(
    recipe: Recipe, root: Path, name: str, n: int, n_chunks: int, fractions: list[float], files: int
) -> list[list[tuple[Path, int]]]:
    """Per chunk, its (file, entries): each split of the class spread over `files` files (fewer where a split has
    fewer entries), ``{split}/{class}_{NNN}.root``, dealt round-robin to the chunks."""
    outputs: list[list[tuple[Path, int]]] = [[] for _ in range(n_chunks)]
    for split_name, n_split in zip(recipe.splits, _split_counts(n, fractions), strict=True):
        n_files = min(files, n_split)
        for k in range(n_files):
            path = root / split_name / f"{name}_{k:03d}.root"
            outputs[k % n_chunks].append((path, n_split // n_files + (k < n_split % n_files)))
    return outputs


def _staged_parts(
    recipe: Recipe, staging: Path, name: str, n: int, n_chunks: int, fractions: list[float]
) -> list[list[tuple[Path, int]]]:
    """Per chunk, its (file, entries): one staged part per split, ``{class}_{chunk}_{split}.root``."""
    outputs = []
    for chunk in range(n_chunks):
        counts = _split_counts(n // n_chunks + (chunk < n % n_chunks), fractions)
        parts = zip(recipe.splits, counts, strict=True)
        outputs.append([(staging / f"{name}_{chunk:03d}_{s}.root", count) for s, count in parts if count > 0])
    return outputs


def plan(
    recipe: Recipe,
    root: Path,
    number: int,
    seed: int,
    workers: int,
    split: tuple[float, float, float],
    files_per_class: int | None = None,
) -> list[Task]:
    """The tasks of a run: chunks of each class (a Pythia run each), writing their entries in order to their
    files: per-class files (`_class_files`), or staged parts (`_staged_parts`) in root/.parts for a merged
    dataset, merged afterwards."""
    fractions = list(split) if len(recipe.splits) == 3 else [split[0] + split[1], split[2]]
    tasks = []
    for class_index, (name, n) in enumerate(zip(recipe.classes, recipe.entries_per_class(number), strict=True)):
        n_chunks = _num_chunks(n, len(recipe.classes), workers)
        if recipe.merged:
            outputs = _staged_parts(recipe, root / ".parts", name, n, n_chunks, fractions)
        else:
            files = files_per_class or default_files_per_class(n)
            outputs = _class_files(recipe, root, name, n, n_chunks, fractions, files)
        tasks += [Task(recipe, class_index, chunk, seed, tuple(out)) for chunk, out in enumerate(outputs) if out]
    return tasks


# ---------------------------------------------------------------------------------------------------------------
# Clean-up and merge


def _remove_stale_chunks(recipe: Recipe, folders: list[Path], planned: set[Path]) -> None:
    """Delete chunk files of an earlier run that this run will not overwrite (it may make fewer chunks), so that
    the folder never mixes two samples."""
    for folder in folders:
        for name in recipe.classes:
            for path in folder.glob(f"{name}_[0-9][0-9][0-9].root"):
                if path not in planned:
                    path.unlink()


def remove_unfinished(temporaries: list[Path], folders: list[Path], staging: Path | None) -> None:
    """After an interrupted or failed run: no temporary file may survive, and no staged part of a merged
    dataset."""
    for path in temporaries:
        path.unlink(missing_ok=True)
    for folder in folders:
        for leftover in folder.glob(f"*{TMP_SUFFIX}"):
            leftover.unlink(missing_ok=True)
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)


def _merge(recipe: Recipe, root: Path, tasks: list[Task], seed: int, transform: Callable | None = None) -> None:
    """Each split's staged parts, shuffled together into the split's file."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, *recipe.shuffle_entropy]))
    for split_name in recipe.splits:
        suffix = f"_{split_name}.root"
        parts = [path for task in tasks for path, _ in task.outputs if path.name.endswith(suffix)]
        if parts:
            dest = root / recipe.merged_name(split_name)
            merge_shuffled(parts, dest, recipe.records, rng, recipe.merge_block, transform)


# ---------------------------------------------------------------------------------------------------------------
# Public interface


def _run(recipe: Recipe, root: Path, folders: list[Path], tasks: list[Task], seed: int, workers: int):
    """The tasks on the pool, then the merge; on any error or interruption nothing unfinished stays. Returns the
    tasks' results and the recipe's lines for stderr."""
    staging = root / ".parts" if recipe.merged else None
    temporaries = [temp_path(path) for task in tasks for path, _ in task.outputs]
    progress = Progress(list(recipe.classes), sum(task.num_entries for task in tasks), unit=recipe.unit)
    notes: list[str] = []
    try:
        if staging is not None:
            staging.mkdir(exist_ok=True)
        results = run_tasks(tasks, min(workers, len(tasks)), progress, write_task)
        if staging is not None:
            notes = recipe.finish(root, results, lambda transform=None: _merge(recipe, root, tasks, seed, transform))
            shutil.rmtree(staging)
    except BaseException:
        remove_unfinished(temporaries, folders, staging)
        raise
    finally:
        progress.close()
    return results, notes


def generate(
    recipe: Recipe,
    outdir: Path,
    number: int,
    seed: int = 1,
    workers: int | None = None,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    files_per_class: int | None = None,
) -> Path:
    """Generate `number` entries (jets or events) per class of `recipe` under `outdir` on `workers` processes
    (default: all cores) and return the dataset's folder. `split`: the train, val and test fractions;
    `files_per_class`: per-class layouts only (default `default_files_per_class`). A fixed seed (and worker count)
    reproduces the same files."""
    check_arguments(recipe, number, split, workers, files_per_class)
    root = recipe.folder(Path(outdir))
    folders = [root] if recipe.merged else [root / s for s in recipe.splits]
    for folder in folders:
        _check_writable(folder)
    require_generators()

    workers = workers or os.cpu_count() or 1
    tasks = plan(recipe, root, number, seed, workers, split, files_per_class)
    if not recipe.merged:
        _remove_stale_chunks(recipe, folders, {path for task in tasks for path, _ in task.outputs})
    results, notes = _run(recipe, root, folders, tasks, seed, workers)
    for line in notes:
        print(line, file=sys.stderr)
    peak_mb = max(result["peak_mb"] for result in results)
    print(
        f"{recipe.name}: {sum(r['entries'] for r in results)} {recipe.unit}s written under {root}; "
        f"peak memory per worker {peak_mb:.0f} MB",
        file=sys.stderr,
    )
    return root


def generate_dataset(
    dataset: str,
    outdir: Path,
    num_jets: int,
    seed: int = 1,
    workers: int | None = None,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    sqrt_s: float = 14000.0,
    files_per_class: int | None = None,
    detector: str | None = None,
) -> Path:
    """Generate `num_jets` jets per class of `dataset` ("JetClass", "TopLandscape" or "QuarkGluon") under
    `outdir` and return the data folder to record in env.sh. `detector` (detector.DETECTORS) defaults to the
    original sample's: "cms" for JetClass, "atlas" for TopLandscape, "none" (generator level) for QuarkGluon.

    JetClass: outdir/JetClass/Pythia/{train,val,test}/{Prefix}_{NNN}.root, ``files_per_class`` files per class
    and split (default :func:`default_files_per_class`), so that weaver's loader workers each get their own.
    TopLandscape: outdir/TopLandscape/{train,val,test}_file.root, top and QCD shuffled together, `label` 1 = top.
    QuarkGluon: outdir/QuarkGluon/{train,test}_file_0.root (the validation fraction goes to train: the train
    script splits it off), `label` 1 = quark. A fixed seed (and worker count) reproduces the same jets.
    """
    recipe = jet_dataset(dataset, detector, sqrt_s)
    return generate(recipe, outdir, num_jets, seed, workers, split, files_per_class)


def benchmark(recipe: Recipe | None = None, number: int = 200, seed: int = 1) -> dict[str, float]:
    """Jets (events) per second per core for every class of `recipe` (default: JetClass), one process: entries
    over the CPU time this process spent making them (Pythia's initialisation excluded), so other load on the
    machine does not count against it."""
    require_generators()
    recipe = recipe or jet_dataset("JetClass")
    rates = {}
    for class_index, name in enumerate(recipe.classes):
        task = Task(recipe, class_index, 0, seed, ())
        batches = selected_batches(task, task_pythia(task))
        start = time.process_time()
        made = 0
        while made < number:  # whole batches, every entry they give counted
            made += len(next(batches)[1])
        rates[name] = made / (time.process_time() - start)
    return rates

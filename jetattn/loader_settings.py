"""Loader settings that fit the data: what the train scripts hand weaver besides the public recipe's options.

The recipe's loader options (``--num-workers 2 --fetch-step 0.01`` on JetClass) fit the official files: 100
files of a million jets per class. On a generated sample, or a user's own few files, the same options break
weaver or mislead it:

- weaver gives each loader worker its own files of every class group (``files[worker::workers]``, and before
  that ``files[rank::ranks]`` under DDP); a worker left without files stops with a bare ``AssertionError``;
- a fetch reads ``fetch_step`` of every file, and at least one entry: with fewer than ``1 / fetch_step`` jets in
  a file, consecutive fetches read the same jet again (weaver's ``stop = max(start + 1, …)``), so a small
  validation set silently repeats a few jets;
- every fetch pays the opening and preprocessing of all its files: a few jets per file per fetch starve a GPU;
- ``--samples-per-epoch-val`` beyond the validation jets cycles over them (infinity mode).

:func:`fit` reads the file sizes and returns the options to add (never one the user gave), with one line saying
what it chose and why; settings that would crash weaver or repeat validation jets stop with one line instead.
"""

from __future__ import annotations

import argparse
import glob
import os
from dataclasses import dataclass, field

import yaml

# Jets one loader worker should read per fetch when the data is streamed: a fetch costs the opening and the
# preprocessing of its files, so a fetch of fewer jets is paid for many times over (docs/benchmarks.md, loader).
JETS_PER_FETCH = 50_000
# The training set goes into memory (weaver's --in-memory) when its padded inputs take less than this share of
# the memory available, and less than IN_MEMORY_MAX_BYTES.
IN_MEMORY_SHARE = 0.25
IN_MEMORY_MAX_BYTES = 16 * 2**30


class LoaderError(Exception):
    """Settings weaver would crash on, or that would repeat jets: the one line the user sees."""


def weaver_loader_parser() -> argparse.ArgumentParser:
    """The options of weaver-core 0.5.3's ``train.py`` that decide how data is loaded, with weaver's names, short
    forms and defaults (checked against weaver's own parser in the tests); every other option is passed over."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add = parser.add_argument
    add("-c", "--data-config", type=str, default=None)
    add("-i", "--data-train", nargs="*", default=[])
    add("-l", "--data-val", nargs="*", default=[])
    add("-t", "--data-test", nargs="*", default=[])
    add("--num-workers", type=int, default=1)
    add("--fetch-step", type=float, default=0.01)
    add("--fetch-step-val", type=float, default=None)
    add("--fetch-by-files", action=argparse.BooleanOptionalAction, default=False)
    add("--in-memory", action=argparse.BooleanOptionalAction, default=False)
    add("--in-memory-val", action=argparse.BooleanOptionalAction, default=None)
    add("--samples-per-epoch", type=int, default=None)
    add("--samples-per-epoch-val", type=int, default=None)
    add("--steps-per-epoch", type=int, default=None)
    add("--steps-per-epoch-val", type=int, default=None)
    add("--batch-size", type=int, default=128)
    add("--batch-size-val", type=int, default=None)
    add("--data-fraction", type=float, default=1)
    add("--train-val-split", type=float, default=0.8)
    add("--file-fraction", type=float, default=1)
    add("--predict", action=argparse.BooleanOptionalAction, default=False)
    return parser


def given_options(args: list[str]) -> set[str]:
    """The loader options (as ``dest`` names) that appear in ``args``."""
    parser = weaver_loader_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    known, _ = parser.parse_known_args(args)
    return set(vars(known))


def file_groups(specs: list[str]) -> dict[str, list[str]]:
    """weaver's ``[name:]glob`` file arguments as ``{group: sorted files}`` (``_`` for an unnamed group)."""
    groups: dict[str, list[str]] = {}
    for spec in specs:
        name, pattern = spec.split(":", 1) if ":" in spec else ("_", spec)
        groups.setdefault(name, []).extend(glob.glob(pattern))
    return {name: sorted(files) for name, files in groups.items()}


def count_entries(path: str, treename: str | None = None) -> int:
    """Jets in a ROOT tree or a parquet file (headers only)."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    import uproot

    with uproot.open(path) as f:
        if treename is None:
            trees = [k for k, v in f.classnames().items() if v == "TTree"]
            if len(trees) != 1:
                raise LoaderError(f"{path}: needs `treename` in the data config: one TTree expected, found {trees}")
            treename = trees[0].split(";")[0]
        return f[treename].num_entries


def bytes_per_jet(data_config: str) -> int:
    """float32 bytes of one jet's padded inputs, as weaver holds them in memory."""
    with open(data_config) as f:
        inputs = (yaml.safe_load(f) or {}).get("inputs", {})
    return sum(4 * int(group.get("length") or 1) * len(group.get("vars", [])) for group in inputs.values())


def available_memory() -> int:
    """Bytes of memory available now (Linux ``MemAvailable``), else the physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@dataclass
class Fit:
    """What :func:`fit` decided: weaver options to add (before the user's) and why, one reason each."""

    options: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def set(self, option: str, value: object | None, reason: str) -> None:
        self.options += [option] if value is None else [option, str(value)]
        self.reasons.append(f"{option}{'' if value is None else ' ' + str(value)} ({reason})")


def _fewest_files_per_process(groups: dict[str, list[str]], processes: int) -> tuple[str, int]:
    """The group whose smallest per-process share (weaver's ``files[rank::processes]``) is smallest."""
    name = min(groups, key=lambda g: len(groups[g]))
    return name, len(groups[name]) // processes


def fit(args: list[str], user_args: list[str], processes: int = 1, treename: str | None = None) -> Fit:
    """The loader options to add to weaver's command ``args + user_args`` (the script's, then the user's).

    ``processes``: DDP processes per node (weaver splits the files of each group among them, then among each
    one's loader workers). Raises :class:`LoaderError` for settings that would crash weaver or repeat jets.
    """
    parser = weaver_loader_parser()
    opts, _ = parser.parse_known_args(args + user_args)
    user = given_options(user_args)
    result = Fit()
    if opts.predict or not opts.data_train:
        return result  # weaver's test loader reads whole files, one worker at most per file: nothing to fit

    train = file_groups(opts.data_train)
    val = file_groups(opts.data_val) if opts.data_val else train
    for groups, option in ((train, "--data-train"), (val, "--data-val")):
        name, share = _fewest_files_per_process(groups, processes)
        if share == 0:
            what = f"the class group '{name}'" if name != "_" else "the files"
            raise LoaderError(
                f"{option}: {what} has {len(groups[name])} file(s), fewer than the {processes} DDP processes that "
                f"weaver gives each its own files; run on fewer GPUs (DDP_NGPUS) or split the data into more files "
                f"(./get_datasets.py ... --generate --files-per-class {processes * max(opts.num_workers, 1)})"
            )

    # workers: each must get at least one file of every group of its process's share (0: the main process loads)
    workers = opts.num_workers
    allowed = min(_fewest_files_per_process(groups, processes)[1] for groups in (train, val))
    name = min(train, key=lambda g: len(train[g]))
    if workers > allowed:
        if "num_workers" in user:
            raise LoaderError(
                f"--num-workers {workers}: weaver gives each loader worker its own files of every class group, and "
                f"'{name}' has {len(train[name])} file(s) for {processes} process(es): use --num-workers {allowed} "
                f"or split the data into more files"
            )
        workers = allowed
        result.set("--num-workers", workers, f"{len(train[name])} file(s) in the class group '{name}'"
                   + (f" for {processes} processes" if processes > 1 else ""))  # fmt: skip

    entries = {path: count_entries(path, treename) for groups in (train, val) for files in groups.values()
               for path in files}  # fmt: skip
    train_share = (1.0 if opts.data_val else opts.train_val_split) * opts.data_fraction
    val_share = (1.0 if opts.data_val else 1 - opts.train_val_split) * opts.data_fraction
    n_train = int(sum(entries[p] for files in train.values() for p in files) * train_share)
    n_val = int(sum(entries[p] for files in val.values() for p in files) * val_share)
    smallest_train = min(entries[p] for files in train.values() for p in files) * train_share
    smallest_val = min(entries[p] for files in val.values() for p in files) * val_share

    # a loader worker makes whole batches from its own jets: a batch larger than its share repeats jets in it
    batch = opts.batch_size
    per_worker = min(worker_jets(train, entries, processes, workers, train_share))
    if batch > per_worker and "num_workers" not in user:
        fewer = max((w for w in range(1, workers) if min(worker_jets(train, entries, processes, w, train_share))
                     >= batch), default=None)  # fmt: skip
        if fewer is not None:
            workers = fewer
            per_worker = min(worker_jets(train, entries, processes, workers, train_share))
            result.set("--num-workers", workers, f"each worker makes batches of {batch} from its own jets")
    if batch > per_worker:
        if "batch_size" in user or per_worker < 1:
            raise LoaderError(
                f"--batch-size {batch}: a loader worker holds {int(per_worker)} training jets ({n_train} in all, "
                f"{processes} process(es), {workers} worker(s) each) and makes whole batches from them, so a batch "
                f"would repeat jets; pass a smaller --batch-size, fewer --num-workers, or make more jets"
            )
        batch = int(per_worker)
        result.set("--batch-size", batch, f"a loader worker holds {batch} of the {n_train} training jets")

    # in memory when the training set fits: read once, then every batch comes from memory
    in_memory = opts.in_memory
    fetch_step = opts.fetch_step
    size = n_train * bytes_per_jet(opts.data_config) if opts.data_config else 0
    budget = min(IN_MEMORY_SHARE * available_memory(), IN_MEMORY_MAX_BYTES)
    if not in_memory and "in_memory" not in user and opts.data_config and size <= budget:
        in_memory = True
        result.set("--in-memory", None, f"the {n_train} training jets take {size / 2**30:.2f} GiB padded")
    if in_memory and fetch_step < 1 and "fetch_step" not in user:
        fetch_step = 1
        result.set("--fetch-step", 1, "in memory, weaver keeps only what the first fetch read")
    elif not in_memory and "fetch_step" not in user:
        wanted = min(1.0, max(fetch_step, JETS_PER_FETCH / per_worker, 1 / max(smallest_train, 1)))
        if wanted > fetch_step:
            fetch_step = float(f"{wanted:.3g}")
            result.set("--fetch-step", fetch_step, f"about {min(JETS_PER_FETCH, int(per_worker))} jets per fetch "
                       "and worker: every fetch opens and preprocesses all its files")  # fmt: skip
    if fetch_step < 1 and fetch_step * smallest_train < 1 and not opts.fetch_by_files:
        raise LoaderError(
            f"--fetch-step {fetch_step}: a file holds {int(smallest_train)} training jets, and weaver reads at least "
            f"one per file and fetch, so jets would repeat; use --fetch-step {1 / smallest_train:.3g} or more"
        )

    val_in_memory = in_memory if opts.in_memory_val is None else opts.in_memory_val
    fetch_step_val = fetch_step if opts.fetch_step_val is None else opts.fetch_step_val
    if not val_in_memory and fetch_step_val < 1 and fetch_step_val * smallest_val < 1 and not opts.fetch_by_files:
        if "fetch_step_val" in user or "fetch_step" in user:
            raise LoaderError(
                f"--fetch-step {fetch_step_val} for validation: a file holds {int(smallest_val)} validation jets, "
                f"and weaver reads at least one per file and fetch, so validation would repeat jets; use "
                f"--fetch-step-val {1 / max(smallest_val, 1):.3g} or more"
            )
        result.set("--fetch-step-val", 1, f"a validation file holds {int(smallest_val)} jets: smaller fetches "
                   "would read some of them twice")  # fmt: skip

    # validation epochs no longer than the data: a worker that cycles scores the same jets twice
    val_workers = max(1, min(workers, min(len(files) for files in val.values()) // processes))
    val_per_worker = int(min(worker_jets(val, entries, processes, val_workers, val_share)))
    batch_val = opts.batch_size_val or batch
    if batch_val > val_per_worker:
        if "batch_size_val" in user or val_per_worker < 1:
            raise LoaderError(
                f"--batch-size-val {batch_val}: a loader worker holds {val_per_worker} of the {n_val} validation jets "
                f"and makes whole batches from them, so a batch would repeat jets"
            )
        batch_val = val_per_worker
        result.set("--batch-size-val", batch_val, f"a loader worker holds {batch_val} of the {n_val} validation jets")
    distinct_val = val_workers * (val_per_worker // batch_val) * batch_val  # per process, in whole batches
    if opts.steps_per_epoch_val is None and opts.samples_per_epoch_val is not None:
        if opts.samples_per_epoch_val > distinct_val:
            if "samples_per_epoch_val" in user:
                raise LoaderError(
                    f"--samples-per-epoch-val {opts.samples_per_epoch_val}: the validation files hold {n_val} jets "
                    f"({processes} process(es), {val_workers} worker(s) each), so validation would score the same "
                    f"jets again; ask for at most {distinct_val}"
                )
            asked = opts.samples_per_epoch_val
            result.set("--samples-per-epoch-val", distinct_val,
                       f"the validation files hold {n_val} jets; {asked} would repeat them")  # fmt: skip
    one_pass = max(workers, 1) * (int(per_worker) // batch) * batch
    if opts.steps_per_epoch is None and "samples_per_epoch" not in user:
        if opts.samples_per_epoch is None and in_memory:
            result.set("--samples-per-epoch", one_pass, "weaver needs an epoch length in memory: one pass")
        elif opts.samples_per_epoch is not None and opts.samples_per_epoch > one_pass:
            result.set("--samples-per-epoch", one_pass, f"one pass over the {n_train} training jets per epoch")
    epochs_set = opts.steps_per_epoch is not None or opts.samples_per_epoch is not None
    if (epochs_set or "--samples-per-epoch" in result.options) and opts.steps_per_epoch_val is None \
            and opts.samples_per_epoch_val is None:
        # weaver would derive the validation epoch from the training one (--train-val-split), repeating jets
        result.set("--samples-per-epoch-val", distinct_val, f"the {n_val} validation jets, once each")
    return result


def worker_jets(groups: dict[str, list[str]], entries: dict[str, int], processes: int, workers: int,
                share: float) -> list[float]:
    """Jets each loader worker of each process reads: weaver deals each group's files to the processes
    (``files[rank::processes]``), then each process's to its workers (``[worker::workers]``)."""
    jets = []
    for rank in range(processes):
        for worker in range(max(workers, 1)):
            files = [f for group in groups.values() for f in group[rank::processes][worker :: max(workers, 1)]]
            jets.append(sum(entries[f] for f in files) * share)
    return jets


def describe(fitted: Fit) -> str:
    """The one line the train scripts print: the options fitted, and why."""
    if not fitted.options:
        return "loader: the script's settings fit the data"
    return "loader: fitted to the data: " + "; ".join(fitted.reasons) + " (your own options win)"

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

from jetattn.weaver_options import given_options, weaver_parser

# Jets one loader worker should read per fetch when the data is streamed: a fetch costs the opening and the
# preprocessing of its files, so a fetch of fewer jets is paid for many times over (docs/benchmarks.md, loader).
JETS_PER_FETCH = 50_000
# The training set goes into memory (weaver's --in-memory) when its padded inputs take less than this share of
# the memory available, and less than IN_MEMORY_MAX_BYTES.
IN_MEMORY_SHARE = 0.25
IN_MEMORY_MAX_BYTES = 16 * 2**30


class LoaderError(Exception):
    """Settings weaver would crash on, or that would repeat jets: the one line the user sees."""


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
    opts, _ = weaver_parser().parse_known_args(args + user_args)
    if opts.predict or not opts.data_train:
        return Fit()  # weaver's test loader reads whole files, one worker at most per file: nothing to fit
    fitter = _Fitter(opts, set(given_options(user_args)), processes, treename)
    fitter.workers()
    fitter.batches()
    fitter.memory_and_fetches()
    fitter.validation()
    fitter.epochs()
    return fitter.result


class _Fitter:
    """The stages of :func:`fit`, in order, on one command: each reads what the earlier ones decided."""

    def __init__(self, opts: argparse.Namespace, user: set[str], processes: int, treename: str | None) -> None:
        self.opts, self.user, self.processes, self.result = opts, user, processes, Fit()
        self.train = file_groups(opts.data_train)
        self.val = file_groups(opts.data_val) if opts.data_val else self.train
        for groups, option in ((self.train, "--data-train"), (self.val, "--data-val")):
            name, share = _fewest_files_per_process(groups, processes)
            if share == 0:
                what = f"the class group '{name}'" if name != "_" else "the files"
                raise LoaderError(
                    f"{option}: {what} has {len(groups[name])} file(s), fewer than the {processes} DDP processes "
                    f"that weaver gives each its own files; run on fewer GPUs (DDP_NGPUS) or split the data into "
                    f"more files (./get_datasets.py ... --generate --files-per-class "
                    f"{processes * max(opts.num_workers, 1)})"
                )
        self.entries = {
            path: count_entries(path, treename)
            for groups in (self.train, self.val)
            for files in groups.values()
            for path in files
        }
        self.train_share = (1.0 if opts.data_val else opts.train_val_split) * opts.data_fraction
        self.val_share = (1.0 if opts.data_val else 1 - opts.train_val_split) * opts.data_fraction
        self.n_train = self._jets(self.train, self.train_share, sum)
        self.n_val = self._jets(self.val, self.val_share, sum)
        self.n_workers, self.batch, self.in_memory, self.fetch_step = opts.num_workers, opts.batch_size, False, 0.0

    def _jets(self, groups: dict[str, list[str]], share: float, how) -> float:
        return how(self.entries[p] for files in groups.values() for p in files) * share

    def _per_worker(self, workers: int) -> float:
        return min(worker_jets(self.train, self.entries, self.processes, workers, self.train_share))

    def workers(self) -> None:
        """Each worker must get at least one file of every group of its process's share (0: the main process)."""
        allowed = min(_fewest_files_per_process(groups, self.processes)[1] for groups in (self.train, self.val))
        name = min(self.train, key=lambda g: len(self.train[g]))
        if self.n_workers <= allowed:
            return
        if "num_workers" in self.user:
            raise LoaderError(
                f"--num-workers {self.n_workers}: weaver gives each loader worker its own files of every class group, "
                f"and '{name}' has {len(self.train[name])} file(s) for {self.processes} process(es): use "
                f"--num-workers {allowed} or split the data into more files"
            )
        self.n_workers = allowed
        processes = f" for {self.processes} processes" if self.processes > 1 else ""
        self.result.set(
            "--num-workers", allowed, f"{len(self.train[name])} file(s) in the class group '{name}'" + processes
        )

    def batches(self) -> None:
        """A loader worker makes whole batches from its own jets: a batch larger than its share repeats jets."""
        batch, per_worker = self.batch, self._per_worker(self.n_workers)
        if batch > per_worker and "num_workers" not in self.user:
            fewer = max((w for w in range(1, self.n_workers) if self._per_worker(w) >= batch), default=None)
            if fewer is not None:
                self.n_workers, per_worker = fewer, self._per_worker(fewer)
                self.result.set("--num-workers", fewer, f"each worker makes batches of {batch} from its own jets")
        if batch > per_worker:
            if "batch_size" in self.user or per_worker < 1:
                raise LoaderError(
                    f"--batch-size {batch}: a loader worker holds {int(per_worker)} training jets ({int(self.n_train)} "
                    f"in all, {self.processes} process(es), {self.n_workers} worker(s) each) and makes whole batches "
                    f"from them, so a batch would repeat jets; pass a smaller --batch-size, fewer --num-workers, or "
                    f"make more jets"
                )
            self.batch = int(per_worker)
            self.result.set(
                "--batch-size",
                self.batch,
                f"a loader worker holds {self.batch} of the {int(self.n_train)} training jets",
            )

    def memory_and_fetches(self) -> None:
        """In memory when the training set fits (read once); else fetches of many jets, and never one that reads
        a jet twice."""
        opts, user = self.opts, self.user
        self.in_memory, self.fetch_step = opts.in_memory, opts.fetch_step
        size = self.n_train * bytes_per_jet(opts.data_config) if opts.data_config else 0
        budget = min(IN_MEMORY_SHARE * available_memory(), IN_MEMORY_MAX_BYTES)
        if not self.in_memory and "in_memory" not in user and opts.data_config and size <= budget:
            self.in_memory = True
            self.result.set(
                "--in-memory", None, f"the {int(self.n_train)} training jets take {size / 2**30:.2f} GiB padded"
            )
        smallest = self._jets(self.train, self.train_share, min)
        if self.in_memory and self.fetch_step < 1 and "fetch_step" not in user:
            self.fetch_step = 1
            self.result.set("--fetch-step", 1, "in memory, weaver keeps only what the first fetch read")
        elif not self.in_memory and "fetch_step" not in user:
            per_worker = self._per_worker(self.n_workers)
            wanted = min(1.0, max(self.fetch_step, JETS_PER_FETCH / per_worker, 1 / max(smallest, 1)))
            if wanted > self.fetch_step:
                self.fetch_step = float(f"{wanted:.3g}")
                jets = min(JETS_PER_FETCH, int(per_worker))
                reason = f"about {jets} jets per fetch and worker: every fetch opens and preprocesses all its files"
                self.result.set("--fetch-step", self.fetch_step, reason)
        if self.fetch_step < 1 and self.fetch_step * smallest < 1 and not opts.fetch_by_files:
            raise LoaderError(
                f"--fetch-step {self.fetch_step}: a file holds {int(smallest)} training jets, and weaver reads at "
                f"least one per file and fetch, so jets would repeat; use --fetch-step {1 / smallest:.3g} or more"
            )

    def validation(self) -> None:
        """Validation fetches, batches and epochs no larger than the validation jets: nothing scored twice."""
        opts, user, n_val = self.opts, self.user, int(self.n_val)
        smallest = self._jets(self.val, self.val_share, min)
        in_memory = self.in_memory if opts.in_memory_val is None else opts.in_memory_val
        fetch_step = self.fetch_step if opts.fetch_step_val is None else opts.fetch_step_val
        if not in_memory and fetch_step < 1 and fetch_step * smallest < 1 and not opts.fetch_by_files:
            if "fetch_step_val" in user or "fetch_step" in user:
                raise LoaderError(
                    f"--fetch-step {fetch_step} for validation: a file holds {int(smallest)} validation jets, and "
                    f"weaver reads at least one per file and fetch, so validation would repeat jets; use "
                    f"--fetch-step-val {1 / max(smallest, 1):.3g} or more"
                )
            self.result.set(
                "--fetch-step-val",
                1,
                f"a validation file holds {int(smallest)} jets: smaller fetches would read some of them twice",
            )
        val_workers = max(1, min(self.n_workers, min(len(files) for files in self.val.values()) // self.processes))
        per_worker = int(min(worker_jets(self.val, self.entries, self.processes, val_workers, self.val_share)))
        batch = opts.batch_size_val or self.batch
        if batch > per_worker:
            if "batch_size_val" in user or per_worker < 1:
                raise LoaderError(
                    f"--batch-size-val {batch}: a loader worker holds {per_worker} of the {n_val} validation jets "
                    f"and makes whole batches from them, so a batch would repeat jets"
                )
            batch = per_worker
            self.result.set("--batch-size-val", batch, f"a loader worker holds {batch} of the {n_val} validation jets")
        self.distinct_val = val_workers * (per_worker // batch) * batch  # per process, in whole batches
        asked = opts.samples_per_epoch_val
        if opts.steps_per_epoch_val is None and asked is not None and asked > self.distinct_val:
            if "samples_per_epoch_val" in user:
                # without --data-val the validation jets are the training files' last 1 - train_val_split
                more = "" if opts.data_val else ", or take more of the training files with --train-val-split"
                raise LoaderError(
                    f"--samples-per-epoch-val {asked}: the validation files hold {n_val} jets ({self.processes} "
                    f"process(es), {val_workers} worker(s) each), so validation would score the same jets again; "
                    f"ask for at most {self.distinct_val}{more}"
                )
            self.result.set(
                "--samples-per-epoch-val",
                self.distinct_val,
                f"the validation files hold {n_val} jets; {asked} would repeat them",
            )

    def epochs(self) -> None:
        """One pass over the training jets per epoch at most; weaver needs an epoch length for --in-memory, and
        derives a validation epoch from the training one unless given one."""
        opts = self.opts
        one_pass = max(self.n_workers, 1) * (int(self._per_worker(self.n_workers)) // self.batch) * self.batch
        if opts.steps_per_epoch is None and "samples_per_epoch" not in self.user:
            if opts.samples_per_epoch is None and self.in_memory:
                self.result.set("--samples-per-epoch", one_pass, "weaver needs an epoch length in memory: one pass")
            elif opts.samples_per_epoch is not None and opts.samples_per_epoch > one_pass:
                self.result.set(
                    "--samples-per-epoch", one_pass, f"one pass over the {int(self.n_train)} training jets per epoch"
                )
        epochs_set = opts.steps_per_epoch is not None or opts.samples_per_epoch is not None
        if (
            (epochs_set or "--samples-per-epoch" in self.result.options)
            and opts.steps_per_epoch_val is None
            and opts.samples_per_epoch_val is None
        ):
            # weaver would derive the validation epoch from the training one (--train-val-split), repeating jets
            self.result.set(
                "--samples-per-epoch-val", self.distinct_val, f"the {int(self.n_val)} validation jets, once each"
            )


def worker_jets(
    groups: dict[str, list[str]], entries: dict[str, int], processes: int, workers: int, share: float
) -> list[float]:
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

"""Jets/s that weaver's own data loader delivers for training, per loader setting, beside the model's training rate.

    python -m jetattn.bench loader [--data-config YAML] [--files 'HToBB:/path/HToBB_*.root' ...]
                                   [--num-workers 0 1 2 ...] [--fetch-step 0.01 1 ...] [--fetch-by-files]
                                   [--in-memory] [--batch-size 512] [--profile-fetch] [--json out.json]

The loader is weaver's ``train_load``, called with the options a train script passes (parsed by weaver's own
argument parser and completed as weaver's ``main`` completes them), so ``SimpleIterDataset`` and ``DataLoader``
are built exactly as in a training run. ``--files`` takes weaver's ``--data-train`` syntax; without it, the
training files of ``$DATADIR_JetClass`` (env.sh), one group per class as ``train_JetClass.sh`` passes them.
A setting under which weaver would crash (more workers than files in a group) is a row that says so.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path

import torch

from jetattn.datasets.processes import JETCLASS_FILE_GROUPS
from jetattn.io import write_json
from jetattn.loader_settings import file_groups

ROOT = Path(__file__).resolve().parents[1]


def jetclass_train_files(datadir: str) -> list[str]:
    """``train_JetClass.sh``'s ``--data-train``: one group per class in the training folder of ``datadir``."""
    train_dir = next(
        (f"{datadir}/{name}" for name in ("train_100M", "train") if os.path.isdir(f"{datadir}/{name}")),
        f"{datadir}/train_100M",
    )
    return [f"{name}:{train_dir}/{name}_*.root" for name in JETCLASS_FILE_GROUPS]


def worker_problem(groups: dict[str, list[str]], num_workers: int) -> str | None:
    """Why weaver's loader would fail with these files and workers, or None. weaver gives each loader worker
    ``files[worker_id::num_workers]`` of every group and asserts that none is empty, after lowering the workers
    to the total number of files (``train_load``)."""
    workers = min(num_workers, max(1, sum(len(found) for found in groups.values())))
    smallest = min(groups, key=lambda name: len(groups[name]))
    if workers > len(groups[smallest]):
        return (
            f"{workers} loader workers but group {smallest!r} has {len(groups[smallest])} file(s): weaver's "
            f"worker {len(groups[smallest])} would get none (AssertionError); use --num-workers "
            f"{len(groups[smallest])} or split the files"
        )
    return None


def weaver_args(
    data_config: str,
    files: list[str],
    num_workers: int,
    fetch_step: float,
    batch_size: int,
    steps: int,
    fetch_by_files: bool = False,
    in_memory: bool = False,
) -> argparse.Namespace:
    """weaver's options for a training run on ``files``, as ``train.py``'s parser and ``main`` leave them.
    ``--data-val`` is given (as the JetClass script does), so training reads each file whole: range (0, 1);
    ``--steps-per-epoch`` puts the dataset in weaver's infinity mode, as the scripts' ``--samples-per-epoch``."""
    from weaver.train import parser

    argv = [
        "--data-config",
        data_config,
        "--data-train",
        *files,
        "--data-val",
        *files,
        "--num-workers",
        str(num_workers),
        "--fetch-step",
        str(fetch_step),
        "--batch-size",
        str(batch_size),
        "--steps-per-epoch",
        str(steps),
        "--network-config",
        "none.py",
    ]
    argv += ["--fetch-by-files"] * fetch_by_files + ["--in-memory"] * in_memory
    args = parser.parse_args(argv)
    # what weaver's main() completes before train_load
    args.batch_size_val = args.batch_size
    args.steps_per_epoch_val = round(steps * (1 - args.train_val_split) / args.train_val_split)
    args.data_config_val = args.data_config
    args.fetch_step_val, args.data_split_val, args.in_memory_val = args.fetch_step, args.data_split_num, in_memory
    args.local_rank = None
    return args


def time_loader(args: argparse.Namespace, batches: int, warmup: int) -> dict:
    """Jets/s of weaver's training loader over ``batches`` batches after ``warmup`` (workers' start and the
    first fetches), and the seconds to the first batch. The warm-up is at least the batches the workers hold
    ready (2 per worker, torch's prefetch) plus one: the timed batches are made while timed."""
    from tqdm import tqdm
    from weaver.train import train_load

    train_loader = train_load(args)[0]
    warmup = max(warmup, (train_loader.prefetch_factor or 0) * train_loader.num_workers + 1)
    start = time.perf_counter()
    iterator = iter(train_loader)
    first_s = None
    try:
        for _ in tqdm(range(warmup), desc="warm-up", leave=False):
            next(iterator)
            first_s = first_s or time.perf_counter() - start
        start = time.perf_counter()
        for _ in tqdm(range(batches), desc=f"workers {args.num_workers} fetch {args.fetch_step}", leave=False):
            next(iterator)
        seconds = time.perf_counter() - start
    finally:
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
    return {
        "jets_per_s": batches * args.batch_size / seconds,
        "first_batch_s": first_s,
        "loader_workers": train_loader.num_workers,
    }


def profile_fetch(args: argparse.Namespace) -> dict:
    """One fetch of weaver's training dataset, in this process: files opened, jets read, and the seconds of
    reading (uproot/pyarrow) and of preprocessing (new variables, standardisation, padding)."""
    from weaver.train import train_load
    from weaver.utils.data.fileio import _read_files
    from weaver.utils.dataset import _preprocess

    dataset = train_load(args)[0].dataset
    fetch = iter(dataset)  # an iterator as a worker builds it (it prefetches its first fetch in a thread)
    if dataset._async_load and fetch.prefetch is not None:
        fetch.prefetch.result()  # let that thread finish first: it would share the GIL with the timed fetch
    filelist, ranges = fetch.load_filelist_and_ranges[0]
    config, options = dataset.config, fetch._sampler_options
    load_branches = config.train_load_branches
    start = time.perf_counter()
    table = _read_files(
        filelist,
        load_branches,
        ranges,
        treename=config.treename,
        branch_magic=config.branch_magic,
        file_magic=config.file_magic,
    )
    read_s = time.perf_counter() - start
    jets = len(table)
    start = time.perf_counter()
    _preprocess(table, config, options)
    preprocess_s = time.perf_counter() - start
    # a worker reads and preprocesses one fetch at a time: its rate cannot exceed this, whatever the window timed
    return {
        "fetches_per_pass": len(fetch.load_filelist_and_ranges),
        "files_per_fetch": len(filelist),
        "jets_per_fetch": jets,
        "read_s": read_s,
        "preprocess_s": preprocess_s,
        "fetch_bound_jets_per_s": jets / (read_s + preprocess_s),
    }


def model_train_rate(batch_size: int, steps: int) -> float | None:
    """CPU training jets/s of the paper's ParT (JetClass ``full``), as ``bench attention`` measures it."""
    from weaver.nn.model.ParticleTransformer import ParticleTransformer as WeaverParT

    from jetattn.bench import Variant, measure
    from jetattn.measure import jetclass_like_batch

    torch.manual_seed(0)
    state = WeaverParT(input_dim=17, num_classes=10, fc_params=[]).state_dict()
    row = measure(Variant("ParT"), state, jetclass_like_batch(batch_size), torch.device("cpu"), steps, 1, ("train",))
    return row["train_jets_per_s"]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jetattn.bench loader", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-config",
        default=str(ROOT / "data/JetClass/JetClass_full.yaml"),
        help="weaver's --data-config (default: JetClass_full.yaml)",
    )
    parser.add_argument(
        "--files",
        nargs="+",
        help="weaver's --data-train: 'name:glob' per group, or globs "
        "(default: the JetClass training files of $DATADIR_JetClass, one group per class)",
    )
    parser.add_argument(
        "--num-workers",
        type=int,
        nargs="+",
        default=[2],
        help="loader workers, one row each (default 2, train_JetClass.sh's)",
    )
    parser.add_argument(
        "--fetch-step",
        type=float,
        nargs="+",
        default=[0.01],
        help="weaver's --fetch-step, one row each (default 0.01, the recipe's)",
    )
    parser.add_argument("--fetch-by-files", action="store_true", help="weaver's --fetch-by-files on every row")
    parser.add_argument("--in-memory", action="store_true", help="weaver's --in-memory on every row")
    parser.add_argument("--batch-size", type=int, default=512, help="default 512, the scripts' ParT batch")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per row")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches first (workers start, first fetch)")
    parser.add_argument(
        "--profile-fetch",
        action="store_true",
        help="also time one fetch's reading and preprocessing, in this process, per fetch step",
    )
    parser.add_argument("--model-steps", type=int, default=2, help="timed ParT training steps (0: no model rate)")
    parser.add_argument("--model-batch", type=int, default=64, help="batch of the ParT training steps")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.files is None:
        datadir = os.environ.get("DATADIR_JetClass")
        if not datadir:
            parser.error("no --files and no $DATADIR_JetClass (source env.sh, or pass --files 'name:glob' ...)")
        args.files = jetclass_train_files(datadir)
    unmatched = [item for item in args.files if not file_groups([item])[item.rpartition(":")[0] or "_"]]
    if unmatched:
        parser.error(f"--files: no file matches {' '.join(unmatched)}")
    if not os.path.isfile(args.data_config):
        parser.error(f"--data-config {args.data_config}: no such file")
    if min(args.num_workers) < 0 or args.batches < 1 or args.batch_size < 1:
        parser.error("--num-workers must be ≥ 0, --batches and --batch-size ≥ 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.getLogger("weaver").setLevel(logging.WARNING)
    groups = file_groups(args.files)
    print(
        f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load "
        f"{os.getloadavg()[0]:.1f}; {sum(map(len, groups.values()))} files in {len(groups)} group(s); "
        f"{os.path.basename(args.data_config)}; batch {args.batch_size}"
    )
    rows = []
    for fetch_step in args.fetch_step:
        for num_workers in args.num_workers:
            rows.append(loader_row(args, groups, num_workers, fetch_step))
            print_row(rows[-1])
    model_rate = model_train_rate(args.model_batch, args.model_steps) if args.model_steps > 0 else None
    if model_rate is not None:
        print(
            f"model alone: ParT (full) trains at {model_rate:.1f} jets/s on this CPU (batch {args.model_batch}, "
            f"{args.model_steps} steps); loader/model above is the margin"
        )
    for row in rows:
        row["model_train_jets_per_s"] = model_rate
    if args.json:
        write_json(
            args.json,
            {
                "rows": rows,
                "command": " ".join(["python -m jetattn.bench loader", *(argv or [])]),
                "cpu": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
                "load_average": os.getloadavg()[0],
                "torch": torch.__version__,
            },
        )
    return 0


def loader_row(args: argparse.Namespace, groups: dict, num_workers: int, fetch_step: float) -> dict:
    """One setting: weaver's loader timed with ``num_workers`` and ``fetch_step`` (or why it cannot run)."""
    row = {
        "data_config": os.path.basename(args.data_config),
        "files": sum(map(len, groups.values())),
        "groups": len(groups),
        "num_workers": num_workers,
        "fetch_step": fetch_step,
        "fetch_by_files": args.fetch_by_files,
        "in_memory": args.in_memory,
        "batch": args.batch_size,
    }
    problem = worker_problem(groups, num_workers)
    if problem is not None:
        return {**row, "error": problem}
    batches = args.warmup + args.batches
    opts = weaver_args(
        args.data_config,
        args.files,
        num_workers,
        fetch_step,
        args.batch_size,
        batches,
        args.fetch_by_files,
        args.in_memory,
    )
    row.update(time_loader(opts, args.batches, args.warmup))
    if args.profile_fetch and num_workers == args.num_workers[0]:
        row.update(profile_fetch(opts))
    return row


def print_row(row: dict) -> None:
    setting = (
        f"workers {row['num_workers']} fetch-step {row['fetch_step']:g}"
        + " by-files" * row["fetch_by_files"]
        + " in-memory" * row["in_memory"]
    )
    if "error" in row:
        print(f"{setting:40s} weaver would crash: {row['error']}", flush=True)
        return
    line = f"{setting:40s} {row['jets_per_s']:9.1f} jets/s  first batch {row['first_batch_s']:.1f} s"
    if "read_s" in row:
        line += (
            f"  | one fetch: {row['files_per_fetch']} files, {row['jets_per_fetch']} jets, read "
            f"{row['read_s']:.3f} s, preprocess {row['preprocess_s']:.3f} s ({row['fetch_bound_jets_per_s']:.0f} "
            f"jets/s per worker at most), {row['fetches_per_pass']} fetches per pass"
        )
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())

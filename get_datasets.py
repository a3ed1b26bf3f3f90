#!/usr/bin/env python3
"""Download (or generate with Pythia) a jet-tagging dataset and point env.sh's DATADIR_<dataset> at it; or
download the official pre-trained ParT and ParticleNet checkpoints into models/ (for the FineTune models).

    ./get_datasets.py TopLandscape                     # -> ./datasets/TopLandscape
    ./get_datasets.py JetClass --parts val test        # 2 of the 12 JetClass archives (all: ~190 GB)
    ./get_datasets.py QuarkGluon --generate --num-jets 20000 --workers 2
    ./get_datasets.py DiHiggs --generate --num-events 20000   # gg -> H -> hh -> 4b vs QCD + ttbar (generated only)
    ./get_datasets.py models                           # -> models/ParT_kin.pt ... ParticleNet_full.pt (~30 MB)
    ./get_datasets.py models --parts ParT kin          # models/ParT_kin.pt only

A partial download is resumed by rerunning the same command. SIGTERM or SIGHUP (a batch system's limit, a closed
terminal) stops it as Ctrl-C does (a partial download kept, unfinished generated files deleted), with exit status
128 + the signal: 143 for SIGTERM. Set JETATTN_MIRROR (or --mirror) to a base URL holding the tar (or .pt) files to
download from somewhere other than Zenodo/CERN (GitHub for the models).
A checkpoint is kept only if it loads with strict=True into our network file built from its JetClass YAML.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from jetattn.deps import exit_if_missing  # standard library only: works outside the environment too

with exit_if_missing():
    from jetattn.datasets import checkpoints, download, signals
    from jetattn.datasets.detector import DETECTORS
    from jetattn.datasets.envfile import set_datadir

REPO = Path(__file__).resolve().parent
MODELS = "models"  # the dataset argument that downloads the official checkpoints instead
DEFAULT_SPLIT = (0.8, 0.1, 0.1)
DIHIGGS = "DiHiggs"  # events rather than jets, and generated only
_GENERATE_ONLY = ("num_jets", "num_events", "mass", "seed", "workers", "split", "sqrts", "files_per_class", "detector")


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated fractions like 0.8,0.1,0.1, got {text!r}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "dataset",
        choices=[*download.ARCHIVES, DIHIGGS, MODELS],
        help=f"dataset to download or generate, or {MODELS}: the official pre-trained checkpoints",
    )
    parser.add_argument(
        "-d", "--basedir", type=Path, help="base folder (default ./datasets; for models: models/ of the repo)"
    )
    parser.add_argument("-e", "--envfile", type=Path, help="env file to update (default: env.sh of the repo)")
    parser.add_argument("-f", "--force", action="store_true", help="download and unpack again even if already done")
    parser.add_argument(
        "--parts",
        nargs="+",
        metavar="PART",
        help="JetClass: all (default), train (= train0..train9), train0 ... train9, val, test. "
        "models: ParT, ParticleNet, kin, kinpid, full, which narrow each other "
        "(default: all six; 'ParT kin' is ParT_kin.pt alone)",
    )
    parser.add_argument(
        "--mirror",
        default=os.environ.get(download.MIRROR_ENV),
        help=f"base URL holding the tar or .pt files (default: ${download.MIRROR_ENV}, else the official sources)",
    )
    parser.add_argument("--delete-archives", action="store_true", help="delete each tar once unpacked")

    gen = parser.add_argument_group("generation (pip install -e .[generate])")
    gen.add_argument("--generate", action="store_true", help="generate jets with Pythia instead of downloading")
    gen.add_argument("--num-jets", type=int, help="jets to generate per class (required with --generate)")
    gen.add_argument(
        "--num-events", type=int, help=f"{DIHIGGS}: events per class, signal and background (required with --generate)"
    )
    gen.add_argument("--mass", type=float, help=f"{DIHIGGS}: the heavy scalar's mass in GeV (default 1000)")
    gen.add_argument("--seed", type=int, help="random seed (default 42)")
    gen.add_argument("--workers", type=int, help="parallel generator processes (default: all cores)")
    gen.add_argument("--split", type=_fractions, help="train,val,test fractions (default 0.8,0.1,0.1)")
    gen.add_argument("--sqrts", type=float, help="collision energy in GeV (default 14000)")
    gen.add_argument(
        "--files-per-class",
        type=int,
        metavar="N",
        help="JetClass: files per class and split (default 4, 8 from 8000 jets per class: enough for the "
        "train scripts' loader workers and DDP processes, each of which weaver gives its own files)",
    )
    gen.add_argument(
        "--detector",
        choices=DETECTORS,
        help="detector model: Delphes-like particle flow with the CMS or ATLAS card, each particle "
        "smeared alone (simple), or generator level (none); default: the original sample's (JetClass "
        "cms, TopLandscape atlas, QuarkGluon none; docs/generator.md)",
    )

    args = parser.parse_args(argv)
    if args.dataset == MODELS:
        for option in ("generate", "delete_archives", "envfile"):
            if getattr(args, option):
                parser.error(f"--{option.replace('_', '-')} does not apply to {MODELS}")
    if args.dataset == DIHIGGS:
        if not args.generate:
            parser.error(f"{DIHIGGS} is generated only: add --generate --num-events N")
        if args.num_jets is not None:
            parser.error(f"--num-jets does not apply to {DIHIGGS}, which counts events: use --num-events")
        if args.detector is not None:
            parser.error(f"--detector applies to the jet datasets; {DIHIGGS} uses the simple detector model")
        if args.num_events is None:
            parser.error("--generate needs --num-events")
        if args.files_per_class is not None:
            parser.error(f"--files-per-class applies to JetClass ({DIHIGGS} is one file per split)")
    elif args.generate:
        for option in ("num_events", "mass"):
            if getattr(args, option) is not None:
                parser.error(
                    f"--{option.replace('_', '-')} applies to {DIHIGGS} only ({args.dataset} counts jets: --num-jets)"
                )
        if args.num_jets is None:
            parser.error("--generate needs --num-jets")
        if args.files_per_class is not None and args.dataset != "JetClass":
            parser.error(
                f"--files-per-class applies to JetClass ({args.dataset} is one file per split, as the official one)"
            )
        if args.files_per_class is not None and args.files_per_class <= 0:
            parser.error(f"--files-per-class must be positive, got {args.files_per_class}")
    if args.generate:
        for option in ("parts", "delete_archives", "force"):
            if getattr(args, option):
                parser.error(f"--{option.replace('_', '-')} applies to downloads, not to --generate")
    else:
        given = [name for name in _GENERATE_ONLY if getattr(args, name) is not None]
        if given:
            parser.error(f"--{given[0].replace('_', '-')} needs --generate")
    if args.parts and args.dataset not in ("JetClass", MODELS):
        parser.error(f"--parts applies to JetClass and {MODELS} only ({args.dataset} is a single archive)")
    for part in args.parts or []:
        choices = checkpoints.part_choices() if args.dataset == MODELS else download.part_choices(args.dataset)
        if part not in choices:
            parser.error(f"--parts: {args.dataset} has no part {part!r} (choose from {', '.join(choices)})")
    if args.mirror and not args.mirror.startswith(("http://", "https://")):
        parser.error(f"--mirror/{download.MIRROR_ENV} must be an http(s) URL, got {args.mirror!r}")
    if args.basedir is None:
        args.basedir = REPO / "models" if args.dataset == MODELS else Path("datasets")
    if args.envfile is None:
        args.envfile = REPO / "env.sh"
    return args


def generate(args: argparse.Namespace) -> Path:
    """Run the Pythia generator; returns the dataset folder it wrote."""
    seed = 42 if args.seed is None else args.seed
    split = DEFAULT_SPLIT if args.split is None else args.split
    sqrt_s = 14000.0 if args.sqrts is None else args.sqrts
    if args.dataset == DIHIGGS:
        from jetattn.datasets.dihiggs import generate_dihiggs

        return generate_dihiggs(
            args.basedir,
            args.num_events,
            mass=1000.0 if args.mass is None else args.mass,
            seed=seed,
            workers=args.workers,
            split=split,
            sqrt_s=sqrt_s,
        )
    from jetattn.datasets.generate import generate_dataset  # needs pythia8 and fastjet: imported only here

    return generate_dataset(
        args.dataset,
        outdir=args.basedir,
        num_jets=args.num_jets,
        seed=seed,
        workers=args.workers,
        split=split,
        sqrt_s=sqrt_s,
        files_per_class=args.files_per_class,
        detector=args.detector,
    )


def validation_note(dataset: str, split: tuple[float, float, float]) -> str | None:
    """QuarkGluon keeps its validation jets in the train file, as the official files do, and
    ./train_QuarkGluon.sh splits them off with a --train-val-split made for DEFAULT_SPLIT: for any other split,
    the option that gives back the validation fraction asked for (else training and validation silently get
    other shares than the split's)."""
    if dataset != "QuarkGluon":
        return None
    train, val = split[0], split[1]
    script_share = DEFAULT_SPLIT[0] / (DEFAULT_SPLIT[0] + DEFAULT_SPLIT[1])
    share = train / (train + val)
    if f"{share:.4g}" == f"{script_share:.4g}":
        return None
    script = f"./train_QuarkGluon.sh validates on the last {1 - script_share:.1%} of train_file_0.root"
    if val == 0:
        return f"note: this split has no validation jets, but {script} (--train-val-split {script_share:.4g})"
    return (
        f"note: {script} (--train-val-split {script_share:.4g}, made for the default split); for this split's "
        f"{val:g} validation fraction pass --train-val-split {share:.4g}"
    )


def get_models(args: argparse.Namespace) -> str:
    """Download and verify the official checkpoints `args.parts` names; returns the closing line."""
    selected = checkpoints.select_checkpoints(args.parts, args.mirror)
    checkpoints.download_checkpoints(selected, args.basedir, REPO, force=args.force)
    return f"{len(selected)} checkpoint{'s' if len(selected) > 1 else ''} in {args.basedir.resolve()}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with signals.stop_signals_raise():  # a batch system's SIGTERM (or SIGHUP) cleans up as Ctrl-C does
            return _run(args)
    except signals.Stopped as stop:
        print(stop, file=sys.stderr)
        return stop.exit_code


def _run(args: argparse.Namespace) -> int:
    try:
        if args.dataset == MODELS:
            print(get_models(args))
            return 0
        if args.generate:
            try:
                folder = generate(args)
            except ImportError as exc:
                print(
                    f"error: --generate needs Pythia and FastJet ({exc}): pip install -e .[generate]", file=sys.stderr
                )
                return 1
            except (ValueError, OSError) as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
        else:
            folder = download.download_dataset(
                args.dataset,
                args.basedir,
                args.parts,
                force=args.force,
                mirror=args.mirror,
                delete_archives=args.delete_archives,
            )
        set_datadir(args.envfile, args.dataset, folder)
    except (download.DownloadError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(f"DATADIR_{args.dataset}={folder} written to {args.envfile}")
    note = validation_note(args.dataset, DEFAULT_SPLIT if args.split is None else args.split) if args.generate else None
    if note:
        print(note)
    return 0


if __name__ == "__main__":
    with exit_if_missing():  # checkpoints are verified with torch and weaver, imported on use
        sys.exit(main())

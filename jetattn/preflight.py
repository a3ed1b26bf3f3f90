"""Check the input files before weaver starts, and say in one line what is wrong.

weaver logs a file it cannot read and goes on without it, and a branch the YAML names but a file lacks
surfaces as a KeyError deep in its data loader. This reads only file headers and branch lists:

    python -m jetattn.preflight --data-config data/JetClass/JetClass_full.yaml \\
        --data-train 'hbb:/data/JetClass/train/HToBB_*.root' --data-test '/data/JetClass/test/*.root'

It prints ``error: FILE: ...`` for the first problem and exits 1, or one ``ok`` line and exits 0.
File arguments take weaver's syntax: ``glob``, ``name:glob`` or ``name%N:glob``.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from pathlib import Path

import yaml

from jetattn.deps import exit_if_missing

READABLE = (".root", ".parquet", ".h5", ".awkd")


class PreflightError(Exception):
    """A problem with the inputs, already phrased as the one line the user sees."""


def needed_branches(data_config: str, custom_functions: str | None = None) -> tuple[set[str], set[str]]:
    """The raw branches weaver reads for training/validation and for testing, as weaver itself works them out.

    Inputs, labels, weights, observers and selections, minus the ``new_variables``, plus the names those
    expressions use (resolved recursively); ``file_magic`` variables come from file names, not branches.
    """
    from weaver.utils.data.config import DataConfig
    from weaver.utils.data.eval_utils import _register_funcs

    if custom_functions:  # their names are functions, not branches, in new_variables expressions
        from weaver.utils.import_tools import import_module

        _register_funcs(import_module(custom_functions, "_func_module"))
    try:
        with open(data_config) as f:
            options = yaml.safe_load(f)
        config = DataConfig(print_info=False, **options)
    except Exception as e:
        reason = " ".join(str(e).split())  # yaml errors span lines
        raise PreflightError(f"{data_config}: not a usable data config ({type(e).__name__}: {reason})") from None
    not_branches = set(config.file_magic or {}) | {"aux_training_"}  # aux_training_ is set by weaver itself
    magic = config.branch_magic or {}

    def raw(names: set[str]) -> set[str]:
        decoded = set()
        for name in names - not_branches:
            for src, tgt in magic.items():
                name = name.replace(src, tgt)
            decoded.add(name)
        return decoded

    return raw(config.train_load_branches), raw(config.test_load_branches)


def expand(specs: list[str], option: str) -> list[str]:
    """Files named by weaver-style ``[name[%N]:]glob`` arguments; a pattern matching nothing is an error."""
    files = []
    for spec in specs:
        pattern = spec.split(":", 1)[1] if ":" in spec else spec
        matched = sorted(glob.glob(pattern))
        if not matched:
            raise PreflightError(f"{option} {spec}: matches no file")
        files += matched
    return files


def _root_branches(path: str, treename: str | None) -> set[str]:
    import uproot

    try:
        f = uproot.open(path)
        end = f.file.fEND
    except Exception:
        raise PreflightError(f"{path}: not a readable ROOT file (truncated?)") from None
    with f:
        size = os.path.getsize(path)
        if end > size:
            raise PreflightError(f"{path}: truncated ROOT file ({size} of {end} bytes)")
        classes = {k.split(";")[0]: v for k, v in f.classnames().items()}
        trees = sorted(k for k, v in classes.items() if v == "TTree")
        if not trees and "ROOT::RNTuple" in classes.values():
            # what uproot 5.7 writes for `file["tree"] = {...}`; mktree writes a TTree
            rntuples = ", ".join(sorted(k for k, v in classes.items() if v == "ROOT::RNTuple"))
            raise PreflightError(
                f"{path}: holds the RNTuple {rntuples} and no TTree, which weaver reads; "
                "write the tree with uproot's file.mktree(...) and .extend(...)"
            )
        if treename is None:
            if len(trees) != 1:
                found = ", ".join(trees) or "none"
                raise PreflightError(f"{path}: needs `treename` in the YAML: one TTree expected, found {found}")
            treename = trees[0]
        elif treename not in trees:
            raise PreflightError(f"{path}: no TTree '{treename}' (found: {', '.join(trees) or 'none'})")
        try:
            return set(f[treename].keys(recursive=True, full_paths=False))
        except Exception:
            raise PreflightError(f"{path}: tree '{treename}' is unreadable (truncated?)") from None


def _parquet_columns(path: str) -> set[str]:
    import pyarrow.parquet as pq

    try:
        return set(pq.ParquetFile(path).schema_arrow.names)
    except Exception:
        raise PreflightError(f"{path}: not a readable parquet file (truncated?)") from None


def check_file(path: str, branches: set[str], yaml_name: str, treename: str | None = None) -> None:
    """Raise ``PreflightError`` unless ``path`` opens and holds every branch in ``branches``."""
    ext = os.path.splitext(path)[1]
    if ext not in READABLE:
        raise PreflightError(f"{path}: weaver reads only {', '.join(READABLE)} files")
    if ext == ".root":
        present = _root_branches(path, treename)
    elif ext == ".parquet":
        present = _parquet_columns(path)
    else:
        return  # .h5 and .awkd: weaver's legacy formats, not checked
    missing = sorted(branches - present)
    if missing:
        more = ""
        if len(missing) > 1:
            more = f" (and {len(missing) - 1} more: {', '.join(missing[1:6])}{', ...' if len(missing) > 6 else ''})"
        raise PreflightError(f"{path}: branch '{missing[0]}' (needed by {yaml_name}) is missing{more}")


def preflight(
    data_config: str,
    data_train: list[str] = (),
    data_val: list[str] = (),
    data_test: list[str] = (),
    custom_functions: str | None = None,
) -> int:
    """Check every file; return how many were checked, or raise ``PreflightError``."""
    if not os.path.isfile(data_config):
        raise PreflightError(f"{data_config}: data config not found")
    train_branches, test_branches = needed_branches(data_config, custom_functions)
    with open(data_config) as f:
        treename = (yaml.safe_load(f) or {}).get("treename")
    yaml_name = Path(data_config).name
    checked = set()
    for specs, option, branches in (
        (data_train, "--data-train", train_branches),
        (data_val, "--data-val", train_branches),  # weaver's validation loader reads like the training one
        (data_test, "--data-test", test_branches),
    ):
        for path in expand(list(specs), option):
            check_file(path, branches, yaml_name, treename)
            checked.add(path)
    return len(checked)


def check_command(args: list[str], user_args: int, processes: int) -> list[str]:
    """The train scripts' check of a whole weaver command (``args``, the last ``user_args`` of them the user's):
    the files and branches of the data config weaver will use (the user's ``--data-config`` when given), then the
    loader options fitted to the data (:mod:`jetattn.loader_settings`). Returns the options to add."""
    from jetattn.loader_settings import LoaderError, describe, file_groups, fit
    from jetattn.weaver_options import WeaverArgsError, weaver_parser

    try:
        opts, _ = weaver_parser().parse_known_args(args)
    except WeaverArgsError as err:
        raise PreflightError(f"weaver option: {err}") from None
    if not opts.data_config:
        raise PreflightError("the weaver command has no --data-config")
    splits = () if opts.predict else (opts.data_train, opts.data_val)
    n = preflight(opts.data_config, *(splits or ([], [])), opts.data_test)
    print(f"ok: {n} file{'' if n == 1 else 's'} with every branch {Path(opts.data_config).name} reads", file=sys.stderr)
    with open(opts.data_config) as f:
        treename = (yaml.safe_load(f) or {}).get("treename")
    if any(not files for files in file_groups(opts.data_train).values()):
        return []  # nothing to size (a pattern matching nothing was reported above, for the splits checked)
    split = len(args) - user_args
    try:
        fitted = fit(args[:split], args[split:], processes, treename)
    except LoaderError as err:
        raise PreflightError(str(err)) from None
    print(describe(fitted), file=sys.stderr)
    return fitted.options


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--command":
        return command_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m jetattn.preflight", description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--data-config", required=True, help="weaver data config YAML")
    parser.add_argument("-i", "--data-train", nargs="*", default=[], help="training files, weaver syntax")
    parser.add_argument("-l", "--data-val", nargs="*", default=[], help="validation files, weaver syntax")
    parser.add_argument("-t", "--data-test", nargs="*", default=[], help="test files, weaver syntax")
    parser.add_argument("--custom-functions", help="weaver --custom-functions file used by the YAML")
    args = parser.parse_args(argv)
    try:
        n = preflight(args.data_config, args.data_train, args.data_val, args.data_test, args.custom_functions)
    except PreflightError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"ok: {n} file{'' if n == 1 else 's'} with every branch {Path(args.data_config).name} reads")
    return 0


def command_main(argv: list[str]) -> int:
    """``--command --processes N --user-args K -- WEAVER ARGS...``: :func:`check_command`; the options to add go
    to stdout, one per line, and every message to stderr."""
    parser = argparse.ArgumentParser(prog="python -m jetattn.preflight --command")
    parser.add_argument("--processes", type=int, default=1, help="DDP processes per node")
    parser.add_argument("--user-args", type=int, default=0, help="how many of the arguments are the user's")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="-- then weaver's arguments")
    ns = parser.parse_args(argv)
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    try:
        options = check_command(args, ns.user_args, ns.processes)
    except PreflightError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for option in options:
        print(option)
    return 0


if __name__ == "__main__":
    with exit_if_missing():  # the packages this imports on use
        sys.exit(main())

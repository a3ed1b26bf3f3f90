"""weaver's command line, read with one parser that has weaver's own option names: by the loader fit
(:mod:`jetattn.loader_settings`), the preflight, and the train scripts through :mod:`jetattn.weaver_cli`.

weaver keeps the last occurrence of an option, as argparse does; the train scripts put the caller's options
last, so the caller's win. Every form argparse takes is read as weaver reads it: ``--data-test=a.root``,
``-mPATH``, ``--no-predict``, ``--gpus ""``, and abbreviations (``--data-te``): every abbreviation of an option
read here that weaver takes means the same option to both (tests/test_loader_settings.py).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import PurePosixPath


class WeaverArgsError(ValueError):
    """An option weaver would refuse (a missing or malformed value), phrased as argparse phrases it."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, raised, instead of argparse's usage block and exit
        raise WeaverArgsError(message)


def run_modes(value: str) -> list[str]:
    """weaver's ``--run-mode`` type: the comma-separated steps."""
    return value.split(",")


def weaver_parser() -> argparse.ArgumentParser:
    """The options of weaver-core 0.5.3's ``train.py`` that the train scripts and the loader fit read, with
    weaver's names, short forms, destinations and defaults (checked against weaver's own parser in the tests);
    every other option is passed over."""
    parser = _Parser(add_help=False)  # abbreviations allowed, as weaver's
    add = parser.add_argument
    # the data and how it is loaded (jetattn.loader_settings)
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
    # what runs, where, and where it writes (the train scripts)
    add("--predict", action=argparse.BooleanOptionalAction, default=False)
    add("--run-mode", type=run_modes, default="train,val,test")
    add("--gpus", type=str, default="0")
    add("-m", "--model-prefix", type=str, default="models/{auto}/network")
    add("--log-file", type=str, dest="log", default="")
    add("--predict-output", type=str)
    return parser


def given_options(args: list[str]) -> dict[str, object]:
    """The options of :func:`weaver_parser` that appear in ``args``, by destination, with the value weaver keeps."""
    parser = weaver_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    known, _ = parser.parse_known_args(args)
    return vars(known)


def shell(args: list[str]) -> str:
    """Bash assignments of what the caller's ``args`` set, for the train scripts to ``eval``:

    - ``USER_PREDICT``: 1 when weaver will only predict (``--predict``, and not a later ``--no-predict``);
    - ``USER_GPUS_GIVEN`` (1 or empty) and ``USER_GPUS`` (empty means the CPU);
    - ``USER_TRAIN_GIVEN``/``USER_VAL_GIVEN``/``USER_TEST_GIVEN``: 1 when the caller names the split's files
      (the scripts then need none of the dataset's);
    - ``USER_PREFIX``: the caller's ``--model-prefix``, or empty."""
    given = given_options(args)
    lines = [
        f"USER_PREDICT={_flag(given.get('predict', False))}",
        f"USER_GPUS_GIVEN={_flag('gpus' in given)}",
        f"USER_GPUS={shlex.quote(given.get('gpus', ''))}",
    ]
    for split in ("train", "val", "test"):
        lines.append(f"USER_{split.upper()}_GIVEN={_flag(f'data_{split}' in given)}")
    lines.append(f"USER_PREFIX={shlex.quote(given.get('model_prefix', ''))}")
    return "\n".join(lines)


def _flag(value: bool) -> str:
    return "1" if value else "''"


def where(args: list[str]) -> str | None:
    """One line naming where the checkpoints, the log and the predictions of the weaver command ``args`` go, or
    None for a prediction alone (it names its own output). The predictions are named only when ``--run-mode``
    tests; weaver writes one file per test group, ``<output stem><group>.<suffix>``."""
    opts, _ = weaver_parser().parse_known_args(args)
    if opts.predict:
        return None
    tested = "test" in opts.run_mode  # argparse runs the string default through run_modes too
    prefix = opts.model_prefix
    if "{auto}" in prefix:
        folder = prefix.split("{auto}")[0]
        line = f"checkpoints and log: {folder}<run>/ (net_*.pt, train.log)"
        if tested:
            line += (
                f", predictions: {folder}<run>/predict_output/pred*.root (one file per class group where the test"
                " files come in groups)"
            )
        return line + "; <run> is the name weaver prints as 'Using auto-generated model prefix'"
    line = f"checkpoints: {prefix}_*.pt, log: {opts.log or 'none'}"
    if tested:
        output = opts.predict_output or "pred.root"
        if "/" not in output:
            output = f"{PurePosixPath(prefix).parent}/predict_output/{output}"
        stem, dot, suffix = output.rpartition(".")
        line += f", predictions: {stem}*.{suffix}" if dot else f", predictions: {output}*"
    return line

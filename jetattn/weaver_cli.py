"""What the caller's weaver options say, for the train scripts (bash), read with weaver's option names by
:mod:`jetattn.weaver_options`:

    python -m jetattn.weaver_cli shell -- CALLER'S OPTIONS...   # shell assignments, for `eval`
    python -m jetattn.weaver_cli where -- WEAVER OPTIONS...     # one line: where weaver will write

They decide what the scripts do around weaver: which dataset files must exist, whether the run only predicts,
which GPUs it uses, where the log goes, and the line naming where weaver writes. An option weaver would refuse
gets one line, ``error: weaver option: ...``, and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from jetattn.weaver_options import WeaverArgsError, shell, where


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jetattn.weaver_cli", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("shell", "where"), help="shell assignments, or the line naming the output")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="-- then weaver's options")
    ns = parser.parse_args(argv)
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    if ns.what == "shell":
        import jetattn.preflight  # noqa: F401  the scripts run it next: a python without its dependencies fails here
    try:
        text = shell(args) if ns.what == "shell" else where(args)
    except WeaverArgsError as err:
        print(f"error: weaver option: {err}", file=sys.stderr)
        return 2
    if text:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

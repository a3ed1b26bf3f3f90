#!/usr/bin/env python3
"""Every function longer than a screen, longest first: ``scripts/function_lengths.py [FOLDER] [--over N]``.

Lengths are ``end_lineno - lineno + 1`` from Python's ast (docstring and signature included), as docs/house.md
reports them."""

import argparse
import ast
from pathlib import Path


def lengths(folder: Path) -> list[tuple[int, str]]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((node.end_lineno - node.lineno + 1, f"{path}:{node.lineno} {node.name}"))
    return sorted(found, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path, nargs="?", default=Path("jetattn"))
    parser.add_argument("--over", type=int, default=60, help="list functions longer than this (default 60)")
    args = parser.parse_args()
    long = [(n, where) for n, where in lengths(args.folder) if n > args.over]
    for n, where in long:
        print(f"{n:4d} {where}")
    print(f"{len(long)} functions over {args.over} lines")


if __name__ == "__main__":
    main()

"""Stand-in executables for the train scripts' tests."""

from __future__ import annotations

import sys

# the train scripts read the caller's weaver options with `$PYTHON -m jetattn.weaver_cli`: a stand-in python
# passes those calls to the python running the tests
FORWARD = f'if [[ "$1 $2" == "-m jetattn.weaver_cli" ]]; then\n    exec {sys.executable} "$@"\nfi\n'


def python_script(body: str) -> str:
    """A bash script standing in for python: the weaver_cli calls go to the real one, the rest runs `body`."""
    return f"#!/bin/bash\n{FORWARD}{body}"

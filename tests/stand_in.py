"""Stand-in executables for the train scripts' tests."""

from __future__ import annotations

import sys

# the train scripts read the caller's weaver options with `$PYTHON -m jetattn.weaver_cli`: a stand-in python
# passes those calls (and the check that jetattn and its dependencies import) to the python running the tests
FORWARD = (
    f'if [[ "$1 $2" == "-m jetattn.weaver_cli" || "$1 $2" == "-c import jetattn.preflight" ]]; then\n'
    f'    exec {sys.executable} "$@"\n'
    "fi\n"
)


def python_script(body: str) -> str:
    """A bash script standing in for python: the weaver_cli calls go to the real one, the rest runs `body`."""
    return f"#!/bin/bash\n{FORWARD}{body}"

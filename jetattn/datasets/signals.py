"""SIGTERM and SIGHUP handled like Ctrl-C, in `get_datasets.py` and in the generator's worker processes.

A batch system stops a job with SIGTERM (a wall-clock limit, an eviction; Slurm sends SIGKILL after a grace
period), and a closed terminal sends SIGHUP. The parent turns the first of them into `Stopped`, which unwinds
through the clean-up a KeyboardInterrupt runs: workers killed, temporary files and staging folders deleted. A worker
exits through SystemExit on them (its open file deleted on the way out), and also when its parent dies without the
chance to clean up: the kernel sends it SIGTERM (Linux's PR_SET_PDEATHSIG), and a thread watching the parent
covers other systems and the moment before that was set. Standard library only.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
ORPHAN_GRACE_S = 5.0  # an orphaned worker's time to delete its file before it is ended outright
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class Stopped(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread. A BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` stops it on its way to the clean-up."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process the signal ended: 143 for SIGTERM."""
        return 128 + self.signum


def _raise_once(error: Callable[[int], BaseException]) -> dict[int, object]:
    """Make the first stop signal raise `error(signum)`; returns the handlers it replaced. Later ones are ignored, so
    that a repeated SIGTERM cannot break off the clean-up the first one started. A signal ignored at start stays
    ignored (`nohup` ignores SIGHUP on purpose)."""
    raised = []

    def handler(signum: int, frame) -> None:
        if not raised:
            raised.append(signum)
            raise error(signum)

    replaced = {}
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            replaced[signum] = signal.signal(signum, handler)
    return replaced


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Within the block SIGTERM and SIGHUP raise `Stopped` (main thread only, as any signal handler)."""
    replaced = _raise_once(Stopped)
    try:
        yield
    finally:
        for signum, handler in replaced.items():
            signal.signal(signum, handler)


# the resource tracker's own warnings at its shutdown, all of which begin with "resource_tracker:"
TRACKER_WARNINGS = "ignore:resource_tracker:UserWarning"


def start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker, a helper process shared by the workers' queues, unless running,
    with SIGHUP blocked for good. It ignores SIGINT and SIGTERM by itself, but a terminal's hangup would kill it and
    leave the clean-up of the queues to a fresh tracker, which then reports a traceback for each of them.

    It also starts without its shutdown warnings. A stop kills the workers outright; a process killed between
    removing a semaphore and telling the tracker leaves it a name that is already gone, and the tracker then printed
    "leaked semaphore" warnings after the run's last line ("stopped by SIGTERM"), about a clean-up that had happened
    (seen once in a parallel test run). The tracker still removes whatever is left; only its report is off. It
    reads its warning filters from this interpreter's ``-W`` options (``sys.warnoptions``) when it starts."""
    from multiprocessing import resource_tracker

    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})  # inherited by the tracker; here it
    sys.warnoptions.append(TRACKER_WARNINGS)  # only waits: a SIGHUP in between is delivered on unblocking
    try:
        resource_tracker.ensure_running()
    finally:
        sys.warnoptions.remove(TRACKER_WARNINGS)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _set_parent_death_signal(signum: int) -> bool:
    """Ask the kernel to send `signum` to this process when its parent dies (Linux only); True if it took."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _end_when_parent_dies(parent) -> None:
    """In a daemon thread: wait for the parent to die, then stop this process as a SIGTERM would, and end it
    outright should the clean-up hang."""
    parent.join()  # returns once the parent's end of the spawn pipe is closed: the parent is gone
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(ORPHAN_GRACE_S)
    os._exit(128 + signal.SIGTERM)


def stop_with_parent() -> None:
    """Call first thing in a multiprocessing worker: SIGTERM and SIGHUP exit it through SystemExit(128 + signal),
    so that its ``with`` blocks and ``finally`` clauses run, and its parent's death does the same within seconds,
    even a SIGKILL."""
    _raise_once(lambda signum: SystemExit(128 + signum))
    _set_parent_death_signal(signal.SIGTERM)
    parent = mp.parent_process()
    if parent is not None:
        # the kernel's signal makes this redundant on Linux, except when the parent died before prctl above
        threading.Thread(target=_end_when_parent_dies, args=(parent,), daemon=True, name="parent-watch").start()

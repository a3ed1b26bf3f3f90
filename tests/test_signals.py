"""A batch system's SIGTERM (or a closed terminal's SIGHUP) stops get_datasets.py and the train scripts as Ctrl-C
does: no worker, loader or rank left running, no temporary file left, the exit code of the signal; and generator
workers die with their parent, even one killed by SIGKILL.

Processes are found through /proc (Linux), where a zombie counts as gone: an orphan's zombie waits for init.
"""

import http.server
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from jetattn.datasets import signals

REPO = Path(__file__).resolve().parents[1]
GET_DATASETS = REPO / "get_datasets.py"
TESTS = Path(__file__).resolve().parent

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds processes through /proc (Linux)")


def living(pids) -> set[int]:
    """The processes among `pids` that exist and are not zombies."""
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if state not in ("Z", "X"):
            alive.add(pid)
    return alive


def group_members(group: int) -> set[int]:
    """Living processes of process group `group`."""
    members = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[2]) == group:
                members.add(int(entry.name))
    return living(members)


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout:g} s")


def default_stop_signals() -> None:
    """A user's process has SIGTERM and SIGHUP at their defaults, even if this test runs under nohup."""
    for signum in signals.STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)


def start(argv: list[str], log: Path, **kwargs) -> subprocess.Popen:
    """`argv` in a session of its own, so that its process group holds it and every worker it starts; its output
    goes to `log` (a pipe would stay open as long as any worker lives)."""
    with open(log, "w") as output:
        return subprocess.Popen(argv, cwd=REPO, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=default_stop_signals, **kwargs)


def last_line(log: Path) -> str:
    return log.read_text().strip().splitlines()[-1]


# ---------------------------------------------------------------------------------------------------------------
# The handlers


def test_first_stop_signal_raises_and_a_repeat_does_not_break_the_clean_up():
    before = signal.getsignal(signal.SIGTERM)
    cleaned = []
    with pytest.raises(signals.Stopped) as stopped, signals.stop_signals_raise():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # a second SIGTERM while cleaning up is ignored
            cleaned.append(True)
    assert cleaned and stopped.value.signum == signal.SIGTERM and stopped.value.exit_code == 143
    assert str(stopped.value) == "stopped by SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_signal_ignored_at_start_stays_ignored():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what nohup does
    try:
        with signals.stop_signals_raise():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


# ---------------------------------------------------------------------------------------------------------------
# get_datasets.py --generate


def generate_argv(dataset: str, number: int, out: Path, envfile: Path) -> list[str]:
    count = ["--num-events" if dataset == "DiHiggs" else "--num-jets", str(number)]
    return [sys.executable, str(GET_DATASETS), dataset, "--generate", *count, "--workers", "2", "-d", str(out),
            "-e", str(envfile)]


@pytest.mark.parametrize(("dataset", "number", "signum", "whole_group"), [
    ("JetClass", 300, signal.SIGTERM, False),  # `kill PID`: the parent alone; stopped once a file is complete
    ("TopLandscape", 2000, signal.SIGHUP, True),  # a closed terminal: every process of the group
    ("DiHiggs", 400, signal.SIGTERM, False),
])
def test_stop_signal_ends_a_generation_and_cleans_up(tmp_path, dataset, number, signum, whole_group):
    pytest.importorskip("pythia8mc", reason="generation needs pip install -e .[generate]")
    out, envfile = tmp_path / "out", tmp_path / "env.sh"
    envfile.write_text("export OTHER=1\n")
    log = tmp_path / "output.txt"
    process = start(generate_argv(dataset, number, out, envfile), log)
    # JetClass keeps each class's files once complete: stop after the first, with others still being written
    finished = "*/*/*/*.root" if dataset == "JetClass" else "*/.parts/*.root.tmp"
    wait_for(lambda: list(out.glob(finished)) and list(out.rglob("*.root.tmp")) or process.poll() is not None,
             240, "no file begun")
    assert process.poll() is None, log.read_text()[-2000:]
    complete = sorted(out.glob("*/*/*/*.root"))
    time.sleep(0.5)
    if whole_group:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    assert process.wait(timeout=60) == 128 + signum, log.read_text()[-2000:]
    assert last_line(log) == f"stopped by {signal.Signals(signum).name}"
    wait_for(lambda: not group_members(process.pid), 10, "workers outlived the stopped run")
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".parts"))
    assert envfile.read_text() == "export OTHER=1\n"
    if dataset == "JetClass":
        import uproot

        assert complete and set(complete) <= set(out.glob("*/*/*/*.root"))  # complete files stay, whole
        for path in complete:
            assert uproot.open(path)["tree"].num_entries > 0
    else:
        assert not list(out.rglob("*.root"))


def test_workers_die_with_a_parent_killed_outright(tmp_path):
    pytest.importorskip("pythia8mc", reason="generation needs pip install -e .[generate]")
    out = tmp_path / "out"
    process = start(generate_argv("TopLandscape", 2000, out, tmp_path / "env.sh"), tmp_path / "output.txt")
    wait_for(lambda: len(list(out.glob("*/.parts/*.root.tmp"))) == 2 or process.poll() is not None, 240,
             "the workers never started writing")
    workers = group_members(process.pid) - {process.pid}
    assert len(workers) >= 2, workers  # two workers (and multiprocessing's resource tracker)
    process.kill()  # SIGKILL: the parent cleans nothing up
    process.wait()
    wait_for(lambda: not living(workers), 10, "workers outlived their parent")
    assert not list(out.rglob("*.tmp"))  # each worker deleted its open file on the way out


def _watch_without_prctl(ready: Path) -> None:
    """A worker with the parent watch alone, as on a system without prctl."""
    signals._raise_once(lambda signum: SystemExit(128 + signum))
    threading.Thread(target=signals._end_when_parent_dies, args=(mp.parent_process(),), daemon=True).start()
    ready.write_text(str(os.getpid()))
    time.sleep(120)


def test_the_parent_watch_alone_ends_an_orphan(tmp_path):
    ready = tmp_path / "worker.pid"
    driver = (f"import multiprocessing as mp, sys; sys.path.insert(0, {str(TESTS)!r}); "
              f"from test_signals import _watch_without_prctl; from pathlib import Path; "
              f"worker = mp.get_context('spawn').Process(target=_watch_without_prctl, args=(Path({str(ready)!r}),)); "
              f"worker.start(); worker.join()")
    process = start([sys.executable, "-c", driver], tmp_path / "output.txt")
    wait_for(lambda: ready.exists() and ready.read_text(), 60, "the worker never started")
    worker = int(ready.read_text())
    process.kill()
    process.wait()
    # well before the watch's outright exit: the worker ended through its SIGTERM clean-up
    wait_for(lambda: not living([worker]), signals.ORPHAN_GRACE_S - 1, "the orphan outlived its parent")


# ---------------------------------------------------------------------------------------------------------------
# get_datasets.py downloading


class _Trickle(http.server.BaseHTTPRequestHandler):
    """Promises 100 MB and sends 64 kB a second: a download that is still running when the test stops it."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(100 << 20))
        self.end_headers()
        try:
            for _ in range(120):
                self.wfile.write(bytes(1 << 16))
                self.wfile.flush()
                time.sleep(1)
        except OSError:
            pass

    def log_message(self, *args) -> None:
        pass


def test_stop_signal_ends_a_download_and_keeps_it_resumable(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    envfile = tmp_path / "env.sh"
    envfile.write_text("export OTHER=1\n")
    try:
        log = tmp_path / "output.txt"
        process = start([sys.executable, str(GET_DATASETS), "TopLandscape", "-d", str(tmp_path / "out"), "-e",
                         str(envfile), "--mirror", f"http://127.0.0.1:{server.server_address[1]}"], log)
        part = tmp_path / "out" / "archives" / "TopLandscape.tar.part"
        wait_for(lambda: part.exists() and part.stat().st_size > 0 or process.poll() is not None, 60,
                 "the download never started")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 143, log.read_text()[-2000:]
    finally:
        server.shutdown()
        server.server_close()
    assert last_line(log) == "stopped by SIGTERM"
    assert part.stat().st_size > 0  # as after Ctrl-C: the partial download stays for the rerun to resume
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["archives"]  # no unpacking folder
    assert sorted(p.name for p in part.parent.iterdir()) == ["TopLandscape.tar.part"]
    assert envfile.read_text() == "export OTHER=1\n"

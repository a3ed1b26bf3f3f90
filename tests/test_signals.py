"""A batch system's SIGTERM (or a closed terminal's SIGHUP) stops get_datasets.py and the train scripts as Ctrl-C
does: no worker, loader or rank left running, no temporary file left, the exit code of the signal; and generator
workers die with their parent, even one killed by SIGKILL.

Processes are found through /proc (Linux), where a zombie counts as gone: an orphan's zombie waits for init.
"""

import http.server
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from stand_in import python_script

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
        return subprocess.Popen(
            argv,
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=default_stop_signals,
            **kwargs,
        )


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


TRACKER_LEFT_A_GONE_NAME = """
import sys
from multiprocessing import resource_tracker
from jetattn.datasets import signals
signals.start_resource_tracker() if sys.argv[1] == "ours" else resource_tracker.ensure_running()
# as a process killed between removing its semaphore and telling the tracker leaves it: a name already gone
resource_tracker.register("/jetattn-test-no-such-semaphore", "semaphore")
"""


def test_the_workers_resource_tracker_says_nothing_after_the_last_line():
    runs = {
        which: subprocess.run(
            [sys.executable, "-c", TRACKER_LEFT_A_GONE_NAME, which], capture_output=True, text=True, timeout=60
        )
        for which in ("plain", "ours")
    }
    assert "resource_tracker: '/jetattn-test-no-such-semaphore'" in runs["plain"].stderr  # what a stop printed
    assert runs["ours"].returncode == 0 and runs["ours"].stderr == ""


def generate_argv(dataset: str, number: int, out: Path, envfile: Path) -> list[str]:
    count = ["--num-events" if dataset == "DiHiggs" else "--num-jets", str(number)]
    return [
        sys.executable,
        str(GET_DATASETS),
        dataset,
        "--generate",
        *count,
        "--workers",
        "2",
        "-d",
        str(out),
        "-e",
        str(envfile),
    ]


@pytest.mark.parametrize(
    ("dataset", "number", "signum", "whole_group"),
    [
        ("JetClass", 300, signal.SIGTERM, False),  # `kill PID`: the parent alone; stopped once a file is complete
        ("TopLandscape", 2000, signal.SIGHUP, True),  # a closed terminal: every process of the group
        ("DiHiggs", 400, signal.SIGTERM, False),
    ],
)
def test_stop_signal_ends_a_generation_and_cleans_up(tmp_path, dataset, number, signum, whole_group):
    pytest.importorskip("pythia8mc", reason="generation needs pip install -e .[generate]")
    out, envfile = tmp_path / "out", tmp_path / "env.sh"
    envfile.write_text("export OTHER=1\n")
    log = tmp_path / "output.txt"
    process = start(generate_argv(dataset, number, out, envfile), log)
    # JetClass keeps each class's files once complete: stop after the first, with others still being written
    finished = "*/*/*/*.root" if dataset == "JetClass" else "*/.parts/*.root.tmp"
    wait_for(
        lambda: list(out.glob(finished)) and list(out.rglob("*.root.tmp")) or process.poll() is not None,
        240,
        "no file begun",
    )
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
    wait_for(
        lambda: len(list(out.glob("*/.parts/*.root.tmp"))) == 2 or process.poll() is not None,
        240,
        "the workers never started writing",
    )
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
    driver = (
        f"import multiprocessing as mp, sys; sys.path.insert(0, {str(TESTS)!r}); "
        f"from test_signals import _watch_without_prctl; from pathlib import Path; "
        f"worker = mp.get_context('spawn').Process(target=_watch_without_prctl, args=(Path({str(ready)!r}),)); "
        f"worker.start(); worker.join()"
    )
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
        process = start(
            [
                sys.executable,
                str(GET_DATASETS),
                "TopLandscape",
                "-d",
                str(tmp_path / "out"),
                "-e",
                str(envfile),
                "--mirror",
                f"http://127.0.0.1:{server.server_address[1]}",
            ],
            log,
        )
        part = tmp_path / "out" / "archives" / "TopLandscape.tar.part"
        wait_for(
            lambda: part.exists() and part.stat().st_size > 0 or process.poll() is not None,
            60,
            "the download never started",
        )
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


# ---------------------------------------------------------------------------------------------------------------
# The train scripts


def fake_bin(tmp_path: Path, **scripts: str) -> Path:
    """Executables named after the keywords, with the given text, in tmp_path/bin."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for name, text in scripts.items():
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    return folder


def train_env(tmp_path: Path, bin_dir: Path, **env: str) -> dict:
    settings = ("DATADIR_", "DDP_", "GPUS", "NNODES", "NODE_RANK", "MASTER_", "PRETRAINED", "DRY_RUN", "JETATTN_")
    kept = {k: v for k, v in os.environ.items() if not k.startswith(settings)}  # the user's train-script settings
    return {**kept, "PATH": f"{bin_dir}:{os.environ['PATH']}", "JETATTN_ASSUME_CUDA": "0", **env}


def top_landscape_files(folder: Path) -> Path:
    folder.mkdir()
    for split in ("train", "val", "test"):
        (folder / f"{split}_file.root").touch()
    return folder


def test_sigterm_during_the_preflight_stops_it_and_weaver_never_starts(tmp_path):
    bin_dir = fake_bin(
        tmp_path,
        python=python_script(f"[[ $1 == -m ]] || exit 0\necho $$ > {tmp_path}/preflight.pid\nexec sleep 60\n"),
        weaver=f"#!/bin/bash\ntouch {tmp_path}/weaver.ran\n",
    )
    env = train_env(
        tmp_path,
        bin_dir,
        PYTHON=str(bin_dir / "python"),
        DATADIR_TopLandscape=str(top_landscape_files(tmp_path / "top")),
    )
    process = start(["bash", str(REPO / "train_TopLandscape.sh"), "PN"], tmp_path / "output.txt", env=env)
    pid_file = tmp_path / "preflight.pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 30, "the preflight never started")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 143
    wait_for(lambda: not living([int(pid_file.read_text())]), 5, "the preflight outlived the script")
    assert not (tmp_path / "weaver.ran").exists()


FAKE_RANK = """import os, sys, time
from pathlib import Path
Path(os.environ["RANK_PIDS"], os.environ["LOCAL_RANK"]).write_text(str(os.getpid()))
time.sleep(120)
"""


def test_sigterm_to_a_ddp_run_reaches_torchrun_and_every_rank(tmp_path):
    # torchrun comes with PyTorch, beside the python running the tests (CI does not put that folder on PATH)
    torch_bin = Path(sys.executable).parent
    assert (torch_bin / "torchrun").exists() or shutil.which("torchrun"), "torchrun not found beside python"
    # a stand-in weaver, as torchrun runs it: a Python script per rank, each in a session of its own
    bin_dir = fake_bin(tmp_path, weaver=FAKE_RANK, python=python_script("exit 0\n"))  # a preflight that fits nothing
    pids = tmp_path / "ranks"
    pids.mkdir()
    env = train_env(
        tmp_path,
        bin_dir,
        PYTHON=str(bin_dir / "python"),
        JETATTN_ASSUME_CUDA="1",
        DDP_NGPUS="2",
        RANK_PIDS=str(pids),
        DATADIR_TopLandscape=str(top_landscape_files(tmp_path / "top")),
    )
    env["PATH"] = f"{bin_dir}:{torch_bin}:{os.environ['PATH']}"
    log = tmp_path / "output.txt"
    process = start(["bash", str(REPO / "train_TopLandscape.sh"), "PN"], log, env=env)
    wait_for(lambda: len(list(pids.iterdir())) == 2 or process.poll() is not None, 120, "the ranks never started")
    assert process.poll() is None, log.read_text()[-2000:]
    ranks = [int(path.read_text()) for path in pids.iterdir()]
    assert os.path.basename(Path(f"/proc/{process.pid}/exe").resolve()).startswith("python")  # exec'd torchrun
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    wait_for(lambda: not living(ranks) and not group_members(process.pid), 10, "ranks outlived torchrun")
    assert log.read_text().count("closing signal SIGTERM") == 2  # torchrun passed it on to both ranks


@pytest.mark.slow
def test_sigterm_stops_a_cpu_training_which_resumes_from_its_last_epoch(tmp_path):
    pytest.importorskip("pythia8mc", reason="the training sample is generated: pip install -e .[generate]")
    from jetattn.datasets.generate import generate_dataset

    data = generate_dataset("JetClass", tmp_path / "gen", 20, seed=1, workers=2)  # 10 classes, 16 training jets each
    env = train_env(tmp_path, Path(sys.executable).parent, DATADIR_JetClass=str(data), PYTHON=sys.executable)
    run = tmp_path / "run"
    argv = [
        str(REPO / "train_JetClass.sh"),
        "PFN",
        "full",
        "-o",
        "phi_sizes",
        "(16, 16)",
        "-o",
        "f_sizes",
        "(16,)",
        "--batch-size",
        "16",
        "--samples-per-epoch",
        "64",
        "--samples-per-epoch-val",
        "16",
        "--fetch-step",
        "1",
        "--num-workers",
        "1",  # a loader process; 2 would each need a file of every class
        "--model-prefix",
        str(run / "net"),
        "--log-file",
        str(run / "train.log"),
        "--predict-output",
        str(tmp_path / "pred.root"),
    ]
    log = tmp_path / "first.txt"
    process = start([*argv, "--num-epochs", "1000"], log, env=env)
    wait_for(
        lambda: (run / "net_epoch-2_state.pt").exists() or process.poll() is not None,
        600,
        "weaver never finished two epochs",
    )
    # weaver's data loader has a process of its own while an epoch runs
    wait_for(lambda: len(group_members(process.pid)) > 1 or process.poll() is not None, 60, "no loader process seen")
    assert process.poll() is None, log.read_text()[-3000:]
    process.send_signal(signal.SIGTERM)
    stopped_at = time.time()
    assert process.wait(timeout=30) == -signal.SIGTERM  # weaver itself: the script exec'd it
    wait_for(lambda: not group_members(process.pid), 15, "data-loader processes outlived weaver")
    assert not list(tmp_path.glob("pred*.root"))  # weaver predicts after the last epoch only

    # the epoch being saved at the stop may be cut short: resume from the one before the last one saved
    saved = [int(path.name.split("-")[1].split("_")[0]) for path in run.glob("net_epoch-*_optimizer.pt")]
    resume = max(saved) - 1
    log = tmp_path / "resumed.txt"
    process = start([*argv, "--num-epochs", str(resume + 2), "--load-epoch", str(resume)], log, env=env)
    assert process.wait(timeout=600) == 0, log.read_text()[-3000:]
    assert f"Resume training from epoch {resume}" in (run / "train.log").read_text()
    assert (run / f"net_epoch-{resume + 1}_state.pt").stat().st_mtime > stopped_at  # trained anew
    assert len(list(tmp_path.glob("pred_*.root"))) == 10  # and the test sample predicted, one file per class

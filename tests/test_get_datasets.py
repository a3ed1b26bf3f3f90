"""get_datasets.py, jetattn.datasets.download and .checkpoints against a local HTTP server on 127.0.0.1.

The server serves a small tar (and checkpoints), honours (or ignores) Range requests and can cut a response off
after K bytes, so the real download code is run through md5 checks, checkpoint verification, resumes, unpacking
and the env.sh update.
"""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import io
import socket
import subprocess
import sys
import tarfile
import threading
import time
import types
from pathlib import Path

import pytest

from jetattn.datasets import checkpoints, download
from jetattn.datasets.download import Archive, DownloadError, extract, fetch
from jetattn.datasets.envfile import export_line, set_datadir

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "get_datasets.py"


def make_tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


PARQUET = bytes(range(256)) * 300  # stands in for TopLandscape/train_file.parquet
TAR = make_tar({"TopLandscape/train_file.parquet": PARQUET, "TopLandscape/README": b"top vs qcd\n"})
TAR_MD5 = hashlib.md5(TAR).hexdigest()
CUT_AFTER = 20_000  # bytes sent before a cut-off response closes the connection


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _TarServer

    def do_GET(self) -> None:
        srv = self.server
        range_header = self.headers.get("Range")
        srv.ranges.append(range_header)
        payload = srv.files.get(self.path.removeprefix("/"))
        if payload is None:
            self.send_error(404)
            return
        start = 0
        if range_header and srv.honour_range:
            start = int(range_header.removeprefix("bytes=").rstrip("-"))
            if start >= len(payload):
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        else:
            self.send_response(200)
        body = payload[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cuts_left > 0:
            srv.cuts_left -= 1
            body = body[:CUT_AFTER]
            self.close_connection = True  # the client sees the socket close before Content-Length bytes
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _TarServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.filename = "TopLandscape.tar"
        self.files = {self.filename: TAR}  # name -> bytes served at /name
        self.honour_range = True
        self.cuts_left = 0
        self.ranges: list[str | None] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def url(self) -> str:
        return f"{self.base}/{self.filename}"


@pytest.fixture
def server():
    srv = _TarServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def cli():
    spec = importlib.util.spec_from_file_location("get_datasets", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def envfile(tmp_path: Path) -> Path:
    path = tmp_path / "env.sh"
    path.write_text((REPO / "env.sh").read_text() + "export OTHER_SETTING=keep-me\n")
    return path


def _serve_toplandscape(monkeypatch: pytest.MonkeyPatch, md5: str) -> None:
    """The official TopLandscape entry with the test tar's md5; --mirror points its URL at the local server."""
    entry = download.ARCHIVES["TopLandscape"]["all"]
    monkeypatch.setitem(download.ARCHIVES, "TopLandscape", {"all": Archive(entry.filename, md5, entry.url, ".")})


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _error_lines(stderr: str) -> list[str]:
    """stderr without tqdm's progress lines."""
    return [line for line in stderr.splitlines() if "B/s]" not in line and line.strip()]


def _source(envfile: Path, variable: str, caller_value: str | None = None) -> str:
    prefix = f"export {variable}='{caller_value}'; " if caller_value is not None else f"unset {variable}; "
    script = f'{prefix}source "$1"; printf %s "${variable}"'
    result = subprocess.run(["bash", "-c", script, "bash", str(envfile)], capture_output=True, text=True, check=True)
    return result.stdout


def test_download_unpacks_updates_env_and_second_run_skips(server, cli, envfile, tmp_path, monkeypatch, capsys):
    _serve_toplandscape(monkeypatch, TAR_MD5)
    basedir = tmp_path / "datasets"
    before = envfile.read_text().splitlines()
    argv = ["TopLandscape", "-d", str(basedir), "-e", str(envfile), "--mirror", server.base]

    assert cli.main(argv) == 0
    folder = basedir / "TopLandscape"
    assert (folder / "train_file.parquet").read_bytes() == PARQUET
    assert (basedir / "archives" / "TopLandscape.tar").read_bytes() == TAR
    assert not list(basedir.glob(".unpack-*")), "staging folder left behind"
    after = envfile.read_text().splitlines()
    assert len(after) == len(before)
    changed = [i for i, (old, new) in enumerate(zip(before, after, strict=True)) if old != new]
    assert len(changed) == 1
    assert after[changed[0]] == export_line("TopLandscape", folder.resolve()).rstrip("\n")
    assert _source(envfile, "DATADIR_TopLandscape") == str(folder.resolve())

    requests_made = len(server.ranges)
    assert cli.main(argv) == 0
    assert len(server.ranges) == requests_made, "second run downloaded again"
    assert "skipped" in capsys.readouterr().out

    (folder / "train_file.parquet").write_bytes(b"damaged")
    assert cli.main([*argv, "-f"]) == 0
    assert len(server.ranges) == requests_made + 1
    assert (folder / "train_file.parquet").read_bytes() == PARQUET


def test_bad_md5_deletes_file_and_fails(server, cli, envfile, tmp_path, monkeypatch, capsys):
    _serve_toplandscape(monkeypatch, "0" * 32)
    basedir = tmp_path / "datasets"
    env_before = envfile.read_text()

    assert cli.main(["TopLandscape", "-d", str(basedir), "-e", str(envfile), "--mirror", server.base]) == 1
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and errors[0].startswith("error: md5 mismatch for TopLandscape.tar")
    assert TAR_MD5 in errors[0]
    assert list((basedir / "archives").iterdir()) == []  # neither the tar nor its .part
    assert not (basedir / "TopLandscape").exists()
    assert envfile.read_text() == env_before


@pytest.fixture
def small_chunks(monkeypatch):
    """Read 4 KiB at a time, so a response cut after CUT_AFTER bytes leaves whole chunks in the .part file."""
    monkeypatch.setattr(download, "CHUNK_BYTES", 4096)


def test_cut_off_download_resumes_on_rerun(server, tmp_path, small_chunks):
    server.cuts_left = 1
    target = tmp_path / "TopLandscape.tar"
    with pytest.raises(DownloadError, match="broke off .* rerun the same command to resume"):
        fetch(server.url, TAR_MD5, target, max_resumes=0)
    part = tmp_path / "TopLandscape.tar.part"
    kept = part.stat().st_size
    assert 0 < kept <= CUT_AFTER and part.read_bytes() == TAR[:kept]
    assert not target.exists()

    fetch(server.url, TAR_MD5, target, max_resumes=0)
    assert server.ranges == [None, f"bytes={kept}-"]
    assert target.read_bytes() == TAR and not part.exists()


def test_lost_connection_is_resumed_within_one_run(server, tmp_path, small_chunks):
    server.cuts_left = 2
    target = tmp_path / "TopLandscape.tar"
    fetch(server.url, TAR_MD5, target, max_resumes=2)
    assert len(server.ranges) == 3 and server.ranges[0] is None
    offsets = [int(r.removeprefix("bytes=").rstrip("-")) for r in server.ranges[1:]]
    assert 0 < offsets[0] < offsets[1] <= 2 * CUT_AFTER
    assert target.read_bytes() == TAR


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    server.honour_range = False
    target = tmp_path / "TopLandscape.tar"
    (tmp_path / "TopLandscape.tar.part").write_bytes(b"\xff" * 1000)  # a stale partial file of other content
    fetch(server.url, TAR_MD5, target)
    assert server.ranges == ["bytes=1000-"]  # answered 200 with the whole file
    assert target.read_bytes() == TAR


def test_complete_part_file_is_verified_not_fetched_again(server, tmp_path):
    (tmp_path / "TopLandscape.tar.part").write_bytes(TAR)  # the whole file, interrupted before the md5 check
    fetch(server.url, TAR_MD5, tmp_path / "TopLandscape.tar")
    assert server.ranges == [f"bytes={len(TAR)}-"]  # answered 416: nothing left to send
    assert (tmp_path / "TopLandscape.tar").read_bytes() == TAR


@pytest.mark.parametrize("what", [["TopLandscape"], ["models", "--parts", "ParticleNet", "kin"]], ids=lambda w: w[0])
def test_unreachable_host_fails_fast_with_one_line(what, tmp_path, envfile):
    basedir = tmp_path / "out"
    env_before = envfile.read_text()
    mirror = f"http://127.0.0.1:{_closed_port()}"
    env_args = ["-e", str(envfile)] if what[0] != "models" else []
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *what, "-d", str(basedir), *env_args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "JETATTN_MIRROR": mirror},
    )
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    assert elapsed < 30
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: cannot reach 127.0.0.1 (") and "no network?" in lines[0]
    assert [p for p in basedir.rglob("*") if p.is_file()] == []  # no archive, checkpoint or .part
    assert envfile.read_text() == env_before


# ---- the official checkpoints (./get_datasets.py models) ----


def _official_part(path: Path, input_dim: int) -> bytes:
    """A ParT checkpoint laid out as the official ones (weaver's ParT with the public recipe's settings and
    JetClass's 10 classes, `in_proj_weight` keys under `mod.`) for `input_dim` particle features."""
    from weaver_run import official_checkpoint

    from jetattn.weaver import PART_RECIPE

    return official_checkpoint(path, **PART_RECIPE, input_dim=input_dim, num_classes=10).read_bytes()


@pytest.fixture(scope="module")
def part_kin(tmp_path_factory) -> bytes:
    """ParT_kin.pt (7 kin features), which ../shared lacks."""
    return _official_part(tmp_path_factory.mktemp("ckpt") / "ParT_kin.pt", 7)


def _official_file(request: pytest.FixtureRequest, family: str) -> bytes:
    """The kin checkpoint of `family` as served: ParT made here, ParticleNet the real file from ../shared."""
    if family == "ParT":
        return request.getfixturevalue("part_kin")
    return (request.getfixturevalue("shared_models") / "ParticleNet_kin.pt").read_bytes()


def _get_models(cli, server: _TarServer, out: Path, *parts: str, force: bool = False) -> int:
    return cli.main(["models", "--parts", *parts, "-d", str(out), "--mirror", server.base, *(["-f"] if force else [])])


@pytest.mark.parametrize("family", ["ParT", "ParticleNet"])
def test_checkpoint_download_is_verified_and_second_run_skips(family, server, cli, tmp_path, request, capsys):
    name = f"{family}_kin.pt"
    server.files[name] = _official_file(request, family)
    out = tmp_path / "models"

    assert _get_models(cli, server, out, family, "kin") == 0
    assert (out / name).read_bytes() == server.files[name]
    assert [p.name for p in out.iterdir()] == [name]  # no .part left
    network = checkpoints.NETWORKS[family]
    assert f"{name}: verified with {network} and data/JetClass/JetClass_kin.yaml" in capsys.readouterr().out

    requests_made = len(server.ranges)
    assert _get_models(cli, server, out, family, "kin") == 0
    assert len(server.ranges) == requests_made, "second run downloaded again"
    assert "skipped" in capsys.readouterr().out
    assert _get_models(cli, server, out, family, "kin", force=True) == 0
    assert len(server.ranges) == requests_made + 1


def _without_prefix(good: bytes, tmp_path: Path) -> bytes:
    """The same weights without the `mod.` wrapper prefix: every key misses."""
    import torch

    state = torch.load(io.BytesIO(good), map_location="cpu", weights_only=True)
    buffer = io.BytesIO()
    torch.save({key.removeprefix("mod."): value for key, value in state.items()}, buffer)
    return buffer.getvalue()


def _kinpid_part(good: bytes, tmp_path: Path) -> bytes:
    """A ParT for the 13 kinpid features, served as ParT_kin.pt: same keys, other shapes."""
    return _official_part(tmp_path / "ParT_kinpid.pt", 13)


BAD_CHECKPOINTS = {  # case -> (family, what is served instead of the good file, the reason the error line gives)
    "cut-end": ("ParT", lambda good, _: good[:-2000], "not a readable PyTorch checkpoint"),
    "too-small": ("ParT", lambda good, _: good[:100_000], "it has 100000 bytes, fewer than the"),
    "no-prefix": ("ParT", _without_prefix, "missing keys, first ['mod."),
    "other-features": ("ParT", _kinpid_part, "size mismatch for mod.embed"),
    "official-size": ("ParticleNet", lambda good, _: good + bytes(10), "1514556 bytes, the official file 1514546"),
}


@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_bad_checkpoint_is_rejected_in_one_line(case, server, cli, tmp_path, request, capsys):
    family, spoil, reason = BAD_CHECKPOINTS[case]
    name = f"{family}_kin.pt"
    server.files[name] = spoil(_official_file(request, family), tmp_path)
    out = tmp_path / "models"

    assert _get_models(cli, server, out, family, "kin") == 1
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"error: {name} from {server.base}/{name} failed verification: ")
    assert reason in errors[0] and "the file was deleted" in errors[0]
    if case in ("no-prefix", "other-features"):
        assert f"network {checkpoints.NETWORKS[family]} with data/JetClass/JetClass_kin.yaml" in errors[0]
    assert list(out.iterdir()) == []  # neither the file nor its .part


def test_cut_off_checkpoint_download_resumes_on_rerun(server, cli, part_kin, tmp_path, small_chunks):
    server.files["ParT_kin.pt"] = part_kin
    server.cuts_left = 1
    out = tmp_path / "models"
    selected = checkpoints.select_checkpoints(["ParT", "kin"], mirror=server.base)
    with pytest.raises(DownloadError, match="broke off .* rerun the same command to resume"):
        checkpoints.download_checkpoints(selected, out, REPO, max_resumes=0)
    part = out / "ParT_kin.pt.part"
    kept = part.stat().st_size
    assert 0 < kept <= CUT_AFTER and part.read_bytes() == part_kin[:kept]
    assert not (out / "ParT_kin.pt").exists()

    assert _get_models(cli, server, out, "ParT", "kin") == 0
    assert server.ranges == [None, f"bytes={kept}-"]
    assert (out / "ParT_kin.pt").read_bytes() == part_kin and not part.exists()


def test_checkpoint_selection_and_urls():
    def names(parts):
        return [c.filename for c in checkpoints.select_checkpoints(parts)]

    every = [f"{family}_{features}.pt" for family in ("ParT", "ParticleNet") for features in ("kin", "kinpid", "full")]
    assert names(None) == names(["all"]) == every
    assert names(["ParT"]) == every[:3]
    assert names(["kin", "full"]) == ["ParT_kin.pt", "ParT_full.pt", "ParticleNet_kin.pt", "ParticleNet_full.pt"]
    assert names(["ParticleNet", "kinpid"]) == ["ParticleNet_kinpid.pt"]
    (official,) = checkpoints.select_checkpoints(["ParT", "kin"])
    assert official.url == "https://raw.githubusercontent.com/jet-universe/particle_transformer/main/models/ParT_kin.pt"
    (mirrored,) = checkpoints.select_checkpoints(["ParT", "full"], mirror="http://mirror.local/pt/")
    assert mirrored.url == "http://mirror.local/pt/ParT_full.pt"
    with pytest.raises(ValueError, match="no checkpoint part 'train'"):
        checkpoints.select_checkpoints(["train"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["models", "--parts", "train"], "models has no part 'train'"),
        (["JetClass", "--parts", "ParT"], "JetClass has no part 'ParT'"),
        (["TopLandscape", "--parts", "kin"], "--parts applies to JetClass and models only"),
        (["models", "--generate", "--num-jets", "5"], "--generate does not apply to models"),
        (["models", "-e", "env.sh"], "--envfile does not apply to models"),
        (["models", "--seed", "1"], "--seed needs --generate"),
    ],
)
def test_models_option_errors(cli, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_silent_server_times_out(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "READ_TIMEOUT_S", 0.3)
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/TopLandscape.tar"
        start = time.monotonic()
        with pytest.raises(DownloadError, match=r"cannot reach 127\.0\.0\.1 \(no data for 0\.3 s\)"):
            fetch(url, TAR_MD5, tmp_path / "TopLandscape.tar")
        assert time.monotonic() - start < 5
    assert not (tmp_path / "TopLandscape.tar").exists()


def test_extract_fills_dest_and_replaces_unfinished_entries(tmp_path):
    wrapped = tmp_path / "part0.tar"
    wrapped.write_bytes(make_tar({"train_100M/HToBB_000.root": b"new", "train_100M/ZToQQ_000.root": b"z"}))
    dest = tmp_path / "JetClass" / "Pythia" / "train_100M"
    dest.mkdir(parents=True)
    (dest / "HToBB_000.root").write_bytes(b"old, from an interrupted run")
    (dest / "TTBar_005.root").write_bytes(b"from another part")

    extract(wrapped, tmp_path, "JetClass/Pythia/train_100M")
    assert sorted(p.name for p in dest.iterdir()) == ["HToBB_000.root", "TTBar_005.root", "ZToQQ_000.root"]
    assert (dest / "HToBB_000.root").read_bytes() == b"new"
    assert (dest / "TTBar_005.root").read_bytes() == b"from another part"

    evil = tmp_path / "evil.tar"
    evil.write_bytes(make_tar({"../outside.txt": b"x"}))
    with pytest.raises(DownloadError, match="cannot unpack"):
        extract(evil, tmp_path / "sub", ".")
    assert not (tmp_path / "outside.txt").exists()
    assert [p.name for p in (tmp_path / "sub").iterdir()] == []


def test_jetclass_parts_and_mirror():
    train = download.select_archives("JetClass", ["train"])
    assert [a.filename for a in train] == [f"JetClass_Pythia_train_100M_part{i}.tar" for i in range(10)]
    assert all(a.url == f"https://zenodo.org/record/6619768/files/{a.filename}" for a in train)
    assert len({a.md5 for a in train}) == 10
    picked = download.select_archives("JetClass", ["val", "test", "val"], mirror="http://mirror.local/jc/")
    assert [a.url for a in picked] == [
        "http://mirror.local/jc/JetClass_Pythia_val_5M.tar",
        "http://mirror.local/jc/JetClass_Pythia_test_20M.tar",
    ]
    assert len(download.select_archives("JetClass")) == 12
    with pytest.raises(ValueError, match="no part 'train12'"):
        download.select_archives("JetClass", ["train12"])


def test_env_update_keeps_other_lines_and_caller_wins(envfile, tmp_path):
    odd = tmp_path / 'my data $HOME "q" }'
    set_datadir(envfile, "QuarkGluon", odd)
    lines = envfile.read_text().splitlines()
    assert lines[-1] == "export OTHER_SETTING=keep-me"
    assert sum("DATADIR_QuarkGluon" in line for line in lines) == 1
    assert _source(envfile, "DATADIR_QuarkGluon") == str(odd)
    assert _source(envfile, "DATADIR_QuarkGluon", caller_value="/from/caller") == "/from/caller"
    assert _source(envfile, "DATADIR_JetClass").endswith("/datasets/JetClass/Pythia")  # default untouched

    fresh = tmp_path / "new_env.sh"
    fresh.write_text("export A=1")  # no newline at the end, no DATADIR line
    set_datadir(fresh, "TopLandscape", tmp_path)
    assert fresh.read_text().splitlines()[0] == "export A=1"
    assert _source(fresh, "DATADIR_TopLandscape") == str(tmp_path)
    assert [p.name for p in tmp_path.glob(".new_env.sh.*")] == []  # no temp file left


def _fake_generator(monkeypatch: pytest.MonkeyPatch, action) -> list[tuple]:
    calls: list[tuple] = []

    def generate_dataset(dataset, **kwargs):
        calls.append((dataset, kwargs))
        return action(kwargs)

    module = types.ModuleType("jetattn.datasets.generate")
    module.generate_dataset = generate_dataset
    monkeypatch.setitem(sys.modules, "jetattn.datasets.generate", module)
    return calls


def test_generate_mode_calls_generator_and_updates_env(cli, envfile, tmp_path, monkeypatch):
    calls = _fake_generator(monkeypatch, lambda kw: kw["outdir"] / "QuarkGluon")
    argv = ["QuarkGluon", "--generate", "--num-jets", "500", "-d", str(tmp_path), "-e", str(envfile)]
    assert cli.main([*argv, "--split", "0.5,0.25,0.25", "--seed", "7"]) == 0
    assert calls == [
        (
            "QuarkGluon",
            # workers=None: the generator uses every core
            dict(
                outdir=tmp_path,
                num_jets=500,
                seed=7,
                workers=None,
                split=(0.5, 0.25, 0.25),
                sqrt_s=14000.0,
                detector=None,
                files_per_class=None,
            ),  # None: the dataset's own (generate.py's default)
        )
    ]
    assert _source(envfile, "DATADIR_QuarkGluon") == str(tmp_path / "QuarkGluon")
    calls.clear()
    assert cli.main([*argv, "--detector", "cms"]) == 0
    assert calls[0][1]["detector"] == "cms"


def test_quarkgluon_split_names_the_train_val_split_to_pass(cli, envfile, tmp_path, monkeypatch, capsys):
    """QuarkGluon's validation jets stay in the train file; the train script's --train-val-split suits the default
    split only, so any other split is told the value that gives its validation fraction back."""
    script = (REPO / "train_QuarkGluon.sh").read_text()
    assert "--train-val-split 0.8889 " in script  # the default split's 0.8 / (0.8 + 0.1), which the note quotes
    _fake_generator(monkeypatch, lambda kw: kw["outdir"] / "QuarkGluon")
    argv = ["QuarkGluon", "--generate", "--num-jets", "500", "-d", str(tmp_path), "-e", str(envfile)]
    assert cli.main(argv) == 0
    assert "--train-val-split" not in capsys.readouterr().out
    assert cli.main([*argv, "--split", "0.6,0.15,0.25"]) == 0
    note = capsys.readouterr().out.splitlines()[-1]
    assert "--train-val-split 0.8889" in note and note.endswith("fraction pass --train-val-split 0.8")
    assert cli.main([*argv, "--split", "1,0,0"]) == 0
    assert "no validation jets" in capsys.readouterr().out
    assert cli.main(["TopLandscape", *argv[1:], "--split", "0.6,0.15,0.25"]) == 0  # a val file of its own
    assert "--train-val-split" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("error", "code", "expected"),
    [
        (ValueError("--num-jets must be positive, got -3"), 2, "error: --num-jets must be positive, got -3"),
        (ImportError("No module named 'pythia8mc'"), 1, "pip install -e .[generate]"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_generate_mode_errors(cli, envfile, tmp_path, monkeypatch, capsys, error, code, expected):
    def fail(kwargs):
        raise error

    _fake_generator(monkeypatch, fail)
    env_before = envfile.read_text()
    assert cli.main(["JetClass", "--generate", "--num-jets", "-3", "-d", str(tmp_path), "-e", str(envfile)]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]
    assert envfile.read_text() == env_before


def test_generate_options_need_generate(cli, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["TopLandscape", "--num-jets", "10"])
    assert exit_info.value.code == 2
    assert "--num-jets needs --generate" in capsys.readouterr().err


def test_dihiggs_generate_mode_calls_its_generator(cli, envfile, tmp_path, monkeypatch):
    calls = []

    def generate_dihiggs(outdir, num_events, **kwargs):
        calls.append((outdir, num_events, kwargs))
        return outdir / "DiHiggs"

    module = types.ModuleType("jetattn.datasets.dihiggs")
    module.generate_dihiggs = generate_dihiggs
    monkeypatch.setitem(sys.modules, "jetattn.datasets.dihiggs", module)
    argv = ["DiHiggs", "--generate", "--num-events", "300", "-d", str(tmp_path), "-e", str(envfile)]
    assert cli.main(argv) == 0
    assert cli.main([*argv, "--mass", "1500", "--seed", "3"]) == 0
    common = dict(workers=None, split=(0.8, 0.1, 0.1), sqrt_s=14000.0)
    assert calls == [
        (tmp_path, 300, dict(mass=1000.0, seed=42, **common)),
        (tmp_path, 300, dict(mass=1500.0, seed=3, **common)),
    ]
    assert _source(envfile, "DATADIR_DiHiggs") == str(tmp_path / "DiHiggs")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["DiHiggs"], "DiHiggs is generated only"),
        (["DiHiggs", "--generate"], "--generate needs --num-events"),
        (["DiHiggs", "--generate", "--num-events", "10", "--num-jets", "10"], "--num-jets does not apply to DiHiggs"),
        (["JetClass", "--generate", "--num-events", "10"], "--num-events applies to DiHiggs only"),
        (["TopLandscape", "--generate", "--num-jets", "10", "--mass", "500"], "--mass applies to DiHiggs only"),
        (["DiHiggs", "--generate", "--num-events", "10", "--parts", "val"], "applies to downloads"),
        (
            ["DiHiggs", "--generate", "--num-events", "10", "--detector", "cms"],
            "--detector applies to the jet datasets",
        ),
        (["TopLandscape", "--generate", "--num-jets", "10", "--detector", "delphes"], "invalid choice: 'delphes'"),
        (["TopLandscape", "--detector", "cms"], "--detector needs --generate"),
    ],
)
def test_dihiggs_option_errors(cli, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err

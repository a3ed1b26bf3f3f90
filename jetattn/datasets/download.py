"""Download, verify and unpack the public jet-tagging datasets (JetClass, TopLandscape, QuarkGluon).

Layout under the base folder DIR:
    DIR/archives/NAME.tar.part       a download in progress (kept on failure, resumed by HTTP Range)
    DIR/archives/NAME.tar            only ever an archive whose md5 matched
    DIR/archives/NAME.tar.extracted  written after the archive was unpacked; a rerun skips that archive
    DIR/<Archive.dest>/...           the unpacked files, moved in from a staging folder inside DIR

`fetch` (streaming, resume, atomic rename) also downloads the official checkpoints (checkpoints.py).
Only the standard library, requests and tqdm are needed here.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import requests
from tqdm import tqdm

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0
CHUNK_BYTES = 1 << 16  # bytes read per step; a broken connection loses the unfinished step
MIRROR_ENV = "JETATTN_MIRROR"


class DownloadError(RuntimeError):
    """A download, checksum or extraction failure, with a message meant for the user."""


@dataclass(frozen=True)
class Archive:
    """One tar file: where to get it, its md5, and the folder (relative to DIR) its top-level entries go into."""

    filename: str
    md5: str
    url: str
    dest: str


_ZENODO_JETCLASS = "https://zenodo.org/record/6619768/files"
_HQU = "https://hqu.web.cern.ch/datasets"
_JETCLASS_TRAIN_MD5 = (
    "de4fd2dca2e68ab3c85d5cfd3bcc65c3",
    "9722a359c5ef697bea0fbf79bf50f003",
    "1e9f66cd1f915f9d10e90ae1d7761720",
    "47348fc8985319fa4806da87500482fa",
    "6b0ce16bd93b442a8d51914466990279",
    "416e347512e716de51d392bee327b8e9",
    "e9b9c1557b1b39bf0a16e4ab631ae451",
    "5bfc6cb285ccb7680cefa9ac82ad1a2e",
    "540c1a0d66dfad78d2b363c5740ccf86",
    "668f40b3275167ff7104c48317c0ae2a",
)


def _jetclass(filename: str, md5: str, dest: str) -> Archive:
    return Archive(filename, md5, f"{_ZENODO_JETCLASS}/{filename}", dest)


# What each tar holds decides `dest`: the train parts hold bare ROOT files (HToBB_000.root, ...), the val/test
# tars a val_5M/ or test_20M/ folder, and TopLandscape.tar/QuarkGluon.tar a folder named after the dataset.
# If a layout turns out different, fix it here (and DATASET_FOLDERS below); nothing else knows about it.
ARCHIVES: dict[str, dict[str, Archive]] = {
    "JetClass": {
        **{
            f"train{i}": _jetclass(f"JetClass_Pythia_train_100M_part{i}.tar", md5, "JetClass/Pythia/train_100M")
            for i, md5 in enumerate(_JETCLASS_TRAIN_MD5)
        },
        "val": _jetclass("JetClass_Pythia_val_5M.tar", "7235ccb577ed85023ea3ab4d5e6160cf", "JetClass/Pythia"),
        "test": _jetclass("JetClass_Pythia_test_20M.tar", "64e5156d26d101adeb43b8388207d767", "JetClass/Pythia"),
    },
    "TopLandscape": {
        "all": Archive(
            "TopLandscape.tar", "4fca2e47afbf321b0f201da6b804c404", f"{_HQU}/TopLandscape/TopLandscape.tar", "."
        ),
    },
    "QuarkGluon": {
        "all": Archive("QuarkGluon.tar", "d8dd7f71a7aaaf9f1d2ee3cddef998f9", f"{_HQU}/QuarkGluon/QuarkGluon.tar", "."),
    },
}

# The folder (relative to DIR) that env.sh's DATADIR_<dataset> points at.
DATASET_FOLDERS = {"JetClass": "JetClass/Pythia", "TopLandscape": "TopLandscape", "QuarkGluon": "QuarkGluon"}

# Part names accepted by select_archives besides the keys of ARCHIVES["JetClass"].
PART_GROUPS = {"all": None, "train": [f"train{i}" for i in range(len(_JETCLASS_TRAIN_MD5))]}


def select_archives(dataset: str, parts: Sequence[str] | None = None, mirror: str | None = None) -> list[Archive]:
    """The archives of `dataset` (all of them, or the named JetClass `parts`), fetched from `mirror` if given.

    A mirror is a base URL holding the tar files side by side: NAME is fetched from `{mirror}/NAME`.
    """
    table = ARCHIVES[dataset]
    names: list[str] = []
    for part in parts or ["all"]:
        group = PART_GROUPS.get(part, [part])
        for name in table if group is None else group:
            if name not in table:
                raise ValueError(f"{dataset} has no part {part!r} (choose from {', '.join(part_choices(dataset))})")
            if name not in names:
                names.append(name)
    archives = [table[name] for name in names]
    if mirror:
        archives = [replace(a, url=mirror_url(mirror, a.filename)) for a in archives]
    return archives


def mirror_url(base: str, filename: str) -> str:
    """The URL of `filename` on a server holding the files side by side under the URL `base` (a mirror)."""
    return f"{base.rstrip('/')}/{filename}"


def part_choices(dataset: str) -> list[str]:
    return ["all", *(["train"] if dataset == "JetClass" else []), *(k for k in ARCHIVES[dataset] if k != "all")]


def download_dataset(
    dataset: str,
    outdir: Path,
    parts: Sequence[str] | None = None,
    *,
    force: bool = False,
    mirror: str | None = None,
    delete_archives: bool = False,
) -> Path:
    """Download, verify and unpack `dataset` under `outdir`; returns the folder for env.sh's DATADIR_<dataset>."""
    install(select_archives(dataset, parts, mirror), outdir, force=force, delete_archives=delete_archives)
    folder = (outdir / DATASET_FOLDERS[dataset]).resolve()
    if not folder.is_dir():
        raise DownloadError(
            f"the {dataset} archives were unpacked but {folder} does not exist: their layout differs from "
            "ARCHIVES/DATASET_FOLDERS in jetattn/datasets/download.py"
        )
    return folder


def install(
    archives: Sequence[Archive],
    outdir: Path,
    *,
    force: bool = False,
    delete_archives: bool = False,
    max_resumes: int = 3,
) -> None:
    """Fetch and unpack each archive into `outdir`, skipping those already unpacked (unless `force`)."""
    store = outdir / "archives"
    store.mkdir(parents=True, exist_ok=True)
    for archive in archives:
        tar_path = store / archive.filename
        marker = store / f"{archive.filename}.extracted"
        if force:
            for stale in (tar_path, marker, part_path(tar_path)):
                stale.unlink(missing_ok=True)
        elif marker.is_file() and marker.read_text().strip() == archive.md5:
            print(f"{archive.filename}: already downloaded and unpacked, skipped (-f to redo)")
            continue
        if tar_path.is_file():
            print(f"{archive.filename}: already downloaded and verified")
        else:
            print(f"{archive.filename}: downloading {archive.url}")
            fetch(archive.url, archive.md5, tar_path, max_resumes=max_resumes)
        print(f"{archive.filename}: unpacking into {outdir / archive.dest}")
        extract(tar_path, outdir, archive.dest)
        marker.write_text(archive.md5 + "\n")
        if delete_archives:
            tar_path.unlink()


def fetch(
    url: str,
    md5: str | None,
    path: Path,
    *,
    verify: Callable[[Path], None] | None = None,
    max_resumes: int = 3,
) -> None:
    """Download `url` to `path`, resuming `path`.part if present; `path` appears only once the file is verified:
    its md5 matches (unless `md5` is None) and `verify(part_file)` raised no DownloadError (if given).

    A connection lost mid-file is resumed up to `max_resumes` times; a host that cannot be reached fails at once.
    A file failing verification is deleted, so that a rerun downloads it again.
    """
    part = part_path(path)
    host = urlsplit(url).hostname or url
    digest = _md5_of(part) if md5 and part.is_file() else hashlib.md5()
    with requests.Session() as session:
        for attempt in range(max_resumes + 1):
            offset = part.stat().st_size if part.is_file() else 0
            headers = {"Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            try:
                response = session.get(url, headers=headers, stream=True, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
            except requests.RequestException as exc:
                kept = f"; the partial download {part} is kept for a rerun" if part.is_file() else ""
                raise DownloadError(
                    f"cannot reach {host} ({_reason(exc)}): no network? Rerun when online, or set --mirror/"
                    f"{MIRROR_ENV} to a server holding {path.name}{kept}"
                ) from exc
            with response:
                if offset and response.status_code == 416:
                    break  # the partial file already holds the whole archive: the md5 check below decides
                if not response.ok:
                    raise DownloadError(f"cannot download {url}: HTTP {response.status_code} {response.reason}")
                if offset and not _resumes_at(response, offset):
                    print(f"{host} ignored the resume request: downloading {path.name} from the start")
                    offset, digest = 0, hashlib.md5()
                try:
                    _stream(response, part, offset, digest, path.name)
                    break
                except (requests.RequestException, _Incomplete) as exc:
                    received = part.stat().st_size - offset
                    if received == 0 or attempt == max_resumes:
                        raise DownloadError(
                            f"download of {path.name} from {host} broke off ({_reason(exc)}); the partial file "
                            f"{part} is kept: rerun the same command to resume"
                        ) from exc
                    print(f"connection to {host} lost ({_reason(exc)}): resuming {path.name}")
    verified(part, url, path, md5, digest, verify)
    os.replace(part, path)


def verified(part: Path, url: str, path: Path, md5: str | None, digest, verify: Callable[[Path], None] | None) -> None:
    """The downloaded ``part`` file checked before it takes its final name ``path``: its md5 ``digest`` against
    ``md5``, then ``verify``; a file that fails is deleted, so that a rerun downloads it again."""
    if md5 is not None and digest.hexdigest() != md5:
        part.unlink()
        raise DownloadError(
            f"md5 mismatch for {path.name} from {url}: got {digest.hexdigest()}, expected {md5}; "
            "the corrupt file was deleted, rerun to download it again"
        )
    if verify is not None:
        try:
            verify(part)
        except DownloadError as exc:
            part.unlink()
            raise DownloadError(
                f"{path.name} from {url} failed verification: {exc}; the file was deleted, rerun to download it again"
            ) from None


def extract(tar_path: Path, outdir: Path, dest: str) -> None:
    """Unpack `tar_path` into a staging folder inside `outdir`, then move its top-level entries into `outdir/dest`.

    An entry of the same name already there (a previous, unfinished run) is replaced.
    """
    target = outdir / dest
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".unpack-{tar_path.name}-", dir=outdir))
    try:
        unpacked = staging / "unpacked"
        try:
            with tarfile.open(tar_path) as tar:
                _safe_extractall(tar, unpacked)
        except tarfile.TarError as exc:
            raise DownloadError(f"cannot unpack {tar_path}: {exc}") from exc
        entries = sorted(unpacked.iterdir())
        # a tar wrapping its files in a folder named like dest (train_100M/...) fills dest, not dest/dest
        if len(entries) == 1 and entries[0].is_dir() and entries[0].name == Path(dest).name:
            entries = sorted(entries[0].iterdir())
        replaced = staging / "replaced"
        replaced.mkdir()
        for entry in entries:
            final = target / entry.name
            if final.exists() or final.is_symlink():
                os.replace(final, replaced / entry.name)
            os.replace(entry, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _safe_extractall(tar: tarfile.TarFile, path: Path) -> None:
    if hasattr(tarfile, "data_filter"):
        tar.extractall(path, filter="data")  # refuses absolute paths, '..' and links leaving `path`
        return
    for member in tar.getmembers():
        if member.name.startswith("/") or ".." in Path(member.name).parts or member.issym() or member.islnk():
            raise tarfile.TarError(f"refusing to unpack {member.name!r}")
    tar.extractall(path)


class _Incomplete(Exception):
    pass


def _stream(response: requests.Response, part: Path, offset: int, digest: hashlib._Hash, name: str) -> None:
    """Append the body of `response` to `part` (truncated first when `offset` is 0), hashing as it goes."""
    length = response.headers.get("Content-Length")
    remaining = int(length) if length and length.isdigit() else None
    if remaining is not None:
        free = shutil.disk_usage(part.parent).free
        if remaining > free:
            raise DownloadError(
                f"not enough disk space in {part.parent} for {name}: {remaining / 1e9:.1f} GB more needed, "
                f"{free / 1e9:.1f} GB free"
            )
    total = None if remaining is None else offset + remaining
    with (
        open(part, "ab" if offset else "wb") as out,
        tqdm(total=total, initial=offset, desc=name, unit="B", unit_scale=True, unit_divisor=1024) as bar,
    ):
        for chunk in response.iter_content(CHUNK_BYTES):
            out.write(chunk)
            digest.update(chunk)
            bar.update(len(chunk))
    if total is not None and part.stat().st_size < total:
        raise _Incomplete(f"got {part.stat().st_size} of {total} bytes")


def _resumes_at(response: requests.Response, offset: int) -> bool:
    content_range = response.headers.get("Content-Range", "")
    return response.status_code == 206 and content_range.startswith(f"bytes {offset}-")


def part_path(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _md5_of(path: Path) -> hashlib._Hash:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest


def _reason(exc: BaseException) -> str:
    """A short cause for an error line: 'Connection refused' rather than urllib3's nested repr."""
    text = str(exc)
    if isinstance(exc, requests.ConnectTimeout):
        return f"no answer within {CONNECT_TIMEOUT_S:g} s"
    if "timed out" in text.lower():
        return f"no data for {READ_TIMEOUT_S:g} s"
    if isinstance(exc, _Incomplete) or "Connection broken" in text:
        return "connection closed before the end of the file"
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    return match.group(1).strip() if match else type(exc).__name__

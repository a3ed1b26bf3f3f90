"""The official JetClass checkpoints of the public Particle Transformer repository, for the FineTune models.

    models/ParT_{kin,kinpid,full}.pt         ParT trained on the 100M JetClass jets
    models/ParticleNet_{kin,kinpid,full}.pt  ParticleNet, the same

Each file is fetched by `download.fetch` (streaming, resume, offline and atomic rules of the datasets) and
gets its final name only once verified. No checksums are published, so a file is verified by its size and
by loading it with `strict=True` into the model that our network file builds from the matching JetClass YAML.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jetattn.datasets import download

BASE_URL = "https://raw.githubusercontent.com/jet-universe/particle_transformer/main/models"
NETWORKS = {"ParT": "networks/example_ParticleTransformer.py", "ParticleNet": "networks/example_ParticleNet.py"}
FEATURE_SETS = ("kin", "kinpid", "full")

# Sizes in bytes of the official files where one was measured (on a copy of the file). The others are only
# checked to hold at least the bytes of the tensors the network needs: their exact sizes are not known here.
OFFICIAL_BYTES = {"ParticleNet_kin.pt": 1_514_546}


@dataclass(frozen=True)
class Checkpoint:
    """One official file: `family` (a key of NETWORKS) trained on the JetClass `features` set, served under `base`."""

    family: str
    features: str
    base: str = BASE_URL

    @property
    def filename(self) -> str:
        return f"{self.family}_{self.features}.pt"

    @property
    def url(self) -> str:
        return download.mirror_url(self.base, self.filename)

    @property
    def network(self) -> str:
        return NETWORKS[self.family]

    @property
    def data_config(self) -> str:
        return f"data/JetClass/JetClass_{self.features}.yaml"


def part_choices() -> list[str]:
    return ["all", *NETWORKS, *FEATURE_SETS]


def select_checkpoints(parts: Sequence[str] | None = None, mirror: str | None = None) -> list[Checkpoint]:
    """The checkpoints named by `parts`: families and feature sets filter independently, so ["ParT"] is the
    three ParT files, ["kin"] both kin files, ["ParT", "kin"] ParT_kin.pt alone, and None (or "all") all six."""
    parts = list(parts or ())
    unknown = [part for part in parts if part not in part_choices()]
    if unknown:
        raise ValueError(f"no checkpoint part {unknown[0]!r} (choose from {', '.join(part_choices())})")
    families = [name for name in NETWORKS if name in parts] or list(NETWORKS)
    features = [name for name in FEATURE_SETS if name in parts] or list(FEATURE_SETS)
    return [Checkpoint(family, feature, mirror or BASE_URL) for family in families for feature in features]


def download_checkpoints(
    checkpoints: Sequence[Checkpoint],
    outdir: Path,
    repo: Path,
    *,
    force: bool = False,
    max_resumes: int = 3,
) -> list[Path]:
    """Fetch and verify each checkpoint into `outdir`, skipping files already there (unless `force`).

    `repo` holds the network files and YAMLs the files are verified with. Returns the checkpoint paths.
    """
    for package in ("torch", "weaver"):  # the verification needs them: a missing one stops before any download
        importlib.import_module(package)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for checkpoint in checkpoints:
        path = outdir / checkpoint.filename
        paths.append(path)
        if force:
            for stale in (path, download.part_path(path)):
                stale.unlink(missing_ok=True)
        elif path.is_file():
            print(f"{checkpoint.filename}: already downloaded and verified, skipped (-f to redo)")
            continue
        print(f"{checkpoint.filename}: downloading {checkpoint.url}")
        download.fetch(
            checkpoint.url,
            None,
            path,
            verify=lambda part, c=checkpoint: verify(part, c, repo),
            max_resumes=max_resumes,
        )
        print(f"{checkpoint.filename}: verified with {checkpoint.network} and {checkpoint.data_config}")
    return paths


def verify(path: Path, checkpoint: Checkpoint, repo: Path) -> None:
    """Raise DownloadError (one line: why) unless `path` is a state_dict that loads with strict=True into the model
    `checkpoint.network` builds from `checkpoint.data_config`, and has the official file's size where known."""
    size = path.stat().st_size
    official = OFFICIAL_BYTES.get(checkpoint.filename)
    if official is not None and size != official:
        raise download.DownloadError(f"it has {size} bytes, the official file {official}")

    # here, not at the top: dataset downloads need neither torch nor weaver
    from jetattn.deps import ToolError
    from jetattn.weaver import load_checkpoint

    model = build_model(checkpoint, repo)
    needed = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    if size < needed:
        raise download.DownloadError(f"it has {size} bytes, fewer than the {needed} bytes of weights it must hold")
    try:
        load_checkpoint(model, path)  # the tools' one loader: weaver's layouts, strict, one line on a mismatch
    except ToolError as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        raise download.DownloadError(f"{reason}; network {checkpoint.network} with {checkpoint.data_config}") from None


def build_model(checkpoint: Checkpoint, repo: Path):
    """The model of `checkpoint.network` for the JetClass YAML of its features, as weaver builds it."""
    from jetattn.weaver import build_network

    model, _ = build_network(repo / checkpoint.network, repo / checkpoint.data_config, {}, for_inference=False)
    return model

"""Shared fixtures: repository paths and the real-jet samples from ../shared (skipped with a reason where absent)."""

import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core: one thread each, for torch here and for the processes the tests start
    # (weaver, the train scripts), so that the workers do not fight over the cores
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("JETATTN_SHARED", REPO.parent / "shared"))
REAL_DATA = SHARED / "data" / "real"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Folder with the 1000-jet real samples; tests that use it skip with a reason where it is absent."""
    if not (REAL_DATA / "TopLandscape_sample_1000.root").exists():
        pytest.skip(f"real-jet samples not found under {REAL_DATA} (a user's clone has no ../shared)")
    return REAL_DATA


@pytest.fixture(scope="session")
def shared_models() -> Path:
    path = SHARED / "models"
    if not (path / "ParticleNet_kin.pt").exists():
        pytest.skip(f"official checkpoints not found under {path}")
    return path


@pytest.fixture(scope="session")
def hbb_sample(real_data, tmp_path_factory) -> Path:
    """The real H->bb jets with the observers JetClass_kin.yaml lists but the sample lacks, as zeros."""
    import yaml
    from weaver_run import JETCLASS_YAML, read_jets, with_zero_branches

    src = real_data / "JetClass_Hbb_sample_1000.root"
    observers = yaml.safe_load(JETCLASS_YAML.read_text())["observers"]
    lacking = [name for name in observers if name not in read_jets(src)]
    return with_zero_branches(src, tmp_path_factory.mktemp("hbb") / "hbb.root", lacking)


@pytest.fixture(scope="session")
def ten_class_sample(real_data, tmp_path_factory):
    """The real H->bb jets relabelled in turn as each JetClass class, with the observers the YAML reads as zeros
    (a test of the plumbing: the labels carry no physics)."""
    import numpy as np
    import yaml
    from weaver_run import JETCLASS_YAML, read_jets, write_jets

    columns = read_jets(real_data / "JetClass_Hbb_sample_1000.root")
    classes = [name for name in columns if name.startswith("label_")]
    n = len(columns["label_Hbb"])
    for i, name in enumerate(classes):
        columns[name] = (np.arange(n) % len(classes) == i).astype(np.float32)
    for name in yaml.safe_load(JETCLASS_YAML.read_text())["observers"]:
        columns.setdefault(name, np.zeros(n, dtype=np.float32))
    return write_jets(tmp_path_factory.mktemp("jetclass") / "ten_classes.root", columns)

"""Shared fixtures: repository paths and the real-jet samples from ../shared (skipped with a reason where absent)."""

import os
from pathlib import Path

import pytest

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

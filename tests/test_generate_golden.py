"""Generated files stay bit-identical while the physics does not change: small fixed-seed samples of every dataset,
one worker, against digests of every branch recorded in generate_golden.json (see that file for where they come
from and when a refresh is allowed).

Refresh (only when the physics changes on purpose; say why in the commit):
    PYTHONPATH=. python tests/test_generate_golden.py > tests/generate_golden.json
"""

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import pytest

GOLDEN = Path(__file__).with_name("generate_golden.json")
# recipe -> keyword arguments of generate(); every class of each, a few dozen jets (events) in all, default settings
SAMPLES = {
    "TopLandscape": {"number": 20, "seed": 11},
    "QuarkGluon": {"number": 15, "seed": 12},
    "JetClass": {"number": 10, "seed": 13, "files_per_class": 1},
    "DiHiggs": {"number": 8, "seed": 14, "split": (0.5, 0.25, 0.25)},
}


def generate_sample(dataset: str, outdir: Path) -> Path:
    from jetattn.datasets.dihiggs import DiHiggs
    from jetattn.datasets.generate import generate
    from jetattn.datasets.recipes import jet_dataset

    recipe = DiHiggs() if dataset == "DiHiggs" else jet_dataset(dataset)
    return generate(recipe, outdir, workers=1, **SAMPLES[dataset])


def branch_digests(folder: Path) -> dict[str, str]:
    """sha256 of each branch's content (jagged: the counts, then the values) over every ROOT file under `folder`
    in path order, and of the file list with entries per file; the ROOT bytes themselves hold timestamps and
    UUIDs. Other files (DiHiggs' cross_sections.json) are hashed as they are."""
    import awkward as ak
    import numpy as np
    import uproot

    hashes: dict = {}
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if path.suffix != ".root":
            hashes[name] = hashlib.sha256(path.read_bytes())
            continue
        tree = uproot.open(path)["tree"]
        files.append(f"{name}:{tree.num_entries}")
        for branch in tree.keys():
            values = tree[branch].array(library="ak")
            digest = hashes.setdefault(branch, hashlib.sha256())
            if values.ndim > 1:
                digest.update(np.ascontiguousarray(ak.to_numpy(ak.num(values))).tobytes())
                values = ak.flatten(values)
            values = np.ascontiguousarray(ak.to_numpy(values))
            digest.update(values.dtype.str.encode() + values.tobytes())
    hashes["files"] = hashlib.sha256("\n".join(files).encode())
    return {name: digest.hexdigest() for name, digest in sorted(hashes.items())}


def sample_digests(dataset: str) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as out:
        return branch_digests(generate_sample(dataset, Path(out)))


@pytest.mark.slow  # Pythia for every dataset: ~25 s in all, run by make test
@pytest.mark.parametrize("dataset", list(SAMPLES))
def test_generated_files_match_the_golden_digests(dataset):
    pytest.importorskip("pythia8mc", reason="generation needs pip install -e .[generate]")
    pytest.importorskip("fastjet", reason="generation needs pip install -e .[generate]")
    golden = json.loads(GOLDEN.read_text())
    assert golden["samples"][dataset] == json.loads(json.dumps(SAMPLES[dataset])), "the samples changed: refresh"
    golden = golden["digests"][dataset]
    digests = sample_digests(dataset)
    assert digests.keys() == golden.keys()
    changed = [name for name in golden if digests[name] != golden[name]]
    assert not changed, f"{dataset}: these branches changed: {changed}"


if __name__ == "__main__":
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    golden = {
        "comment": (
            f"Digests of small generated samples (tests/test_generate_golden.py), from commit {commit}. "
            "Refresh with `PYTHONPATH=. python tests/test_generate_golden.py > tests/generate_golden.json`, "
            "only when the physics changes on purpose."
        ),
        "samples": SAMPLES,
        "digests": {dataset: sample_digests(dataset) for dataset in SAMPLES},
    }
    json.dump(golden, sys.stdout, indent=1)
    print()

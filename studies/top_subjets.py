#!/usr/bin/env python3
"""Where in the top jet the real TopLandscape jets' low-mass tail sits (docs/generator.md).

Each top jet's constituents are clustered into exactly three exclusive-kT subjets (FastJet); the pair whose mass
is closest to the W's is the W candidate and the third subjet the b candidate. For each file, prints the
10/25/50/75/90 % quantiles (GeV) of the top jet mass, the W candidate's mass and the b subjet's share of the jet
energy:

    ./studies/top_subjets.py GENERATED_FILE [GENERATED_FILE ...] \
        [--real ../shared/data/real/TopLandscape_sample_1000.root]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jetattn.datasets.compare import read_classes  # noqa: E402
from studies.results_study import REAL as REAL_SAMPLES  # noqa: E402

REAL = REAL_SAMPLES / "TopLandscape_sample_1000.root"
W_MASS = 80.4  # GeV
QUANTILES = (10, 25, 50, 75, 90)


def mass(p4: np.ndarray) -> float:
    """Invariant mass of one (px, py, pz, E) in GeV, zero where rounding makes it imaginary."""
    return float(np.sqrt(max(p4[3] ** 2 - p4[0] ** 2 - p4[1] ** 2 - p4[2] ** 2, 0.0)))


def top_parts(constituents: np.ndarray) -> tuple[float, float, float]:
    """(top mass, W candidate mass, b subjet energy share) of one jet's constituents, shape (n, 4): px, py, pz, E."""
    import fastjet

    particles = [fastjet.PseudoJet(*map(float, p)) for p in constituents]
    sequence = fastjet.ClusterSequence(particles, fastjet.JetDefinition(fastjet.kt_algorithm, 1.0))
    subjets = np.array([[s.px(), s.py(), s.pz(), s.E()] for s in sequence.exclusive_jets(3)])
    _, w_pair, b = min(
        (abs(mass(subjets[i] + subjets[j]) - W_MASS), (i, j), b) for i, j, b in ((0, 1, 2), (0, 2, 1), (1, 2, 0))
    )
    return mass(subjets.sum(axis=0)), mass(subjets[list(w_pair)].sum(axis=0)), subjets[b, 3] / subjets[:, 3].sum()


def top_jets(path: Path) -> list[np.ndarray]:
    """The constituents (px, py, pz, E) of each top jet of a TopLandscape-format file."""
    import awkward as ak

    jets = read_classes(path, "TopLandscape")["top"]
    flat = np.stack([ak.to_numpy(ak.flatten(jets[c])) for c in ("part_px", "part_py", "part_pz", "part_energy")], 1)
    return np.split(flat.astype(np.float64), np.cumsum(ak.to_numpy(ak.num(jets["part_px"])))[:-1])


def summary(path: Path) -> dict[str, np.ndarray]:
    parts = np.array([top_parts(jet) for jet in top_jets(path)])
    return {
        "jets": len(parts),
        "top mass": np.percentile(parts[:, 0], QUANTILES),
        "W candidate mass": np.percentile(parts[:, 1], QUANTILES),
        "b subjet energy share": np.percentile(parts[:, 2], QUANTILES),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("generated", nargs="+", type=Path, help="TopLandscape-format files")
    parser.add_argument("--real", type=Path, default=REAL, help="the real TopLandscape jets (default: %(default)s)")
    args = parser.parse_args(argv)
    for path in [*args.generated, args.real]:
        if not path.is_file():
            parser.error(f"{path}: no such file")
    print(f"quantiles {', '.join(f'{q} %' for q in QUANTILES)}")
    for path in [*args.generated, args.real]:
        result = summary(path)
        print(f"{path} ({result.pop('jets')} top jets)")
        for name, values in result.items():
            print(f"  {name:22s} {' '.join(f'{v:8.3f}' for v in values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

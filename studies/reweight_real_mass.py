#!/usr/bin/env python3
"""What the jet-mass mismatch between generated and real TopLandscape jets costs a tagger (docs/results.md).

For each prediction file on the real TopLandscape jets (weaver --predict, file order kept), prints the real AUC,
then the AUC with the real jets weighted so that each class's jet-mass distribution is the generated one: the real
tops alone, then both classes. A weight is not a new training: the reweighted AUC bounds what a generator with
the real mass shapes would give from above.

    ./studies/reweight_real_mass.py GENERATED_FILE PRED_REAL.root [PRED_REAL.root ...] \
        [--real ../shared/data/real/TopLandscape_sample_1000.root]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jetattn.datasets.compare import distributions, read_classes  # noqa: E402
from studies.results_study import REAL as REAL_SAMPLES  # noqa: E402

REAL = REAL_SAMPLES / "TopLandscape_sample_1000.root"
# GeV: fine around the top peak, where the two samples differ
MASS_BINS = np.array([0, 140, 150, 160, 165, 170, 175, 180, 185, 190, 200, 220, np.inf])
CLASSES = (("top", 1), ("QCD", 0))


def jet_masses(path: Path) -> dict[str, np.ndarray]:
    """Each TopLandscape class's jet masses (GeV, from the constituents), in file order."""
    return {name: distributions(jets, 0.8)["jet_mass"] for name, jets in read_classes(path, "TopLandscape").items()}


def mass_weights(real: np.ndarray, generated: np.ndarray, bins: np.ndarray = MASS_BINS) -> np.ndarray:
    """Per real jet: the generated fraction of its mass bin over the real fraction, so that the weighted real
    histogram is the generated one. A bin without real jets cannot be filled and is left out."""
    real_counts, _ = np.histogram(real, bins)
    generated_counts, _ = np.histogram(generated, bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(
            real_counts > 0, (generated_counts / generated_counts.sum()) / (real_counts / real_counts.sum()), 0.0
        )
    return ratio[np.clip(np.digitize(real, bins) - 1, 0, len(bins) - 2)]


def reweighted_aucs(prediction: Path, real: dict[str, np.ndarray], generated: dict[str, np.ndarray]) -> dict:
    """The real AUC of one prediction file, and with the real tops (then both classes) weighted to the generated
    jet mass."""
    import uproot
    from sklearn.metrics import roc_auc_score

    with uproot.open(prediction) as f:
        columns = f["Events"].arrays(["jet_isTop", "score_jet_isTop"], library="np")
    label, score = columns["jet_isTop"], columns["score_jet_isTop"]
    for name, flag in CLASSES:
        if (label == flag).sum() != len(real[name]):
            raise ValueError(f"{prediction}: {(label == flag).sum()} {name} jets, the real file {len(real[name])}")
    weight = np.ones(len(label))
    for name, flag in CLASSES:
        weight[label == flag] = mass_weights(real[name], generated[name])
    return {
        "auc": roc_auc_score(label, score),
        "tops_weighted": roc_auc_score(label, score, sample_weight=np.where(label == 1, weight, 1.0)),
        "both_weighted": roc_auc_score(label, score, sample_weight=weight),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("generated", type=Path, help="generated TopLandscape file (or folder) the model trained on")
    parser.add_argument("predictions", type=Path, nargs="+", help="weaver --predict outputs on the real jets")
    parser.add_argument("--real", type=Path, default=REAL, help=f"the real jets (default {REAL})")
    args = parser.parse_args(argv)
    for path in (args.generated, args.real, *args.predictions):
        if not path.exists():
            parser.error(f"{path}: no such file")
    real, generated = jet_masses(args.real), jet_masses(args.generated)
    for name, _ in CLASSES:
        real_share, generated_share = (real[name] < 160).mean(), (generated[name] < 160).mean()
        print(f"{name}: below 160 GeV {real_share:.1%} real, {generated_share:.1%} generated")
    for prediction in args.predictions:
        aucs = reweighted_aucs(prediction, real, generated)
        print(
            f"{prediction}: AUC {aucs['auc']:.4f}; real tops weighted to the generated jet mass "
            f"{aucs['tops_weighted']:.4f}; both classes {aucs['both_weighted']:.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Muons, and the first form of Delphes 3.3's particle flow, against the real top jets' low-mass tail
(docs/generator.md, "The real top jets' low-mass tail").

Delphes 3.3.0 brought an "improved energy-flow algorithm for high momentum" (its CHANGELOG): a track that the
calorimeter measures better than the tracker takes its tower's energy. In its first form (modules/Calorimeter.cc at
commit 00e8dca of delphes/delphes) a track reaches the particle flow only through its tower's ECAL or HCAL track
list, which a muon (energy fractions 0 and 0) never joins, so muons are lost; a tower still makes its neutral
beside the tracks that took its energy; and an HCAL track that the calorimeter measures better is scaled by
ecalEnergy / fECalTrackEnergy[0], the ECAL excess over the tower's calorimeter-measured electrons: infinite or NaN
when it has none. The later form, which `--detector atlas` emulates, scales it by the HCAL excess and passes muon
tracks straight to the flow.

Variants, each on top jets of TopLandscape's recipe (one Pythia run, the recipe's seeds):
- recipe: `atlas` as it is;
- no-muons: the same without muon tracks;
- first-3.3: the first form, with the HCAL factor 1e4 (finite, so FastJet clusters it; like the infinite one, it
  throws the jet far out of the 550-650 GeV window).

    ./studies/delphes_eflow_330.py VARIANT [--jets 1500] [--seconds 600] [--seed 41]

prints the events measured, the top jets kept, and their jet-mass quantiles (GeV) and share below 160 GeV.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jetattn.datasets import detector  # noqa: E402
from jetattn.datasets.cards import Calorimeter  # noqa: E402

VARIANTS = ("recipe", "no-muons", "first-3.3")
OUT_OF_WINDOW = 1.0e4  # stands in for ecalEnergy / 0
QUANTILES = (10, 25, 50, 75)
CORRECTED_TOWER_FLOW = detector._tower_flow_3_3  # kept: `emulated` replaces it


def first_form_tower_flow(
    calorimeter: Calorimeter,
    energy: np.ndarray,
    eta_centre: np.ndarray,
    track_deposit: np.ndarray,
    track_resolution: np.ndarray,
    track_tower: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`detector._tower_flow_3_3` (same arguments and returns) as commit 00e8dca has it: the excess over the
    tracker-measured tracks is a neutral whether or not a track took the tower, and the tracks the calorimeter
    measures better are scaled by the excess (ECAL, as corrected later) or by `OUT_OF_WINDOW` (HCAL: the ratio
    to an ECAL sum that holds no such track)."""
    excess, _, scale = CORRECTED_TOWER_FLOW(
        calorimeter, energy, eta_centre, track_deposit, track_resolution, track_tower
    )
    significant = excess >= calorimeter.significance_min * calorimeter.resolution(eta_centre, np.maximum(excess, 0))
    neutral = (excess >= calorimeter.energy_min) & significant
    if calorimeter.neutral_pid == 0:  # the HCAL pass
        better = calorimeter.resolution(eta_centre[track_tower], track_deposit) < track_resolution * track_deposit
        scale = np.where(better, OUT_OF_WINDOW, 1.0)
    return excess, neutral, scale


def without_muon_tracks(measured: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The particle-flow objects less the muon tracks."""
    keep = ~((np.abs(measured["pid"]) == 13) & (measured["charge"] != 0))
    return {name: value[keep] for name, value in measured.items()}


@contextlib.contextmanager
def emulated(variant: str):
    """`detector` as the variant runs it, for the duration of the block."""
    flow = detector.apply_particle_flow
    with contextlib.ExitStack() as stack:
        if variant != "recipe":
            stack.enter_context(
                mock.patch.object(detector, "apply_particle_flow", lambda *a, **k: without_muon_tracks(flow(*a, **k)))
            )
        if variant == "first-3.3":
            stack.enter_context(mock.patch.object(detector, "_tower_flow_3_3", first_form_tower_flow))
        yield


def top_jet_masses(variant: str, jets: int, seconds: float, seed: int) -> tuple[int, np.ndarray]:
    """(events measured, masses of the top jets kept) of one Pythia run, until `jets` jets or `seconds`."""
    from tqdm import tqdm

    from jetattn.datasets.generate import selected_batches, task_pythia
    from jetattn.datasets.pool import Task
    from jetattn.datasets.recipes import jet_dataset

    recipe = jet_dataset("TopLandscape")
    task = Task(recipe, recipe.classes.index("Top"), 0, seed, ((Path("unused"), jets),))
    events, masses = 0, []
    start = time.monotonic()
    with emulated(variant), tqdm(total=jets, unit="jet", desc=variant) as bar:
        for num_events, selected in selected_batches(task, task_pythia(task)):
            events += num_events
            masses += [jet.columns["mass"] for _, jet in selected]
            bar.update(len(selected))
            if len(masses) >= jets or time.monotonic() - start > seconds:
                break
    return events, np.array(masses[:jets])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variant", choices=VARIANTS)
    parser.add_argument("--jets", type=int, default=1500, help="stop after this many top jets (default 1500)")
    parser.add_argument("--seconds", type=float, default=600.0, help="or after this long (default 600)")
    parser.add_argument("--seed", type=int, default=41)
    args = parser.parse_args(argv)
    events, masses = top_jet_masses(args.variant, args.jets, args.seconds, args.seed)
    line = f"{args.variant}: {events} events measured, {len(masses)} top jets kept"
    if len(masses):
        quantiles = " / ".join(f"{q:.1f}" for q in np.percentile(masses, QUANTILES))
        line += f"; jet mass at 10/25/50/75 %: {quantiles} GeV; below 160 GeV: {100 * np.mean(masses < 160):.1f} %"
    print(line)


if __name__ == "__main__":
    main()

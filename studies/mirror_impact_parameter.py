#!/usr/bin/env python3
"""Which JetClass `full` inputs change sign when a jet is reflected in φ about its axis (`-o mirror`,
docs/results.md "Each jet and its mirror image").

For each JetClass-format file with truth (`./get_datasets.py JetClass --generate`: part_d0val, part_charge and the
b and c hadrons aux_hadron_*), prints:

- of the displaced tracks (|d0| / d0err > 3), the share whose d0 has the sign of the track's φ relative to the
  nearest weakly decaying b or c hadron, and relative to the jet axis. d0 = (x py - y px) / pT is negative in the
  reflected jet, so a share far from 0.5 says that Δφ cannot be mirrored without d0;
- the mean of q·(φ of a neutral hadron - φ of the track) over pairs of a 1-5 GeV track and a neutral hadron in
  the strip |Δη| < 0.05, |Δφ| < 0.5 around it: the magnetic field bends positive and negative particles opposite
  ways before they reach the calorimeter, and the reflection, which keeps the charges, would reverse that;
- the mean jet charge (κ = 0.5), which a reflection that also flipped the charges would reverse: pp collisions
  make more positive than negative leading particles.

    ./studies/mirror_impact_parameter.py FILE.root [FILE.root ...]
"""

from __future__ import annotations

import argparse

import awkward as ak
import numpy as np
import uproot

BRANCHES = ("part_charge", "part_isNeutralHadron", "part_d0val", "part_d0err", "part_deta", "part_dphi", "part_px")
BRANCHES += ("part_py",)
BRANCHES += ("jet_eta", "jet_phi", "aux_hadron_eta", "aux_hadron_phi")


def wrap(dphi):
    return (dphi + np.pi) % (2 * np.pi) - np.pi


def d0_sign_agreement(jets: ak.Array, significance: float = 3.0) -> dict[str, float]:
    """Of the tracks with |d0| / d0err above `significance`: their number per jet and the share whose d0 has the
    sign of Δφ to the nearest b or c hadron (those that have one) and to the jet axis."""
    charged = jets.part_charge != 0
    d0 = jets.part_d0val[charged] / jets.part_d0err[charged]
    displaced = abs(d0) > significance
    sign = np.sign(d0[displaced])
    dphi_jet = jets.part_dphi[charged][displaced]
    # the stored Δη is counted away from the beam axis: undo that for the track's η
    eta = (jets.part_deta[charged] * np.where(jets.jet_eta < 0, -1, 1) + jets.jet_eta)[displaced]
    phi = dphi_jet + jets.jet_phi
    tracks = ak.zip({"eta": eta, "phi": phi})
    hadrons = ak.zip({"eta": jets.aux_hadron_eta, "phi": jets.aux_hadron_phi})
    pairs = ak.cartesian({"t": tracks, "h": hadrons}, nested=True)
    dphi = wrap(pairs.t.phi - pairs.h.phi)
    nearest = ak.argmin(np.hypot(pairs.t.eta - pairs.h.eta, dphi), axis=-1, keepdims=True)
    dphi_hadron = ak.flatten(dphi[nearest], axis=-1)
    has_hadron = ~ak.is_none(dphi_hadron, axis=-1)
    n = int(ak.sum(displaced))
    return {
        "displaced_per_jet": n / len(jets),
        "same_sign_as_dphi_to_hadron": float(ak.mean(sign[has_hadron] == np.sign(dphi_hadron[has_hadron]))),
        "tracks_with_hadron": int(ak.sum(has_hadron)),
        "same_sign_as_dphi_to_jet_axis": float(ak.mean(sign == np.sign(dphi_jet))),
        "displaced": n,
    }


def bending(jets: ak.Array, pt_range=(1.0, 5.0), window=(0.05, 0.5)) -> tuple[float, float, int]:
    """Mean and standard error of q·(φ of a neutral hadron - φ of the track), rad, over the pairs of a track with
    pT in `pt_range` (GeV) and a neutral hadron within `window` (|Δη|, |Δφ|), and the number of pairs. A charged
    hadron's calorimeter deposit lies where the field bent it; what exceeds the track becomes a neutral hadron."""
    values = []
    for jet in jets:
        q = ak.to_numpy(jet.part_charge)
        deta, dphi = ak.to_numpy(jet.part_deta), ak.to_numpy(jet.part_dphi)
        pt = np.hypot(ak.to_numpy(jet.part_px), ak.to_numpy(jet.part_py))
        neutral = ak.to_numpy(jet.part_isNeutralHadron).astype(bool)
        for i in np.flatnonzero((q != 0) & (pt > pt_range[0]) & (pt < pt_range[1])):
            offset = wrap(dphi[neutral] - dphi[i])
            near = (np.abs(deta[neutral] - deta[i]) < window[0]) & (np.abs(offset) < window[1])
            values.extend(q[i] * offset[near])
    values = np.asarray(values)
    return float(values.mean()), float(values.std() / np.sqrt(len(values))), len(values)


def jet_charge(jets: ak.Array, kappa: float = 0.5) -> tuple[float, float]:
    """Mean and standard error of the jet charge sum(q pT^kappa) / jet pT^kappa (constituents' pT summed)."""
    pt = np.hypot(jets.part_px, jets.part_py)
    charge = ak.to_numpy(ak.sum(jets.part_charge * pt**kappa, axis=1) / ak.sum(pt, axis=1) ** kappa)
    return float(charge.mean()), float(charge.std() / np.sqrt(len(charge)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+")
    for path in parser.parse_args().files:
        jets = uproot.open(path)["tree"].arrays(BRANCHES)
        signs = d0_sign_agreement(jets)
        mean, error, n = bending(jets)
        charge, charge_error = jet_charge(jets)
        print(
            f"{path}: {len(jets)} jets, {signs['displaced_per_jet']:.2f} displaced tracks per jet; "
            f"d0 has the sign of Δφ to the nearest b/c hadron for {signs['same_sign_as_dphi_to_hadron']:.3f} of "
            f"{signs['tracks_with_hadron']}, to the jet axis for {signs['same_sign_as_dphi_to_jet_axis']:.3f}; "
            f"q·(φ neutral hadron - φ track) = {mean:+.4f} ± {error:.4f} rad over {n} pairs; "
            f"jet charge (κ 0.5) {charge:+.3f} ± {charge_error:.3f}"
        )


if __name__ == "__main__":
    main()

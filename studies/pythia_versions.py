#!/usr/bin/env python3
"""Top jets at generator level from two Pythia releases, by one procedure: is the real TopLandscape jets' low-mass
tail a matter of the Pythia of 2019 (docs/generator.md)?

Both runs make TopLandscape's top events (14 TeV, t tbar with both W hadronic, top mass 171 GeV, pT-hat 500-700
GeV, Pythia's default tune, MPI on), cluster the visible final-state particles with anti-kT R = 0.8 (FastJet),
keep the leading jet at 550-650 GeV and |eta| < 2 when a top and its b, q and q' lie within 0.8 of its axis,
and print the quantiles of the jet mass:

    ./studies/pythia_versions.py 317 EVENTS SEED OUT.npy [SETTING ...]   # pythia8mc (this project's, 8.317)
    ./studies/pythia_versions.py 244 EVENTS SEED OUT.npy [SETTING ...]   # Pythia 8.244, through numpythia

Pythia 8.244 (December 2019) is the source release numpythia 1.3.1 bundles; it builds in an environment of its
own (about 15 minutes on 2 cores):

    python3 -m venv /tmp/npvenv && . /tmp/npvenv/bin/activate
    pip install "numpy<2" "cython<3" setuptools wheel fastjet
    pip download numpythia==1.3.1 --no-deps -d /tmp/np && tar xzf /tmp/np/numpythia-1.3.1.tar.gz -C /tmp/np
    pip install --no-build-isolation /tmp/np/numpythia-1.3.1
"""

from __future__ import annotations

import sys
import time

import numpy as np

SETTINGS = [
    "Beams:eCM = 14000",
    "Top:gg2ttbar = on",
    "Top:qqbar2ttbar = on",
    "24:onMode = off",
    "24:onIfAny = 1 2 3 4 5",
    "6:m0 = 171.0",
    "PhaseSpace:pTHatMin = 500",
    "PhaseSpace:pTHatMax = 700",
    "ParticleDecays:limitTau0 = off",
    "Next:numberCount = 0",
]
NEUTRINOS = (12, 14, 16)
QUANTILES = (10, 25, 50, 75, 90)


def events_317(n_events: int, seed: int, settings: list[str]):
    """(visible final-state four-momenta (n, 4): px, py, pz, E; per top, the four-momenta of t, b, q, q')."""
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    for line in [*settings, "Random:setSeed = on", f"Random:seed = {seed}"]:
        pythia.readString(line)
    pythia.init()
    for _ in range(n_events):
        if not pythia.next():
            continue
        parts = [pythia.event[i] for i in range(pythia.event.size())]
        visible = np.array([p4(p) for p in parts if p.isFinal() and p.idAbs() not in NEUTRINOS])
        yield visible, [[p4(parts[k]) for k in chain] for chain in top_chains(parts)]


def p4(particle) -> tuple[float, float, float, float]:
    return particle.px(), particle.py(), particle.pz(), particle.e()


def top_chains(parts: list) -> list[list[int]]:
    """Indices of each decaying top and its b, q, q' in a pythia8mc event record."""
    chains = []
    for i, particle in enumerate(parts):
        daughters = particle.daughterList()
        if particle.idAbs() != 6 or any(parts[d].idAbs() == 6 for d in daughters):
            continue
        b = [d for d in daughters if parts[d].idAbs() == 5]
        w = [d for d in daughters if parts[d].idAbs() == 24]
        if b and w:
            w_last = last_copy(parts, w[0])
            quarks = [d for d in parts[w_last].daughterList() if parts[d].idAbs() <= 5]
            chains.append([i, b[0], *quarks])
    return chains


def last_copy(parts: list, i: int) -> int:
    while same := [d for d in parts[i].daughterList() if parts[d].id() == parts[i].id()]:
        i = same[0]
    return i


def events_244(n_events: int, seed: int, settings: list[str]):
    """As events_317, from numpythia's HepMC records."""
    from numpythia import ABS_PDG_ID, HAS_END_VERTEX, HAS_SAME_PDG_ID_DAUGHTER, STATUS, Pythia

    params = dict(line.split("=", 1) for line in settings)
    pythia = Pythia(params={k.strip(): v.strip() for k, v in params.items()}, random_state=seed)
    visible_only = (STATUS == 1) & ~HAS_END_VERTEX
    for neutrino in NEUTRINOS:
        visible_only = visible_only & (ABS_PDG_ID != neutrino)
    for event in pythia(events=n_events):
        found = event.all(visible_only)
        visible = np.stack([found["px"], found["py"], found["pz"], found["E"]], axis=1)
        chains = []
        for top in event.all((ABS_PDG_ID == 6) & ~HAS_SAME_PDG_ID_DAUGHTER, return_hepmc=True):
            children = top.children(return_hepmc=True)
            b = [c for c in children if abs(c.pid) == 5]
            w = [c for c in children if abs(c.pid) == 24]
            if b and w:
                w_last = w[0]
                while same := [c for c in w_last.children(return_hepmc=True) if c.pid == w_last.pid]:
                    w_last = same[0]
                quarks = [c for c in w_last.children(return_hepmc=True) if abs(c.pid) <= 5]
                chains.append([(c.px, c.py, c.pz, c.e) for c in (top, b[0], *quarks)])
        yield visible, chains


def matched_leading_jet(visible: np.ndarray, chains: list, jet_definition) -> tuple[float, float, int] | None:
    """(mass, pT, constituents) of the leading jet when it is in the window and holds a whole top, else None."""
    import fastjet

    sequence = fastjet.ClusterSequence([fastjet.PseudoJet(*map(float, v)) for v in visible], jet_definition)
    jets = fastjet.sorted_by_pt(sequence.inclusive_jets(20.0))
    if not jets or not (550 <= jets[0].pt() < 650 and abs(jets[0].eta()) < 2.0):
        return None
    jet = jets[0]
    for chain in chains:
        momenta = np.array(chain)
        eta = np.arcsinh(momenta[:, 2] / np.hypot(momenta[:, 0], momenta[:, 1]))
        dphi = (np.arctan2(momenta[:, 1], momenta[:, 0]) - jet.phi_std() + np.pi) % (2 * np.pi) - np.pi
        if np.all(np.hypot(eta - jet.eta(), dphi) < 0.8):
            return jet.m(), jet.pt(), len(jet.constituents())
    return None


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[0] not in ("244", "317"):
        print(__doc__.split("\n\n")[2], file=sys.stderr)
        return 2
    import fastjet

    which, n_events, seed, out = argv[0], int(argv[1]), int(argv[2]), argv[3]
    events = events_244 if which == "244" else events_317
    jet_definition = fastjet.JetDefinition(fastjet.antikt_algorithm, 0.8)
    start = time.time()
    rows = [
        row
        for visible, chains in events(n_events, seed, [*SETTINGS, *argv[4:]])
        if (row := matched_leading_jet(visible, chains, jet_definition)) is not None
    ]
    np.save(out, np.array(rows))
    mass = np.array(rows)[:, 0]
    print(f"Pythia 8.{which}: {n_events} events, {len(mass)} top jets, {time.time() - start:.0f} s")
    quantiles = " / ".join(f"{q:.1f}" for q in np.percentile(mass, QUANTILES))
    print(f"  jet mass at {'/'.join(map(str, QUANTILES))} %: {quantiles} GeV; below 160 GeV: {(mass < 160).mean():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

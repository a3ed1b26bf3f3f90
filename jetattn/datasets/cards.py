"""The numbers of Delphes' CMS and ATLAS detector cards that `detector.apply_particle_flow` uses.

Transcribed from the CMS card JetClass ran, jet-universe/jetclass_generation `delphes_card.tcl` (Delphes' CMS card
with its own HCal threshold, hadron momentum resolution and a TrackSmearing module; see `_cms`), and from
delphes/delphes `cards/delphes_card_ATLAS.tcl` (commit 8713dee, the card with one `Calorimeter` module, of the Delphes
3.3 series; see `_atlas`); the module names are the cards':

- `ParticlePropagator`: solenoid radius and half-length (m) and field Bz (T). CMS 1.29, 3.00, 3.8; ATLAS 1.15, 3.51,
  2.0.
- `ChargedHadronTrackingEfficiency`, `ElectronTrackingEfficiency`, `MuonTrackingEfficiency`: efficiency by
  |eta| <= 1.5 / 1.5 < |eta| <= 2.5 (none beyond) and by pT bin, nothing at pT <= 0.1 GeV. Identical in both cards.
- `ChargedHadronMomentumSmearing`, `ElectronMomentumSmearing`, `MuonMomentumSmearing`: relative pT resolution
  sqrt(a^2 + (b pT)^2) in |eta| <= 0.5 / 0.5-1.5 / 1.5-2.5.
- CMS `ECal`, `HCal` (SimpleCalorimeter), ATLAS `Calorimeter` (its ECAL and HCAL parts): the eta edges and the phi
  segmentation of each eta bin, the energy resolution (absolute, GeV), `EnergyMin`, `EnergySignificanceMin` and the
  `EnergyFraction` of each species.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BinnedTable:
    """A value by |eta| bin (upper edges `abs_eta_edges`, inclusive) and pT bin (edges `pt_edges`, (low, high]);
    zero outside. values: (len(abs_eta_edges), len(pt_edges) - 1)."""

    abs_eta_edges: tuple[float, ...]
    pt_edges: tuple[float, ...]
    values: tuple[tuple[float, ...], ...]

    def __call__(self, pt: np.ndarray, abs_eta: np.ndarray) -> np.ndarray:
        eta_bin = np.searchsorted(self.abs_eta_edges, abs_eta, side="left")
        pt_bin = np.searchsorted(self.pt_edges, pt, side="left") - 1
        inside = (eta_bin < len(self.abs_eta_edges)) & (pt_bin >= 0) & (pt_bin < len(self.pt_edges) - 1)
        table = np.asarray(self.values)
        value = table[np.minimum(eta_bin, table.shape[0] - 1), np.clip(pt_bin, 0, table.shape[1] - 1)]
        return np.where(inside, value, 0.0)


@dataclass(frozen=True)
class MomentumResolution:
    """Relative track pT resolution sqrt(a^2 + (b pT / GeV)^2), (a, b) per |eta| bin (upper edges, inclusive)."""

    abs_eta_edges: tuple[float, ...]
    terms: tuple[tuple[float, float], ...]

    def __call__(self, pt: np.ndarray, abs_eta: np.ndarray) -> np.ndarray:
        eta_bin = np.minimum(np.searchsorted(self.abs_eta_edges, abs_eta, side="left"), len(self.terms) - 1)
        a, b = np.asarray(self.terms).T
        return np.hypot(a[eta_bin], b[eta_bin] * pt)


@dataclass(frozen=True)
class Calorimeter:
    """One SimpleCalorimeter: towers, resolution, thresholds and which species deposit how much.

    eta_edges: sorted tower edges in eta; a particle at eta lands in bin k (1 <= k < len) when
    eta_edges[k-1] < eta <= eta_edges[k], as Delphes' lower_bound; outside, it deposits nothing.
    phi_bins: number of equal phi bins over [-pi, pi) of eta bin k (the segmentation the card lists with the bin's
    upper edge), length len(eta_edges).
    resolution(eta, energy): absolute energy resolution in GeV at the tower's centre eta.
    fractions: |PDG id| -> share of the energy deposited here; `default_fraction` for every other species.
    neutral_pid: PDG id Delphes gives this calorimeter's particle-flow neutrals (22 in the ECAL, 0 in the HCAL).
    """

    eta_edges: np.ndarray
    phi_bins: np.ndarray
    resolution: Callable[[np.ndarray, np.ndarray], np.ndarray]
    energy_min: float
    significance_min: float
    fractions: dict[int, float]
    default_fraction: float
    neutral_pid: int

    def fraction(self, pid: np.ndarray) -> np.ndarray:
        abs_pid = np.abs(pid)
        result = np.full(abs_pid.shape, self.default_fraction)
        for species, share in self.fractions.items():
            result[abs_pid == species] = share
        return result


@dataclass(frozen=True)
class Card:
    """A detector card, and the Delphes release whose modules ran it where they differ (`detector.py` emulates both).

    combined_calorimeter: one `Calorimeter` module for both ECAL and HCAL (the shared towers' position drawn once
    by SmearTowerCenter, so a tower's photon and neutral hadron sit at the same eta, phi); False: two
    `SimpleCalorimeter` modules, each drawing its own.
    eflow: the EFlow of the calorimeter modules, "3.3" (the Delphes 3.3 series) or "3.4" (3.4.0 on): `detector`'s
    `_tower_flow_3_3` and `_tower_flow_3_4` give each.
    true_track_momenta: a TrackSmearing module with a momentum resolution of 0 (`PResolutionFormula { 0.0 }`) follows
    MomentumSmearing. It rebuilds each track from the momentum the propagator stored, the generated one (P, CtgTheta,
    Phi, which MomentumSmearing leaves alone), and sets its TrackResolution to pError / p = 0. Tracks then carry
    their generated momenta, and the 3.4 EFlow gives them no weight against the calorimeter: a track in a tower
    without a significant neutral excess takes its share of the tower's energy, and a tower below threshold
    rescales its tracks to pT 0 (which the JetClass n-tuplizer drops).
    """

    name: str
    bz: float  # T
    radius: float  # m, of the volume with the field (the calorimeter's inner face)
    half_length: float  # m
    tracking_efficiency: dict[str, BinnedTable]  # "hadron", "electron", "muon"
    momentum_resolution: dict[str, MomentumResolution]
    ecal: Calorimeter
    hcal: Calorimeter
    massless_tracks: bool = False  # Delphes <= 3.4.2's MomentumSmearing set E = pT cosh(eta); 3.5.0 keeps the mass
    combined_calorimeter: bool = False
    eflow: str = "3.4"
    true_track_momenta: bool = False


def _tower_edges(groups: list[tuple[list[float], int]]) -> tuple[np.ndarray, np.ndarray]:
    """Eta edges, each listed with its phi segmentation (as the cards' `add EtaPhiBins`), merged and sorted."""
    segmentation: dict[float, int] = {}
    for edges, n_phi in groups:
        for edge in edges:
            key = round(edge, 6)
            segmentation[key] = max(segmentation.get(key, 0), n_phi)  # the finer set of edges contains the coarser
    eta_edges = np.array(sorted(segmentation))
    return eta_edges, np.array([segmentation[e] for e in eta_edges])


def _ecal_edges() -> tuple[np.ndarray, np.ndarray]:
    """Both cards' ECAL: 0.0174 in eta and 1 degree in phi to |eta| = 3, then CMS's HF towers (10 degrees)."""
    barrel = [i * 0.0174 for i in range(-85, 87)]
    endcaps = [-2.958 + i * 0.0174 for i in range(1, 85)] + [1.4964 + i * 0.0174 for i in range(1, 85)]
    forward = [
        -5,
        -4.7,
        -4.525,
        -4.35,
        -4.175,
        -4,
        -3.825,
        -3.65,
        -3.475,
        -3.3,
        -3.125,
        -2.958,
        3.125,
        3.3,
        3.475,
        3.65,
        3.825,
        4,
        4.175,
        4.35,
        4.525,
        4.7,
        5,
    ]
    return _tower_edges([(barrel, 360), (endcaps, 360), (forward, 36)])


# ECAL: e, gamma, pi0 all; K0S, Lambda 30 %; no muon, neutrino or hadron otherwise. HCAL: the rest.
_ECAL_FRACTIONS = {11: 1.0, 22: 1.0, 111: 1.0, 12: 0.0, 13: 0.0, 14: 0.0, 16: 0.0, 310: 0.3, 3122: 0.3}
_HCAL_FRACTIONS = {11: 0.0, 22: 0.0, 111: 0.0, 12: 0.0, 13: 0.0, 14: 0.0, 16: 0.0, 310: 0.7, 3122: 0.7}

_TRACKING_EFFICIENCY = {
    "hadron": BinnedTable((1.5, 2.5), (0.1, 1.0, np.inf), ((0.70, 0.95), (0.60, 0.85))),
    "electron": BinnedTable((1.5, 2.5), (0.1, 1.0, 100.0, np.inf), ((0.73, 0.95, 0.99), (0.50, 0.83, 0.90))),
    "muon": BinnedTable((1.5, 2.5), (0.1, 1.0, np.inf), ((0.75, 0.99), (0.70, 0.98))),
}
_ETA_THIRDS = (0.5, 1.5, 2.5)
_ELECTRON_RESOLUTION = MomentumResolution(_ETA_THIRDS, ((0.03, 1.3e-3), (0.05, 1.7e-3), (0.15, 3.1e-3)))
_MUON_RESOLUTION = MomentumResolution(_ETA_THIRDS, ((0.01, 1.0e-4), (0.015, 1.5e-4), (0.025, 3.5e-4)))
# ATLAS's hadrons (and electrons), and the hadrons of JetClass's CMS card ("based on arXiv:1405.6569" in both)
_HADRON_RESOLUTION = MomentumResolution(_ETA_THIRDS, ((0.06, 1.3e-3), (0.10, 1.7e-3), (0.25, 3.1e-3)))


def _quadrature(energy: np.ndarray, constant: float, stochastic: float, noise: float = 0.0) -> np.ndarray:
    """sqrt(E^2 c^2 + E s^2 + n^2), the cards' form."""
    return np.sqrt(energy**2 * constant**2 + energy * stochastic**2 + noise**2)


def _cms_ecal_resolution(eta: np.ndarray, energy: np.ndarray) -> np.ndarray:
    abs_eta = np.abs(eta)
    central = _quadrature(energy, 0.008, 0.11, 0.40)
    return np.select(
        [abs_eta <= 1.5, abs_eta <= 2.5, abs_eta <= 5.0],
        [(1 + 0.64 * eta**2) * central, (2.16 + 5.6 * (abs_eta - 2) ** 2) * central, _quadrature(energy, 0.107, 2.08)],
        0.0,
    )


def _cms_hcal_resolution(eta: np.ndarray, energy: np.ndarray) -> np.ndarray:
    abs_eta = np.abs(eta)
    return np.select(
        [abs_eta <= 3.0, abs_eta <= 5.0], [_quadrature(energy, 0.050, 1.50), _quadrature(energy, 0.130, 2.70)], 0.0
    )


def _atlas_ecal_resolution(eta: np.ndarray, energy: np.ndarray) -> np.ndarray:
    abs_eta = np.abs(eta)
    return np.select(
        [abs_eta <= 3.2, abs_eta <= 4.9], [_quadrature(energy, 0.0017, 0.101), _quadrature(energy, 0.0350, 0.285)], 0.0
    )


def _atlas_hcal_resolution(eta: np.ndarray, energy: np.ndarray) -> np.ndarray:
    abs_eta = np.abs(eta)
    return np.select(
        [abs_eta <= 1.7, abs_eta <= 3.2, abs_eta <= 4.9],
        [
            _quadrature(energy, 0.0302, 0.5205, 1.59),
            _quadrature(energy, 0.0500, 0.706),
            _quadrature(energy, 0.0942, 1.00),
        ],
        0.0,
    )


def _cms() -> Card:
    """The CMS card as JetClass ran it: `delphes_card.tcl` of jet-universe/jetclass_generation, run by MG5_aMC 3.1.1
    of LCG_100 and its Delphes (`run.sh`, `madgraph.sh`), a 3.5 release: the n-tuplizer `makeNtuples.C` reads the
    ParticleFlowCandidate branch that 3.5.0 added, and the real tracks are massive (3.5.0 "removed zero mass
    assumption for all tracks"). Against Delphes' CMS card (master, commit 0593ac3) it has HCal
    EnergySignificanceMin 1.0 (master 2.0), the hadron momentum resolution 6 % (+) 1.3e-3 pT to 25 % (+) 3.1e-3 pT
    (master 1 % (+) 1.5e-4 pT to 2.5 % (+) 5.5e-4 pT), a muon efficiency falling above 1 TeV (not emulated: the
    jets stop at 1 TeV), and a TrackSmearing module after the track merger (`Card.true_track_momenta`; its impact
    parameter tables are not emulated). Delphes 3.5 propagates curling tracks to the endcap and draws their
    efficiency there, and keeps the tracks' masses. Longer than a screen on purpose: one table, read top to bottom
    beside the card's TCL file."""
    hcal_edges = _tower_edges(
        [
            ([-1.566 + 0.087 * i for i in range(38)], 72),  # 5 degrees, -1.566 .. 1.653
            (
                [
                    -4.35,
                    -4.175,
                    -4,
                    -3.825,
                    -3.65,
                    -3.475,
                    -3.3,
                    -3.125,
                    -2.95,
                    -2.868,
                    -2.65,
                    -2.5,
                    -2.322,
                    -2.172,
                    -2.043,
                    -1.93,
                    -1.83,
                    -1.74,
                    -1.653,
                    1.74,
                    1.83,
                    1.93,
                    2.043,
                    2.172,
                    2.322,
                    2.5,
                    2.65,
                    2.868,
                    2.95,
                    3.125,
                    3.3,
                    3.475,
                    3.65,
                    3.825,
                    4,
                    4.175,
                    4.35,
                    4.525,
                ],
                36,
            ),
            ([-5, -4.7, -4.525, 4.7, 5], 18),
        ]
    )
    return Card(
        name="cms",
        bz=3.8,
        radius=1.29,
        half_length=3.00,
        tracking_efficiency=_TRACKING_EFFICIENCY,
        momentum_resolution={
            "hadron": _HADRON_RESOLUTION,
            "electron": _ELECTRON_RESOLUTION,
            "muon": _MUON_RESOLUTION,
        },
        ecal=Calorimeter(*_ecal_edges(), _cms_ecal_resolution, 0.5, 2.0, _ECAL_FRACTIONS, 0.0, 22),
        hcal=Calorimeter(*hcal_edges, _cms_hcal_resolution, 1.0, 1.0, _HCAL_FRACTIONS, 1.0, 0),
        true_track_momenta=True,
    )


def _atlas() -> Card:
    """The ATLAS card at commit 8713dee of delphes/delphes, run as Delphes 3.3 ran it: the chain TopLandscape's
    jets agree with (docs/generator.md). One `Calorimeter` module whose ECAL and HCAL share 0.1 x 10 degree towers
    to |eta| = 2.5, with significance thresholds of 1 sigma (3.4.0's release notes list "corrected granularities
    for ECAL and HCAL in ATLAS and CMS cards"; today's card splits them and gives the ECAL CMS's 0.0174 x 1 degree
    cells).

    Delphes 3.3 and this card: curling tracks kept where their endcap hit passes the efficiency, and the 3.3 EFlow
    (modules/Calorimeter.cc before 3.4.0's "improved particle flow algorithm"), which leaves the real sample's
    marks: a photon and a neutral hadron at one position (about 2 pairs per jet), and leading constituents that
    took their tower's neutral energy."""
    towers = _tower_edges(
        [
            ([-3.2, *(round(-2.5 + 0.1 * i, 1) for i in range(52)), 3.3], 36),  # 10 degrees, 0.1 in eta to 2.6
            (
                [
                    -4.9,
                    -4.7,
                    -4.5,
                    -4.3,
                    -4.1,
                    -3.9,
                    -3.7,
                    -3.5,
                    -3.3,
                    -3,
                    -2.8,
                    -2.6,
                    2.8,
                    3,
                    3.2,
                    3.5,
                    3.7,
                    3.9,
                    4.1,
                    4.3,
                    4.5,
                    4.7,
                    4.9,
                ],
                18,
            ),
        ]
    )
    return Card(
        name="atlas",
        bz=2.0,
        radius=1.15,
        half_length=3.51,
        tracking_efficiency=_TRACKING_EFFICIENCY,
        momentum_resolution={
            "hadron": _HADRON_RESOLUTION,
            "electron": _HADRON_RESOLUTION,
            "muon": MomentumResolution(_ETA_THIRDS, ((0.02, 2.0e-4), (0.03, 3.0e-4), (0.06, 6.0e-4))),
        },
        ecal=Calorimeter(*towers, _atlas_ecal_resolution, 0.5, 1.0, _ECAL_FRACTIONS, 0.0, 22),
        hcal=Calorimeter(*towers, _atlas_hcal_resolution, 1.0, 1.0, _HCAL_FRACTIONS, 1.0, 0),
        massless_tracks=True,  # the real TopLandscape constituents are all massless
        combined_calorimeter=True,
        eflow="3.3",
    )


CARDS = {"cms": _cms(), "atlas": _atlas()}

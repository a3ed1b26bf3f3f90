"""Detector models for generator-level particles: `measure(particles, event, rng, detector)` with detector

- "cms", "atlas": `apply_particle_flow`, an emulation of Delphes' particle flow with the numbers of its CMS or ATLAS
  card (`jetattn.datasets.cards`): tracks, plus photons and neutral hadrons from ECAL and HCAL towers;
- "simple": `apply_detector`, each particle smeared alone (below);
- "none": the particles as generated (generator level).

`measure_events` picks the visible final-state particles of a batch of Pythia events (`events.EventBatch`) and
measures them all in one call.

No detector simulation package is available here, so the simple model measures each event's visible final-state
particles with a few Gaussian (log-normal for energies) resolutions. Units: GeV and mm, c = 1. Every number and why:

Beam spot (`BEAM_SPOT_SIGMA_MM`), σx = σy = 0.012 mm, σz = 45 mm. LHC optics with β* = 0.3-0.55 m and normalised
emittance 2.5-3.75 µm give a beam size of 10-17 µm at 6.5-7 TeV, and the luminous region is 1/√2 of that (7-12 µm);
the design bunch length of 7.55 cm rms gives a luminous region of 5.3 cm, which shorter bunches and the crossing
angle bring down to the 3.5-5 cm seen by CMS. Pythia puts the hard interaction at the origin unless
`Beams:allowVertexSpread` is on. Impact parameters are measured from the PV, so moving the whole event by a
beam-spot offset leaves them unchanged; `sample_primary_vertex` is there for writers that store vertex positions.

Impact parameters of charged particles are measured with respect to the true primary vertex (PV), as CMS quotes
them for particle-flow candidates; the PV position uncertainty (~10 µm for events with hard jets) is folded into
the constant terms below. The track is the straight line through the particle's production vertex along its
momentum. Neglecting the curvature in the B = 3.8 T field (radius 0.88 m per GeV of pT) moves d0 by about
L² / (2R) = 0.57 µm · (L / mm)² / (pT / GeV) for a production point at transverse distance L from the PV:
well below the resolution for L ≲ 5 mm, but 0.1-0.2 mm (about the resolution) for 1-2 GeV tracks from b hadrons
that fly 2 cm.

- Sign of d0: d0 = (x py - y px) / pT with (x, y) the production point relative to the PV, i.e. the z component of
  (closest-approach position) × (unit momentum) in the transverse plane: positive when the track passes the PV
  anticlockwise, seen from +z. This is the geometric convention of Delphes (so of JetClass), not a lifetime sign.
- dz: z of the closest approach in the transverse plane minus z of the PV.
- Resolution σ(pT) = sqrt(a² + (b / pT)²), a constant term (detector hit resolution, alignment, PV position) and a
  multiple-scattering term. CMS tracker performance in the barrel (JINST 9 (2014) P10009 for Run 1; the Phase-1
  pixel detector improved low pT) is roughly 10-20 µm at high pT and 100 µm at 1 GeV transverse, about twice that
  at high pT and 100-200 µm at 1 GeV longitudinal. We take d0: a = 0.015 mm, b = 0.090 mm GeV; dz: a = 0.030 mm,
  b = 0.150 mm GeV, for all |eta| (the forward region is worse); the two-term form only approximates the
  measured curves.
  `d0err`, `dzerr` are these resolutions (never zero for a charged particle); measurements are Gaussian around the
  true value. Neutral particles get d0 = dz = 0 and errors 0, as in JetClass.

Energies: charged particles keep their (tracker) momentum: CMS track pT resolution is 1-2 % up to 100 GeV, small
against the calorimeter terms. Photons and neutral hadrons are calorimeter clusters: the energy is smeared with
σE / E = stochastic / sqrt(E / GeV) ⊕ constant and the four-momentum is rebuilt massless along the true direction
(calorimeters measure energy and direction; JetClass's Delphes towers are massless too). The smeared energy is
drawn log-normal with the true energy as mean and that σ as standard deviation, so it is always positive (a
Gaussian would go negative for 16 % of 1 GeV neutral hadrons).
- Photons (`PHOTON_RESOLUTION`): 3 %/sqrt(E) ⊕ 1 %. CMS ECAL test beam gives 2.8 %/sqrt(E) ⊕ 0.3 % (JINST 3 (2008)
  S08004); the in-situ constant term for photons is about 1 %.
- Neutral hadrons (`NEUTRAL_HADRON_RESOLUTION`): 100 %/sqrt(E) ⊕ 5 %. CMS ECAL+HCAL pion test beam: about
  85-120 %/sqrt(E) ⊕ 5-7 % (the Delphes CMS card uses 150 %/sqrt(E) ⊕ 5 %).
Neutrinos are invisible: drop them before calling `apply_detector` (it refuses them).
"""

from collections.abc import Mapping

import numpy as np

from jetattn.datasets.cards import CARDS, Calorimeter, Card
from jetattn.datasets.events import EventBatch

BEAM_SPOT_SIGMA_MM = np.array([0.012, 0.012, 45.0])
D0_RESOLUTION = (0.015, 0.090)  # (a / mm, b / (mm GeV))
DZ_RESOLUTION = (0.030, 0.150)
PHOTON_RESOLUTION = (0.03, 0.01)  # (stochastic / sqrt(GeV), constant)
NEUTRAL_HADRON_RESOLUTION = (1.00, 0.05)

PARTICLE_KEYS = ("px", "py", "pz", "energy", "charge", "pid", "xprod", "yprod", "zprod")
_NEUTRINOS = (12, 14, 16)
DETECTORS = ("cms", "atlas", "simple", "none")
# pT (GeV) of a charge-1 particle whose helix has a radius of 1 m in a 1 T field
_GEV_PER_TESLA_METRE = 0.299792458


def sample_primary_vertex(rng: np.random.Generator) -> np.ndarray:
    """A primary-vertex position (x, y, z) in mm drawn from the Gaussian beam spot, shape (3,)."""
    return rng.normal(0.0, BEAM_SPOT_SIGMA_MM)


def impact_parameter_resolution(pt: np.ndarray, resolution: tuple[float, float]) -> np.ndarray:
    """sqrt(a² + (b / pT)²) in mm for track pT in GeV; `resolution` is D0_RESOLUTION or DZ_RESOLUTION."""
    a, b = resolution
    return np.hypot(a, b / pt)


def energy_resolution(energy: np.ndarray, resolution: tuple[float, float]) -> np.ndarray:
    """Relative resolution σE / E = stochastic / sqrt(E) ⊕ constant for energy in GeV."""
    stochastic, constant = resolution
    return np.hypot(stochastic / np.sqrt(energy), constant)


def straight_track_impact_parameters(
    px: np.ndarray, py: np.ndarray, pz: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """True (d0, dz) in mm of straight tracks with momentum p produced at (x, y, z) relative to the PV."""
    pt = np.hypot(px, py)
    d0 = (x * py - y * px) / pt
    # transverse path from the closest approach to the production point, converted to a z displacement
    path_to_production = (x * px + y * py) / pt
    dz = z - path_to_production * pz / pt
    return d0, dz


def _lognormal_around(mean: np.ndarray, relative_sigma: np.ndarray, standard_normal: np.ndarray) -> np.ndarray:
    log_sigma2 = np.log1p(relative_sigma**2)
    return mean * np.exp(np.sqrt(log_sigma2) * standard_normal - log_sigma2 / 2)


def _checked(particles: Mapping[str, np.ndarray], caller: str) -> dict[str, np.ndarray]:
    """The PARTICLE_KEYS arrays as numpy (float64 but pid), in that order; refuses missing keys and neutrinos."""
    missing = [key for key in PARTICLE_KEYS if key not in particles]
    if missing:
        raise KeyError(f"{caller}: particle arrays lack {', '.join(missing)} (needs {', '.join(PARTICLE_KEYS)})")
    arrays = {key: np.asarray(particles[key], dtype=None if key == "pid" else np.float64) for key in PARTICLE_KEYS}
    if np.isin(np.abs(arrays["pid"]), _NEUTRINOS).any():
        raise ValueError(f"{caller}: neutrinos are invisible; drop pid ±12, ±14, ±16 before measuring")
    return arrays


def _checked_pv(pv: np.ndarray | None, caller: str) -> np.ndarray:
    pv = np.zeros(3) if pv is None else np.asarray(pv, dtype=np.float64)
    if pv.shape != (3,):
        raise ValueError(f"{caller}: pv must be (x, y, z) in mm, got shape {pv.shape}")
    return pv


def apply_detector(
    particles: Mapping[str, np.ndarray], rng: np.random.Generator, pv: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Measure one event's visible final-state particles.

    particles: arrays of shape (n,) under PARTICLE_KEYS: px, py, pz, energy (GeV), charge (units of e), pid (PDG id),
    xprod, yprod, zprod (production vertex, mm, Pythia's xProd, yProd, zProd).
    pv: true primary vertex (3,) in mm, in the frame of the production vertices; None means the origin, where
    Pythia puts the hard interaction without `Beams:allowVertexSpread`.
    Returns px, py, pz, energy (measured), charge, pid (passed through), d0val, d0err, dzval, dzerr (mm).
    """
    px, py, pz, energy, charge, pid, x, y, z = _checked(particles, "apply_detector").values()
    pv = _checked_pv(pv, "apply_detector")
    # one draw of each kind per particle, whatever its type, so a seed fixes the whole event
    d0_noise, dz_noise, energy_noise = rng.standard_normal((3, len(px)))

    charged = charge != 0
    pt = np.hypot(px, py)
    d0_true, dz_true = straight_track_impact_parameters(px, py, pz, x - pv[0], y - pv[1], z - pv[2])
    d0err = np.where(charged, impact_parameter_resolution(pt, D0_RESOLUTION), 0.0)
    dzerr = np.where(charged, impact_parameter_resolution(pt, DZ_RESOLUTION), 0.0)

    relative_sigma = np.where(
        pid == 22,
        energy_resolution(energy, PHOTON_RESOLUTION),
        energy_resolution(energy, NEUTRAL_HADRON_RESOLUTION),
    )
    calorimeter_energy = _lognormal_around(energy, relative_sigma, energy_noise)
    momentum = np.sqrt(px**2 + py**2 + pz**2)
    massless_scale = calorimeter_energy / momentum  # neutral clusters: |p| = E along the true direction
    scale = np.where(charged, 1.0, massless_scale)
    return {
        "px": px * scale,
        "py": py * scale,
        "pz": pz * scale,
        "energy": np.where(charged, energy, calorimeter_energy),
        "charge": charge,
        "pid": pid,
        "d0val": np.where(charged, d0_true + d0err * d0_noise, 0.0),
        "d0err": d0err,
        "dzval": np.where(charged, dz_true + dzerr * dz_noise, 0.0),
        "dzerr": dzerr,
    }


# ---------------------------------------------------------------------------------------------------------------
# Particle flow as Delphes builds it


def calorimeter_entry(
    px: np.ndarray, py: np.ndarray, pz: np.ndarray, charge: np.ndarray, card: Card
) -> tuple[np.ndarray, np.ndarray]:
    """(eta, phi) where particles made at the origin reach the calorimeter: straight lines for neutrals, helices in
    the card's field Bz for charged particles, leaving the field volume through the barrel (radius R) or, when the
    helix is too tight (2 r < R) or too steep, through an endcap (|z| = half-length). Positive particles bend
    clockwise seen from +z (B along +z), as in Delphes' ParticlePropagator."""
    pt = np.hypot(px, py)
    phi0 = np.arctan2(py, px)
    charged = charge != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        radius = pt / (_GEV_PER_TESLA_METRE * np.abs(charge) * card.bz)  # helix radius, m
        turn_to_barrel = np.where(
            2 * radius >= card.radius, 2 * np.arcsin(np.minimum(card.radius / (2 * radius), 1)), np.inf
        )
        turn_to_endcap = np.where(pz != 0, card.half_length * pt / (np.abs(pz) * radius), np.inf)
        turn = np.minimum(turn_to_barrel, turn_to_endcap)  # angle the momentum turns by on the way
        rho = 2 * radius * np.abs(np.sin(turn / 2))
        z = np.sign(pz) * radius * turn * np.abs(pz) / pt
        charged_eta = np.arcsinh(z / rho)
    eta = np.where(charged, charged_eta, np.arcsinh(pz / pt))
    phi = np.where(charged, phi0 - np.sign(charge) * turn / 2, phi0)
    return eta, (phi + np.pi) % (2 * np.pi) - np.pi


def _lognormal(mean: np.ndarray, sigma: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Delphes' LogNormal: mean and absolute sigma, 0 where the mean is not positive."""
    positive = mean > 0
    safe_mean = np.where(positive, mean, 1.0)
    return np.where(positive, _lognormal_around(safe_mean, sigma / safe_mean, rng.standard_normal(mean.shape)), 0.0)


def _tower_cells(calorimeter: Calorimeter, eta: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eta bin k (lower_bound in the edges; 0 or len(edges) = outside) and phi bin of each position."""
    eta_bin = np.searchsorted(calorimeter.eta_edges, eta, side="left")
    inside = (eta_bin > 0) & (eta_bin < len(calorimeter.eta_edges))
    n_phi = calorimeter.phi_bins[np.where(inside, eta_bin, 1)]
    phi_bin = np.minimum(((phi + np.pi) / (2 * np.pi) * n_phi).astype(np.int64), n_phi - 1)
    return np.where(inside, eta_bin, -1), phi_bin


def _tower_flow_3_4(
    calorimeter: Calorimeter,
    energy: np.ndarray,
    sigma: np.ndarray,
    track_energy: np.ndarray,
    track_sigma: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Delphes' EFlow from 3.4.0 on, per tower (arrays of shape (n_towers,)): the excess of the smeared `energy`
    over its tracks' `track_energy` is a neutral when above EnergyMin and EnergySignificanceMin times the
    calorimeter and track errors together; otherwise the tracks are scaled to the error-weighted mean of track and
    tower energy. Returns the neutral energy, which towers make one, and each tower's track scale factor."""
    excess = np.maximum(energy - track_energy, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        significance = excess / np.hypot(track_sigma, sigma)
        neutral = (excess > calorimeter.energy_min) & (significance > calorimeter.significance_min)
        weight_track = np.where(track_sigma > 0, 1 / track_sigma**2, 0.0)
        weight_calo = np.where(sigma > 0, 1 / sigma**2, 0.0)
        best = (weight_track * track_energy + weight_calo * energy) / (weight_track + weight_calo)
        tower_scale = np.where(~neutral & (track_energy > 0), best / track_energy, 1.0)
    return excess, neutral, tower_scale


def _tower_flow_3_3(
    calorimeter: Calorimeter,
    energy: np.ndarray,
    eta_centre: np.ndarray,
    track_deposit: np.ndarray,
    track_resolution: np.ndarray,
    track_tower: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Delphes 3.3's EFlow (modules/Calorimeter.cc, FinalizeTower, before 3.4.0), per tower. A track the
    calorimeter measures better (resolution at the tower centre and the track's energy below the track's) takes
    the tower: scaled to the tower's energy less the other tracks', and the tower makes no neutral. Otherwise the
    excess over the tracks is a neutral when at least EnergyMin and EnergySignificanceMin times the calorimeter
    resolution at the excess (no track error). Track arrays are those that hit a tower (`track_tower`). Returns
    the neutral energy, which towers make one, and each track's scale factor."""
    n_towers = len(energy)
    calorimeter_better = calorimeter.resolution(eta_centre[track_tower], track_deposit) < (
        track_resolution * track_deposit
    )
    taken_energy = np.bincount(track_tower, np.where(calorimeter_better, track_deposit, 0.0), minlength=n_towers)
    taken = np.bincount(track_tower, calorimeter_better, minlength=n_towers) > 0
    excess = energy - np.bincount(track_tower, np.where(calorimeter_better, 0.0, track_deposit), minlength=n_towers)
    significant = excess >= calorimeter.significance_min * calorimeter.resolution(eta_centre, np.maximum(excess, 0))
    neutral = ~taken & (excess >= calorimeter.energy_min) & significant
    # Delphes multiplies by the ratio whatever its sign; a tower whose other tracks exceed it (rare: the taking
    # track is the hard one) leaves its tracks as measured here instead of reversing them
    with np.errstate(divide="ignore", invalid="ignore"):
        tower_scale = np.where(taken & (excess > 0), excess / taken_energy, 1.0)
    return excess, neutral, np.where(calorimeter_better, tower_scale[track_tower], 1.0)


def _flow_through(
    calorimeter: Calorimeter,
    particles: dict[str, np.ndarray],
    tracks: dict[str, np.ndarray],
    rng: np.random.Generator,
    eflow: str,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One calorimeter pass: towers from the particles' deposits, then Delphes' EFlow of release `eflow`.

    particles: event, pid, energy, eta, phi (at the calorimeter); tracks: the same plus resolution and `source`
    (index into particles). Each tower's energy is log-normal smeared with the card's resolution at the tower's
    centre and zeroed below EnergyMin or EnergySignificanceMin sigma; `_tower_flow_3_4` or `_tower_flow_3_3`
    splits it into a neutral and the tracks' share. Returns the neutrals (event, energy, eta, phi, and `cell`, the
    tower's index; drawn uniformly in the cell, as the cards' SmearTowerCenter) and the track scale factors."""
    deposit = particles["energy"] * calorimeter.fraction(particles["pid"])
    eta_bin, phi_bin = _tower_cells(calorimeter, particles["eta"], particles["phi"])
    hit = (deposit > 0) & (eta_bin >= 0)
    n_phi_max = int(calorimeter.phi_bins.max())
    cell = (particles["event"] * len(calorimeter.eta_edges) + eta_bin) * n_phi_max + phi_bin
    towers, tower_of_hit = np.unique(cell[hit], return_inverse=True)
    true_energy = np.bincount(tower_of_hit, deposit[hit], minlength=len(towers))

    track_deposit = tracks["energy"] * calorimeter.fraction(tracks["pid"])
    tracked = (track_deposit > 0) & hit[tracks["source"]]
    track_tower = np.searchsorted(towers, cell[tracks["source"]][tracked])

    tower_eta_bin = towers // n_phi_max % len(calorimeter.eta_edges)
    tower_phi_bin = towers % n_phi_max
    eta_low, eta_high = calorimeter.eta_edges[tower_eta_bin - 1], calorimeter.eta_edges[tower_eta_bin]
    eta_centre = (eta_low + eta_high) / 2
    energy = _lognormal(true_energy, calorimeter.resolution(eta_centre, true_energy), rng)
    sigma = calorimeter.resolution(eta_centre, energy)
    energy[(energy < calorimeter.energy_min) | (energy < calorimeter.significance_min * sigma)] = 0.0

    scale = np.ones(len(tracks["energy"]))
    if eflow == "3.3":
        excess, neutral, scale[tracked] = _tower_flow_3_3(
            calorimeter, energy, eta_centre, track_deposit[tracked], tracks["resolution"][tracked], track_tower
        )
    else:
        track_energy = np.bincount(track_tower, track_deposit[tracked], minlength=len(towers))
        track_sigma = np.sqrt(
            np.bincount(track_tower, (tracks["resolution"] * track_deposit)[tracked] ** 2, minlength=len(towers))
        )
        excess, neutral, tower_scale = _tower_flow_3_4(calorimeter, energy, sigma, track_energy, track_sigma)
        scale[tracked] = tower_scale[track_tower]

    n_phi = calorimeter.phi_bins[tower_eta_bin[neutral]]
    phi_width = 2 * np.pi / n_phi
    cell_position = rng.random((2, int(neutral.sum())))
    neutrals = {
        "event": towers[neutral] // (len(calorimeter.eta_edges) * n_phi_max),
        "energy": excess[neutral],
        "eta": eta_low[neutral] + cell_position[0] * (eta_high - eta_low)[neutral],
        "phi": -np.pi + (tower_phi_bin[neutral] + cell_position[1]) * phi_width,
        "cell": towers[neutral],
    }
    return neutrals, scale


def _one_position_per_tower(photons: dict[str, np.ndarray], hadrons: dict[str, np.ndarray]) -> None:
    """A combined Calorimeter module draws its tower's position once: a neutral hadron takes the position of the
    photon from its tower, where there is one (the two passes share their towers, so their `cell`s match)."""
    if len(photons["cell"]) == 0:
        return
    match = np.minimum(np.searchsorted(photons["cell"], hadrons["cell"]), len(photons["cell"]) - 1)
    shared = photons["cell"][match] == hadrons["cell"]
    for key in ("eta", "phi"):
        hadrons[key] = np.where(shared, photons[key][match], hadrons[key])


def _track_kind(pid: np.ndarray) -> np.ndarray:
    abs_pid = np.abs(pid)
    return np.where(abs_pid == 11, "electron", np.where(abs_pid == 13, "muon", "hadron"))


def _tracks(
    card: Card, particles: dict[str, np.ndarray], pt: np.ndarray, eta: np.ndarray, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Step 2 of `apply_particle_flow`: the charged particles found as tracks and their measured momenta. Returns
    pid, energy, mass2 (mass squared), resolution and `source` (index into `particles`) per track, and the momenta
    (3, n_tracks)."""
    px, py, pz, energy, charge, pid = (particles[k] for k in ("px", "py", "pz", "energy", "charge", "pid"))
    charged = np.flatnonzero(charge != 0)
    kind = _track_kind(pid[charged])
    abs_eta = np.abs(eta[charged])
    efficiency, resolution = np.zeros(len(charged)), np.zeros(len(charged))
    for name, table in card.tracking_efficiency.items():
        of_kind = kind == name
        efficiency[of_kind] = table(pt[charged][of_kind], abs_eta[of_kind])
        resolution[of_kind] = card.momentum_resolution[name](pt[charged][of_kind], abs_eta[of_kind])
    # a helix narrower than the calorimeter radius ends on an endcap: `eta` is there, and so is its efficiency
    found = rng.random(len(charged)) < efficiency
    source, resolution = charged[found], np.minimum(resolution[found], 1.0)
    mass2 = np.maximum(energy[source] ** 2 - px[source] ** 2 - py[source] ** 2 - pz[source] ** 2, 0.0)
    if card.massless_tracks:
        mass2 = np.zeros_like(mass2)
    momentum = np.stack([px[source], py[source], pz[source]])
    if card.true_track_momenta:  # TrackSmearing undoes MomentumSmearing and zeroes the resolution
        resolution = np.zeros(len(source))
    else:
        true_pt = pt[source]
        momentum = momentum * (_lognormal(true_pt, resolution * true_pt, rng) / true_pt)
    track_energy = np.sqrt((momentum**2).sum(axis=0) + mass2)
    tracks = {"pid": pid[source], "energy": track_energy, "mass2": mass2, "resolution": resolution, "source": source}
    return tracks, momentum


def _rescaled_energy(card: Card, energy: np.ndarray, mass2: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Track energies after EFlow scaled their momenta by `scale`: Delphes 3.5.0 sets the new pT at fixed mass
    (SetPtEtaPhiM); before, tracks were massless and the whole four-momentum was scaled."""
    if card.massless_tracks:
        return energy * scale
    return np.sqrt((energy**2 - mass2) * scale**2 + mass2)


def apply_particle_flow(
    particles: Mapping[str, np.ndarray],
    rng: np.random.Generator,
    card: Card | str = "cms",
    event: np.ndarray | None = None,
    pv: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Delphes' particle-flow objects of one or more events, with the numbers of `card` ("cms", "atlas").

    The chain of the cards, every step vectorised over all particles of all events:
    1. ParticlePropagator: where each particle reaches the calorimeter (`calorimeter_entry`); particles made
       at the origin (displaced production, a few mm at most here, is neglected for the calorimeter position).
    2. Tracking efficiency (by pT and the |eta| of that position, as Delphes' Efficiency module) and log-normal
       pT smearing at fixed direction and mass (MomentumSmearing, relative resolution capped at 1; massless with
       the ATLAS card, as Delphes up to 3.4.2), undone with `card.true_track_momenta` (JetClass's TrackSmearing).
       A curling track (helix diameter below the calorimeter radius: pT < 0.15 Bz R, 0.735 GeV for CMS,
       0.345 GeV for ATLAS) reaches an endcap, far forward, where Delphes draws the efficiency and where its
       energy reaches the calorimeter.
    3. ECAL, then HCAL towers (`_flow_through`): every visible particle deposits its energy times the card's
       fraction for its species in the cell at its calorimeter position; the tracks' energies are subtracted
       there by the EFlow of `card.eflow`. Tracks pass on, scaled where their tower made no neutral (3.4) or where
       the calorimeter measures them better (3.3); scaled at fixed mass unless massless, and dropped when scaled
       to nothing (a tower below threshold, with `card.true_track_momenta`). With `card.combined_calorimeter` a
       tower's photon and neutral hadron share one position.
    Output, tracks first then ECAL photons (pid 22) then HCAL neutral hadrons (pid 0, as Delphes), stably sorted
    by event: px, py, pz, energy (GeV; neutrals massless), charge, pid, d0val, d0err, dzval, dzerr (mm; impact
    parameters of the tracks as in `apply_detector`, 0 for neutrals), and `event`.
    particles: as `apply_detector`; event: (n,) event number of each particle (None: all one event).
    """
    card = CARDS[card] if isinstance(card, str) else card
    checked = _checked(particles, "apply_particle_flow")
    px, py, pz, energy, charge, pid, x, y, z = checked.values()
    pv = _checked_pv(pv, "apply_particle_flow")
    event = np.zeros(len(px), np.int64) if event is None else np.asarray(event, dtype=np.int64)
    pt = np.hypot(px, py)
    eta, phi = calorimeter_entry(px, py, pz, charge, card)
    at_calorimeter = {"event": event, "pid": pid, "energy": energy, "eta": eta, "phi": phi}

    tracks, track_momentum = _tracks(card, checked, pt, eta, rng)
    track_energy, mass2 = tracks["energy"], tracks["mass2"]
    photons, ecal_scale = _flow_through(card.ecal, at_calorimeter, tracks, rng, card.eflow)
    tracks["energy"] = _rescaled_energy(card, track_energy, mass2, ecal_scale)
    hadrons, hcal_scale = _flow_through(card.hcal, at_calorimeter, tracks, rng, card.eflow)
    if card.combined_calorimeter:
        _one_position_per_tower(photons, hadrons)
    track_scale = ecal_scale * hcal_scale
    # a track scaled to nothing (its tower below threshold, true_track_momenta) is no particle-flow object
    kept = track_scale > 0
    source, track_scale = tracks["source"][kept], track_scale[kept]
    track_energy = _rescaled_energy(card, track_energy[kept], mass2[kept], track_scale)
    track_momentum = track_momentum[:, kept] * track_scale
    d0_true, dz_true = straight_track_impact_parameters(
        px[source], py[source], pz[source], x[source] - pv[0], y[source] - pv[1], z[source] - pv[2]
    )
    d0err = impact_parameter_resolution(pt[source], D0_RESOLUTION)
    dzerr = impact_parameter_resolution(pt[source], DZ_RESOLUTION)
    d0_noise, dz_noise = rng.standard_normal((2, len(source)))

    neutrals = {key: np.concatenate([photons[key], hadrons[key]]) for key in photons}
    neutral_pid = np.repeat(
        [card.ecal.neutral_pid, card.hcal.neutral_pid], [len(photons["energy"]), len(hadrons["energy"])]
    ).astype(pid.dtype)
    neutral_pt = neutrals["energy"] / np.cosh(neutrals["eta"])
    no_track = np.zeros(len(neutral_pt))
    columns = {
        "px": [track_momentum[0], neutral_pt * np.cos(neutrals["phi"])],
        "py": [track_momentum[1], neutral_pt * np.sin(neutrals["phi"])],
        "pz": [track_momentum[2], neutral_pt * np.sinh(neutrals["eta"])],
        "energy": [track_energy, neutrals["energy"]],
        "charge": [charge[source], no_track],
        "pid": [pid[source], neutral_pid],
        "d0val": [d0_true + d0err * d0_noise, no_track],
        "d0err": [d0err, no_track],
        "dzval": [dz_true + dzerr * dz_noise, no_track],
        "dzerr": [dzerr, no_track],
        "event": [event[source], neutrals["event"]],
    }
    merged = {name: np.concatenate(parts) for name, parts in columns.items()}
    order = np.argsort(merged["event"], kind="stable")
    return {name: value[order] for name, value in merged.items()}


def generator_level(particles: Mapping[str, np.ndarray], event: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The particles as generated ("none"): true four-momenta and impact parameters, errors 0."""
    px, py, pz, energy, charge, pid, x, y, z = _checked(particles, "generator_level").values()
    d0, dz = straight_track_impact_parameters(px, py, pz, x, y, z)
    charged = charge != 0
    zeros = np.zeros(len(px))
    return {
        "px": px,
        "py": py,
        "pz": pz,
        "energy": energy,
        "charge": charge,
        "pid": pid,
        "d0val": np.where(charged, d0, 0.0),
        "d0err": zeros,
        "dzval": np.where(charged, dz, 0.0),
        "dzerr": zeros,
        "event": np.zeros(len(px), np.int64) if event is None else np.asarray(event, dtype=np.int64),
    }


def measure(
    particles: Mapping[str, np.ndarray], event: np.ndarray, rng: np.random.Generator, detector: str
) -> dict[str, np.ndarray]:
    """Measured objects of a batch of events with `detector` (one of DETECTORS), sorted by `event` (given per
    particle, non-decreasing); each output carries its `event`."""
    if detector in CARDS:
        return apply_particle_flow(particles, rng, detector, event)
    if detector == "simple":
        return {**apply_detector(particles, rng), "event": np.asarray(event, dtype=np.int64)}
    if detector == "none":
        return generator_level(particles, event)
    raise ValueError(f"unknown detector {detector!r}: choose one of {', '.join(DETECTORS)}")


def measure_events(
    events: EventBatch, charges, rng: np.random.Generator, detector: str
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The measured objects of a whole batch of events with `detector` (one `measure` call serves the batch) and
    how many each event has, shape (n_events,). `charges.charge(pid)` gives the charge of each particle
    (`events.ParticleTable`)."""
    # Pythia can emit a final-state photon of exactly zero four-momentum, and a particle along the beam has
    # no pT: neither reaches a detector (the model would turn them into NaN, which crashes FastJet)
    measurable = (events.p4[:, 3] > 0) & (np.hypot(events.p4[:, 0], events.p4[:, 1]) > 0)
    visible = np.flatnonzero((events.status > 0) & ~np.isin(np.abs(events.pid), _NEUTRINOS) & measurable)
    p4, vertex = events.p4[visible], events.vertex[visible]
    particles = {
        "px": p4[:, 0],
        "py": p4[:, 1],
        "pz": p4[:, 2],
        "energy": p4[:, 3],
        "charge": charges.charge(events.pid[visible]),
        "pid": events.pid[visible],
        "xprod": vertex[:, 0],
        "yprod": vertex[:, 1],
        "zprod": vertex[:, 2],
    }
    event = np.searchsorted(events.offsets, visible, side="right") - 1
    measured = measure(particles, event, rng, detector)
    return np.bincount(measured.pop("event"), minlength=events.num_events), measured

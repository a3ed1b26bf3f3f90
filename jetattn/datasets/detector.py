"""A small CMS-like detector model for generator-level particles: track impact parameters and calorimeter smearing.

No detector simulation is available here, so each event's visible final-state particles are measured with a few
Gaussian (log-normal for energies) resolutions. Units: GeV and mm, c = 1. Every number and why:

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

BEAM_SPOT_SIGMA_MM = np.array([0.012, 0.012, 45.0])
D0_RESOLUTION = (0.015, 0.090)  # (a / mm, b / (mm GeV))
DZ_RESOLUTION = (0.030, 0.150)
PHOTON_RESOLUTION = (0.03, 0.01)  # (stochastic / sqrt(GeV), constant)
NEUTRAL_HADRON_RESOLUTION = (1.00, 0.05)

PARTICLE_KEYS = ("px", "py", "pz", "energy", "charge", "pid", "xprod", "yprod", "zprod")
_NEUTRINOS = (12, 14, 16)


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
    missing = [key for key in PARTICLE_KEYS if key not in particles]
    if missing:
        raise KeyError(f"apply_detector: particle arrays lack {', '.join(missing)} (needs {', '.join(PARTICLE_KEYS)})")
    px, py, pz, energy, x, y, z = (
        np.asarray(particles[key], dtype=np.float64) for key in ("px", "py", "pz", "energy", "xprod", "yprod", "zprod")
    )
    charge, pid = np.asarray(particles["charge"]), np.asarray(particles["pid"])
    if np.isin(np.abs(pid), _NEUTRINOS).any():
        raise ValueError("apply_detector: neutrinos are invisible; drop pid ±12, ±14, ±16 before measuring")
    pv = np.zeros(3) if pv is None else np.asarray(pv, dtype=np.float64)
    if pv.shape != (3,):
        raise ValueError(f"apply_detector: pv must be (x, y, z) in mm, got shape {pv.shape}")
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

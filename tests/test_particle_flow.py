"""The Delphes-like particle-flow detector: tracking, towers, thresholds, EFlow subtraction, conventions.

Fed with hand-made particles (no Pythia): one particle per event where efficiencies are counted, so that events
do not share towers."""

from dataclasses import replace

import numpy as np
import pytest
from scipy.special import erfc

from jetattn.datasets.cards import CARDS
from jetattn.datasets.detector import apply_particle_flow, calorimeter_entry, measure


def particles(pt, eta, phi, pid, charge, mass=0.0) -> dict[str, np.ndarray]:
    """Particle arrays (production at the origin) from pT, eta, phi (broadcast together) in GeV."""
    pt, eta, phi, pid, charge = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(v, float)) for v in (pt, eta, phi, pid, charge))
    )
    pz = pt * np.sinh(eta)
    zeros = np.zeros(len(pt))
    return {
        "px": pt * np.cos(phi),
        "py": pt * np.sin(phi),
        "pz": pz,
        "energy": np.sqrt(pt**2 + pz**2 + mass**2),
        "charge": charge,
        "pid": pid.astype(np.int64),
        "xprod": zeros,
        "yprod": zeros,
        "zprod": zeros,
    }


def one_per_event(n: int) -> np.ndarray:
    return np.arange(n)


def pt_of(measured: dict[str, np.ndarray]) -> np.ndarray:
    return np.hypot(measured["px"], measured["py"])


@pytest.mark.parametrize(
    ("card", "pt", "abs_eta", "expected"),
    [
        ("atlas", 0.5, 0.8, 0.70),
        ("atlas", 5.0, 0.8, 0.95),
        ("cms", 0.9, 2.0, 0.60),
        ("cms", 20.0, 2.0, 0.85),
        ("cms", 20.0, 2.8, 0.0),
    ],
)
def test_tracking_efficiency_is_the_cards(card: str, pt: float, abs_eta: float, expected: float) -> None:
    n = 4000
    rng = np.random.default_rng(1)
    eta = abs_eta * rng.choice([-1.0, 1.0], n)
    pions = particles(pt, eta, rng.uniform(-np.pi, np.pi, n), 211, 1.0)
    # the tracker alone: JetClass's TrackSmearing would hand soft tracks to their towers' thresholds (below)
    tracker_only = replace(CARDS[card], true_track_momenta=False)
    measured = apply_particle_flow(pions, rng, tracker_only, one_per_event(n))
    found = np.count_nonzero(measured["charge"] != 0) / n
    assert found == pytest.approx(expected, abs=4 * np.sqrt(0.25 / n))


def test_curling_tracks_leave_through_the_endcap() -> None:
    card = CARDS["cms"]
    threshold = 0.299792458 * card.bz * card.radius / 2  # 0.735 GeV: helix diameter = calorimeter radius
    pt = np.array([0.5 * threshold, 0.9 * threshold, 1.1 * threshold, 10.0])
    eta, phi = calorimeter_entry(pt, np.zeros(4), pt * np.sinh(0.3), np.ones(4), card)
    # below the threshold the helix never reaches the barrel: it ends on an endcap, far forward; above, it reaches
    # the barrel after a longer arc than the straight line (so a little further forward)
    assert np.all(np.abs(eta[:2]) > 1.5) and 0.3 < eta[2] < 0.4 and eta[3] == pytest.approx(0.3, abs=1e-3)
    # positive particles bend clockwise in +z field, more the softer they are
    assert phi[3] < 0 and phi[2] < phi[3]
    assert calorimeter_entry(np.array([10.0]), np.zeros(1), np.zeros(1), -np.ones(1), card)[1][0] > 0


@pytest.mark.parametrize("pt", [0.3, 0.15])
def test_atlas_curling_tracks_are_found_where_their_endcap_hit_passes_the_efficiency(pt: float) -> None:
    # Delphes (ATLAS, 0.345 GeV): the helix ends on the endcap (|z| = 3.51 m) at a radius below 2 r, the
    # Efficiency module draws at that point's eta: 60 % in 1.5 < |eta| <= 2.5, nothing beyond
    card = CARDS["atlas"]
    n = 4000
    rng = np.random.default_rng(11)
    eta, phi = rng.uniform(-1, 1, n), rng.uniform(-np.pi, np.pi, n)
    soft = particles(pt, eta, phi, 211, rng.choice([-1.0, 1.0], n))
    endcap_eta, _ = calorimeter_entry(soft["px"], soft["py"], soft["pz"], soft["charge"], card)
    assert np.all(np.abs(endcap_eta) > 1.5)
    measured = apply_particle_flow(soft, rng, card, one_per_event(n))
    found = measured["event"][measured["charge"] != 0]
    reachable = np.abs(endcap_eta) <= 2.5
    assert np.all(reachable[found])
    expected = 0.60 * reachable.mean()
    assert len(found) / n == pytest.approx(expected, abs=4 * np.sqrt(0.25 / n))
    if pt == 0.15:  # 2 r = 0.5 m: the hit is beyond |eta| = 2.5 whatever the turn
        assert expected == 0.0
    else:  # and the track keeps its direction at the vertex, as Delphes' Momentum
        tracks = measured["charge"] != 0
        assert expected > 0.2
        np.testing.assert_allclose(np.arcsinh(measured["pz"][tracks] / pt_of(measured)[tracks]), eta[found], atol=1e-9)


def test_track_pt_resolution() -> None:
    n = 5000
    rng = np.random.default_rng(3)
    eta = rng.uniform(-0.5, 0.5, n)
    muons = particles(50.0, eta, rng.uniform(-np.pi, np.pi, n), 13, -1.0, mass=0.1057)
    measured = apply_particle_flow(muons, rng, "atlas", one_per_event(n))
    tracks = measured["charge"] != 0
    response = pt_of(measured)[tracks] / 50.0
    expected = np.hypot(0.02, 50.0 * 2.0e-4)  # the ATLAS card's MuonMomentumSmearing, |eta| <= 0.5
    assert response.mean() == pytest.approx(1.0, abs=4 * expected / np.sqrt(tracks.sum()))
    assert response.std() == pytest.approx(expected, rel=0.05)
    assert np.all(measured["pid"] == 13)  # muons leave no tower
    # Delphes up to 3.4.2 (the ATLAS card, TopLandscape) made tracks massless
    momentum = np.sqrt(pt_of(measured) ** 2 + measured["pz"] ** 2)
    np.testing.assert_allclose(measured["energy"], momentum, rtol=1e-9)
    # JetClass's card: TrackSmearing (zero momentum resolution) rebuilds the generated momentum; Delphes 3.5.0
    # keeps the mass
    measured = apply_particle_flow(muons, rng, "cms", one_per_event(n))
    found = measured["event"]
    assert len(found) / n == pytest.approx(0.99, abs=0.01)
    for key in ("px", "py", "pz", "energy"):
        np.testing.assert_allclose(measured[key], muons[key][found], rtol=1e-12)


def ecal_cell(card, eta, phi) -> tuple[np.ndarray, np.ndarray]:
    ecal = card.ecal
    k = np.searchsorted(ecal.eta_edges, eta)
    return k, np.floor((np.asarray(phi) + np.pi) / (2 * np.pi) * ecal.phi_bins[k]).astype(int)


def test_two_photons_in_one_cell_become_one_neutral() -> None:
    card = CARDS["cms"]
    eta, phi = np.array([0.1003, 0.1010]), np.array([0.5001, 0.5030])
    cells = ecal_cell(card, eta, phi)
    assert cells[0][0] == cells[0][1] and cells[1][0] == cells[1][1]  # the same 0.0174 x 1 degree cell
    two_photons = particles([8.0, 5.0], eta, phi, 22, 0.0)
    measured = apply_particle_flow(two_photons, np.random.default_rng(4), card)
    assert measured["pid"].tolist() == [22]
    sigma = card.ecal.resolution(np.array(0.1), np.array(13.0 * np.cosh(0.1)))
    assert measured["energy"][0] == pytest.approx(13.0 * np.cosh(0.1), abs=5 * sigma)
    # placed uniformly inside the cell (SmearTowerCenter), not at either photon
    k, j = cells[0][0], cells[1][0]
    out_eta = np.arcsinh(measured["pz"][0] / pt_of(measured)[0])
    out_phi = np.arctan2(measured["py"][0], measured["px"][0])
    assert card.ecal.eta_edges[k - 1] <= out_eta <= card.ecal.eta_edges[k]
    width = 2 * np.pi / card.ecal.phi_bins[k]
    assert -np.pi + j * width <= out_phi <= -np.pi + (j + 1) * width
    # the ATLAS card's towers are 0.1 x 10 degrees: photons 0.05 apart merge there too
    apart = particles([8.0, 5.0], [0.11, 0.16], [0.40, 0.45], 22, 0.0)
    assert len(apply_particle_flow(apart, np.random.default_rng(5), "cms")["pid"]) == 2
    assert len(apply_particle_flow(apart, np.random.default_rng(5), "atlas")["pid"]) == 1


def test_energy_thresholds() -> None:
    n = 500
    rng = np.random.default_rng(6)
    phi = rng.uniform(-np.pi, np.pi, n)
    soft_photons = particles(0.3, 0.2, phi, 22, 0.0)  # below the ECAL's EnergyMin of 0.5 GeV
    assert len(apply_particle_flow(soft_photons, rng, "atlas", one_per_event(n))["pid"]) == 0


def seen_above(threshold: float, energy: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """P(a log-normal tower of mean `energy` and width `sigma` (Delphes' LogNormal) is at least `threshold`)."""
    log_sigma = np.sqrt(np.log1p((sigma / energy) ** 2))
    return 0.5 * erfc((np.log(threshold / energy) + log_sigma**2 / 2) / (log_sigma * np.sqrt(2)))


# JetClass's CMS HCAL: 150 %/sqrt(E) (+) 5 % and EnergySignificanceMin 1, so a tower stays from E = sigma(E)
HCAL_THRESHOLD = 1.5**2 / (1 - 0.05**2)


@pytest.mark.parametrize("pt", [2.0, 4.0])
def test_jetclass_hcal_keeps_towers_from_one_sigma(pt: float) -> None:
    n = 3000
    rng = np.random.default_rng(14)
    neutral_hadrons = particles(pt, 0.0, rng.uniform(-np.pi, np.pi, n), 130, 0.0, mass=0.4977)
    measured = apply_particle_flow(neutral_hadrons, rng, "cms", one_per_event(n))
    energy = neutral_hadrons["energy"][0]
    expected = seen_above(HCAL_THRESHOLD, energy, CARDS["cms"].hcal.resolution(np.array(0.0), np.array(energy)))
    assert len(measured["pid"]) / n == pytest.approx(expected, abs=4 * np.sqrt(0.25 / n))
    assert np.all(measured["energy"] >= HCAL_THRESHOLD) and np.all(measured["pid"] == 0)


def test_jetclass_tracks_take_their_towers_energy() -> None:
    # TrackSmearing leaves the tracks no resolution, so EFlow trusts the HCAL alone: a lone pion's track takes its
    # tower's smeared energy at its generated direction and mass, and goes when the tower is below threshold
    n = 4000
    rng = np.random.default_rng(15)
    eta, phi = rng.uniform(-1.0, 1.0, n), rng.uniform(-np.pi, np.pi, n)
    pions = particles(1.5, eta, phi, 211, 1.0, mass=0.13957)
    measured = apply_particle_flow(pions, rng, "cms", one_per_event(n))
    tracks = measured["charge"] != 0
    # its pT is scaled by tower / track energy, the tower at least at threshold; where the tower's excess passed
    # 1 sigma too, it left a neutral hadron and the track its generated momentum
    scaled = tracks & ~np.isin(measured["event"], measured["event"][measured["pid"] == 0])
    tower_energy = pt_of(measured) / 1.5 * pions["energy"][measured["event"]]
    assert np.all(tower_energy[scaled] >= HCAL_THRESHOLD) and np.any(tower_energy[scaled] < 3.0)
    mass2 = measured["energy"] ** 2 - pt_of(measured) ** 2 - measured["pz"] ** 2
    np.testing.assert_allclose(np.sqrt(mass2[tracks]), 0.13957, rtol=1e-6)
    np.testing.assert_allclose(np.arcsinh(measured["pz"] / pt_of(measured))[tracks], eta[measured["event"][tracks]])
    energy = pions["energy"]
    sigma = CARDS["cms"].hcal.resolution(np.zeros(n), energy)
    expected = 0.95 * seen_above(HCAL_THRESHOLD, energy, sigma).mean()
    assert 0.2 < expected < 0.5
    assert tracks.sum() / n == pytest.approx(expected, abs=4 * np.sqrt(0.25 / n))
    # beside a hard neutral hadron (where the pion reaches the HCAL, 0.5 rad away in phi) the tower's excess is
    # significant: the track keeps its generated momentum
    hit_eta, hit_phi = calorimeter_entry(pions["px"], pions["py"], pions["pz"], pions["charge"], CARDS["cms"])
    pair, events = one_tower_pairs(pions, particles(50.0, hit_eta, hit_phi, 130, 0.0))
    measured = apply_particle_flow(pair, rng, "cms", events)
    tracks = measured["charge"] != 0
    assert tracks.sum() / n == pytest.approx(0.95, abs=0.02)
    np.testing.assert_allclose(pt_of(measured)[tracks], 1.5, rtol=1e-12)


def test_charged_deposit_is_subtracted_in_eflow() -> None:
    n = 1000
    rng = np.random.default_rng(7)
    phi = rng.uniform(-np.pi, np.pi, n)
    pions = particles(40.0, 0.4, phi, 211, 1.0)
    measured = apply_particle_flow(pions, rng, "cms", one_per_event(n))
    tracks = np.count_nonzero(measured["charge"] != 0)
    neutrals = np.count_nonzero(measured["charge"] == 0)
    assert tracks / n == pytest.approx(0.95, abs=0.03)
    # an untracked pion's deposit is a neutral hadron; a tracked one's leaves at most an upward fluctuation beyond
    # 1 sigma of the HCAL's 150 %/sqrt(E) (+) 5 % (JetClass's card): about 16 % of them
    assert neutrals >= n - tracks and neutrals < (n - tracks) + 0.2 * tracks
    # a K0L sharing the pion's tower comes out as the neutral excess
    both = {key: np.concatenate([value, particles(200.0, 0.4, phi, 130, 0.0)[key]]) for key, value in pions.items()}
    measured = apply_particle_flow(both, rng, "cms", np.concatenate([one_per_event(n), one_per_event(n)]))
    with_track = np.isin(np.arange(n), measured["event"][measured["charge"] != 0])
    excess = measured["energy"][(measured["pid"] == 0) & with_track[measured["event"]]]
    assert excess.mean() == pytest.approx(200.0 * np.cosh(0.4), rel=0.03)


def one_tower_pairs(first: dict, second: dict) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Event i holds particle i of `first` and particle i of `second`; returns the particles and their events."""
    n = len(first["px"])
    return {key: np.concatenate([first[key], second[key]]) for key in first}, np.tile(np.arange(n), 2)


def test_atlas_eflow_is_delphes_3_3s() -> None:
    # a hard pion the HCAL measures better than the tracker (5 % against 20 % at 150 GeV) takes its tower: a K0L
    # beside it adds to the track and makes no neutral; a soft pion is subtracted and the K0L's excess stays
    n = 400
    rng = np.random.default_rng(12)
    phi = np.radians(10.0 * rng.integers(0, 36, n) + 5.0)  # the middle of a 10 degree tower, eta 0.2 .. 0.3
    cosh = np.cosh(0.25)
    for pion_pt, k0l_pt, taken in [(150.0, 100.0, True), (5.0, 20.0, False)]:
        pair, events = one_tower_pairs(
            particles(pion_pt, 0.25, phi, 211, 1.0), particles(k0l_pt, 0.25, phi + 0.01, 130, 0.0)
        )
        measured = apply_particle_flow(pair, rng, "atlas", events)
        tracks = measured["charge"] != 0
        beside_a_track = (measured["pid"] == 0) & np.isin(measured["event"], measured["event"][tracks])
        if taken:
            assert not beside_a_track.any()
            assert measured["energy"][tracks].mean() == pytest.approx((pion_pt + k0l_pt) * cosh, rel=0.02)
            # CMS runs the EFlow of 3.4.0 on: the K0L's 100 GeV is a significant excess there
            cms = apply_particle_flow(pair, rng, "cms", events)
            cms_tracks = cms["charge"] != 0
            cms_beside = (cms["pid"] == 0) & np.isin(cms["event"], cms["event"][cms_tracks])
            assert np.count_nonzero(cms_beside) > 0.8 * np.count_nonzero(cms_tracks)
        else:
            assert beside_a_track.sum() == pytest.approx(tracks.sum(), rel=0.05)
            assert measured["energy"][beside_a_track].mean() == pytest.approx(k0l_pt * cosh, rel=0.05)
            assert measured["energy"][tracks].mean() == pytest.approx(pion_pt * cosh, rel=0.02)


def test_atlas_photon_and_neutral_hadron_of_one_tower_share_its_position() -> None:
    # one Calorimeter module: SmearTowerCenter draws the tower's position once (the real TopLandscape jets hold
    # about two such pairs each); CMS's two SimpleCalorimeters draw one each
    n = 200
    rng = np.random.default_rng(13)
    phi = np.radians(10.0 * rng.integers(0, 36, n) + 5.0)
    pair, events = one_tower_pairs(particles(10.0, 0.25, phi, 22, 0.0), particles(30.0, 0.25, phi + 0.01, 130, 0.0))
    for card, shared in [("atlas", True), ("cms", False)]:
        measured = apply_particle_flow(pair, rng, card, events)
        photon, hadron = (measured["pid"] == 22, measured["pid"] == 0)
        both = np.intersect1d(measured["event"][photon], measured["event"][hadron])
        assert len(both) > 0.9 * n
        positions = []
        for kind in (photon, hadron):
            pick = kind & np.isin(measured["event"], both)  # one of each kind per event, in event order
            positions.append(np.stack([measured["px"][pick], measured["py"][pick], measured["pz"][pick]]))
            positions[-1] /= pt_of(measured)[pick]
        same = np.all(np.abs(positions[0] - positions[1]) < 1e-12, axis=0)
        assert same.all() if shared else not same.any()


def test_energy_is_conserved_with_perfect_resolution() -> None:
    exact = {
        name: replace(
            card,
            ecal=replace(card.ecal, resolution=lambda eta, e: 1e-9 * e, significance_min=0.0),
            hcal=replace(card.hcal, resolution=lambda eta, e: 1e-9 * e, significance_min=0.0),
            tracking_efficiency={
                kind: replace(table, values=tuple((1.0,) * len(row) for row in table.values))
                for kind, table in card.tracking_efficiency.items()
            },
        )
        for name, card in CARDS.items()
    }
    rng = np.random.default_rng(8)
    n = 300
    jet = particles(
        np.exp(rng.uniform(np.log(2.0), np.log(100.0), n)),
        rng.normal(0.5, 0.2, n),
        rng.normal(1.0, 0.2, n),
        rng.choice([211, -211, 22, 2112, 130], n),
        0.0,
    )
    jet["charge"] = np.sign(jet["pid"]) * np.isin(np.abs(jet["pid"]), [211]).astype(float)
    for card in exact.values():
        card = replace(
            card,
            momentum_resolution={k: replace(r, terms=((1e-9, 0.0),) * 3) for k, r in card.momentum_resolution.items()},
        )
        measured = apply_particle_flow(jet, rng, card)
        assert measured["energy"].sum() == pytest.approx(jet["energy"].sum(), rel=1e-6)
        np.testing.assert_allclose(measured["px"].sum(), jet["px"].sum(), rtol=0.02)


def test_eta_sign_phi_wrapping_and_events_stay_apart() -> None:
    # the same photon in three events, at negative eta and just inside phi = -pi
    photon = particles([50.0] * 3, -1.2, -3.13, 22, 0.0)
    measured = apply_particle_flow(photon, np.random.default_rng(9), "cms", np.array([0, 1, 5]))
    assert measured["event"].tolist() == [0, 1, 5]
    eta = np.arcsinh(measured["pz"] / pt_of(measured))
    phi = np.arctan2(measured["py"], measured["px"])
    assert np.all(np.abs(eta + 1.2) < 0.02) and np.all((phi >= -np.pi) & (phi < -3.12))


def test_generator_level_passes_particles_through() -> None:
    rng = np.random.default_rng(10)
    truth = particles(rng.uniform(1, 10, 20), rng.uniform(-2, 2, 20), rng.uniform(-3, 3, 20), 211, 1.0)
    measured = measure(truth, np.zeros(20, int), rng, "none")
    for key in ("px", "py", "pz", "energy", "charge", "pid"):
        np.testing.assert_array_equal(measured[key], truth[key])
    with pytest.raises(ValueError, match="unknown detector 'delphes'"):
        measure(truth, np.zeros(20, int), rng, "delphes")

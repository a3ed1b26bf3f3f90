"""Detector model: impact-parameter geometry, resolutions and their statistics, calorimeter smearing."""

import numpy as np
import pytest

from jetattn.datasets.detector import (
    BEAM_SPOT_SIGMA_MM,
    D0_RESOLUTION,
    DZ_RESOLUTION,
    NEUTRAL_HADRON_RESOLUTION,
    PHOTON_RESOLUTION,
    apply_detector,
    energy_resolution,
    impact_parameter_resolution,
    sample_primary_vertex,
    straight_track_impact_parameters,
)


def event(momenta, vertices, pid, charge) -> dict[str, np.ndarray]:
    """Particle arrays from (n, 3) momenta (massless energies), (n, 3) production vertices, pid and charge."""
    momenta, vertices = np.atleast_2d(np.asarray(momenta, float)), np.atleast_2d(np.asarray(vertices, float))
    n = len(momenta)
    return {
        "px": momenta[:, 0],
        "py": momenta[:, 1],
        "pz": momenta[:, 2],
        "energy": np.linalg.norm(momenta, axis=1),
        "xprod": vertices[:, 0],
        "yprod": vertices[:, 1],
        "zprod": vertices[:, 2],
        "pid": np.broadcast_to(pid, n).copy(),
        "charge": np.broadcast_to(charge, n).astype(float),
    }


def random_tracks(n: int, rng: np.random.Generator, pid: int = 211, charge: float = 1.0) -> dict[str, np.ndarray]:
    pt = np.exp(rng.uniform(np.log(0.5), np.log(200.0), n))
    phi, eta = rng.uniform(-np.pi, np.pi, n), rng.uniform(-2.5, 2.5, n)
    momenta = np.column_stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)])
    vertices = rng.normal(0.0, [0.5, 0.5, 2.0], (n, 3))  # b/c-decay-like displacements
    return event(momenta, vertices, pid, charge)


def test_straight_track_geometry() -> None:
    momenta = np.array([[3.0, 4.0, 5.0], [0.0, 10.0, 0.0], [0.0, -10.0, 0.0], [10.0, 0.0, 7.0]])
    vertices = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 5.0]])
    d0, dz = straight_track_impact_parameters(*momenta.T, *vertices.T)
    # from the origin: 0; from (1, 0, 0) along +y: +1 mm (anticlockwise), along -y: -1 mm; along +x: 0
    np.testing.assert_allclose(d0, [0.0, 1.0, -1.0, 0.0], atol=1e-12)
    # along (+x, pz = 0.7 pT) from (1, 0, 5): the closest approach is at x = 0, 1 mm back, so z = 5 - 0.7
    np.testing.assert_allclose(dz, [0.0, 0.0, 0.0, 4.3], atol=1e-12)


def test_impact_parameters_are_measured_from_the_primary_vertex() -> None:
    pv = np.array([0.3, -0.2, 12.0])
    particles = event([[0.0, 1000.0, 0.0]], [pv + [1.0, 0.0, 0.5]], 211, 1)
    measured = apply_detector(particles, np.random.default_rng(0), pv=pv)
    assert measured["d0val"][0] == pytest.approx(1.0, abs=5 * measured["d0err"][0])
    assert measured["dzval"][0] == pytest.approx(0.5, abs=5 * measured["dzerr"][0])
    prompt = apply_detector(event([[0.0, 1000.0, 0.0]], [pv], 211, 1), np.random.default_rng(0), pv=pv)
    assert abs(prompt["d0val"][0]) < 5 * prompt["d0err"][0] and abs(prompt["dzval"][0]) < 5 * prompt["dzerr"][0]


def test_resolution_falls_with_pt_and_is_the_reported_error() -> None:
    pt = np.array([0.5, 1.0, 5.0, 20.0, 100.0, 1000.0])
    for resolution in (D0_RESOLUTION, DZ_RESOLUTION):
        sigma = impact_parameter_resolution(pt, resolution)
        assert np.all(np.diff(sigma) < 0) and sigma[-1] > 0
    tracks = random_tracks(1000, np.random.default_rng(1))
    measured = apply_detector(tracks, np.random.default_rng(2))
    track_pt = np.hypot(tracks["px"], tracks["py"])
    np.testing.assert_allclose(measured["d0err"], impact_parameter_resolution(track_pt, D0_RESOLUTION))
    np.testing.assert_allclose(measured["dzerr"], impact_parameter_resolution(track_pt, DZ_RESOLUTION))
    assert np.all(measured["d0err"] > 0) and np.all(measured["dzerr"] > 0)


def test_impact_parameter_pulls_are_standard_normal() -> None:
    tracks = random_tracks(10_000, np.random.default_rng(3))
    measured = apply_detector(tracks, np.random.default_rng(4))
    d0_true, dz_true = straight_track_impact_parameters(
        tracks["px"], tracks["py"], tracks["pz"], tracks["xprod"], tracks["yprod"], tracks["zprod"]
    )
    for true, value, error in [(d0_true, "d0val", "d0err"), (dz_true, "dzval", "dzerr")]:
        pulls = (measured[value] - true) / measured[error]
        assert abs(pulls.mean()) < 0.05 and pulls.std() == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize(
    ("pid", "resolution", "energy"), [(22, PHOTON_RESOLUTION, 10.0), (130, NEUTRAL_HADRON_RESOLUTION, 20.0)]
)
def test_calorimeter_energy_resolution(pid: int, resolution: tuple[float, float], energy: float) -> None:
    n = 10_000
    rng = np.random.default_rng(5)
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    neutrals = event(energy * direction, rng.normal(0, 1.0, (n, 3)), pid, 0)
    measured = apply_detector(neutrals, np.random.default_rng(6))
    response = measured["energy"] / energy
    expected_sigma = energy_resolution(np.array(energy), resolution)
    assert response.mean() == pytest.approx(1.0, abs=3 * expected_sigma / np.sqrt(n))
    assert response.std() == pytest.approx(expected_sigma, rel=0.04)
    assert np.all(measured["energy"] > 0)
    # massless along the true direction, and no track parameters for neutrals
    momentum = np.column_stack([measured["px"], measured["py"], measured["pz"]])
    np.testing.assert_allclose(np.linalg.norm(momentum, axis=1), measured["energy"], rtol=1e-12)
    np.testing.assert_allclose(momentum / measured["energy"][:, None], direction, atol=1e-12)
    for key in ("d0val", "d0err", "dzval", "dzerr"):
        assert np.all(measured[key] == 0)


def test_charged_particles_keep_their_momentum() -> None:
    tracks = random_tracks(100, np.random.default_rng(7), pid=-11, charge=1)
    measured = apply_detector(tracks, np.random.default_rng(8))
    for key in ("px", "py", "pz", "energy", "pid", "charge"):
        np.testing.assert_array_equal(measured[key], tracks[key])


def test_seeded_rng_reproduces_the_event() -> None:
    rng = np.random.default_rng(9)
    particles = {
        key: np.concatenate([a, b])
        for (key, a), b in zip(
            random_tracks(50, rng).items(), random_tracks(50, rng, pid=22, charge=0).values(), strict=True
        )
    }
    first, second = (apply_detector(particles, np.random.default_rng(10)) for _ in range(2))
    other = apply_detector(particles, np.random.default_rng(11))
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    assert not np.array_equal(first["d0val"], other["d0val"]) and not np.array_equal(first["energy"], other["energy"])


def test_bad_input_is_refused_with_a_clear_message() -> None:
    particles = random_tracks(3, np.random.default_rng(12))
    with pytest.raises(KeyError, match="zprod"):
        apply_detector({k: v for k, v in particles.items() if k != "zprod"}, np.random.default_rng(0))
    with pytest.raises(ValueError, match="neutrinos"):
        apply_detector({**particles, "pid": np.array([211, 14, 22])}, np.random.default_rng(0))
    with pytest.raises(ValueError, match="pv"):
        apply_detector(particles, np.random.default_rng(0), pv=np.zeros(2))


def test_beam_spot_width() -> None:
    rng = np.random.default_rng(13)
    vertices = np.array([sample_primary_vertex(rng) for _ in range(4000)])
    np.testing.assert_allclose(vertices.std(axis=0), BEAM_SPOT_SIGMA_MM, rtol=0.05)

"""The studies' shared run: resumable, and no prediction file under its final name unless the run finished."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from studies.runs import slug, train, unfinished  # noqa: E402


def writes_predictions(folder: Path, fail: bool = False) -> list[str]:
    """A stand-in for a train script: writes weaver's per-group prediction files into the staging folder."""
    script = (
        f"from pathlib import Path; d = Path({str(unfinished(folder))!r}); "
        f"[(d / f'pred_{{g}}.root').write_text(g) for g in ('HToBB', 'real')]; "
        f"print('trained'); raise SystemExit({int(fail)})"
    )
    return [sys.executable, "-c", script]


def test_a_finished_run_moves_its_predictions_and_is_not_run_again(tmp_path):
    folder = tmp_path / "jetclass" / "part_kin"
    record = train(folder, "ParT (kin)", writes_predictions(folder), threads=1, repeat=2)
    assert sorted(p.name for p in folder.glob("pred_*.root")) == ["pred_HToBB.root", "pred_real.root"]
    assert not unfinished(folder).exists()
    assert record["model"] == "ParT (kin)" and record["repeat"] == 2 and record["seconds"] >= 0
    assert json.loads((folder / "run.json").read_text()) == record
    assert "trained" in (folder / "stdout.log").read_text()
    # finished: the record comes back, the command is not run again
    assert train(folder, "ParT (kin)", [sys.executable, "-c", "raise SystemExit(3)"], threads=1) == record


def test_a_failed_run_leaves_no_prediction_and_no_record(tmp_path):
    folder = tmp_path / "run"
    with pytest.raises(RuntimeError, match="failed \\(1\\): see .*stdout.log"):
        train(folder, "broken", writes_predictions(folder, fail=True), threads=1)
    assert not list(folder.glob("pred_*.root")) and not (folder / "run.json").exists()
    # a rerun starts from a clean staging folder and finishes
    train(folder, "broken", writes_predictions(folder), threads=1)
    assert (folder / "pred_HToBB.root").read_text() == "HToBB"


def test_slug():
    assert slug("ParT (kin)") == "part_kin"
    assert slug("cross-attention model_2") == "cross_attention_model_2"


def test_mass_weights_give_the_real_jets_the_generated_mass_distribution():
    from studies.reweight_real_mass import MASS_BINS, mass_weights

    rng = np.random.default_rng(5)
    real = np.concatenate([rng.normal(174, 12, 800), rng.uniform(120, 160, 200)])  # a low-mass tail
    generated = rng.normal(178, 9, 3000)
    weights = mass_weights(real, generated)
    weighted, _ = np.histogram(real, MASS_BINS, weights=weights)
    target, _ = np.histogram(generated, MASS_BINS)
    filled = np.histogram(real, MASS_BINS)[0] > 0
    np.testing.assert_allclose(weighted[filled] / len(real), target[filled] / len(generated), atol=1e-12)
    assert weights[real < 160].mean() < 0.6 < weights[(real > 170) & (real < 185)].mean()
    np.testing.assert_allclose(mass_weights(real, real), 1.0)  # the same shapes: nothing to weight


def test_top_subjets_finds_the_w_pair_and_the_b():
    """Three hard particles, each with a soft companion close by: the three exclusive-kT subjets are the three
    pairs, the W candidate is the pair of subjets nearest 80.4 GeV (q q'), and the b share is the third's energy."""
    pytest.importorskip("fastjet", reason="the study clusters with FastJet: pip install -e .[generate]")
    from studies.top_subjets import mass, top_parts

    def massless(pt, eta, phi):
        return np.array([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)])

    b, q, q_bar = massless(200.0, 0.0, 0.0), massless(220.0, 0.55, 0.55), massless(180.0, 0.55, 0.954)
    soft = [massless(2.0, 0.03, 0.02), massless(1.5, 0.57, 0.52), massless(1.0, 0.52, 0.97)]
    subjets = [b + soft[0], q + soft[1], q_bar + soft[2]]
    assert 75 < mass(subjets[1] + subjets[2]) < 85 < 150 < mass(subjets[0] + subjets[1])  # one pair near the W
    top, w, b_share = top_parts(np.array([b, q, q_bar, *soft]))
    np.testing.assert_allclose(top, mass(sum(subjets)), rtol=1e-9)
    np.testing.assert_allclose(w, mass(subjets[1] + subjets[2]), rtol=1e-9)
    np.testing.assert_allclose(b_share, subjets[0][3] / sum(s[3] for s in subjets), rtol=1e-9)


def test_the_first_delphes_33_flow_loses_muons_and_throws_hard_hadron_tracks_out():
    """A hard pion (the calorimeter measures it better than the tracker) and a muon: the recipe keeps both tracks,
    the pion at its tower's energy; without muons the muon goes; Delphes 3.3.0's first form (commit 00e8dca) also
    scales the pion by an ECAL ratio with nothing below it, here `OUT_OF_WINDOW`."""
    from jetattn.datasets import detector
    from studies.delphes_eflow_330 import OUT_OF_WINDOW, emulated

    def particle(pid, charge, pt, eta, phi):
        return (pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta), charge, pid, 0.0, 0.0, 0.0)

    rows = [particle(211, 1, 200.0, 0.05, 0.5), particle(22, 0, 20.0, 0.05, 0.5), particle(13, -1, 30.0, -0.6, 2.0)]
    particles = {
        key: np.array(column) for key, column in zip(detector.PARTICLE_KEYS, zip(*rows, strict=True), strict=True)
    }
    tracks = {}
    for variant in ("recipe", "no-muons", "first-3.3"):
        with emulated(variant):
            measured = detector.measure(particles, np.zeros(3, np.int64), np.random.default_rng(3), "atlas")
        charged = measured["charge"] != 0
        tracks[variant] = {
            int(abs(p)): e for p, e in zip(measured["pid"][charged], measured["energy"][charged], strict=True)
        }
    assert (detector.apply_particle_flow.__name__, detector._tower_flow_3_3.__name__) == (  # undone on leaving
        "apply_particle_flow",
        "_tower_flow_3_3",
    )
    assert set(tracks["recipe"]) == {211, 13}
    assert 150 < tracks["recipe"][211] < 250
    assert set(tracks["no-muons"]) == set(tracks["first-3.3"]) == {211}
    assert tracks["first-3.3"][211] > 0.5 * OUT_OF_WINDOW * tracks["recipe"][211]


def test_mirror_impact_parameter_reads_the_d0_sign_and_the_bending_that_a_reflection_reverses():
    """One jet at φ = 0: two displaced tracks either side of a b hadron at φ = 0.2, d0 signed by that side, and two
    1-5 GeV tracks whose neutral hadron lies where the field bends their charge. Reflected with d0 the sign
    agreement stays; Δφ alone reverses it, and the reflection (charges kept) reverses the bending."""
    import awkward as ak

    from studies.mirror_impact_parameter import bending, d0_sign_agreement

    def jets(phi_sign=1.0, d0_sign=1.0):
        return ak.Array(
            [
                {
                    "part_charge": [1, -1, 1, -1, 0, 0],
                    "part_isNeutralHadron": [0, 0, 0, 0, 1, 1],
                    "part_d0val": [d0_sign * 0.5, d0_sign * -0.4, 0.0, 0.0, 0.0, 0.0],
                    "part_d0err": [0.02] * 6,
                    "part_deta": [0.01, -0.01, 0.3, -0.3, 0.31, -0.32],
                    "part_dphi": [phi_sign * p for p in (0.25, 0.15, -0.3, 0.4, -0.4, 0.5)],
                    "part_px": [50.0, 40.0, 3.0, 2.0, 4.0, 5.0],
                    "part_py": [0.0] * 6,
                    "jet_eta": 0.5,
                    "jet_phi": 0.0,
                    "aux_hadron_eta": [0.5],
                    "aux_hadron_phi": [phi_sign * 0.2],
                }
            ]
        )

    given = d0_sign_agreement(jets())
    assert given["displaced_per_jet"] == 2 and given["tracks_with_hadron"] == 2
    assert given["same_sign_as_dphi_to_hadron"] == 1.0 and given["same_sign_as_dphi_to_jet_axis"] == 0.5
    assert d0_sign_agreement(jets(-1.0, -1.0))["same_sign_as_dphi_to_hadron"] == 1.0  # the image, d0 with it
    assert d0_sign_agreement(jets(-1.0))["same_sign_as_dphi_to_hadron"] == 0.0  # Δφ alone
    mean, _, pairs = bending(jets())
    assert pairs == 2 and mean == pytest.approx(-0.1)
    assert bending(jets(-1.0))[0] == pytest.approx(0.1)


def test_carryover_gives_the_share_of_qcd_called_top_and_its_gap_to_the_real_jets(tmp_path, capsys):
    import uproot

    from studies.carryover import main, run_figures

    def predictions(path: Path, qcd_called: int, qcd: int, tops: int) -> None:
        """``qcd`` QCD jets of which ``qcd_called`` score above 0.5, and ``tops`` top jets at 0.9."""
        label = np.r_[np.zeros(qcd), np.ones(tops)].astype(np.int32)
        score = np.r_[np.full(qcd_called, 0.7), np.linspace(0.05, 0.45, qcd - qcd_called), np.full(tops, 0.9)]
        with uproot.recreate(path) as f:
            f["Events"] = {
                "jet_isTop": label,
                "score_jet_isTop": score,
                "score_jet_isQCD": 1 - score,
                "jet_isQCD": 1 - label,
            }

    run = tmp_path / "run"
    run.mkdir()
    assert main([str(run)]) == 1 and "no pred_real.root" in capsys.readouterr().err
    predictions(run / "pred_real.root", 50, 500, 500)
    predictions(run / "pred.root", 65, 500, 500)
    predictions(run / "pred_heldout.root", 400, 4000, 4000)
    figures = run_figures(run)
    assert figures["real"]["background_called_signal"] == pytest.approx(0.10)
    assert figures["real"]["background_called_signal_error"] == pytest.approx((0.1 * 0.9 / 500) ** 0.5)
    assert figures["gap_test"]["gap"] == pytest.approx(-0.03)
    assert figures["gap_heldout"]["gap"] == pytest.approx(0.0, abs=1e-12)
    error = ((0.1 * 0.9 / 500) + (0.1 * 0.9 / 4000)) ** 0.5
    assert figures["gap_heldout"]["gap_error"] == pytest.approx(error)
    # every top (0.9) outscores every QCD jet (at most 0.7)
    assert figures["real"]["auc"] == pytest.approx(1.0)
    assert figures["real"]["signal_called_signal"] == 1.0
    assert main([str(run), "--json", str(tmp_path / "c.json")]) == 0
    assert "+0.0 ± 1.4" in capsys.readouterr().out
    assert json.loads((tmp_path / "c.json").read_text())[str(run)]["heldout"]["num_background"] == 4000
    assert main([f"seed 6={run}"]) == 0 and "| seed 6 | 1.0000 / 1.0000 / 1.0000 |" in capsys.readouterr().out

"""The coarse scale of the multi-scale transformer: exclusive-kT subjets against FastJet, their conventions and
units, the `python -m jetattn.subjets` tool on the real samples (physics, bad input, interrupted writing), and
weaver feeding both input groups of the multiscale YAMLs to the multi-scale transformer."""

from pathlib import Path

import awkward as ak
import fastjet
import numpy as np
import pytest
import uproot
import yaml
from weaver.utils.data.config import DataConfig
from weaver_run import REPO, SHORT_TRAINING, option_args, read_predictions, weaver, write_jets

from jetattn import subjets
from jetattn.subjets import convert, main, subjet_columns

TOP_MULTISCALE = REPO / "data" / "TopLandscape" / "top_kin_multiscale.yaml"
JETCLASS_MULTISCALE = REPO / "data" / "JetClass" / "JetClass_kin_multiscale.yaml"
TINY_MODEL_3 = {
    "config": "model_3",
    "dim": 10,
    "stream_params": {"pf": {"num_heads": 2, "num_layers": 1}, "obj": {"num_heads": 2, "num_layers": 1}},
    "cross_heads": 2,
    "fc_params": [(8, 0.1)],
}


def massless(pt, eta, phi) -> np.ndarray:
    """(n, 4) px, py, pz, E of massless particles."""
    pt, eta, phi = map(np.asarray, (pt, eta, phi))
    return np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], axis=1)


def three_prong_jet(jet_eta: float = 0.5, jet_phi: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Three tight clusters of 5 particles, 0.4 apart, around (jet_eta, jet_phi): constituents (15, 4) and the
    cluster each belongs to."""
    rng = np.random.default_rng(5)
    centres = [(0.0, 0.0, 300.0), (0.4, 0.0, 150.0), (0.0, 0.4, 80.0)]
    parts, cluster = [], []
    for k, (deta, dphi, pt) in enumerate(centres):
        parts.append(
            massless(
                rng.uniform(0.1, 0.3, 5) * pt,
                jet_eta + deta + rng.normal(0, 0.01, 5),
                jet_phi + dphi + rng.normal(0, 0.01, 5),
            )
        )
        cluster += [k] * 5
    return np.concatenate(parts), np.array(cluster)


def fastjet_subjets(p4: np.ndarray, n: int) -> np.ndarray:
    """FastJet's own exclusive kT jets (E-scheme, R beyond any distance), pT-ordered: (n, 4)."""
    sequence = fastjet.ClusterSequence(
        [fastjet.PseudoJet(*map(float, p)) for p in p4], fastjet.JetDefinition(fastjet.kt_algorithm, 100.0)
    )
    return np.array([[j.px(), j.py(), j.pz(), j.e()] for j in fastjet.sorted_by_pt(sequence.exclusive_jets(n))])


def to_p4(columns: dict, jet_eta: float, jet_phi: float) -> np.ndarray:
    """Subjet four-momenta back from pT, the relative (pseudo)rapidity and azimuth, and the energy."""
    eta = columns["deta"] * (1 if jet_eta >= 0 else -1) + jet_eta
    pt, phi = columns["pt"], columns["dphi"] + jet_phi
    return np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), columns["energy"]], 1)


def test_three_clusters_are_the_three_subjets_and_match_fastjet():
    p4, cluster = three_prong_jet()
    jet = p4.sum(axis=0)
    columns = subjet_columns(*p4.T, jet_eta=0.5, jet_phi=1.0)
    assert columns["nsub"].tolist() == [2, 2, 3, 3, 3, 4, 4, 4, 4]
    assert {k: v.dtype for k, v in columns.items()} == {
        "pt": np.float32,
        "deta": np.float32,
        "dphi": np.float32,
        "mass": np.float32,
        "energy": np.float32,
        "nsub": np.int32,
    }
    rebuilt = to_p4(columns, 0.5, 1.0)
    for n in (2, 3, 4):
        ours = rebuilt[columns["nsub"] == n]
        np.testing.assert_allclose(ours, fastjet_subjets(p4, n), rtol=1e-4, atol=1e-2)
        np.testing.assert_allclose(ours.sum(axis=0), jet, rtol=1e-5)  # four-momentum is conserved
        assert np.all(np.diff(columns["pt"][columns["nsub"] == n]) <= 0)  # pT-ordered within N
    clusters = sorted((p4[cluster == k].sum(axis=0) for k in range(3)), key=lambda p: -np.hypot(p[0], p[1]))
    np.testing.assert_allclose(rebuilt[columns["nsub"] == 3], np.array(clusters), rtol=1e-5)
    # units: GeV, and the mass of a cluster of 5 nearly collinear massless particles is small but positive
    three = columns["nsub"] == 3
    assert np.all(columns["mass"][three] > 0) and np.all(columns["mass"][three] < 0.05 * columns["pt"][three])
    np.testing.assert_allclose(columns["energy"][three], [c[3] for c in clusters], rtol=1e-6)


def test_relative_coordinates_follow_part_deta_and_part_dphi():
    """Δη counted away from the beam axis, (η − η_jet)·sign(η_jet); Δφ wrapped to [−π, π) across φ = π."""
    jet_eta, jet_phi = -1.2, 3.1
    p4 = massless([200.0, 100.0], [jet_eta - 0.2, jet_eta + 0.1], [jet_phi + 0.1, jet_phi - 0.05])
    columns = subjet_columns(*p4.T, jet_eta=jet_eta, jet_phi=jet_phi)
    two = columns["nsub"] == 2
    np.testing.assert_allclose(columns["deta"][two], [0.2, -0.1], atol=1e-5)
    np.testing.assert_allclose(columns["dphi"][two], [0.1, -0.05], atol=1e-5)
    assert np.all((columns["dphi"] >= -np.pi) & (columns["dphi"] < np.pi))


@pytest.mark.parametrize("n_constituents, expected", [(0, []), (1, [2, 3, 4]), (3, [2, 2, 3, 3, 3, 4, 4, 4])])
def test_fewer_constituents_than_n_gives_fewer_subjets(n_constituents, expected):
    p4 = massless(
        [100.0, 50.0, 20.0][:n_constituents], [0.1, 0.3, -0.2][:n_constituents], [0.0, 0.2, 0.1][:n_constituents]
    ).reshape(-1, 4)
    columns = subjet_columns(*p4.T, jet_eta=0.1, jet_phi=0.0)
    assert columns["nsub"].tolist() == expected
    if n_constituents:
        four = columns["nsub"] == 4
        np.testing.assert_allclose(np.sort(columns["pt"][four]), np.sort(np.hypot(p4[:, 0], p4[:, 1])), rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# The tool on the real samples


@pytest.fixture(scope="module")
def converted(real_data, tmp_path_factory) -> dict[str, Path]:
    """The real TopLandscape and JetClass H->bb samples with the subjet branches."""
    out = tmp_path_factory.mktemp("subjets")
    files = [real_data / "TopLandscape_sample_1000.root", real_data / "JetClass_Hbb_sample_1000.root"]
    assert main([*map(str, files), "-o", str(out), "--chunk", "300"]) == 0
    return {"top": out / files[0].name, "hbb": out / files[1].name, "sources": files}


@pytest.mark.requiresdata
def test_tool_keeps_every_input_branch_and_adds_the_coarse_scale(converted):
    for source, out in zip(converted["sources"], (converted["top"], converted["hbb"]), strict=True):
        before = uproot.open(source)["tree"].arrays()
        after = uproot.open(out)["tree"].arrays()
        assert len(after) == len(before) == 1000
        for name in before.fields:
            assert ak.all(after[name] == before[name]), name
        added = set(after.fields) - set(before.fields)
        assert added == {
            "n_subjet",
            "subjet_pt",
            "subjet_deta",
            "subjet_dphi",
            "subjet_mass",
            "subjet_energy",
            "subjet_nsub",
            "jet_sdmass",
            "jet_tau1",
            "jet_tau2",
            "jet_tau3",
            "jet_tau4",
        }
        assert not list(out.parent.glob("*.tmp"))


@pytest.mark.requiresdata
def test_hbb_subjets_are_physical(converted):
    jets = uproot.open(converted["hbb"])["tree"].arrays()
    assert 100 < np.median(jets.jet_mass) < 140 and 95 < np.median(jets.jet_sdmass) < 135  # GeV
    for n in (2, 3, 4):
        group = jets.subjet_nsub == n
        assert ak.all(ak.num(jets.subjet_pt[group]) == n)
        energy = ak.to_numpy(ak.sum(jets.subjet_energy[group], axis=1))
        np.testing.assert_allclose(energy, jets.jet_energy, rtol=1e-5)
    two = jets.subjet_nsub == 2
    deta, dphi, pt = jets.subjet_deta[two], jets.subjet_dphi[two], jets.subjet_pt[two]
    # the two b jets: back to back about the jet axis (the pT-weighted Δη, Δφ vanish), ΔR ≈ 2m/pT
    centroid = np.hypot(ak.sum(deta * pt, axis=1), ak.sum(dphi * pt, axis=1)) / ak.sum(pt, axis=1)
    assert np.median(centroid) < 0.02
    separation = np.hypot(deta[:, 0] - deta[:, 1], dphi[:, 0] - dphi[:, 1])
    assert 0.8 < np.median(separation / (2 * jets.jet_mass / jets.jet_pt)) < 1.25
    assert np.median(jets.jet_tau2 / jets.jet_tau1) < 0.45  # two-prong


@pytest.mark.requiresdata
@pytest.mark.parametrize("breaks", ["missing_branch", "not_root", "no_tree", "absent"])
def test_bad_input_names_the_problem_and_writes_nothing(breaks, real_data, tmp_path, capsys):
    bad = tmp_path / "in" / "bad.root"
    bad.parent.mkdir()
    good = real_data / "TopLandscape_sample_1000.root"
    if breaks == "missing_branch":
        arrays = uproot.open(good)["tree"].arrays()
        write_jets(bad, {name: arrays[name] for name in arrays.fields if name not in ("n_part", "part_pz")})
        expected = "no branch 'part_pz'"
    elif breaks == "not_root":
        bad.write_text("not a ROOT file\n")
        expected = "not a ROOT file"
    elif breaks == "no_tree":
        with uproot.recreate(bad) as f:
            f["events"] = {"x": np.arange(3)}
        expected = "no TTree 'tree'"
    else:
        expected = "no such file"
    out = tmp_path / "out"
    # the good file comes first: nothing may be written for it either, since every input is checked first
    assert main([str(good), str(bad), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(bad) in err and expected in err and "\n" not in err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.requiresdata
@pytest.mark.parametrize("interruption", [KeyboardInterrupt, RuntimeError])
def test_interrupted_writing_leaves_nothing_under_the_final_name(interruption, real_data, tmp_path, monkeypatch):
    real_add = subjets.add_subjets
    calls = []

    def fail_on_third_chunk(columns, radius=0.8):
        calls.append(1)
        if len(calls) == 3:
            raise interruption("stopped")
        return real_add(columns, radius)

    monkeypatch.setattr(subjets, "add_subjets", fail_on_third_chunk)
    with pytest.raises(interruption):
        convert([real_data / "TopLandscape_sample_1000.root"], tmp_path, chunk_jets=200, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_parquet_input_gives_a_root_file(tmp_path):
    p4 = massless([100.0, 50.0, 20.0], [0.1, 0.3, -0.2], [0.0, 0.2, 0.1])
    table = ak.Array(
        {
            "part_px": [p4[:, 0]] * 2,
            "part_py": [p4[:, 1]] * 2,
            "part_pz": [p4[:, 2]] * 2,
            "part_energy": [p4[:, 3]] * 2,
            "jet_eta": [0.1, 0.1],
            "jet_phi": [0.05, 0.05],
            "label": [1, 0],
        }
    )
    ak.to_parquet(table, tmp_path / "top.parquet")
    (out,) = convert([tmp_path / "top.parquet"], tmp_path / "out", progress=False)
    assert out == tmp_path / "out" / "top.root"
    jets = uproot.open(out)["tree"].arrays()
    assert jets.n_subjet.tolist() == [8, 8] and jets.label.tolist() == [1, 0]
    assert ak.all(ak.num(jets.part_px) == 3) and "jet_sdmass" in jets.fields


# ---------------------------------------------------------------------------------------------------------------
# The multiscale YAMLs through weaver


@pytest.mark.parametrize(
    "plain, multiscale",
    [
        ("JetClass/JetClass_kin.yaml", "JetClass/JetClass_kin_multiscale.yaml"),
        ("JetClass/JetClass_full.yaml", "JetClass/JetClass_full_multiscale.yaml"),
        ("TopLandscape/top_kin.yaml", "TopLandscape/top_kin_multiscale.yaml"),
    ],
)
def test_multiscale_yaml_keeps_the_constituents_and_adds_the_objects(plain, multiscale):
    base = yaml.safe_load((REPO / "data" / plain).read_text())
    config = yaml.safe_load((REPO / "data" / multiscale).read_text())
    assert {k: v for k, v in config["inputs"].items() if k.startswith("pf_")} == base["inputs"]
    assert config["labels"] == base["labels"] and config["observers"] == base["observers"]
    loaded = DataConfig.load(str(REPO / "data" / multiscale), load_observers=False)
    assert loaded.input_shapes["obj_features"] == (-1, 15, 9) and loaded.input_shapes["obj_mask"] == (-1, 1, 9)
    assert not loaded._missing_standardization_info


@pytest.mark.slow
@pytest.mark.requiresdata
@pytest.mark.parametrize(
    "sample, data_config, classes",
    [
        ("top", TOP_MULTISCALE, ["jet_isTop", "jet_isQCD"]),
        ("hbb", JETCLASS_MULTISCALE, None),
    ],
)
def test_weaver_trains_and_predicts_model_3_on_both_scales(sample, data_config, classes, converted, tmp_path):
    network = REPO / "networks" / "example_MultiScaleTransformer.py"
    common = ["--data-config", data_config, "--network-config", network, *option_args(TINY_MODEL_3)]
    log = weaver(
        *common,
        "--data-train",
        converted[sample],
        "--model-prefix",
        tmp_path / "net",
        "--data-fraction",
        0.2,
        *SHORT_TRAINING,
    )
    assert "obj_features" in log and "obj_mask" in log  # weaver reports the input groups it feeds
    # predict with the epoch's weights: with H->bb jets alone the validation has no best epoch (AUC undefined)
    weaver(
        *common,
        "--predict",
        "--data-test",
        converted[sample],
        "--model-prefix",
        tmp_path / "net_epoch-0_state.pt",
        "--predict-output",
        tmp_path / "pred.root",
    )
    classes = classes or yaml.safe_load(data_config.read_text())["labels"]["value"]
    scores = read_predictions(tmp_path / "pred.root", classes)
    assert len(scores) == 1000 and np.isfinite(scores).all()
    np.testing.assert_allclose(scores.sum(axis=1), 1, atol=1e-5)

"""python -m jetattn.datasets.compare on small hand-made files."""

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from jetattn.datasets import compare


def write_jets(path: Path, rng: np.random.Generator, n_jets: int, mean_constituents: float, labels: dict) -> None:
    """Massless constituents around a jet axis at (eta, phi) = (0.3, 1.0), pT-falling; one TTree `tree`."""
    counts = rng.poisson(mean_constituents, n_jets).clip(3, 128)
    total = counts.sum()
    pt = np.exp(rng.normal(0.5, 1.3, total))
    deta, dphi = rng.normal(0, 0.15, (2, total))
    eta, phi = 0.3 + deta, 1.0 + dphi
    columns = {
        "px": pt * np.cos(phi),
        "py": pt * np.sin(phi),
        "pz": pt * np.sinh(eta),
        "energy": pt * np.cosh(eta),
        "deta": deta,
        "dphi": dphi,
    }
    part = ak.zip({name: ak.unflatten(value.astype(np.float32), counts) for name, value in columns.items()})
    jet_pt = ak.to_numpy(np.hypot(ak.sum(part.px, axis=1), ak.sum(part.py, axis=1))).astype(np.float32)
    with uproot.recreate(path) as root:
        root.mktree(
            "tree",
            {"part": part.type.content, "jet_pt": np.float32, **{name: value.dtype for name, value in labels.items()}},
        )
        root["tree"].extend({"part": part, "jet_pt": jet_pt, **labels})


@pytest.fixture
def samples(tmp_path: Path) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(1)
    label = np.repeat(np.array([0, 1], np.int32), 40)
    real, same, fewer = tmp_path / "real.root", tmp_path / "same.root", tmp_path / "fewer.root"
    write_jets(real, rng, 80, 40, {"label": label})
    write_jets(same, rng, 80, 40, {"label": label})
    write_jets(fewer, rng, 80, 30, {"label": label})
    return real, same, fewer


def test_same_physics_meets_the_targets_and_fewer_constituents_do_not(samples, tmp_path, capsys) -> None:
    real, same, fewer = samples
    assert (
        compare.main(
            [
                str(same),
                str(real),
                "--dataset",
                "TopLandscape",
                "--json",
                str(tmp_path / "a.json"),
                "--markdown",
                str(tmp_path / "a.md"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "| QCD | n_constituents |" in out and "| top | pair_ln_kt |" in out
    assert "QCD: n_constituents ratio" in out
    rows = __import__("json").loads((tmp_path / "a.json").read_text())["classes"]
    assert abs(rows["top"]["n_constituents"]["ratio"] - 1) < 0.05
    assert "NOT met" not in (tmp_path / "a.md").read_text().split("- top: n_constituents ratio")[1].splitlines()[0]
    assert compare.main([str(fewer), str(real), "--dataset", "TopLandscape"]) == 0
    out = capsys.readouterr().out
    assert "QCD: n_constituents ratio 0.7" in out and "QCD: n_constituents KS" in out and "NOT met" in out


@pytest.mark.slow
def test_plots_one_picture_per_class(samples, tmp_path) -> None:
    real, same, _ = samples
    assert compare.main([str(same), str(real), "--dataset", "TopLandscape", "--plot", str(tmp_path / "plots")]) == 0
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "compare_TopLandscape_QCD.png",
        "compare_TopLandscape_top.png",
    ]


def test_distributions_of_a_known_jet() -> None:
    # two massless constituents of pT 30 and 10 GeV at phi = 0, eta = +0.05 and -0.05 (the jet axis near 0)
    pt, eta = np.array([30.0, 10.0]), np.array([0.05, -0.05])
    jets = ak.Array(
        {
            "part_px": [pt],
            "part_py": [[0.0, 0.0]],
            "part_pz": [pt * np.sinh(eta)],
            "part_energy": [pt * np.cosh(eta)],
            "part_deta": [eta],
            "part_dphi": [[0.0, 0.0]],
            "jet_pt": [40.0],
        }
    )
    values = compare.distributions(jets, 0.8)
    assert values["n_constituents"].tolist() == [2.0]
    assert values["share_below_1GeV"].tolist() == [0.0] and values["share_below_2GeV"].tolist() == [0.0]
    assert values["leading_pt_fraction"].tolist() == [0.75] and values["softest_pt"].tolist() == [10.0]
    # pT-weighted rms of +-0.05 with weights 3/4, 1/4: sqrt(3)/4 * 0.1
    assert values["deta_spread"][0] == pytest.approx(np.sqrt(3) / 4 * 0.1)
    assert values["dphi_spread"][0] == pytest.approx(0.0)
    # m^2 = 2 pT1 pT2 (cosh(delta eta) - 1) for massless particles at the same phi
    assert values["jet_mass"][0] == pytest.approx(np.sqrt(2 * 300 * (np.cosh(0.1) - 1)), rel=1e-6)
    # one pair: delta = 0.1 (rapidity = eta for massless), kT = 10 GeV * 0.1
    assert values["pair_ln_delta"] == pytest.approx([np.log(0.1)], abs=1e-6)
    assert values["pair_ln_kt"] == pytest.approx([np.log(1.0)], abs=1e-6)


@pytest.mark.parametrize(
    ("branches", "message"),
    [
        ({"label": np.zeros(3, np.int32)}, "lacks the branch(es) part_px, part_py"),
        ({"other": np.zeros(3, np.int32)}, "jet_pt, label of a QuarkGluon file"),
    ],
)
def test_bad_files_fail_in_one_line(tmp_path, capsys, branches, message) -> None:
    good = tmp_path / "good.root"
    write_jets(good, np.random.default_rng(2), 3, 10, {"label": np.zeros(3, np.int32)})
    bad = tmp_path / "bad.root"
    with uproot.recreate(bad) as root:
        root["tree"] = branches
    assert compare.main([str(bad), str(good), "--dataset", "QuarkGluon"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and message in err[0]


def test_no_shared_class_is_an_error(tmp_path, capsys) -> None:
    rng = np.random.default_rng(3)
    gluons, quarks = tmp_path / "g.root", tmp_path / "q.root"
    write_jets(gluons, rng, 5, 10, {"label": np.zeros(5, np.int32)})
    write_jets(quarks, rng, 5, 10, {"label": np.ones(5, np.int32)})
    assert compare.main([str(gluons), str(quarks), "--dataset", "QuarkGluon"]) == 1
    assert "no class in both: generated has gluon, real has quark" in capsys.readouterr().err
    assert compare.main([str(tmp_path / "missing.root"), str(quarks), "--dataset", "QuarkGluon"]) == 1
    assert "missing.root" in capsys.readouterr().err

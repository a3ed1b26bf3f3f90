"""The feature YAMLs in data/: they load in weaver, define the documented features, and run weaver's real
data pipeline on the 1000-jet real samples (finite, standardised, padded, masked)."""

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml
from weaver.utils.data.config import DataConfig
from weaver.utils.data.preprocess import _build_new_variables

DATA = Path(__file__).resolve().parents[1] / "data"

KIN = ["part_pt_log", "part_e_log", "part_logptrel", "part_logerel", "part_deltaR", "part_deta", "part_dphi"]
PID = ["part_charge", "part_isChargedHadron", "part_isNeutralHadron", "part_isPhoton", "part_isElectron", "part_isMuon"]
DISPLACEMENT = ["part_d0", "part_d0err", "part_dz", "part_dzerr"]
JETCLASS_LABELS = [
    "label_QCD",
    "label_Hbb",
    "label_Hcc",
    "label_Hgg",
    "label_H4q",
    "label_Hqql",
    "label_Zqq",
    "label_Wqq",
    "label_Tbqq",
    "label_Tbl",
]

# yaml -> (pf_features in order, labels in order)
EXPECTED = {
    "JetClass/JetClass_kin.yaml": (KIN, JETCLASS_LABELS),
    "JetClass/JetClass_kinpid.yaml": (KIN[:5] + PID + KIN[5:], JETCLASS_LABELS),
    "JetClass/JetClass_full.yaml": (KIN[:5] + PID + DISPLACEMENT + KIN[5:], JETCLASS_LABELS),
    "QuarkGluon/qg_kin.yaml": (KIN, ["jet_isQ", "jet_isG"]),
    "QuarkGluon/qg_kinpid.yaml": (KIN[:5] + PID + KIN[5:], ["jet_isQ", "jet_isG"]),
    "QuarkGluon/qg_kinpidplus.yaml": (
        KIN[:5] + ["part_charge", "part_isCHad", "part_isNHad"] + PID[3:] + KIN[5:],
        ["jet_isQ", "jet_isG"],
    ),
    "TopLandscape/top_kin.yaml": (KIN, ["jet_isTop", "jet_isQCD"]),
}


def load(rel: str, **kwargs) -> DataConfig:
    return DataConfig.load(str(DATA / rel), **kwargs)


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_yaml_defines_features_and_labels(rel):
    features, labels = EXPECTED[rel]
    config = load(rel)
    assert list(config.input_dicts["pf_features"]) == features
    assert list(config.input_dicts["pf_points"]) == ["part_deta", "part_dphi"]
    assert list(config.input_dicts["pf_vectors"]) == ["part_px", "part_py", "part_pz", "part_energy"]
    assert list(config.input_dicts["pf_mask"]) == ["part_mask"]
    assert config.label_type == "simple" and list(config.label_value) == labels
    assert {k: v[1] for k, v in config.input_shapes.items()} == {
        "pf_points": 2,
        "pf_features": len(features),
        "pf_vectors": 4,
        "pf_mask": 1,
    }
    for name, params in config.preprocess_params.items():
        assert params["length"] == 128
        assert params["pad_mode"] == ("constant" if name == "part_mask" else "wrap")
    assert config.preprocess["method"] == "manual" and not config._missing_standardization_info


def test_jetclass_standardisation_constants():
    params = load("JetClass/JetClass_full.yaml").preprocess_params
    expected = {
        "part_pt_log": (1.7, 0.7),
        "part_e_log": (2.0, 0.7),
        "part_logptrel": (-4.7, 0.7),
        "part_logerel": (-4.7, 0.7),
        "part_deltaR": (0.2, 4.0),
    }
    for name, (center, scale) in expected.items():
        assert (params[name]["center"], params[name]["scale"], params[name]["min"], params[name]["max"]) == (
            center,
            scale,
            -5,
            5,
        )
    for name in ("part_d0err", "part_dzerr"):
        assert (params[name]["center"], params[name]["scale"], params[name]["min"], params[name]["max"]) == (0, 1, 0, 1)
    for name in PID + ["part_d0", "part_dz", "part_deta", "part_dphi"]:
        assert params[name]["center"] is None


@pytest.mark.parametrize("dtype", ["int32", "float32"])  # the official parquet files store the PDG code as a float
@pytest.mark.parametrize("rel", ["QuarkGluon/qg_kinpid.yaml", "QuarkGluon/qg_kinpidplus.yaml"])
def test_quark_gluon_particle_id_from_pdg_code(rel, dtype):
    # e-, e+, mu-, mu+, photon, pi+, pi-, K+, K-, p, pbar, K_L, n, nbar
    pid = [11, -11, 13, -13, 22, 211, -211, 321, -321, 2212, -2212, 130, 2112, -2112]
    table = ak.Array({"part_pid": ak.values_astype(ak.Array([pid]), dtype)})
    config = load(rel)
    names = ["part_charge", "part_isElectron", "part_isMuon", "part_isPhoton"]
    table = _build_new_variables(
        table,
        {
            k: v
            for k, v in config.var_funcs.items()
            if k in names or k in ("part_isChargedHadron", "part_isNeutralHadron", "part_isCHad", "part_isNHad")
        },
    )
    got = {k: ak.to_numpy(table[k][0]).tolist() for k in table.fields if k != "part_pid"}
    assert got["part_charge"] == [-1, 1, -1, 1, 0, 1, -1, 1, -1, 1, -1, 0, 0, 0]
    assert got["part_isElectron"] == [1, 1] + [0] * 12
    assert got["part_isMuon"] == [0, 0, 1, 1] + [0] * 10
    assert got["part_isPhoton"] == [0] * 4 + [1] + [0] * 9
    if "plus" in rel:
        assert got["part_isCHad"] == pytest.approx([0] * 5 + [1, 1, 0.5, 0.5, 0.2, 0.2, 0, 0, 0])
        assert got["part_isNHad"] == pytest.approx([0] * 11 + [1, 0.2, 0.2])
    else:
        assert got["part_isChargedHadron"] == [0] * 5 + [1] * 6 + [0] * 3
        assert got["part_isNeutralHadron"] == [0] * 11 + [1] * 3


# The public recipe's YAMLs, written out (jet-universe/particle_transformer: data/JetClass/* at 512fcd14, the only
# stored version; data/QuarkGluon/* and data/TopLandscape/* at 68a7fbcd, which dropped the `n_parts` observer of
# 512fcd14). An input row is (name, center, scale, clip min, clip max, pad value) with weaver's defaults filled in;
# a None center means the variable goes in as it is.
R_KIN = [
    ("part_pt_log", 1.7, 0.7, -5, 5, 0),
    ("part_e_log", 2.0, 0.7, -5, 5, 0),
    ("part_logptrel", -4.7, 0.7, -5, 5, 0),
    ("part_logerel", -4.7, 0.7, -5, 5, 0),
    ("part_deltaR", 0.2, 4.0, -5, 5, 0),
]
R_ANGLES = [("part_deta", None, 1, -5, 5, 0), ("part_dphi", None, 1, -5, 5, 0)]
R_PID = [
    ("part_charge", None, 1, -5, 5, 0),
    ("part_isChargedHadron", None, 1, -5, 5, 0),
    ("part_isNeutralHadron", None, 1, -5, 5, 0),
    ("part_isPhoton", None, 1, -5, 5, 0),
    ("part_isElectron", None, 1, -5, 5, 0),
    ("part_isMuon", None, 1, -5, 5, 0),
]
R_PID_PLUS = [R_PID[0], ("part_isCHad", None, 1, -5, 5, 0), ("part_isNHad", None, 1, -5, 5, 0), *R_PID[3:]]
R_DISPLACEMENT = [
    ("part_d0", None, 1, -5, 5, 0),
    ("part_d0err", 0, 1, 0, 1, 0),
    ("part_dz", None, 1, -5, 5, 0),
    ("part_dzerr", 0, 1, 0, 1, 0),
]
R_VECTORS = [(f"part_{v}", None, 1, -5, 5, 0) for v in ("px", "py", "pz", "energy")]
R_MASK = [("part_mask", None, 1, -5, 5, 0)]

R_VARIABLES = {
    "part_pt": "np.hypot(part_px, part_py)",
    "part_pt_log": "np.log(part_pt)",
    "part_e_log": "np.log(part_energy)",
    "part_logptrel": "np.log(part_pt/jet_pt)",
    "part_logerel": "np.log(part_energy/jet_energy)",
    "part_deltaR": "np.hypot(part_deta, part_dphi)",
}
R_JETCLASS_VARIABLES = {"part_mask": "ak.ones_like(part_energy)", **R_VARIABLES}
R_QG_VARIABLES = {"part_mask": "ak.ones_like(part_deta)", **R_VARIABLES, "jet_isQ": "label", "jet_isG": "1-label"}
R_JETCLASS_OBSERVERS = [
    "jet_pt",
    "jet_eta",
    "jet_phi",
    "jet_energy",
    "jet_nparticles",
    "jet_sdmass",
    "jet_tau1",
    "jet_tau2",
    "jet_tau3",
    "jet_tau4",
]

# yaml -> (new_variables, pf_features rows, labels, observers)
RECIPE = {
    "JetClass/JetClass_kin.yaml": (R_JETCLASS_VARIABLES, R_KIN + R_ANGLES, JETCLASS_LABELS, R_JETCLASS_OBSERVERS),
    "JetClass/JetClass_kinpid.yaml": (
        R_JETCLASS_VARIABLES,
        R_KIN + R_PID + R_ANGLES,
        JETCLASS_LABELS,
        R_JETCLASS_OBSERVERS,
    ),
    "JetClass/JetClass_full.yaml": (
        {**R_JETCLASS_VARIABLES, "part_d0": "np.tanh(part_d0val)", "part_dz": "np.tanh(part_dzval)"},
        R_KIN + R_PID + R_DISPLACEMENT + R_ANGLES,
        JETCLASS_LABELS,
        R_JETCLASS_OBSERVERS,
    ),
    "QuarkGluon/qg_kin.yaml": (R_QG_VARIABLES, R_KIN + R_ANGLES, ["jet_isQ", "jet_isG"], ["jet_pt", "jet_eta"]),
    "QuarkGluon/qg_kinpid.yaml": (
        R_QG_VARIABLES,
        R_KIN + R_PID + R_ANGLES,
        ["jet_isQ", "jet_isG"],
        ["jet_pt", "jet_eta"],
    ),
    "QuarkGluon/qg_kinpidplus.yaml": (
        {
            **R_QG_VARIABLES,
            "part_isCHad": "(np.abs(part_pid)==211) + (np.abs(part_pid)==321)*0.5 + (np.abs(part_pid)==2212)*0.2",
            "part_isNHad": "(np.abs(part_pid)==130) + (np.abs(part_pid)==2112)*0.2",
        },
        R_KIN + R_PID_PLUS + R_ANGLES,
        ["jet_isQ", "jet_isG"],
        ["jet_pt", "jet_eta"],
    ),
    "TopLandscape/top_kin.yaml": (
        {
            **{k: v for k, v in R_QG_VARIABLES.items() if not k.startswith("jet_")},
            "jet_isTop": "label",
            "jet_isQCD": "1-label",
        },
        R_KIN + R_ANGLES,
        ["jet_isTop", "jet_isQCD"],
        ["jet_pt", "jet_eta"],
    ),
}
# What we add on purpose (docs/compatibility.md, "The public recipe, option by option"): the QuarkGluon particle ID
# computed from part_pid (the recipe reads the same values from the converted files), and observers for the output.
EXTRA_VARIABLES = {
    "QuarkGluon/qg_kinpid.yaml": {
        "part_isElectron",
        "part_isMuon",
        "part_isPhoton",
        "part_isChargedHadron",
        "part_isNeutralHadron",
        "part_charge",
    },
    "QuarkGluon/qg_kinpidplus.yaml": {"part_isElectron", "part_isMuon", "part_isPhoton", "part_charge"},
}
EXTRA_OBSERVERS = {rel: ["jet_phi", "jet_energy", "jet_nparticles"] for rel in RECIPE if not rel.startswith("JetClass")}


@pytest.mark.parametrize("rel", sorted(RECIPE))
def test_yaml_matches_the_public_recipe(rel):
    variables, features, labels, observers = RECIPE[rel]
    raw = yaml.safe_load((DATA / rel).read_text())
    # every recipe expression verbatim; nothing else but the listed additions
    ours = raw["new_variables"]
    assert {k: ours.get(k) for k in variables} == variables
    assert set(ours) - set(variables) == EXTRA_VARIABLES.get(rel, set())
    assert raw.get("selection") is None and raw.get("test_time_selection") is None and raw.get("weights") is None
    assert raw["preprocess"] == {"method": "manual", "data_fraction": 0.5}

    config = load(rel)
    inputs = {"pf_points": R_ANGLES, "pf_features": features, "pf_vectors": R_VECTORS, "pf_mask": R_MASK}
    assert list(config.input_names) == list(inputs)
    for name, rows in inputs.items():
        assert raw["inputs"][name]["length"] == 128
        assert raw["inputs"][name]["pad_mode"] == ("constant" if name == "pf_mask" else "wrap")
        params = config.preprocess_params
        got = [
            (v, *(params[v][k] for k in ("center", "scale", "min", "max", "pad_value")))
            for v in config.input_dicts[name]
        ]
        assert got == rows, name
    assert raw["labels"] == {"type": "simple", "value": labels}
    assert raw["observers"] == observers + EXTRA_OBSERVERS.get(rel, [])


def run_weaver_pipeline(yaml: Path, sample: Path, for_training: bool) -> dict:
    """All jets of `sample` through weaver's SimpleIterDataset and DataLoader, as one batch."""
    import torch
    from weaver.utils.dataset import SimpleIterDataset

    dataset = SimpleIterDataset(
        {"_": [str(sample)]}, str(yaml), for_training=for_training, fetch_step=1, async_load=False, name="test"
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=2000, num_workers=0)
    batches = list(loader)
    assert len(batches) == 1
    X, y, Z = batches[0]
    return {
        **{k: v.numpy() for k, v in X.items()},
        "_label_": y["_label_"].numpy(),
        **{k: v.numpy() for k, v in Z.items()},
    }


@pytest.mark.requiresdata
@pytest.mark.parametrize(
    "rel, sample, label",
    [
        ("TopLandscape/top_kin.yaml", "TopLandscape_sample_1000.root", "label"),
        ("QuarkGluon/qg_kin.yaml", "QuarkGluon_sample_1000.root", "label"),
        ("JetClass/JetClass_kin.yaml", "JetClass_Hbb_sample_1000.root", None),
    ],
)
def test_kin_yaml_on_real_jets(rel, sample, label, real_data, tmp_path):
    # the JetClass sample lacks jet_sdmass and jet_tau1..4, so it goes through the training path,
    # which loads no observers (and shuffles: compare particle counts as sorted lists)
    for_training = label is None
    yaml = tmp_path / Path(rel).name  # weaver may write an .auto.yaml next to it
    yaml.write_text((DATA / rel).read_text())
    out = run_weaver_pipeline(yaml, real_data / sample, for_training)

    with uproot.open(real_data / sample) as f:
        tree = f["tree"]
        n_part = tree["n_part"].array(library="np")
        truth = tree[label].array(library="np") if label else None
    n_jets = len(n_part)
    assert out["pf_features"].shape == (n_jets, 7, 128)
    assert out["pf_points"].shape == (n_jets, 2, 128)
    assert out["pf_vectors"].shape == (n_jets, 4, 128)
    assert out["pf_mask"].shape == (n_jets, 1, 128)
    for name in ("pf_features", "pf_points", "pf_vectors", "pf_mask"):
        assert np.isfinite(out[name]).all(), name

    mask = out["pf_mask"][:, 0]
    assert set(np.unique(mask)) <= {0.0, 1.0}
    counts = mask.sum(axis=1).astype(int)
    if for_training:
        assert sorted(counts) == sorted(np.minimum(n_part, 128))
        assert (out["_label_"] == JETCLASS_LABELS.index("label_Hbb")).all()
    else:
        assert (counts == np.minimum(n_part, 128)).all()
        # class 0 is top / quark, which the dataset flags as label == 1
        assert (out["_label_"] == 1 - truth).all()
        assert (out["jet_nparticles"] == n_part).all()

    real = mask.astype(bool)
    features = dict(zip(KIN, out["pf_features"].transpose(1, 0, 2), strict=True))
    for name in ("part_pt_log", "part_e_log", "part_logptrel", "part_logerel"):
        values = features[name][real]
        assert np.abs(values).max() <= 5
        assert np.mean(np.abs(values) < 5) > 0.95, name  # standardised: the clip bites only on tails
        assert values.std() > 0.3, name  # and the values do spread: a wrong center would pile them on ±5
    # nearly all particles sit inside the jet cone, R < 0.8: (deltaR - 0.2) * 4 < 2.4 (a few stray beyond it,
    # measured from the jet axis, and get clipped at 5)
    delta_r = features["part_deltaR"][real]
    assert np.percentile(delta_r, 99) < (0.8 - 0.2) * 4.0 and delta_r.max() <= 5
    assert np.percentile(np.abs(features["part_deta"][real]), 99) < 0.8
    # the particles' pt sums to about the jet pt: log(pt/jet_pt) <= 0 before scaling
    assert (features["part_logptrel"][real] <= (0 + 4.7) * 0.7 + 1e-4).all()
    # wrap padding repeats the jet's particles instead of zeros
    short = np.flatnonzero(counts < 128)[0]
    n = counts[short]
    vectors = out["pf_vectors"][short]
    assert np.array_equal(vectors[:, n : 2 * n], vectors[:, : min(n, 128 - n)])


# physics truth for the added particle-ID branches: PDG code -> charge
CHARGE = {
    11: -1,
    -11: 1,
    13: -1,
    -13: 1,
    22: 0,
    211: 1,
    -211: -1,
    321: 1,
    -321: -1,
    2212: 1,
    -2212: -1,
    130: 0,
    2112: 0,
    -2112: 0,
}


def with_particle_id(sample: Path, out: Path, jetclass: bool) -> tuple[np.ndarray, np.ndarray]:
    """`sample` plus the branches the real samples lack (random PDG codes, displacements, observers) in `out`."""
    with uproot.open(sample) as f:
        table = f["tree"].arrays()
    counts = ak.to_numpy(ak.num(table["part_px"]))
    rng = np.random.default_rng(7)
    pid = rng.choice(list(CHARGE), counts.sum())
    columns = {k: table[k] for k in table.fields if k != "n_part"}

    def jagged(values):
        return ak.unflatten(np.asarray(values, dtype="float32"), counts)

    if jetclass:
        charge = np.array([CHARGE[p] for p in pid])
        columns |= {
            "part_charge": jagged(charge),
            "part_isChargedHadron": jagged(np.isin(np.abs(pid), [211, 321, 2212])),
            "part_isNeutralHadron": jagged(np.isin(np.abs(pid), [130, 2112])),
            "part_isPhoton": jagged(pid == 22),
            "part_isElectron": jagged(np.abs(pid) == 11),
            "part_isMuon": jagged(np.abs(pid) == 13),
            "part_d0val": jagged(rng.normal(0, 0.5, len(pid))),
            "part_d0err": jagged(rng.exponential(0.5, len(pid))),
            "part_dzval": jagged(rng.normal(0, 0.5, len(pid))),
            "part_dzerr": jagged(rng.exponential(0.5, len(pid))),
        }
        columns |= {k: table["jet_mass"] for k in ("jet_sdmass", "jet_tau1", "jet_tau2", "jet_tau3", "jet_tau4")}
    else:
        columns["part_pid"] = jagged(pid)
    with uproot.recreate(out) as f:  # a TTree, as weaver reads (assigning a dict would write an RNTuple)
        f.mktree("tree", {k: v.type for k, v in columns.items()}).extend(columns)
    return pid, counts


@pytest.mark.requiresdata
@pytest.mark.parametrize(
    "rel, sample",
    [
        ("JetClass/JetClass_full.yaml", "JetClass_Hbb_sample_1000.root"),
        ("JetClass/JetClass_kinpid.yaml", "JetClass_Hbb_sample_1000.root"),
        ("QuarkGluon/qg_kinpid.yaml", "QuarkGluon_sample_1000.root"),
        ("QuarkGluon/qg_kinpidplus.yaml", "QuarkGluon_sample_1000.root"),
    ],
)
def test_particle_id_yamls_on_real_jets(rel, sample, real_data, tmp_path):
    jetclass = rel.startswith("JetClass")
    pid, counts = with_particle_id(real_data / sample, tmp_path / "jets.root", jetclass)
    yaml = tmp_path / Path(rel).name
    yaml.write_text((DATA / rel).read_text())
    out = run_weaver_pipeline(yaml, tmp_path / "jets.root", for_training=False)  # test mode: observers, in order

    features, _ = EXPECTED[rel]
    assert out["pf_features"].shape == (len(counts), len(features), 128)
    assert np.isfinite(out["pf_features"]).all()
    real = out["pf_mask"][:, 0].astype(bool)
    assert (real.sum(axis=1) == np.minimum(counts, 128)).all()
    columns = dict(zip(features, out["pf_features"].transpose(1, 0, 2), strict=True))
    # jets hold at most 128 particles, so the real slots, row by row, are the particles in file order
    assert np.array_equal(columns["part_charge"][real], [CHARGE[p] for p in pid])
    assert np.array_equal(columns["part_isElectron"][real], np.abs(pid) == 11)
    if jetclass:
        assert set(out) >= {"jet_sdmass", "jet_tau4"}
    if rel.endswith("full.yaml"):
        for name in ("part_d0", "part_dz"):
            squashed = np.abs(columns[name][real])  # tanh of values with a spread of 0.5
            assert squashed.max() <= 1 and 0.2 < np.median(squashed) < 0.5
        for name in ("part_d0err", "part_dzerr"):
            assert columns[name][real].min() >= 0 and columns[name][real].max() <= 1

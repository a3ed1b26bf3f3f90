"""The resonant di-Higgs event generator (jetattn/datasets/dihiggs.py): layout, branches, objects against the
jets' constituents, weights, bad input, the YAML through weaver's pipeline, and a short weaver training of the
multi-scale models on the generated events."""

import json
import os
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

pytest.importorskip("pythia8mc", reason="generation needs pip install -e .[generate]")
from jetattn.datasets import dihiggs  # noqa: E402
from jetattn.datasets.dihiggs import DiHiggs, generate_dihiggs  # noqa: E402
from jetattn.datasets.generate import task_pythia  # noqa: E402
from jetattn.datasets.pool import Task  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
YAML = REPO / "data" / "DiHiggs" / "dihiggs.yaml"
EVENTS = 12  # per class: 12 signal, 6 QCD, 6 ttbar; about 10 s on one core
PARTICLE_FIELDS = [
    "px",
    "py",
    "pz",
    "energy",
    "deta",
    "dphi",
    "charge",
    "isChargedHadron",
    "isNeutralHadron",
    "isPhoton",
    "isElectron",
    "isMuon",
    "pid",
    "d0val",
    "d0err",
    "dzval",
    "dzerr",
]


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return generate_dihiggs(tmp_path_factory.mktemp("dihiggs"), EVENTS, seed=4, workers=1, split=(0.5, 0.25, 0.25))


def read_all(root: Path) -> ak.Array:
    return ak.concatenate([uproot.open(root / f"{s}_file.root")["tree"].arrays() for s in ("train", "val", "test")])


def p4(pt, eta, phi, energy):
    return np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), energy], axis=-1)


def test_layout_labels_and_branches(sample):
    assert sample.name == "DiHiggs"
    assert sorted(p.name for p in sample.iterdir()) == [
        "cross_sections.json",
        "test_file.root",
        "train_file.root",
        "val_file.root",
    ]
    counts = {s: uproot.open(sample / f"{s}_file.root")["tree"].num_entries for s in ("train", "val", "test")}
    # per process, half to train; the quarters of QCD's and ttbar's 6 events round to 2 val and 1 test each
    assert counts == {"train": 12, "val": 7, "test": 5}
    events = read_all(sample)
    for j in (1, 2):
        assert {f"jet{j}_part_{f}" for f in PARTICLE_FIELDS} <= set(events.fields)
    for name in (
        "obj_pt",
        "obj_eta",
        "obj_phi",
        "obj_mass",
        "obj_energy",
        "mjj",
        "weight",
        "process",
        "label_signal",
        "label_background",
        "jet1_nparticles",
        "jet2_nparticles",
    ):
        assert name in events.fields, name
    process = events.process.to_numpy()
    assert np.bincount(process).tolist() == [EVENTS, EVENTS // 2, EVENTS // 2]  # signal, QCD, ttbar
    assert (events.label_signal.to_numpy() == (process == 0)).all()
    assert (events.label_background.to_numpy() == (process != 0)).all()
    first_half = process[: counts["train"] // 2]
    assert 0 < np.mean(first_half == 0) < 1  # signal and background shuffled together


def test_objects_are_the_jets_and_their_sum(sample):
    events = read_all(sample)
    assert ak.all(ak.num(events.obj_pt) == 3)
    objects = p4(*(ak.to_numpy(events[f"obj_{c}"]).astype(np.float64) for c in ("pt", "eta", "phi", "energy")))
    np.testing.assert_allclose(objects[:, 2], objects[:, 0] + objects[:, 1], rtol=1e-4, atol=0.05)
    mass = np.sqrt(np.maximum(objects[..., 3] ** 2 - np.sum(objects[..., :3] ** 2, axis=-1), 0))
    np.testing.assert_allclose(mass, events.obj_mass.to_numpy(), rtol=1e-3, atol=0.5)
    np.testing.assert_allclose(events.mjj.to_numpy(), events.obj_mass[:, 2].to_numpy(), rtol=1e-6)
    # selection: both jets pT > 0.3 M, |eta| < 2.5, mjj in [0.6, 1.2] M; jet 1 leads
    assert ak.all(events.obj_pt[:, 0] >= events.obj_pt[:, 1]) and ak.all(events.obj_pt[:, 1] >= 300)
    assert ak.all(abs(events.obj_eta[:, :2]) < 2.5)
    assert ak.all((events.mjj >= 600) & (events.mjj < 1200))
    for j in (1, 2):
        n = ak.num(events[f"jet{j}_part_px"])
        assert ak.all(n <= dihiggs.MAX_PARTICLES) and ak.all(n == np.minimum(events[f"jet{j}_nparticles"], 100))
        pt = np.hypot(events[f"jet{j}_part_px"], events[f"jet{j}_part_py"])
        assert ak.all(pt[:, :-1] >= pt[:, 1:])  # pT-ordered
        # jets with at most 100 constituents are exactly the sum of what is stored
        whole = (events[f"jet{j}_nparticles"] <= 100).to_numpy()
        summed = np.stack(
            [ak.to_numpy(ak.sum(events[f"jet{j}_part_{c}"], axis=1)) for c in ("px", "py", "pz", "energy")], axis=1
        )
        np.testing.assert_allclose(summed[whole], objects[whole, j - 1], rtol=1e-4, atol=0.05)


def test_deta_dphi_relative_to_the_jet(sample):
    events = read_all(sample)
    for j in (1, 2):
        px, py, pz = (events[f"jet{j}_part_{c}"] for c in ("px", "py", "pz"))
        eta = np.arcsinh(pz / np.hypot(px, py))
        jet_eta = events.obj_eta[:, j - 1]
        sign = np.where(jet_eta.to_numpy() >= 0, 1.0, -1.0)  # ParT convention (docs/generator.md)
        np.testing.assert_allclose(
            ak.flatten(events[f"jet{j}_part_deta"]), ak.flatten((eta - jet_eta) * sign), atol=1e-4
        )
        dphi = events[f"jet{j}_part_dphi"]
        assert ak.all(abs(dphi) <= np.pi)
        # anti-kT R = 0.8 cones in (rapidity, phi), but for soft particles joining through a soft cluster
        energy = events[f"jet{j}_part_energy"]
        jet_pz = events.obj_pt[:, j - 1] * np.sinh(jet_eta)
        jet_energy = events.obj_energy[:, j - 1]
        dy = 0.5 * np.log((energy + pz) / (energy - pz)) - 0.5 * np.log((jet_energy + jet_pz) / (jet_energy - jet_pz))
        distance = ak.to_numpy(ak.flatten(np.hypot(dy, dphi)))
        assert np.mean(distance < 0.8) > 0.995 and distance.max() < 1.0


def test_weights_follow_the_cross_sections(sample):
    table = json.loads((sample / "cross_sections.json").read_text())
    assert table["mass"] == 1000.0
    events = read_all(sample)
    for code, name in enumerate(("signal", "QCD", "ttbar")):
        row = table["processes"][name]
        assert 0 < row["efficiency"] <= 1 and row["events"] == np.sum(events.process == code)
        weights = events.weight[events.process == code].to_numpy()
        assert np.allclose(weights, row["weight"])
        total = row["efficiency"] * (1.0 if name == "signal" else row["sigma_pb"])
        assert np.isclose(weights.sum(), total, rtol=1e-5)  # all splits together: sigma x efficiency
    assert table["processes"]["QCD"]["sigma_pb"] > 100 * table["processes"]["ttbar"]["sigma_pb"]


def test_signal_scalar_decays_to_two_higgs_to_four_b():
    pythia = task_pythia(Task(DiHiggs(mass=1000.0), 0, 0, 1, ()))
    decays = []
    for _ in range(5):
        assert pythia.next()
        event = pythia.event
        for i in range(event.size()):
            particle = event[i]
            daughters = [event[d].id() for d in range(particle.daughter1(), particle.daughter2() + 1)]
            if particle.id() in (25, 35) and particle.id() not in daughters and daughters:
                decays.append((particle.id(), sorted(daughters)))
    assert decays.count((35, [25, 25])) == 5
    assert decays.count((25, [-5, 5])) == 10


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_events": 1}, "num_events"),
        ({"num_events": 10.5}, "num_events"),
        ({"mass": 200.0}, "mass"),
        ({"split": (0.5, 0.1, 0.1)}, "split"),
        ({"workers": 0}, "workers"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_dihiggs(tmp_path, **{"num_events": 10, **kwargs})
    assert not list(tmp_path.iterdir())


def test_yaml_through_weaver(sample):
    from weaver.utils.data.config import DataConfig

    from jetattn.weaver import load_jets

    config = DataConfig.load(str(YAML), load_observers=False)
    assert list(config.label_value) == ["label_signal", "label_background"]
    inputs, _ = load_jets(YAML, [sample / "train_file.root"], 12)
    shapes = {name: tuple(x.shape[1:]) for name, x in inputs.items()}
    assert shapes["jet1_features"] == (13, 40) and shapes["pf_features"] == (13, 80)
    assert shapes["obj_features"] == (5, 3) and shapes["obj_mask"] == (1, 3) and shapes["pf_vectors"] == (4, 80)
    for name, x in inputs.items():
        assert np.isfinite(x.numpy()).all(), name
    events = uproot.open(sample / "train_file.root")["tree"].arrays(entry_stop=12)
    n1, n2 = ak.num(events.jet1_part_px).to_numpy(), ak.num(events.jet2_part_px).to_numpy()
    assert (inputs["jet1_mask"].numpy().sum(axis=(1, 2)) == np.minimum(n1, 40)).all()
    # pf: the 40 leading constituents of each jet, jet 1's first (the second jet's start where the first's end)
    assert (inputs["pf_mask"].numpy().sum(axis=(1, 2)) == np.minimum(n1, 40) + np.minimum(n2, 40)).all()
    for event, start in enumerate(np.minimum(n1, 40)):  # pf_vectors is (px, py, pz, E) unscaled
        assert inputs["pf_vectors"][event, 0, start].item() == pytest.approx(events.jet2_part_px[event][0], rel=1e-5)
    assert (inputs["obj_mask"].numpy() == 1).all()


@pytest.mark.slow
@pytest.mark.parametrize(
    "model, config", [("MST", "model_2"), ("MST", "model_3"), ("Concat", "model_3"), ("MST", "objects"), ("ParT", None)]
)
def test_train_script_trains_on_generated_events(sample, tmp_path, model, config):
    """./train_DiHiggs.sh runs weaver end to end on the generated events: one short epoch, then prediction,
    then weaver's ONNX export."""
    from weaver_run import SMALL_PART, option_args

    env = {
        **os.environ,
        "DATADIR_DiHiggs": str(sample),
        "PYTHON": sys.executable,
        "JETATTN_ASSUME_CUDA": "0",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    streams = {"model_2": ("jet1", "jet2", "obj"), "objects": ("obj",)}.get(config, ("pf", "obj"))
    options = {
        "config": config,
        "dim": 16,
        "fc_params": [(16, 0.1)],
        "stream_params": {s: {"num_heads": 2, "num_layers": 1} for s in streams},
    }
    if model == "MST" and config != "objects":
        options["cross_heads"] = 2
    if model == "ParT":
        options = SMALL_PART
    small = [arg.replace("--network-option", "-o") for arg in option_args(options)]
    # one batch of 7 validates on all 7 validation events, so both classes: a batch of 4 of them, drawn at random,
    # could be the 4 backgrounds, and a model that calls all 4 signal scores 0, saves no best epoch, and weaver's
    # test step then stops with FileNotFoundError (1 run in 12 did)
    short = [
        "--num-epochs",
        "1",
        "--batch-size",
        "7",
        "--num-workers",
        "0",
        "--optimizer",
        "adam",
        "--model-prefix",
        str(tmp_path / "net"),
        "--predict-output",
        str(tmp_path / "pred.root"),
        "--log-file",
        str(tmp_path / "train.log"),
    ]
    proc = subprocess.run(
        [str(REPO / "train_DiHiggs.sh"), model, *small, *short],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    with uproot.open(tmp_path / "pred.root") as f:
        pred = f["Events"].arrays(library="np")
    scores = np.stack([pred["score_label_signal"], pred["score_label_background"]], axis=1)
    assert len(scores) == 5 and np.isfinite(scores).all() and np.allclose(scores.sum(1), 1, atol=1e-5)
    assert {"mjj", "weight", "process"} <= set(pred)

    # the trained model through weaver's ONNX export, against PyTorch on events with padded constituents
    import onnxruntime
    import torch
    from weaver.utils.data.config import DataConfig
    from weaver_run import load_network, weaver

    from jetattn.weaver import load_jets

    network = (
        REPO
        / "networks"
        / {
            "MST": "example_MultiScaleTransformer.py",
            "Concat": "example_ConcatTransformer.py",
            "ParT": "example_ParticleTransformer.py",
        }[model]
    )
    state = tmp_path / "net_best_epoch_state.pt"
    weaver(
        "--export-onnx",
        tmp_path / "net.onnx",
        "--data-config",
        YAML,
        "--network-config",
        network,
        *option_args(options),
        "--model-prefix",
        state,
    )
    torch_model, info = load_network(network).get_model(
        DataConfig.load(str(YAML), load_observers=False), for_inference=True, **options
    )
    torch_model.load_state_dict(torch.load(state, map_location="cpu"))
    session = onnxruntime.InferenceSession(str(tmp_path / "net.onnx"))
    inputs, _ = load_jets(YAML, [sample / "test_file.root"], 5)
    inputs = {name: inputs[name] for name in info["input_names"]}
    assert [i.name for i in session.get_inputs()] == info["input_names"]
    with torch.no_grad():
        expected = torch_model.eval()(*inputs.values()).numpy()
    (onnx_scores,) = session.run(None, {name: x.numpy() for name, x in inputs.items()})
    np.testing.assert_allclose(onnx_scores, expected, atol=1e-4, rtol=0)


@pytest.mark.slow  # trains, then explains
@pytest.mark.parametrize("config", ["model_3", "model_2"])
def test_explain_reads_the_constituents_the_yaml_builds(sample, tmp_path, config):
    """The files hold jet1_part_*/jet2_part_*; the explain tool takes part_* from the YAML's new_variables (the
    leading 40 of each jet), matches them to weaver's inputs, and draws objects x constituents cross-attention
    (model_2, whose streams are each jet's: that alone)."""
    import json

    import torch
    from weaver.utils.data.config import DataConfig
    from weaver_run import load_network

    from jetattn.explain.__main__ import main as explain

    network = REPO / "networks" / "example_MultiScaleTransformer.py"
    streams = ("pf", "obj") if config == "model_3" else ("jet1", "jet2", "obj")
    options = {
        "config": config,
        "dim": 16,
        "cross_heads": 2,
        "stream_params": {s: {"num_heads": 2, "num_layers": 1} for s in streams},
    }
    torch.manual_seed(1)
    model, _ = load_network(network).get_model(DataConfig.load(str(YAML), load_observers=False), **options)
    torch.save(model.state_dict(), tmp_path / "net.pt")
    option_args = [a for k, v in options.items() for a in ("--network-option", k, repr(v))]
    out = tmp_path / "explain"
    assert (
        explain(
            [
                str(tmp_path / "net.pt"),
                "--network",
                str(network),
                "--data-config",
                str(YAML),
                *option_args,
                "--files",
                str(sample / "train_file.root"),
                "--out",
                str(out),
                "--num-jets",
                "12",
                "--object-names",
                "jet 1",
                "jet 2",
                "di-jet",
            ]
        )
        == 0
    )
    result = json.loads((out / "explain.json").read_text())
    assert set(result["jets_per_class"]) == {"signal", "background"}
    maps = result["cross_attention"]["maps"]
    assert maps and all(len(table) == 3 and len(table[0]) == 20 for layer in maps.values() for table in layer.values())
    assert (out / "cross_attention_0.png").exists()
    assert (out / "gradcam.pdf").exists() == (config == "model_3")
    assert any("cross-attention only" in note for note in result["skipped"]) == (config == "model_2")


def test_the_background_of_the_cross_attention_maps_is_an_option(sample, tmp_path):
    """The classes are the YAML's (signal, background): by default the second is the background; --background
    signal swaps the two groups of the cross-attention maps, and nothing else."""
    import torch
    from weaver.utils.data.config import DataConfig
    from weaver_run import load_network

    from jetattn.explain.collect import ExplainConfig, collect

    network = REPO / "networks" / "example_MultiScaleTransformer.py"
    streams = ("jet1", "jet2", "obj")
    options = {"config": "model_2", "dim": 16, "cross_heads": 2}
    options["stream_params"] = {s: {"num_heads": 2, "num_layers": 1} for s in streams}
    torch.manual_seed(1)
    model, _ = load_network(network).get_model(DataConfig.load(str(YAML), load_observers=False), **options)
    torch.save(model.state_dict(), tmp_path / "net.pt")
    settings = {"checkpoint": tmp_path / "net.pt", "network": network, "data_config": YAML, "out": tmp_path}
    settings |= {"files": [sample / "train_file.root"], "num_jets": 12, "network_options": options}
    default = collect(ExplainConfig(**settings, compare_untrained=False))
    swapped = collect(ExplainConfig(**settings, compare_untrained=False, background=("signal",)))
    assert default.jets_per_class == {"signal": 6, "background": 6} and default.cross_maps
    assert "no subjet count for class(es) background, signal: left out of the subjet fractions" in default.notes
    for layer, groups in default.cross_maps.items():
        np.testing.assert_array_equal(swapped.cross_maps[layer]["signal"], groups["background"])
        np.testing.assert_array_equal(swapped.cross_maps[layer]["background"], groups["signal"])

"""python -m jetattn.explain: subjets, Grad-CAM, cross-attention maps and a run on real jets."""

import json

import numpy as np
import pytest
import torch
from torch import nn
from weaver_run import JETCLASS_YAML, REPO, TOP_YAML, option_args, read_jets

from jetattn.deps import ToolError
from jetattn.explain.__main__ import config_from, main, parser
from jetattn.explain.collect import ExplainConfig, collect, recording_options
from jetattn.explain.gradcam import EtaPhiMap, gradcam, particle_blocks
from jetattn.explain.graphs import attention_edges, subjet_of_particles
from jetattn.explain.jets import background_classes, class_names
from jetattn.explain.render import render
from jetattn.explain.summary import AttentionSummary
from jetattn.nn.attention import record_attention
from jetattn.nn.multiscale import MultiScaleTransformer

TINY_PART = {"embed_dims": (16,), "pair_embed_dims": (8,), "num_heads": 2, "num_layers": 2, "num_cls_layers": 1}


@pytest.mark.requiresdata
@pytest.mark.parametrize("num_subjets", [2, 3])
def test_subjets_are_fastjets_exclusive_kt_subjets(real_data, num_subjets):
    import awkward as ak
    import fastjet
    import vector

    vector.register_awkward()
    columns = read_jets(real_data / "JetClass_Hbb_sample_1000.root")
    jets = ak.zip(
        {
            "px": columns["part_px"][:40],
            "py": columns["part_py"][:40],
            "pz": columns["part_pz"][:40],
            "E": columns["part_energy"][:40],
        },
        with_name="Momentum4D",
    )
    # fastjet's awkward interface, all jets at once: the particle indices of each subjet
    sequence = fastjet.ClusterSequence(jets, fastjet.JetDefinition(fastjet.kt_algorithm, 0.8))
    expected = sequence.exclusive_jets_constituent_index(num_subjets).to_list()
    strays = 0
    for jet, subjets in zip(jets, expected, strict=True):
        p4 = np.stack([ak.to_numpy(jet[c]) for c in ("px", "py", "pz", "E")], axis=1)
        owner = subjet_of_particles(p4, num_subjets)
        assert (owner >= 0).all() and owner.max() == num_subjets - 1
        # particles the clustering merged with the beam (in no subjet) go to the nearest one: compare the rest
        in_subjets = np.zeros(len(p4), dtype=bool)
        in_subjets[[i for indices in subjets for i in indices]] = True
        strays += int((~in_subjets).sum())
        ours = {frozenset(np.nonzero((owner == s) & in_subjets)[0].tolist()) for s in range(num_subjets)}
        assert ours == {frozenset(indices) for indices in subjets}
        axes = [p4[np.array(indices)].sum(0) for indices in subjets]
        pts = sorted((np.hypot(*axis[:2]) for axis in axes), reverse=True)
        assert [np.hypot(*p4[(owner == s) & in_subjets, :2].sum(0)) for s in range(num_subjets)] == pytest.approx(pts)
    assert strays > 0  # the sample has such particles: the rule is exercised


def test_a_jet_with_fewer_particles_than_subjets_and_the_strongest_edges():
    assert subjet_of_particles(np.array([[1.0, 0.0, 0.0, 1.0]]), 3).tolist() == [0]
    weights = np.array([[0.5, 0.3, 0.2], [0.05, 0.9, 0.05], [0.6, 0.01, 0.39]])
    # above 0.25: (0, 1) and (2, 0); every particle's strongest other key: (1, 0) or (1, 2) (a tie), (0, 1), (2, 0)
    edges = attention_edges(weights, 0.25)
    assert edges[:2] == [(2, 0, 0.6), (0, 1, 0.3)] and len(edges) == 3 and edges[2][0] == 1


class OneParticleModel(nn.Module):
    """Tokens are a Linear of each particle's features; the two class scores are ±w · (token of particle ``hot``)."""

    def __init__(self, hot: int) -> None:
        super().__init__()
        self.hot = hot
        self.blocks = nn.ModuleList([nn.Linear(4, 8)])
        self.w = nn.Parameter(torch.randn(8))

    def forward(self, x):
        score = self.blocks[0](x)[:, self.hot] @ self.w
        return torch.stack((score, -score), dim=1)


def test_gradcam_peaks_on_the_one_particle_the_score_depends_on():
    torch.manual_seed(0)
    model = OneParticleModel(hot=5)
    x = 0.2 * torch.randn(6, 12, 4)
    x[:, 5] *= 25  # a hard particle among soft ones, read alone by the model
    padding = torch.zeros(6, 12, dtype=torch.bool)
    padding[3:, 9:] = True
    with torch.no_grad():
        predicted = model(x).argmax(1)
    cam = gradcam(model, [x], "blocks.0", predicted, padding)
    assert cam.shape == (6, 12) and (cam >= 0).all() and (cam[padding] == 0).all()
    assert (cam.argmax(1) == 5).all()
    assert particle_blocks(model) == ["blocks.0"]

    maps = EtaPhiMap(["a", "b"], half_width=1.0, bins=4)
    maps.add("a", np.array([-0.9, 0.9]), np.array([0.0, 0.0]), np.array([3.0, 1.0]))
    maps.add("a", np.array([0.9]), np.array([0.0]), np.array([0.0]))  # no importance: counts, adds nothing
    mean = maps.means()
    assert list(mean) == ["a"] and mean["a"].sum() == pytest.approx(0.5) and mean["a"][0, 2] == pytest.approx(0.375)


def test_particle_blocks_of_part_and_multiscale(repo):
    from jetattn.weaver import ParTForWeaver

    part = ParTForWeaver(input_dim=7, num_classes=2, **TINY_PART)
    assert particle_blocks(part) == ["mod.blocks.0", "mod.blocks.1"]
    multiscale = MultiScaleTransformer(
        {"pf": 3, "obj": 5},
        2,
        config="model_3",
        dim=16,
        cross_heads=2,
        stream_params={"pf": {"num_heads": 2}, "obj": {"num_heads": 2}},
    )
    assert particle_blocks(multiscale) == ["streams.pf.blocks.0", "streams.pf.blocks.1"]


def test_cross_attention_maps_are_objects_by_leading_constituents():
    torch.manual_seed(0)
    model = MultiScaleTransformer(
        {"pf": 3, "obj": 5},
        2,
        config="model_3",
        dim=16,
        cross_heads=2,
        stream_params={"pf": {"num_heads": 2}, "obj": {"num_heads": 2}},
    ).eval()
    pf_mask = (torch.arange(10)[None] < torch.tensor([[10], [6], [8], [4]])).unsqueeze(1).float()
    obj_mask = (torch.arange(3)[None] < torch.tensor([[3], [2], [1], [3]])).unsqueeze(1).float()
    inputs = (torch.randn(4, 3, 10) * pf_mask, pf_mask, torch.randn(4, 5, 3) * obj_mask, obj_mask)
    with torch.no_grad(), record_attention(model, details=True) as records:
        model(*inputs)
    summary = AttentionSummary([], ["QCD", "Top"], 5, {})
    pts = [np.arange(int(n), 0, -1, dtype=float) for n in pf_mask.sum((1, 2))]
    orders = [np.argsort(-pt) for pt in pts]
    summary.add_cross(records, np.array([1, 0, 1, 0]), np.array([False, True]), obj_mask[:, 0] == 0, orders, 5)
    means = summary.cross.means()
    assert sorted(means) == [(g, f"cross_blocks.{i}.attn") for g in ("background", "signal") for i in (0, 1)]
    signal = means[("signal", "cross_blocks.1.attn")]  # jets 0 (3 objects) and 2 (1 object)
    assert signal.shape == (1, 3, 5)
    (record,) = records["cross_blocks.1.attn"]
    expected_row0 = (record.weights[0, :, 0, :5].mean(0) + record.weights[2, :, 0, :5].mean(0)) / 2
    np.testing.assert_allclose(signal[0, 0], expected_row0.double().numpy(), atol=1e-7)
    np.testing.assert_allclose(signal[0, 2], record.weights[0, :, 2, :5].mean(0).double().numpy(), atol=1e-7)
    assert summary.cross.counts[("background", "cross_blocks.0.attn")].tolist()[:2] == [[2] * 4 + [1]] + [[2] * 4 + [1]]


@pytest.mark.requiresdata
@pytest.mark.parametrize("version", [1, 3.5])
def test_explain_a_tiny_part_on_real_hbb_jets(hbb_sample, tmp_path, version):
    from jetattn.weaver import build_network

    torch.manual_seed(1)
    tiny_part = {**TINY_PART, "version": version}
    model, _ = build_network(REPO / "networks/example_ParticleTransformer.py", JETCLASS_YAML, tiny_part, False)
    torch.save(model.state_dict(), tmp_path / "part.pt")
    out = tmp_path / "out"
    network = REPO / "networks/example_ParticleTransformer.py"
    args = [
        str(tmp_path / "part.pt"),
        "--network",
        str(network),
        "--data-config",
        str(JETCLASS_YAML),
        "--files",
        str(hbb_sample),
        "--out",
        str(out),
        "--num-jets",
        "120",
        "--batch-size",
        "60",
        "--graph-classes",
        "label_Hbb",
        "label_Tbl",
        *option_args(tiny_part),
    ]
    assert main(args) == 0
    result = json.loads((out / "explain.json").read_text())
    assert result["jets_per_class"] == {"Hbb": 120}
    stems = ["attention_scores", "attention_maps_Hbb", "graph_Hbb", "subjet_attention", "gradcam"]
    for stem in stems:
        for suffix in (".png", ".pdf"):
            assert (out / f"{stem}{suffix}").stat().st_size > 1000
    assert sorted(result["files"]) == sorted(f"{s}{x}" for s in stems for x in (".png", ".pdf"))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left behind
    scores = result["attention_scores"]["trained"]
    assert sum(scores["counts"]) == scores["scores"] > 0
    assert 0 <= scores["fraction_below_0.1"] <= 1 and 0 <= scores["fraction_above_0.9"] <= 1
    for model_name in ("trained", "untrained"):
        hbb = result["fractions"]["between_subjets"][model_name]["Hbb"]
        assert hbb["jets"] == 120 and hbb["entries"] == sum(hbb["counts"]) == 120 * 2 * 2  # jets x heads x layers
        assert len(hbb["bin_edges"]) == len(hbb["counts"]) + 1 and 0 <= hbb["mean"] <= 1
    fractions = result["fractions"]["between_subjets"]
    assert fractions["trained"]["Hbb"]["mean"] != fractions["untrained"]["Hbb"]["mean"]
    maps = result["mean_maps"]["maps"]["Hbb"]["mod.blocks.1.attn"]
    assert np.array(maps, dtype=float).shape == (2, 30, 30)
    graph = result["graphs"]["Hbb"]
    assert len(graph["deta"]) == len(graph["subjet"]) == len(graph["types"]) and set(graph["subjet"]) == {0, 1}
    cam = np.array(result["gradcam"]["maps"]["Hbb"], dtype=float)
    assert result["gradcam"]["layer"] == "mod.blocks.1" and 0 < cam.sum() <= 1 + 1e-6
    skipped = " ".join(result["skipped"])
    assert "lack part_isElectron" in skipped and "graph of Tbl: no such jets" in skipped
    assert "classes without jets in the files: QCD, Hcc" in skipped


def test_missing_file_is_one_line(tmp_path, capsys):
    code = main(
        [
            str(tmp_path / "x.pt"),
            "--network",
            "n.py",
            "--data-config",
            str(JETCLASS_YAML),
            "--files",
            str(tmp_path / "no.root"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 1
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'no.root'}: no such file (1 of --files missing)"


def test_the_command_line_defaults_are_the_configs(tmp_path):
    required = {"checkpoint": tmp_path / "c.pt", "network": tmp_path / "n.py", "data_config": JETCLASS_YAML}
    required |= {"files": [tmp_path / "a.root"], "out": tmp_path / "out"}
    argv = [str(required["checkpoint"]), "--network", str(required["network"]), "--data-config", str(JETCLASS_YAML)]
    argv += ["--files", str(required["files"][0]), "--out", str(required["out"])]
    assert config_from(parser().parse_args(argv), "cmd") == ExplainConfig(**required, command="cmd")
    options = ["--network-option", "num_heads", "2", "--background", "label_QCD", "--object-names", "a", "b"]
    config = config_from(parser().parse_args(argv + options), "")
    assert config.network_options == {"num_heads": 2} and config.background == ("label_QCD",)
    assert config.object_names == ("a", "b")
    with pytest.raises(ToolError, match="--num-jets and --batch-size must be positive"):
        ExplainConfig(**required, batch_size=0)


def test_recording_runs_each_layer_once_and_eagerly():
    """Options that split a batch over several calls of a layer, compile it, or average the jet with its mirror
    image are set off where given; none is added (a network file that does not know them would refuse them)."""
    given = {"buckets": 4, "packed": 1, "compile": 1, "mirror": ["part_dphi"], "num_heads": 2}
    assert recording_options(given) == {"buckets": 1, "packed": False, "num_heads": 2}
    assert recording_options({"config": "model_3"}) == {"config": "model_3"}


def test_classes_and_background_come_from_the_data_config(repo):
    jetclass = class_names(JETCLASS_YAML)
    assert jetclass == ["QCD", "Hbb", "Hcc", "Hgg", "H4q", "Hqql", "Zqq", "Wqq", "Tbqq", "Tbl"]
    assert class_names(TOP_YAML) == ["Top", "QCD"]
    dihiggs = class_names(repo / "data/DiHiggs/dihiggs.yaml")
    quark_gluon = class_names(repo / "data/QuarkGluon/qg_kin.yaml")
    assert dihiggs == ["signal", "background"] and quark_gluon == ["Q", "G"]
    # by default the classes named QCD, and where there is none every class but the first
    assert background_classes(jetclass).tolist() == [True] + [False] * 9
    assert background_classes(class_names(TOP_YAML)).tolist() == [False, True]
    assert background_classes(dihiggs).tolist() == background_classes(quark_gluon).tolist() == [False, True]
    assert background_classes(jetclass, ("label_QCD", "Zqq")).tolist() == [i in (0, 6) for i in range(10)]
    assert background_classes(dihiggs, ("signal",)).tolist() == [True, False]
    with pytest.raises(ToolError, match=r"--background Top: not a class of the data config \(QCD, Hbb, "):
        background_classes(jetclass, ("QCD", "Top"))


def test_a_background_that_is_no_class_is_one_line_before_any_work(tmp_path, capsys):
    (tmp_path / "jets.root").write_bytes(b"")
    network = ["--network", str(tmp_path / "none.py"), "--data-config", str(TOP_YAML)]
    files = ["--files", str(tmp_path / "jets.root"), "--out", str(tmp_path / "out")]
    assert main([str(tmp_path / "none.pt"), *network, *files, "--background", "label_Hbb"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --background label_Hbb: not a class of the data config (Top, QCD)"]


@pytest.mark.slow  # explains real jets three times over
@pytest.mark.requiresdata
def test_collect_gives_the_numbers_and_render_draws_them(hbb_sample, tmp_path, monkeypatch):
    """collect writes nothing; render draws what it collected and writes it as explain.json. A network trained
    with length buckets is recorded with one call per layer: the same numbers as without."""
    from jetattn.explain import collect as collect_module
    from jetattn.weaver import build_network

    network = REPO / "networks/example_ParticleTransformer.py"
    torch.manual_seed(1)
    model, _ = build_network(network, JETCLASS_YAML, TINY_PART, False)
    torch.save(model.state_dict(), tmp_path / "part.pt")
    settings = {"checkpoint": tmp_path / "part.pt", "network": network, "data_config": JETCLASS_YAML}
    settings |= {"files": [hbb_sample], "out": tmp_path / "out", "num_jets": 40, "batch_size": 16}
    config = ExplainConfig(**settings, network_options=TINY_PART)
    collected = collect(config)
    assert not config.out.exists()
    assert collected.jets_per_class == {"Hbb": 40} and collected.layers == ["mod.blocks.0.attn", "mod.blocks.1.attn"]
    assert collected.mean_maps["Hbb"]["mod.blocks.1.attn"].shape == (2, 30, 30)
    assert collected.gradcam_maps["Hbb"].shape == (32, 32) and set(collected.scores) == {"trained", "untrained"}
    bucketed = collect(ExplainConfig(**settings, network_options={**TINY_PART, "buckets": 3}))
    np.testing.assert_array_equal(
        bucketed.mean_maps["Hbb"]["mod.blocks.1.attn"], collected.mean_maps["Hbb"]["mod.blocks.1.attn"]
    )
    assert bucketed.scores == collected.scores and bucketed.fractions == collected.fractions
    monkeypatch.setattr(collect_module, "recording_options", lambda options: options)  # buckets kept at 3
    with pytest.raises(ToolError, match=r"^mod.blocks.0.attn: 3 attention calls in one forward; explain reads one"):
        collect(ExplainConfig(**settings, network_options={**TINY_PART, "buckets": 3}))
    result = render(collected, config)
    assert json.loads((config.out / "explain.json").read_text()) == json.loads(json.dumps(result))
    assert sorted(p.name for p in config.out.iterdir()) == sorted([*result["files"], "explain.json"])
    assert result["mean_maps"]["maps"]["Hbb"]["mod.blocks.0.attn"][0][0][0] == pytest.approx(
        collected.mean_maps["Hbb"]["mod.blocks.0.attn"][0, 0, 0], abs=1e-6
    )

"""Int8 ParT (jetattn.quantize): every Linear converted, outputs close to float32, save/load, ONNX int8, the CLI."""

import json
import logging
import warnings

import numpy as np
import pytest
import torch
from weaver_run import REPO, SMALL_OPTIONS, TOP_YAML

from jetattn import quantize
from jetattn.measure import weaver_inputs
from jetattn.weaver import build_network

NETWORK = REPO / "networks/example_ParticleTransformer.py"
OPTIONS = SMALL_OPTIONS["ParticleTransformer"]
CLI_OPTIONS = [arg for name, value in OPTIONS.items() for arg in ("--network-option", name, repr(value))]

warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated")  # torch 2.13 on quantize_dynamic


@pytest.fixture(scope="module")
def tiny():
    """A tiny ParT through our network file with the TopLandscape YAML, BatchNorm statistics trained-looking."""
    torch.manual_seed(0)
    model, info = build_network(NETWORK, TOP_YAML, OPTIONS)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_(0, 0.5)
    return model.eval(), info


@pytest.fixture(scope="module")
def jets(tiny):
    return weaver_inputs(tiny[1], 64, seed=3)


def test_every_linear_becomes_int8_and_scores_stay_close(tiny, jets):
    model, _ = tiny
    int8 = quantize.quantize_int8(model)
    assert quantize.count_linears(model) == 13  # embed 2, particle block 5, class block 5, classifier 1
    assert quantize.count_int8_linears(int8) == quantize.count_linears(model)
    assert quantize.count_linears(int8) == 0
    attention = int8.mod.blocks[0].attn
    assert all(
        type(getattr(attention, n)).__module__.startswith("torch.ao.nn.quantized.dynamic")
        for n in ("q_proj", "kv_proj", "out_proj")
    )
    with torch.no_grad():
        expected, got = model(*jets), int8(*jets)
    assert (got - expected).abs().max().item() < 0.05
    assert (got.argmax(1) == expected.argmax(1)).float().mean().item() >= 0.95
    assert quantize.serialized_bytes(int8) < quantize.serialized_bytes(model)


def test_version_3_5_every_linear_becomes_int8(jets):
    """weaver-core's version 3.5 adds SwiGLU gates (fc1_g) and attention output gates (gate_proj): Linears too."""
    torch.manual_seed(0)
    model, _ = build_network(NETWORK, TOP_YAML, {**OPTIONS, "version": 3.5})
    int8 = quantize.quantize_int8(model)
    # embed 2, particle block 7 (q, kv, out, gate, fc1, fc1_g, fc2), class block 7, classifier 1
    assert quantize.count_linears(model) == 17
    assert quantize.count_int8_linears(int8) == 17 and quantize.count_linears(int8) == 0
    block = int8.mod.blocks[0]
    assert all(
        type(m).__module__.startswith("torch.ao.nn.quantized.dynamic") for m in (block.attn.gate_proj, block.fc1_g)
    )
    with torch.no_grad():
        expected, got = model(*jets), int8(*jets)
    assert (got - expected).abs().max().item() < 0.05


def test_weaver_part_attention_breaks_under_quantize_dynamic():
    """weaver's attention hands `in_proj.weight` to F._in_projection_packed; the int8 Linear has no such tensor."""
    from weaver.nn.model.ParticleTransformer import ParticleTransformer as WeaverParT

    logging.getLogger("weaver").setLevel(logging.WARNING)
    torch.manual_seed(1)
    cfg = dict(
        input_dim=7,
        num_classes=2,
        embed_dims=(16, 16),
        pair_embed_dims=(8, 8),
        num_heads=2,
        num_layers=1,
        num_cls_layers=1,
        fc_params=[],
    )
    int8 = quantize.quantize_int8(WeaverParT(**cfg))
    assert quantize.count_int8_linears(int8) == 11  # in_proj is converted too...
    assert callable(int8.blocks[0].attn.in_proj.weight)  # ...and its weight is now a method, not a tensor
    x, v, mask = weaver_inputs(
        {
            "input_names": ["pf_features", "pf_vectors", "pf_mask"],
            "input_shapes": {"pf_features": (1, 7, 20), "pf_vectors": (1, 4, 20), "pf_mask": (1, 1, 20)},
        },
        4,
    )
    with pytest.raises(TypeError, match="must be Tensor, not method"), torch.no_grad():
        int8(x, v, mask)


def test_int8_model_saves_and_loads_back(tiny, jets, tmp_path):
    model, _ = tiny
    int8 = quantize.quantize_int8(model)
    path = tmp_path / "int8.pt"
    quantize.save_int8(path, int8, NETWORK, TOP_YAML, OPTIONS)
    assert [p.name for p in tmp_path.iterdir()] == ["int8.pt"]  # no temporary file left beside it
    loaded = quantize.load_int8(path)  # torch.load(weights_only=True): nothing in the file runs
    assert quantize.count_int8_linears(loaded) == 13
    with torch.no_grad():
        torch.testing.assert_close(loaded(*jets), int8(*jets), atol=0, rtol=0)


def test_onnx_int8_runs_in_onnxruntime_and_agrees_with_float32(tiny, jets, tmp_path):
    pytest.importorskip("onnxruntime")
    model, info = tiny
    quantize.export_onnx(model, info, tmp_path / "fp32.onnx")
    ops = quantize.quantize_onnx(tmp_path / "fp32.onnx", tmp_path / "int8.onnx")
    assert ops.get("MatMulInteger", 0) == quantize.count_linears(model)  # every Linear's matmul is int8
    got = quantize.predict_onnx(tmp_path / "int8.onnx", info["input_names"], list(jets))
    with torch.no_grad():
        expected = model(*jets).numpy()
    assert np.abs(got - expected).max() < 0.05
    np.testing.assert_allclose(got.sum(1), 1, atol=1e-5)


def test_bf16_autocast_inference_is_close(tiny, jets):
    model, _ = tiny
    with quantize.autocast_inference(model, "cpu"):
        got = model(*jets)
        assert not torch.is_grad_enabled()
    with torch.no_grad():
        assert (got.float() - model(*jets)).abs().max().item() < 0.05


def test_help():
    with pytest.raises(SystemExit) as exit_info:
        quantize.main(["--help"])
    assert exit_info.value.code == 0


def run_cli(capsys, *args):
    code = quantize.main([str(a) for a in args])
    return code, capsys.readouterr()


def test_cli_errors_are_one_line(tiny, tmp_path, capsys):
    model, _ = tiny
    common = ["--network", NETWORK, "--data-config", TOP_YAML, *CLI_OPTIONS, "-o", tmp_path / "out.pt"]
    code, out = run_cli(capsys, tmp_path / "nope.pt", *common)
    assert code == 1 and out.err == f"error: {tmp_path / 'nope.pt'}: no such checkpoint\n"

    not_a_network = tmp_path / "net.py"
    not_a_network.write_text("x = 1\n")
    torch.save(model.state_dict(), tmp_path / "ok.pt")
    code, out = run_cli(capsys, tmp_path / "ok.pt", "--network", not_a_network, *common[2:])
    assert code == 1 and out.err.count("\n") == 1 and f"{not_a_network}: not a weaver network file" in out.err

    state = model.state_dict()
    state.pop("mod.blocks.0.attn.q_proj.weight")
    state["mod.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pt")
    code, out = run_cli(capsys, tmp_path / "bad.pt", *common)
    assert code == 1 and out.err.count("\n") == 1
    assert f"{tmp_path / 'bad.pt'}: does not load strictly" in out.err
    assert "mod.blocks.0.attn.q_proj.weight" in out.err and "mod.extra.weight" in out.err
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.requiresdata
@pytest.mark.slow  # the whole CLI, ONNX export included
def test_cli_end_to_end_on_real_top_jets(real_data, tiny, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    model, _ = tiny
    torch.save(model.state_dict(), tmp_path / "float.pt")
    code, out = run_cli(
        capsys,
        tmp_path / "float.pt",
        "--network",
        NETWORK,
        "--data-config",
        TOP_YAML,
        *CLI_OPTIONS,
        "-o",
        tmp_path / "int8.pt",
        "--onnx",
        tmp_path / "int8.onnx",
        "--json",
        tmp_path / "q.json",
        "--eval",
        real_data / "TopLandscape_sample_1000.root",
        "--num-jets",
        200,
        "--bf16",
    )
    assert code == 0, out.err
    assert "13 of 13 nn.Linear layers quantized" in out.out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["float.pt", "int8.onnx", "int8.pt", "q.json"]
    result = json.loads((tmp_path / "q.json").read_text())
    assert result["num_jets"] == 200 and result["auc_kind"] == "jet_isTop vs jet_isQCD"
    assert set(result["results"]) == {"float32", "torch_int8", "onnx_float32", "onnx_int8", "bfloat16"}
    assert result["differences"]["onnx_float32"]["max_abs_score_diff"] < 1e-4  # the export itself is exact
    for name, metrics in result["results"].items():
        assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["auc"] <= 1, name
    for delta in result["differences"].values():  # the verdict follows from the numbers
        assert delta["meets_target"] == (abs(delta["delta_accuracy"]) <= 0.002 and abs(delta["delta_auc"]) <= 0.001)

"""Every place that takes a checkpoint reads the layouts weaver has written, through the command line.

A ParT built as the public recipe builds it (weaver's class, ``tests/recipes``), its weights perturbed, is saved
three ways: as the official ``ParT_*.pt`` files are (``nn.MultiheadAttention``'s ``in_proj_weight``), as
weaver-core 0.5 writes it (``in_proj.weight``), and as our own model writes it (``q_proj``/``kv_proj``). Each tool
(explain, quantize with --eval and --onnx, topk_scan), fine-tuning through the train scripts and the checkpoint
verification of ``./get_datasets.py models`` must take the first two and give the figures of the third.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from weaver.utils.data.config import DataConfig
from weaver_run import JETCLASS_YAML, REPO, load_keys_report, load_network, official_layout, perturbed, reference

from jetattn.deps import ToolError
from jetattn.weaver import load_checkpoint

pytestmark = [pytest.mark.requiresdata, pytest.mark.slow]

NETWORK = REPO / "networks" / "example_ParticleTransformer.py"
# the recipe's ParT, smaller: both weaver's class and ours take these settings
SMALL = {"embed_dims": [16, 16], "pair_embed_dims": [8, 8], "num_heads": 2, "num_layers": 2, "num_cls_layers": 1}
OPTION_ARGS = [arg for name, value in SMALL.items() for arg in ("--network-option", name, repr(value))]
WEAVER_LAYOUTS = ("official", "weaver-0.5")
# what differs between two runs of a tool, whatever the weights
RUN_ONLY = {"checkpoint", "command", "jets_per_s", "seconds"}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """The same perturbed recipe ParT (JetClass kin) in each layout: {layout: file}."""
    folder = tmp_path_factory.mktemp("checkpoints")
    data_config = DataConfig.load(str(JETCLASS_YAML), load_observers=False)
    torch.manual_seed(5)
    recipe, _ = reference("ParticleTransformer").get_model(data_config, **SMALL)
    weaver_state = perturbed(recipe, seed=6, num_classes=len(data_config.label_value)).state_dict()
    assert any(key.endswith("attn.in_proj.weight") for key in weaver_state)  # weaver-core 0.5's own layout
    ours, _ = load_network(NETWORK).get_model(data_config, **SMALL)
    ours.load_state_dict(weaver_state, strict=True)
    states = {"official": official_layout(weaver_state), "weaver-0.5": weaver_state, "ours": ours.state_dict()}
    assert any(key.endswith("attn.in_proj_weight") for key in states["official"])
    assert not any("in_proj" in key for key in states["ours"])
    paths = {}
    for layout, state in states.items():
        paths[layout] = folder / f"ParT_{layout}.pt"
        torch.save(state, paths[layout])
    return paths


def without(value, keys: set[str]):
    """``value`` (JSON) without the entries named ``keys`` at any depth: timings differ from run to run."""
    if isinstance(value, dict):
        return {k: without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [without(v, keys) for v in value]
    return value


def assert_same_figures(got, expected, path: str = "") -> None:
    if isinstance(expected, dict):
        assert set(got) == set(expected), path
        for key in expected:
            assert_same_figures(got[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), path
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert_same_figures(a, b, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-6), path
    else:
        assert got == expected, path


def run_explain(checkpoint: Path, files: Path, out: Path) -> dict:
    from jetattn.explain.__main__ import main

    code = main(
        [
            str(checkpoint),
            "--network",
            str(NETWORK),
            "--data-config",
            str(JETCLASS_YAML),
            *OPTION_ARGS,
            "--files",
            str(files),
            "--num-jets",
            "60",
            "--no-compare-untrained",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return json.loads((out / "explain.json").read_text())


def run_quantize(checkpoint: Path, files: Path, out: Path, network: Path = NETWORK, options=OPTION_ARGS) -> dict:
    from jetattn.quantize import main

    out.mkdir(parents=True, exist_ok=True)
    code = main(
        [
            str(checkpoint),
            "--network",
            str(network),
            "--data-config",
            str(JETCLASS_YAML),
            *options,
            "-o",
            str(out / "int8.pt"),
            "--onnx",
            str(out / "int8.onnx"),
            "--eval",
            str(files),
            "--num-jets",
            "200",
            "--json",
            str(out / "q.json"),
        ]
    )
    assert code == 0
    assert (out / "int8.pt").is_file() and (out / "int8.onnx").is_file()
    return json.loads((out / "q.json").read_text())


def run_topk_scan(checkpoint: Path, files: Path, out: Path) -> dict:
    from jetattn.topk_scan import main

    code = main(
        [
            str(checkpoint),
            "--data-config",
            str(JETCLASS_YAML),
            "--files",
            str(files),
            *OPTION_ARGS,
            "--k",
            "1",
            "4",
            "all",
            "--num-jets",
            "200",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return json.loads((out / "topk.json").read_text())


@pytest.fixture(scope="module")
def our_layout_figures(checkpoints, ten_class_sample, tmp_path_factory) -> dict:
    """What each tool gives on the checkpoint saved in our own layout: the reference of the tests below."""
    out = tmp_path_factory.mktemp("ours")
    path = checkpoints["ours"]
    return {
        "explain": run_explain(path, ten_class_sample, out / "explain"),
        "quantize": run_quantize(path, ten_class_sample, out / "quantize"),
        "topk_scan": run_topk_scan(path, ten_class_sample, out / "topk"),
    }


@pytest.mark.parametrize("layout", WEAVER_LAYOUTS)
def test_explain_takes_weaver_layouts(layout, checkpoints, ten_class_sample, our_layout_figures, tmp_path):
    figures = run_explain(checkpoints[layout], ten_class_sample, tmp_path)
    assert_same_figures(without(figures, RUN_ONLY), without(our_layout_figures["explain"], RUN_ONLY))
    assert list(tmp_path.glob("attention_maps_*.png")), "no attention maps drawn"


@pytest.mark.parametrize("layout", WEAVER_LAYOUTS)
def test_quantize_takes_weaver_layouts(layout, checkpoints, ten_class_sample, our_layout_figures, tmp_path):
    figures = run_quantize(checkpoints[layout], ten_class_sample, tmp_path)
    assert figures["int8_linear_layers"] == figures["linear_layers"] > 0
    assert figures["differences"]["onnx_float32"]["max_abs_score_diff"] < 1e-4
    assert_same_figures(without(figures, RUN_ONLY), without(our_layout_figures["quantize"], RUN_ONLY))


@pytest.mark.parametrize("layout", WEAVER_LAYOUTS)
def test_topk_scan_takes_weaver_layouts(layout, checkpoints, ten_class_sample, our_layout_figures, tmp_path):
    figures = run_topk_scan(checkpoints[layout], ten_class_sample, tmp_path)
    assert [row["k"] for row in figures["rows"]] == ["1", "4", "all"]
    assert_same_figures(without(figures, RUN_ONLY), without(our_layout_figures["topk_scan"], RUN_ONLY))


def test_quantize_takes_the_official_particlenet(shared_models, ten_class_sample, tmp_path):
    """The official ParticleNet_kin.pt (full size) through quantize: every Linear int8, the ONNX export exact."""
    figures = run_quantize(
        shared_models / "ParticleNet_kin.pt",
        ten_class_sample,
        tmp_path,
        network=REPO / "networks" / "example_ParticleNet.py",
        options=[],
    )
    assert figures["int8_linear_layers"] == figures["linear_layers"] > 0
    assert figures["differences"]["onnx_float32"]["max_abs_score_diff"] < 1e-4
    assert figures["differences"]["torch_int8"]["max_abs_score_diff"] < 0.05


def test_explain_refuses_particlenet_in_one_line(shared_models, ten_class_sample, tmp_path, capsys):
    """ParticleNet has no attention to explain: said in one line, after the checkpoint loaded."""
    from jetattn.explain.__main__ import main

    code = main(
        [
            str(shared_models / "ParticleNet_kin.pt"),
            "--network",
            str(REPO / "networks/example_ParticleNet.py"),
            "--data-config",
            str(JETCLASS_YAML),
            "--files",
            str(ten_class_sample),
            "--num-jets",
            "20",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "no particle attention blocks" in err[0], err


def test_one_loader_refuses_in_one_line_and_leaves_the_model_unchanged(checkpoints, tmp_path):
    data_config = DataConfig.load(str(JETCLASS_YAML), load_observers=False)
    model, _ = load_network(NETWORK).get_model(data_config, **SMALL)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    official = torch.load(checkpoints["official"], weights_only=True)

    renamed = dict(official)
    renamed["mod.blocks.1.attn.in_proj_weigth"] = renamed.pop("mod.blocks.1.attn.in_proj_weight")
    torch.save(renamed, tmp_path / "renamed.pt")
    with pytest.raises(ToolError) as err:
        load_checkpoint(model, tmp_path / "renamed.pt")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / 'renamed.pt'}: does not load strictly")
    assert "mod.blocks.1.attn.kv_proj.weight" in message and "in_proj_weigth" in message

    other_width = dict(official)
    other_width["mod.blocks.0.attn.in_proj_weight"] = torch.zeros(3 * 16 + 3, 16)
    torch.save(other_width, tmp_path / "width.pt")
    with pytest.raises(ToolError, match=r"width.pt: does not load strictly .*size mismatch for mod\.blocks\.0\.attn"):
        load_checkpoint(model, tmp_path / "width.pt")
    for key, value in model.state_dict().items():  # a refused checkpoint leaves nothing half-loaded
        assert torch.equal(value, before[key]), key

    load_checkpoint(model, f"{checkpoints['official']}")  # and the good one loads
    assert not torch.equal(model.state_dict()["mod.cls_token"], before["mod.cls_token"])
    wrapped = tmp_path / "wrapped.pt"  # weaver's FILE:PREFIX
    torch.save({"teacher." + k: v for k, v in official.items()}, wrapped)
    fresh, _ = load_network(NETWORK).get_model(data_config, **SMALL)
    load_checkpoint(fresh, f"{wrapped}:teacher")
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


@pytest.mark.parametrize("layout", WEAVER_LAYOUTS)
def test_finetuning_through_the_train_script_loads_every_pretrained_weight(layout, checkpoints, real_data, tmp_path):
    """``PRETRAINED=... ./train_TopLandscape.sh ParT-FineTune``: weaver's --load-model-weights (strict=False) must
    load the whole backbone: only the fresh head is missing, only the JetClass classifier left over."""
    top = tmp_path / "top"
    top.mkdir()
    for split in ("train", "val", "test"):
        (top / f"{split}_file.root").symlink_to(real_data / "TopLandscape_sample_1000.root")
    env = {
        **os.environ,
        "PRETRAINED": str(checkpoints[layout]),
        "DATADIR_TopLandscape": str(top),
        "GPUS": "",
        "PYTHON": str(Path(os.sys.executable)),
    }
    env["PATH"] = f"{Path(os.sys.executable).parent}:{env['PATH']}"
    cmd = [
        str(REPO / "train_TopLandscape.sh"),
        "ParT-FineTune",
        "kin",
        *OPTION_ARGS,
        "--num-epochs",
        "1",
        "--batch-size",
        "16",
        "--samples-per-epoch",
        "32",
        "--samples-per-epoch-val",
        "16",
        "--data-fraction",
        "0.1",
        "--model-prefix",
        str(tmp_path / "run/net"),
        "--log-file",
        str(tmp_path / "run/train.log"),
        "--predict-output",
        str(tmp_path / "pred.root"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    missing, unexpected = load_keys_report(log)
    assert sorted(missing) == ["fc.0.bias", "fc.0.weight"]
    assert sorted(unexpected) == ["mod.fc.0.bias", "mod.fc.0.weight"]
    assert (tmp_path / "run").is_dir() and list((tmp_path / "run").glob("net_*state.pt"))

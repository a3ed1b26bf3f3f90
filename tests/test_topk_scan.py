"""The top-k table: one dense checkpoint under several k, the ParT paper's JetClass columns, files written."""

import json

import numpy as np
import pytest
import torch
from weaver.utils.data.config import DataConfig
from weaver_run import JETCLASS_YAML, REPO, load_network

from jetattn.metrics import JETCLASS_SIGNAL_EFFS, jetclass_metrics
from jetattn.topk_scan import main

SMALL = {"embed_dims": [16, 16], "pair_embed_dims": [8], "num_heads": 2, "num_layers": 1, "num_cls_layers": 1}


def test_jetclass_metrics_perfect_and_blind_taggers():
    classes = list(DataConfig.load(str(JETCLASS_YAML), load_observers=False).label_value)
    labels = np.arange(2000) % len(classes)
    perfect = np.eye(len(classes))[labels] * 0.9 + 0.01
    result = jetclass_metrics(perfect, labels, classes)
    assert result["accuracy"] == 1.0 and result["auc"] == 1.0
    assert all(np.isinf(result["rej_" + c.removeprefix("label_")]) for c in JETCLASS_SIGNAL_EFFS)
    blind = np.full((2000, len(classes)), 0.1)  # every jet the same score: 1/ε_B = 1/ε_S
    result = jetclass_metrics(blind, labels, classes)
    assert result["auc"] == pytest.approx(0.5)
    assert result["rej_Hbb"] == pytest.approx(1 / 0.5) and result["rej_Tbl"] == pytest.approx(1 / 0.995)


@pytest.mark.requiresdata
@pytest.mark.parametrize("version", [1, 3.5])
def test_scan_of_a_dense_checkpoint(ten_class_sample, tmp_path, version):
    data_config = DataConfig.load(str(JETCLASS_YAML), load_observers=False)
    torch.manual_seed(0)
    small = {**SMALL, "version": version}
    dense, info = load_network(REPO / "networks/example_ParticleTransformer.py").get_model(data_config, **small)
    checkpoint = tmp_path / "dense.pt"
    torch.save(dense.state_dict(), checkpoint)

    options = [arg for name, value in small.items() for arg in ("--network-option", name, repr(value))]
    code = main(
        [
            str(checkpoint),
            "--data-config",
            str(JETCLASS_YAML),
            "--files",
            str(ten_class_sample),
            *options,
            "--k",
            "1",
            "3",
            "all",
            "--num-jets",
            "300",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    rows = json.loads((tmp_path / "out/topk.json").read_text())["rows"]
    assert [r["k"] for r in rows] == ["1", "3", "all"]
    table = (tmp_path / "out/topk.md").read_text()
    assert "| k | accuracy | AUC | Hbb | Hcc | Hgg | H4q | Hqql | Zqq | Wqq | Tbqq | Tbl |" in table

    # k = all is the dense model: the same figures as its own scores give
    from jetattn.weaver import load_jets

    inputs, labels = load_jets(JETCLASS_YAML, [ten_class_sample], 300)
    with torch.no_grad():
        scores = torch.softmax(dense.eval()(*(inputs[k] for k in info["input_names"])), dim=1).numpy()
    expected = jetclass_metrics(scores, labels.numpy(), list(data_config.label_value))
    assert rows[2]["accuracy"] == pytest.approx(expected["accuracy"])
    assert rows[2]["auc"] == pytest.approx(expected["auc"], abs=1e-6)
    assert rows[0]["auc"] != pytest.approx(rows[2]["auc"], abs=1e-6)  # top-1 is another model


def test_bad_k_is_one_line(tmp_path, capsys):
    assert (
        main(
            [
                str(tmp_path / "x.pt"),
                "--data-config",
                str(JETCLASS_YAML),
                "--files",
                str(tmp_path / "x.root"),
                "--k",
                "0",
                "--out",
                str(tmp_path),
            ]
        )
        == 1
    )
    assert capsys.readouterr().err.strip() == "error: --k 0: give positive integers or 'all'"

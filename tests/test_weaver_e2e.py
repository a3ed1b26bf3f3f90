"""weaver end to end on real jets, for every ``networks/example_*.py``: train, predict, export to ONNX,
fine-tune from a JetClass checkpoint; and the official ParticleNet_kin.pt on real H->bb jets."""

from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
import yaml
from weaver.utils.data.config import DataConfig
from weaver_run import (
    JETCLASS_YAML,
    NETWORKS,
    REPO,
    SMALL_OPTIONS,
    SMALL_PART,
    TOP_YAML,
    base_name,
    load_keys_report,
    load_network,
    option_args,
    read_predictions,
    real_batch,
    short_training,
    weaver,
)

pytestmark = pytest.mark.requiresdata


def _classes(data_config: Path) -> list[str]:
    return list(DataConfig.load(str(data_config), load_observers=False).label_value)


def _finetune_start(network: Path, options: dict, tmp_path: Path, request) -> tuple[Path, dict, float, list[str]]:
    """Checkpoint, network options, fraction of the jets and extra weaver arguments of a fine-tuning run.

    ParticleNet starts from the official JetClass checkpoint (full size, so on fewer jets in smaller batches);
    any other network from its base network built for JetClass's 10 classes.
    """
    if base_name(network) == "ParticleNet":
        checkpoint = request.getfixturevalue("shared_models") / "ParticleNet_kin.pt"
        # fine-tuned here for deployment through ONNX: neighbours that agree between PyTorch and onnxruntime
        return checkpoint, {"knn_exclude_self": True}, 0.05, ["--batch-size", "8", "--samples-per-epoch", "16"]
    base = load_network(network.with_name(network.name.replace("_finetune", "")))
    model, _ = base.get_model(DataConfig.load(str(JETCLASS_YAML), load_observers=False), **options)
    checkpoint = tmp_path / "jetclass_state.pt"
    torch.save(model.state_dict(), checkpoint)
    return checkpoint, options, 0.2, []


# every network file with its small options, and ParT as weaver-core's version 3.5 (RMSNorm, SwiGLU, QK-norm,
# element-wise output gate; RMSNorm exported as weaver does)
E2E_CASES = [pytest.param(n, SMALL_OPTIONS.get(base_name(n), {}), id=n.stem) for n in NETWORKS] + [
    pytest.param(
        REPO / "networks" / "example_ParticleTransformer.py",
        {**SMALL_PART, "version": 3.5},
        id="example_ParticleTransformer-v3.5",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("network, options", E2E_CASES)
def test_train_predict_export(network: Path, options: dict, real_data: Path, tmp_path: Path, request):
    top = real_data / "TopLandscape_sample_1000.root"
    fraction, extra = 0.2, []  # of the 1000 jets: training takes 80% of them, validation and prediction 20%
    checkpoint = None
    if network.stem.endswith("_finetune"):
        checkpoint, options, fraction, extra = _finetune_start(network, options, tmp_path, request)
        extra += ["--load-model-weights", str(checkpoint)]

    # train a few steps and predict, in one weaver call
    log = short_training(network, options, top, tmp_path, fraction, *extra)
    scores = read_predictions(tmp_path / "pred.root", _classes(TOP_YAML))
    assert len(scores) == int(1000 * fraction)
    assert np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()
    np.testing.assert_allclose(scores.sum(axis=1), 1, atol=1e-5)

    if checkpoint is not None:  # only the fresh head may miss weights: the whole backbone was loaded
        missing, unexpected = load_keys_report(log)
        loaded = torch.load(checkpoint, map_location="cpu").keys()
        heads = {key.split(".")[0] for key in missing}
        assert len(heads) == 1, f"weights missing outside one fresh head: {missing}"
        assert not any(key.split(".")[0] in heads for key in loaded), f"the head {heads} is in the checkpoint"
        if base_name(network) == "ParticleNet":
            assert missing == ["fc_out.weight", "fc_out.bias"]
            assert sorted(unexpected) == ["mod.fc.1.bias", "mod.fc.1.weight"]  # the JetClass classifier

    # export to ONNX and compare with PyTorch on real jets with padding, at sizes other than the trace's
    state = tmp_path / "net_best_epoch_state.pt"
    weaver(
        "--export-onnx",
        tmp_path / "net.onnx",
        "--data-config",
        TOP_YAML,
        "--network-config",
        network,
        *option_args(options),
        "--model-prefix",
        state,
    )
    data_config = DataConfig.load(str(TOP_YAML), load_observers=False)
    model, info = load_network(network).get_model(data_config, for_inference=True, **options)
    model.load_state_dict(torch.load(state, map_location="cpu"))
    model.eval()
    session = onnxruntime.InferenceSession(str(tmp_path / "net.onnx"))
    assert [i.name for i in session.get_inputs()] == info["input_names"]
    batch = real_batch(TOP_YAML, [top], 16)
    # ParticleNet's later EdgeConvs pick neighbours in feature space; with knn_exclude_self their distances are
    # float64 and exact ties go by index, so onnxruntime and PyTorch pick the same ones (in float32 one fine-tuned
    # jet once moved by 1.4e-4)
    for n_jets, n_particles in ((16, 128), (5, 48)):
        inputs = {name: batch[name][:n_jets, :, :n_particles] for name in info["input_names"]}
        assert (inputs["pf_mask"] == 0).any(), "the batch should hold padded slots"
        with torch.no_grad():
            expected = model(*inputs.values()).numpy()
        (onnx_scores,) = session.run(None, {name: x.numpy() for name, x in inputs.items()})
        np.testing.assert_allclose(onnx_scores, expected, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_official_particlenet_kin_on_real_hbb(hbb_sample: Path, shared_models: Path, tmp_path: Path):
    """The official checkpoint, our network file and our YAML together find H->bb in about half the real H->bb
    jets (kinematics alone confuse it with H->cc and H->gg); features in the wrong order do not."""
    network = REPO / "networks" / "example_ParticleNet.py"
    checkpoint = shared_models / "ParticleNet_kin.pt"
    data_config = DataConfig.load(str(JETCLASS_YAML), load_observers=False)
    model, info = load_network(network).get_model(data_config)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu"), strict=True)

    classes = _classes(JETCLASS_YAML)
    weaver(
        "--predict",
        "--data-config",
        JETCLASS_YAML,
        "--network-config",
        network,
        "--model-prefix",
        checkpoint,
        "--data-test",
        hbb_sample,
        "--data-fraction",
        "0.2",
        "--batch-size",
        "100",
        "--predict-output",
        tmp_path / "pred.root",
    )
    scores = read_predictions(tmp_path / "pred.root", classes)
    hbb_fraction = float((scores.argmax(axis=1) == classes.index("label_Hbb")).mean())
    print(f"official ParticleNet_kin.pt: {hbb_fraction:.1%} of {len(scores)} real H->bb jets classified H->bb")
    assert len(scores) == 200
    assert hbb_fraction > 0.35

    # the same jets with the per-particle features in reverse order
    wrong = yaml.safe_load(JETCLASS_YAML.read_text())
    wrong["inputs"]["pf_features"]["vars"].reverse()
    wrong_yaml = tmp_path / "JetClass_kin_reversed.yaml"
    wrong_yaml.write_text(yaml.safe_dump(wrong, sort_keys=False))  # new_variables go in order
    batch = real_batch(wrong_yaml, [hbb_sample], 50)
    model.eval()
    with torch.no_grad():
        wrong_scores = model(*(batch[name] for name in info["input_names"])).numpy()
    wrong_fraction = float((wrong_scores.argmax(axis=1) == classes.index("label_Hbb")).mean())
    print(f"with the features reversed: {wrong_fraction:.1%} classified H->bb")
    assert wrong_fraction < hbb_fraction / 2


@pytest.mark.slow
def test_topk_file_evaluates_a_dense_checkpoint(real_data: Path, tmp_path: Path):
    """``weaver --predict`` with the top-k file on a densely trained ParT checkpoint (loaded strictly: top-k has
    no parameters of its own): top-k over all 128 slots gives the dense file's scores, top-1 other scores."""
    from weaver_run import SMALL_PART

    top = real_data / "TopLandscape_sample_1000.root"
    data_config = DataConfig.load(str(TOP_YAML), load_observers=False)
    dense_file = REPO / "networks" / "example_ParticleTransformer.py"
    torch.manual_seed(12)
    model, _ = load_network(dense_file).get_model(data_config, **SMALL_PART)
    with torch.no_grad():  # spread the logits as a trained model's are, so that the scores differ from jet to jet
        model.mod.fc[-1].weight.mul_(20)
    checkpoint = tmp_path / "dense.pt"
    torch.save(model.state_dict(), checkpoint)

    def predict(network: Path, name: str, **options) -> np.ndarray:
        weaver(
            "--predict",
            "--data-config",
            TOP_YAML,
            "--network-config",
            network,
            *option_args({**SMALL_PART, **options}),
            "--model-prefix",
            checkpoint,
            "--data-test",
            top,
            "--data-fraction",
            "0.2",
            "--batch-size",
            "100",
            "--predict-output",
            tmp_path / f"{name}.root",
        )
        return read_predictions(tmp_path / f"{name}.root", _classes(TOP_YAML))

    topk_file = REPO / "networks" / "example_ParT_topk.py"
    dense = predict(dense_file, "dense")
    every = predict(topk_file, "every", topk=128)
    argmax = predict(topk_file, "argmax", topk=1)
    assert dense.shape == (200, 2) and dense.std(axis=0).max() > 1e-2
    assert np.abs(every - dense).max() <= 1e-5
    assert np.abs(argmax - dense).max() > 1e-3

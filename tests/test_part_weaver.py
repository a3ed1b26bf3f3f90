"""An official-layout ParT checkpoint through weaver's CLI: our network file predicts what weaver's own ParT does."""

import pytest
import torch
from weaver_run import REPO, SMALL_OPTIONS, official_checkpoint, option_args, read_predictions, weaver

# weaver's own ParT in the public repository's wrapper layout, to predict with for comparison
WEAVER_NETWORK = '''
import torch
from weaver.nn.model.ParticleTransformer import ParticleTransformer
from jetattn.weaver import PART_DEFAULTS, model_info


class Wrapper(torch.nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.mod = ParticleTransformer(**kwargs)

    def forward(self, points, features, lorentz_vectors, mask):
        return self.mod(features, v=lorentz_vectors, mask=mask)


def get_model(data_config, **kwargs):
    options = {**PART_DEFAULTS, "input_dim": len(data_config.input_dicts["pf_features"]), **kwargs}
    options["num_classes"] = len(data_config.label_value)
    return Wrapper(**options), model_info(data_config)
'''


@pytest.mark.requiresdata
def test_predict_with_official_layout_checkpoint_matches_weaver(real_data, tmp_path):
    # weaver's pair definition: that is what its (and the official) checkpoints were trained with
    options = {k: v for k, v in SMALL_OPTIONS["ParticleTransformer"].items() if k != "pair_min_delta"}
    checkpoint = official_checkpoint(tmp_path / "ParT_kin.pt", input_dim=7, num_classes=2, **options)
    weaver_net = tmp_path / "weaver_part.py"
    weaver_net.write_text(WEAVER_NETWORK)
    common = ["--predict", "--data-test", real_data / "TopLandscape_sample_1000.root",
              "--data-config", REPO / "data/TopLandscape/top_kin.yaml", "--model-prefix", checkpoint,
              "--batch-size", "200", *option_args(options)]  # fmt: skip
    for name, network in (("ours", REPO / "networks/example_ParticleTransformer.py"), ("weaver", weaver_net)):
        weaver(*common, "--network-config", network, "--predict-output", tmp_path / f"{name}.root")
    classes = ["jet_isTop", "jet_isQCD"]
    ours = read_predictions(tmp_path / "ours.root", classes)
    reference = read_predictions(tmp_path / "weaver.root", classes)
    assert ours.shape == (1000, 2)
    assert abs(ours - reference).max() <= 1e-5
    assert ours.std(axis=0).min() > 1e-3  # the jets are told apart, not a constant output


@pytest.mark.requiresdata
@pytest.mark.parametrize(("sample", "min_delta", "tolerance"), [
    ("QuarkGluon", None, 1e-5),  # Pythia jets: weaver's definition exports exactly
    ("TopLandscape", 1e-5, 1e-5),  # Delphes jets with particles sharing a tower need the floor
])  # fmt: skip
def test_onnx_matches_pytorch_on_real_jets(real_data, sample, min_delta, tolerance, tmp_path):
    import io

    import numpy as np
    import onnxruntime
    from weaver.utils.dataset import DataConfig
    from weaver_run import load_network, real_batch

    yaml = REPO / ("data/TopLandscape/top_kin.yaml" if sample == "TopLandscape" else "data/QuarkGluon/qg_kin.yaml")
    options = {**SMALL_OPTIONS["ParticleTransformer"], "pair_min_delta": min_delta}
    network = load_network(REPO / "networks/example_ParticleTransformer.py")
    torch.manual_seed(12)
    model, info = network.get_model(DataConfig.load(str(yaml)), for_inference=True, **options)
    for module in model.modules():  # trained-looking normalisation, so that the pair features matter
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_(0, 0.5)
    model.eval()
    inputs = real_batch(yaml, [real_data / f"{sample}_sample_1000.root"], 300)
    trace = tuple(inputs[k][:2] for k in info["input_names"])
    buffer = io.BytesIO()
    torch.onnx.export(model, trace, buffer, input_names=info["input_names"], output_names=info["output_names"],
                      dynamic_axes=info["dynamic_axes"], opset_version=17, dynamo=False)
    session = onnxruntime.InferenceSession(buffer.getvalue())
    assert [i.name for i in session.get_inputs()] == info["input_names"]  # pf_points kept for weaver's runner
    got = session.run(None, {k: inputs[k].numpy() for k in info["input_names"]})[0]
    with torch.no_grad():
        expected = model(*(inputs[k] for k in info["input_names"])).numpy()
    assert np.abs(got - expected).max() <= tolerance

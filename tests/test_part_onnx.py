"""ParT exported to ONNX agrees with PyTorch on real jets. (Official-layout checkpoints through weaver's CLI:
`tests/test_recipes.py`.)"""

import pytest
import torch
from weaver_run import REPO, SMALL_OPTIONS


@pytest.mark.requiresdata
@pytest.mark.parametrize(
    ("sample", "min_delta", "tolerance"),
    [
        ("QuarkGluon", None, 1e-5),  # Pythia jets: weaver's definition exports exactly
        ("TopLandscape", 1e-5, 1e-5),  # Delphes jets with particles sharing a tower need the floor
    ],
)
def test_onnx_matches_pytorch_on_real_jets(real_data, sample, min_delta, tolerance, tmp_path):
    import numpy as np
    from weaver.utils.dataset import DataConfig
    from weaver_run import load_network, onnx_session, real_batch

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
    session = onnx_session(model, trace, info)  # pf_points kept for weaver's runner
    got = session.run(None, {k: inputs[k].numpy() for k in info["input_names"]})[0]
    with torch.no_grad():
        expected = model(*(inputs[k] for k in info["input_names"])).numpy()
    assert np.abs(got - expected).max() <= tolerance

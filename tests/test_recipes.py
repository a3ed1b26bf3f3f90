"""Every network file against the public recipe it stands for, through weaver's CLI on real jets.

A reference network file (``tests/recipes/recipe_<name>.py``) builds the model as the public Particle
Transformer repository's file of the same name does, settings written out as that file has them. Its weights
are perturbed (running statistics included) so that no layer is the identity, saved in the layout the public
recipe's checkpoints have, and predicted with by ``weaver --predict`` through our network file and through the
reference: the scores must agree. Comparing against our own class defaults instead is how a wrong default
(``use_pre_activation_pair``) once went unnoticed.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from weaver.utils.data.config import DataConfig
from weaver_run import (
    JETCLASS_YAML,
    RECIPES,
    REPO,
    TOP_YAML,
    load_network,
    official_layout,
    option_args,
    perturbed,
    read_predictions,
    real_batch,
    reference,
    weaver,
)

pytestmark = [pytest.mark.requiresdata, pytest.mark.slow]

N_JETS = 100  # of the 1000 real jets: --data-fraction 0.1


def predict(
    network: Path,
    checkpoint: Path,
    yaml: Path,
    sample: Path,
    out: Path,
    classes: list[str],
    options: dict | None = None,
) -> np.ndarray:
    weaver(
        "--predict",
        "--data-config",
        yaml,
        "--network-config",
        network,
        "--model-prefix",
        checkpoint,
        "--data-test",
        sample,
        "--data-fraction",
        N_JETS / 1000,
        "--batch-size",
        "100",
        "--predict-output",
        out,
        *option_args(options or {}),
        pythonpath=RECIPES,
    )
    return read_predictions(out, classes)


# network file stem -> (YAML, sample fixture) as the recipe trains it: the JetClass networks on JetClass jets,
# the fine-tuning networks on TopLandscape jets
CASES = {
    "ParticleTransformer": (JETCLASS_YAML, "hbb_sample"),
    "ParticleNet": (JETCLASS_YAML, "hbb_sample"),
    "PFN": (JETCLASS_YAML, "hbb_sample"),
    "PCNN": (JETCLASS_YAML, "hbb_sample"),
    "ParticleTransformer_finetune": (TOP_YAML, "top_sample"),
    "ParticleNet_finetune": (TOP_YAML, "top_sample"),
}


@pytest.fixture(scope="module")
def top_sample(real_data) -> Path:
    return real_data / "TopLandscape_sample_1000.root"


@pytest.mark.parametrize("name", CASES)
def test_network_file_computes_the_recipe(name, request, tmp_path):
    yaml, sample_fixture = CASES[name]
    sample = request.getfixturevalue(sample_fixture)
    data_config = DataConfig.load(str(yaml), load_observers=False)
    classes = list(data_config.label_value)
    torch.manual_seed(3)
    model, _ = reference(name).get_model(data_config)
    checkpoint = tmp_path / f"{name}.pt"
    torch.save(official_layout(perturbed(model, seed=4, num_classes=len(classes)).state_dict()), checkpoint)

    ours_file = REPO / "networks" / f"example_{name}.py"
    ours = predict(ours_file, checkpoint, yaml, sample, tmp_path / "ours.root", classes)
    recipe = predict(RECIPES / f"recipe_{name}.py", checkpoint, yaml, sample, tmp_path / "recipe.root", classes)
    assert ours.shape == (N_JETS, len(classes))
    assert recipe.std(axis=0).max() > 1e-3, "the reference does not tell the jets apart: a useless comparison"
    assert np.abs(ours - recipe).max() <= 1e-5


# weaver-core's later ParT versions, written out as a user passes them to weaver (`--network-option version 3`) on
# top of the recipe's file; weaver's class (the reference) and ours each apply the version's own block defaults
VERSION_OPTIONS = {
    "v2": {"version": 2},
    "v3": {"version": 3},
    "v3.5": {"version": 3.5},
}


@pytest.mark.parametrize("name", VERSION_OPTIONS)
def test_network_file_computes_weavers_later_versions(name, hbb_sample, tmp_path):
    options = VERSION_OPTIONS[name]
    data_config = DataConfig.load(str(JETCLASS_YAML), load_observers=False)
    classes = list(data_config.label_value)
    torch.manual_seed(3)
    model, _ = reference("ParticleTransformer").get_model(data_config, **options)
    assert model.mod.blocks[0].fc1_g is not None  # the reference really is a later version (SwiGLU)
    checkpoint = tmp_path / f"ParT_{name}.pt"
    torch.save(official_layout(perturbed(model, seed=4, num_classes=len(classes)).state_dict()), checkpoint)

    ours_file = REPO / "networks" / "example_ParticleTransformer.py"
    args = (checkpoint, JETCLASS_YAML, hbb_sample)
    ours = predict(ours_file, *args, tmp_path / "ours.root", classes, options)
    recipe = predict(RECIPES / "recipe_ParticleTransformer.py", *args, tmp_path / "recipe.root", classes, options)
    assert ours.shape == (N_JETS, len(classes))
    assert recipe.std(axis=0).max() > 1e-3, "the reference does not tell the jets apart: a useless comparison"
    assert np.abs(ours - recipe).max() <= 1e-5


def test_the_comparison_catches_the_pre_activation_default(hbb_sample):
    """With weaver's class default (no GELU after the last pair-embedding layer) the same checkpoint loads
    strictly and gives other scores: the check above would have caught the old default."""
    data_config = DataConfig.load(str(JETCLASS_YAML), load_observers=False)
    torch.manual_seed(3)
    model, info = reference("ParticleTransformer").get_model(data_config)
    state = official_layout(perturbed(model, seed=4, num_classes=len(data_config.label_value)).state_dict())
    batch = real_batch(JETCLASS_YAML, [hbb_sample], 100)
    inputs = [batch[k] for k in info["input_names"]]
    scores = {}
    for pre_activation in (False, True):
        ours, _ = load_network(REPO / "networks/example_ParticleTransformer.py").get_model(
            data_config, use_pre_activation_pair=pre_activation
        )
        ours.load_state_dict(state, strict=True)
        with torch.no_grad():
            scores[pre_activation] = torch.softmax(ours.eval()(*inputs), dim=1)
    with torch.no_grad():
        expected = torch.softmax(model(*inputs), dim=1)
    assert (scores[False] - expected).abs().max() <= 1e-5
    assert (scores[True] - expected).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("name", "new_head", "old_head"),
    [
        ("ParticleTransformer", "fc.0", "mod.fc.0"),  # the recipe's ParT classifies inside mod; fine-tuning outside
        ("ParticleNet", "fc_out", "mod.fc.1"),
    ],
)
def test_finetune_file_loads_the_pretrained_recipe_model(name, new_head, old_head):
    """The recipe's JetClass model (official layout) loads into our fine-tuning file for TopLandscape: only the
    new head is missing, and only the JetClass classifier is left over."""
    jetclass = DataConfig.load(str(JETCLASS_YAML), load_observers=False)
    top = DataConfig.load(str(TOP_YAML), load_observers=False)
    pretrained, _ = reference(name).get_model(jetclass)
    state = official_layout(pretrained.state_dict())
    model, _ = load_network(REPO / "networks" / f"example_{name}_finetune.py").get_model(top)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert set(missing) == {f"{new_head}.weight", f"{new_head}.bias"}
    assert set(unexpected) == {f"{old_head}.weight", f"{old_head}.bias"}

"""Every network file is the same dozen lines naming one recipe, and each jet model runs on every data config it
can read: the recipe's YAMLs and the multi-scale ones, which hold more input groups."""

import ast
import logging
import re

import numpy as np
import pytest
import torch
from weaver.utils.data.config import DataConfig
from weaver_run import REPO, SMALL_OPTIONS, load_network, onnx_session

from jetattn.measure import weaver_inputs
from jetattn.weaver import RECIPES

logging.getLogger("weaver").setLevel(logging.WARNING)

NETWORK_FILES = sorted((REPO / "networks").glob("*.py"))
# network file -> SMALL_OPTIONS entry (tests/weaver_run.py)
SMALL = {
    "ParT": "ParticleTransformer",
    "ParT_finetune": "ParticleTransformer",
    "ParT_topk": "ParT_topk",
    "LinParT": "LinParT",
    "ParticleNet": "ParticleNet",
    "ParticleNet_finetune": "ParticleNet",
    "PFN": "PFN",
    "PCNN": "PCNN",
}


def recipe_of(path) -> str:
    tree = ast.parse(path.read_text())
    (value,) = [n.value.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "RECIPE"]
    return value


def test_every_network_file_is_the_same_lines_naming_one_recipe():
    bodies = set()
    for path in NETWORK_FILES:
        text = path.read_text()
        docstring = ast.get_docstring(ast.parse(text))
        assert docstring, f"{path.name}: says what it builds"
        body = re.sub(r'^""".*?"""\n', "", text, flags=re.S).replace(repr(recipe_of(path)).replace("'", '"'), "NAME")
        bodies.add(body)
        assert len(body.splitlines()) <= 14, path.name
    assert len(bodies) == 1, "network files differ beyond their docstring and recipe name"
    assert sorted(recipe_of(p) for p in NETWORK_FILES) == sorted(RECIPES)  # one file per recipe, no stray recipe


def jet_networks():
    return [(p, recipe_of(p)) for p in NETWORK_FILES if recipe_of(p) in SMALL]


@pytest.mark.parametrize(("path", "recipe"), jet_networks(), ids=lambda x: getattr(x, "stem", x))
def test_jet_models_read_their_groups_from_a_data_config_with_more(path, recipe):
    """The same weights give the same scores on JetClass_full.yaml's inputs and on the multi-scale YAML's, which
    add the object groups; with ``for_inference`` every input group stays in the ONNX graph."""
    plain = DataConfig.load(str(REPO / "data/JetClass/JetClass_full.yaml"), load_observers=False)
    more = DataConfig.load(str(REPO / "data/JetClass/JetClass_full_multiscale.yaml"), load_observers=False)
    network = load_network(path)
    options = SMALL_OPTIONS[SMALL[recipe]]
    torch.manual_seed(0)
    model, info = network.get_model(plain, **options)
    wide, wide_info = network.get_model(more, **options)
    wide.load_state_dict(model.state_dict())
    inputs = dict(zip(wide_info["input_names"], weaver_inputs(wide_info, 6), strict=True))
    with torch.no_grad():
        expected = model.eval()(*[inputs[n] for n in info["input_names"]])
        got = wide.eval()(*inputs.values())
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)

    pytest.importorskip("onnxruntime")
    exported, _ = network.get_model(more, **options, for_inference=True)
    exported.load_state_dict(model.state_dict())
    session = onnx_session(exported.eval(), tuple(inputs.values()), wide_info)
    scores = session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
    np.testing.assert_allclose(scores, torch.softmax(expected, dim=1).numpy(), atol=1e-4)


@pytest.mark.parametrize("recipe", ["ParT", "ParticleNet", "PFN"])
def test_a_data_config_without_a_group_the_model_reads_is_refused_in_one_line(recipe):
    config = DataConfig.load(str(REPO / "data/DiHiggs/dihiggs.yaml"), load_observers=False)  # no pf_points
    path = next(p for p, r in jet_networks() if r == recipe)
    if recipe == "ParT":  # ParT reads no points: it runs
        model, info = load_network(path).get_model(config, **SMALL_OPTIONS["ParticleTransformer"])
        with torch.no_grad():
            assert model.eval()(*weaver_inputs(info, 3)).shape == (3, len(config.label_value))
        return
    with pytest.raises(ValueError, match="pf_points") as err:
        load_network(path).get_model(config, **SMALL_OPTIONS[SMALL[recipe]])
    assert "\n" not in str(err.value)


def test_seed_option_fixes_the_initial_weights():
    """``-o seed N`` (weaver-core has no seed option): the same seed builds the same weights, another seed others."""
    config = DataConfig.load(str(REPO / "data/JetClass/JetClass_kin.yaml"), load_observers=False)
    network = load_network(REPO / "networks/example_ParticleTransformer.py")
    options = SMALL_OPTIONS["ParticleTransformer"]
    first, second, other = (network.get_model(config, **options, seed=seed)[0] for seed in (1, 1, 2))
    for name, value in first.state_dict().items():
        torch.testing.assert_close(second.state_dict()[name], value, atol=0, rtol=0, msg=name)
    weight = "mod.embed.embed.1.weight"
    assert not torch.equal(other.state_dict()[weight], first.state_dict()[weight])


def mirror_image(inputs: dict, config: DataConfig, name: str = "part_dphi") -> dict:
    """The jets reflected in φ about their axes: ``name`` negated wherever a group holds it, and py negated in
    ``pf_vectors`` (the pair features see it; the option leaves the vectors alone because they are invariant)."""
    image = {}
    for group, x in inputs.items():
        x = x.clone()
        variables = config.input_dicts.get(group, [])
        if group == "pf_vectors":
            x[:, 1] = -x[:, 1]
        elif name in variables:
            x[:, variables.index(name)] = -x[:, variables.index(name)]
        image[group] = x
    return image


@pytest.mark.parametrize("recipe", ["ParT", "ParticleNet", "PFN"])
def test_mirror_option_answers_the_average_over_the_jet_and_its_mirror_image(recipe):
    """``-o mirror "['part_dphi']"``: the same weights and state_dict keys; the logits are the plain model's
    averaged over a jet and its φ reflection, so the jet and its image get the same answer, also through ONNX."""
    config = DataConfig.load(str(REPO / "data/TopLandscape/top_kin.yaml"), load_observers=False)
    network = load_network(next(p for p, r in jet_networks() if r == recipe))
    options = SMALL_OPTIONS[SMALL[recipe]]
    plain, info = network.get_model(config, **options, seed=3)
    mirrored, _ = network.get_model(config, **options, mirror=["part_dphi"])
    assert list(mirrored.state_dict()) == list(plain.state_dict())
    mirrored.load_state_dict(plain.state_dict())
    jets = dict(zip(info["input_names"], weaver_inputs(info, 8), strict=True))
    image = mirror_image(jets, config)
    with torch.no_grad():
        plain_jets, plain_image = plain.eval()(*jets.values()), plain(*image.values())
        got, got_image = mirrored.eval()(*jets.values()), mirrored(*image.values())
    assert (plain_jets - plain_image).abs().max() > 1e-3  # the symmetry is not already in the weights
    torch.testing.assert_close(got, (plain_jets + plain_image) / 2, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_image, got, atol=1e-5, rtol=0)

    pytest.importorskip("onnxruntime")
    exported, _ = network.get_model(config, **options, mirror=["part_dphi"], for_inference=True)
    exported.load_state_dict(plain.state_dict())
    session = onnx_session(exported.eval(), tuple(jets.values()), info)
    scores = session.run(None, {k: v.numpy() for k, v in image.items()})[0]
    np.testing.assert_allclose(scores, torch.softmax(got, dim=1).numpy(), atol=1e-4)


def test_mirror_option_mirrors_a_random_half_of_each_training_batch():
    config = DataConfig.load(str(REPO / "data/TopLandscape/top_kin.yaml"), load_observers=False)
    model, info = load_network(REPO / "networks/example_ParticleTransformer.py").get_model(
        config, **SMALL_OPTIONS["ParticleTransformer"], mirror=["part_dphi"]
    )
    seen = []
    model.mod.register_forward_pre_hook(lambda module, args, kwargs: seen.append(args[0]), with_kwargs=True)
    jets = weaver_inputs(info, 256)
    features = jets[info["input_names"].index("pf_features")]
    model.train()(*jets)
    dphi = config.input_dicts["pf_features"].index("part_dphi")
    others = [i for i in range(features.size(1)) if i != dphi]
    torch.testing.assert_close(seen[0][:, others], features[:, others], atol=0, rtol=0)
    flipped = (seen[0][:, dphi] == -features[:, dphi]).all(dim=1) & (features[:, dphi] != 0).any(dim=1)
    kept = (seen[0][:, dphi] == features[:, dphi]).all(dim=1)
    assert (flipped | kept).all()
    assert 80 < int(flipped.sum()) < 176  # about half of 256 jets (binomial: 5 sigma is ±40)


@pytest.mark.parametrize(
    ("mirror", "message"),
    [
        (["part_bogus"], "no input group of the data config holds 'part_bogus'"),
        (["part_pt_log"], "standardises 'part_pt_log' with centre 1.7"),
        ("", "expected variable names"),
    ],
)
def test_mirror_option_refuses_what_it_cannot_mirror_in_one_line(mirror, message):
    config = DataConfig.load(str(REPO / "data/TopLandscape/top_kin.yaml"), load_observers=False)
    network = load_network(REPO / "networks/example_ParticleTransformer.py")
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        network.get_model(config, **SMALL_OPTIONS["ParticleTransformer"], mirror=mirror)
    assert "\n" not in str(err.value)


def test_mirror_option_reflects_the_impact_parameter_with_dphi_and_refuses_dphi_alone():
    """On JetClass ``full`` the φ reflection negates the signed d0 too: ``part_dphi`` alone is refused in one line
    that gives the list to use, and that list negates exactly the two columns wherever a group holds them."""
    from jetattn.weaver.adapters import mirror_signs

    config = DataConfig.load(str(REPO / "data/JetClass/JetClass_full.yaml"), load_observers=False)
    network = load_network(REPO / "networks/example_ParticleTransformer.py")
    with pytest.raises(ValueError, match=re.escape("""mirror both: -o mirror "['part_dphi', 'part_d0']\"""")) as err:
        network.get_model(config, **SMALL_OPTIONS["ParticleTransformer"], mirror=["part_dphi"])
    assert "'part_d0', the signed transverse impact parameter" in str(err.value)
    assert "\n" not in str(err.value)

    network.get_model(config, **SMALL_OPTIONS["ParticleTransformer"], mirror=["part_dphi", "part_d0"])
    points, features, vectors, mask = mirror_signs(config, ("part_dphi", "part_d0"))
    assert vectors is None and mask is None
    negated = {}
    for signs, group in ((points, "pf_points"), (features, "pf_features")):
        negated[group] = {v for v, s in zip(config.input_dicts[group], signs.flatten().tolist(), strict=True) if s < 0}
    assert negated == {"pf_points": {"part_dphi"}, "pf_features": {"part_dphi", "part_d0"}}


def test_mirror_option_is_refused_by_the_models_that_take_their_groups_by_name():
    config = DataConfig.load(str(REPO / "data/TopLandscape/top_kin.yaml"), load_observers=False)
    network = load_network(REPO / "networks/example_MultiScaleTransformer.py")
    with pytest.raises(ValueError, match=r"^mirror: MultiScaleTransformer takes its input groups by name") as err:
        network.get_model(config, **SMALL_OPTIONS["MultiScaleTransformer"], mirror=["part_dphi"])
    assert "\n" not in str(err.value)

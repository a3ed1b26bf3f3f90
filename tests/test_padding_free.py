"""Padding-free inference (jets bucketed by length) and the compile-friendly ParT: same outputs as the padded
eager model, same checkpoints, and a compiled model that trains under weaver's loop."""

import pytest
import torch

from jetattn.measure import jetclass_like_batch
from jetattn.nn.part import ParticleTransformer, length_buckets
from jetattn.weaver import weaver_part

SMALL = dict(
    input_dim=17, num_classes=5, embed_dims=(32, 32), pair_embed_dims=(16,), num_heads=2, num_layers=2, num_cls_layers=1
)


def trained_looking(**options) -> ParticleTransformer:
    """``options``: weaver's (``compile`` and run settings included), as a network file passes them."""
    torch.manual_seed(0)
    model = weaver_part(**SMALL, **options)
    for module in model.modules():  # BatchNorm statistics that matter
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def jets_of_every_length(batch: int = 64):
    """JetClass-like multiplicities (5 to 128 particles), plus one empty jet and one full one."""
    x, v, mask = jetclass_like_batch(batch, length=128, input_dim=17, seed=3)
    mask[0] = 0
    x[0], v[0] = 0, 0
    mask[1] = 1
    return x, v, mask


def test_buckets_cover_the_batch_and_cut_the_padding():
    _, _, mask = jets_of_every_length()
    groups = length_buckets(mask.bool(), buckets=4)
    jets = torch.cat([g for g, _ in groups])
    assert sorted(jets.tolist()) == list(range(64))
    lengths = mask.sum(dim=(1, 2))
    for group, length in groups:
        assert lengths[group].max() <= length < 128 or lengths[group].max() == 128
    padded_area = sum(len(g) * n for g, n in groups)
    assert padded_area < 0.7 * 64 * 128  # short jets no longer pay for the longest one


@pytest.mark.parametrize("buckets", [2, 4, 7])
def test_bucketed_inference_equals_the_padded_model(buckets):
    padded = trained_looking()
    bucketed = trained_looking(buckets=buckets)
    assert bucketed.state_dict().keys() == padded.state_dict().keys()  # weaver checkpoints load as before
    inputs = jets_of_every_length()
    with torch.no_grad():
        got, expected = bucketed(*inputs), padded(*inputs)
    # jet 0 has no particles: it attends to its padding, so its output depends on how long the batch is padded
    # in either model; it only has to stay finite
    assert torch.isfinite(got[0]).all()
    torch.testing.assert_close(got[1:], expected[1:], atol=1e-5, rtol=0)


def test_bucketed_training_step_equals_the_padded_one():
    """In training the embeddings' BatchNorms still see the whole batch, so bucketing changes nothing but the
    cost: same loss, same gradients (dropout off, trimming at the longest jet, to compare one step)."""
    no_dropout = dict(block_params={"dropout": 0, "attn_dropout": 0, "activation_dropout": 0})
    models = [trained_looking(**no_dropout), trained_looking(buckets=4, **no_dropout)]
    x, v, mask = jetclass_like_batch(64, length=128, input_dim=17, seed=5)  # no empty jet (see above)
    labels = torch.arange(64) % 5
    grads = []
    for model in models:
        model.train()
        model.trimmer.quantile_range = (1.0, 1.0)
        torch.manual_seed(1)  # the trimmer's particle shuffle
        torch.nn.functional.cross_entropy(model(x, v, mask), labels).backward()
        grads.append({name: p.grad for name, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_compiled_model_trims_to_few_shapes_and_matches_eager():
    """``compile`` (here with the quick ``aot_eager`` backend) compiles everything after the trimmer; lengths are
    rounded up to multiples of 32, and outputs equal the eager model's."""
    eager = trained_looking()
    compiled = trained_looking(compile="aot_eager")
    x, v, mask = jets_of_every_length()
    short = [t[2:].clone() for t in (x, v, mask)]
    for t in short:
        t[..., 70:] = 0  # longest jet 70 of 128 slots -> trimmed to 96
    assert compiled.trimmer(short[0], short[1], short[2].bool())[2].size(-1) == 96
    with torch.no_grad():
        torch.testing.assert_close(compiled(*short), eager(*short), atol=1e-5, rtol=0)
    compiled.train()
    loss = torch.nn.functional.cross_entropy(compiled(x, v, mask), torch.arange(64) % 5)
    loss.backward()
    assert torch.isfinite(loss) and all(
        p.grad is not None and torch.isfinite(p.grad).all() for p in compiled.parameters() if p.requires_grad
    )


@pytest.mark.slow
@pytest.mark.requiresdata
def test_compiled_part_trains_under_weaver(real_data, tmp_path):
    from weaver_run import REPO, SMALL_OPTIONS, read_predictions, short_training

    options = {**SMALL_OPTIONS["ParticleTransformer"], "compile": "aot_eager", "buckets": 4}
    top = real_data / "TopLandscape_sample_1000.root"
    short_training(REPO / "networks/example_ParticleTransformer.py", options, top, tmp_path, 0.2)
    scores = read_predictions(tmp_path / "pred.root", ["jet_isTop", "jet_isQCD"])
    assert scores.shape == (200, 2) and abs(scores.sum(axis=1) - 1).max() < 1e-5

"""Our ParT against weaver-core's ParticleTransformer: same parameters, same state_dict, same outputs."""

import io
import logging

import numpy as np
import pytest
import torch
from weaver.nn.model.ParticleTransformer import ParticleTransformer as WeaverParT
from weaver_run import official_layout

from jetattn.nn.attention import record_attention
from jetattn.nn.part import ParticleTransformer
from jetattn.weaver import ParTForWeaver, answer_probabilities

logging.getLogger("weaver").setLevel(logging.WARNING)

SMALL = dict(embed_dims=(32, 64, 32), pair_embed_dims=(16, 16), num_heads=4, num_layers=2, num_cls_layers=1)


def padded_jets(batch=8, length=40, input_dim=7, seed=0, empty=()):
    """Random but physical jets: massless particles around a jet axis, zero-padded after n_i particles."""
    g = torch.Generator().manual_seed(seed)
    n = torch.randint(2, length, (batch,), generator=g)
    n[0] = length
    n[list(empty)] = 0
    mask = (torch.arange(length)[None] < n[:, None]).unsqueeze(1).float()
    pt = torch.rand(batch, 1, length, generator=g) * 100 + 1
    eta = 0.3 * torch.randn(batch, 1, length, generator=g) + 1.0
    phi = 0.3 * torch.randn(batch, 1, length, generator=g) + 3.0  # straddles φ = π
    v = torch.cat([pt * phi.cos(), pt * phi.sin(), pt * eta.sinh(), pt * eta.cosh()], dim=1) * mask
    x = torch.randn(batch, input_dim, length, generator=g) * mask
    return x, v, mask


CONFIGS = [
    dict(input_dim=17, num_classes=10, fc_params=[]),  # JetClass full, the paper's model
    dict(input_dim=7, num_classes=2, fc_params=[], **SMALL),
    dict(input_dim=13, num_classes=5, fc_params=[(24, 0.1), (16, 0.1)], use_pre_activation_pair=False, **SMALL),
    dict(input_dim=7, num_classes=3, fc_params=[(16, 0.0)], **{**SMALL, "num_heads": 2, "num_layers": 3}),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"in{c['input_dim']}-cls{c['num_classes']}")
def test_weaver_state_dict_loads_strict_and_outputs_match(cfg):
    torch.manual_seed(1)
    weaver_model = WeaverParT(**cfg).eval()
    ours = ParticleTransformer(**cfg).eval()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in weaver_model.parameters())
    ours.load_state_dict(weaver_model.state_dict(), strict=True)
    x, v, mask = padded_jets(input_dim=cfg["input_dim"])
    with torch.no_grad():
        expected, got = weaver_model(x, v, mask), ours(x, v, mask)
    assert (got - expected).abs().max().item() <= 1e-5


def test_paper_parameter_count():
    model = ParticleTransformer(input_dim=17, num_classes=10, fc_params=[])
    assert sum(p.numel() for p in model.parameters()) == 2_143_486


def test_official_checkpoint_layout_loads_into_weaver_wrapper():
    torch.manual_seed(2)
    cfg = dict(input_dim=7, num_classes=10, fc_params=[], **SMALL)
    weaver_model = WeaverParT(**cfg).eval()
    checkpoint = official_layout({"mod." + k: v for k, v in weaver_model.state_dict().items()})
    wrapper = ParTForWeaver(**cfg).eval()
    wrapper.load_state_dict(checkpoint, strict=True)
    x, v, mask = padded_jets()
    with torch.no_grad():
        torch.testing.assert_close(wrapper(x[:, :2], x, v, mask), weaver_model(x, v, mask), atol=1e-5, rtol=0)


def test_finetune_wrapper_misses_only_the_new_head():
    cfg = dict(input_dim=7, num_classes=10, fc_params=[], **SMALL)
    checkpoint = official_layout({"mod." + k: v for k, v in WeaverParT(**cfg).state_dict().items()})
    finetune = ParTForWeaver(head_classes=2, **{**cfg, "num_classes": 2})
    missing, unexpected = finetune.load_state_dict(checkpoint, strict=False)
    assert sorted(missing) == ["fc.0.bias", "fc.0.weight"]
    assert sorted(unexpected) == ["mod.fc.0.bias", "mod.fc.0.weight"]
    backbone = finetune.mod.blocks[1].attn.q_proj.weight
    torch.testing.assert_close(backbone, checkpoint["mod.blocks.1.attn.in_proj_weight"][:32])


def test_empty_jets_and_non_finite_features_give_finite_outputs():
    torch.manual_seed(3)
    model = ParticleTransformer(input_dim=7, num_classes=3, **SMALL).eval()
    x, v, mask = padded_jets(empty=(2, 5))
    x[1, 0, 0] = float("nan")
    x[3, 2, 1] = float("inf")
    v[4, 3, 0] = float("nan")
    with torch.no_grad():
        out = model(x, v, mask)
    assert torch.isfinite(out).all()
    clean = padded_jets(empty=(2, 5))[0]
    with torch.no_grad():  # the untouched jets do not feel their neighbours' problems
        torch.testing.assert_close(model(clean, padded_jets(empty=(2, 5))[1], mask)[6:], out[6:])


def test_trimming_and_padding_do_not_change_eval_outputs():
    torch.manual_seed(4)
    model = ParticleTransformer(input_dim=7, num_classes=3, **SMALL).eval()
    x, v, mask = padded_jets(length=30)
    extra = torch.zeros(x.size(0), 7, 20)
    padded = [torch.cat((t, extra[:, : t.size(1)]), dim=2) for t in (x, v, mask)]
    no_trim = ParticleTransformer(input_dim=7, num_classes=3, trim=False, **SMALL).eval()
    no_trim.load_state_dict(model.state_dict())
    with torch.no_grad():
        ref = model(x, v, mask)
        torch.testing.assert_close(model(*padded), ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(no_trim(*padded), ref, atol=1e-5, rtol=0)


def test_sdpa_and_math_kernels_agree_and_recording_sees_real_particles_only():
    torch.manual_seed(5)
    fused = ParticleTransformer(input_dim=7, num_classes=3, attention="sdpa", **SMALL).eval()
    math = ParticleTransformer(input_dim=7, num_classes=3, attention="math", **SMALL).eval()
    math.load_state_dict(fused.state_dict())
    x, v, mask = padded_jets(length=24)
    with torch.no_grad(), record_attention(fused) as maps:
        out = fused(x, v, mask)
    with torch.no_grad():
        torch.testing.assert_close(math(x, v, mask), out, atol=1e-5, rtol=0)
    weights = maps["blocks.0.attn"][0]  # B, H, L, L
    n = int(mask[1].sum())
    assert weights.shape[:2] == (8, 4)
    assert torch.all(weights[1, :, :, n:] == 0) and torch.all(weights[1, :, :n, :n].sum(-1) > 0.999)
    cls_weights = maps["cls_blocks.0.attn"][0]  # B, H, 1, 1 + L
    assert cls_weights.shape[2] == 1 and torch.all(cls_weights[1, :, 0, 1 + n :] == 0)


def test_training_step_trims_and_learns():
    torch.manual_seed(6)
    model = ParticleTransformer(input_dim=7, num_classes=2, **SMALL)
    x, v, mask = padded_jets(batch=32, length=64)
    labels = (x[:, 0].sum(-1) > 0).long()  # the label is the sign of the summed first feature
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x, v, mask), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert all(p.grad is not None for p in model.parameters())


def test_for_inference_exports_to_onnx_and_matches_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(7)
    cfg = dict(input_dim=7, num_classes=3, fc_params=[], **SMALL)
    model = answer_probabilities(ParTForWeaver(**cfg, for_inference=True)).eval()  # as recipes.get_model builds it
    model.load_state_dict(ParTForWeaver(**cfg).state_dict())
    x, v, mask = padded_jets(batch=2, length=16)
    buffer = io.BytesIO()
    names = ["pf_points", "pf_features", "pf_vectors", "pf_mask"]
    axes = {k: {0: "N", 2: "n_pf"} for k in names} | {"softmax": {0: "N"}}
    torch.onnx.export(
        model,
        (x[:, :2], x, v, mask),
        buffer,
        input_names=names,
        output_names=["softmax"],
        dynamic_axes=axes,
        opset_version=17,
        dynamo=False,
    )
    session = ort.InferenceSession(buffer.getvalue())
    x, v, mask = padded_jets(batch=5, length=33, seed=9)  # other batch size and length than traced
    feed = dict(zip(names, [t.numpy() for t in (x[:, :2], x, v, mask)], strict=True))
    assert [i.name for i in session.get_inputs()] == names  # weaver's ONNX runner feeds every input by name
    got = session.run(None, feed)[0]
    with torch.no_grad():
        expected = model(x[:, :2], x, v, mask).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(got.sum(1), 1, atol=1e-5)


def test_topk_and_flex_load_a_dense_checkpoint_strictly():
    """No new parameters: a dense model's state_dict evaluates under top-k and flex; top-k over every particle
    is the dense model, top-1 is not (bit-level agreement is tested per kernel in test_attention.py)."""
    torch.manual_seed(8)
    dense = ParticleTransformer(input_dim=7, num_classes=3, **SMALL).eval()
    x, v, mask = padded_jets(length=24)
    models, outputs = {}, {}
    for name, options in (
        ("all", dict(attention="topk", topk=24)),
        ("one", dict(attention="topk", topk=1)),
        ("flex", dict(attention="flex")),
    ):
        models[name] = ParticleTransformer(input_dim=7, num_classes=3, **options, **SMALL).eval()
        models[name].load_state_dict(dense.state_dict(), strict=True)
        with torch.no_grad():
            outputs[name] = models[name](x, v, mask)
    with torch.no_grad():
        expected = dense(x, v, mask)
    torch.testing.assert_close(outputs["all"], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(outputs["flex"], expected, atol=1e-5, rtol=0)
    assert (outputs["one"] - expected).abs().max() > 1e-3
    assert [block.attn.kernel for block in models["one"].cls_blocks] == ["sdpa"]  # class attention stays dense


def test_linear_pairs_linparT_shares_one_projection_and_ignores_padding():
    torch.manual_seed(10)
    cfg = dict(input_dim=7, num_classes=3, trim=False, attention="linformer", proj_dim=8, max_len=64, **SMALL)
    model = ParticleTransformer(**cfg, linear_pairs=True).eval()
    dense_params = sum(p.numel() for p in ParticleTransformer(**{**cfg, "attention": None}).parameters())
    assert sum(p.numel() for p in model.parameters()) == dense_params + 2 * 8 * 64  # one E pair for all blocks
    assert all(block.attn.linformer is model.pair_projection for block in model.blocks)
    x, v, mask = padded_jets(length=30)
    garbage = torch.randn(x.size(0), 7, 20).abs()  # what the padding holds must not matter either
    padded = [torch.cat((t, garbage[:, : t.size(1)] * (i < 2)), dim=2) for i, t in enumerate((x, v, mask))]
    with torch.no_grad():
        expected = model(x, v, mask)
        torch.testing.assert_close(model(*padded), expected, atol=1e-5, rtol=0)
        model.buckets = 3
        torch.testing.assert_close(model(x, v, mask), expected, atol=1e-5, rtol=0)
    model.train()
    model(x, v, mask).square().sum().backward()
    assert model.pair_projection.key.grad.abs().sum() > 0
    assert all(p.grad.abs().sum() > 0 for p in model.pair_embed.parameters())
    with pytest.raises(ValueError, match="linear_pairs needs attention='linformer'"):
        ParticleTransformer(input_dim=7, num_classes=3, linear_pairs=True)


LINPART_SMALL = dict(attention="linformer", proj_dim=8, max_len=64, linear_pairs=True)


@pytest.mark.parametrize(
    "options", [dict(), dict(packed=True), LINPART_SMALL], ids=["padded", "packed", "linear_pairs"]
)
def test_checkpoint_pairs_keeps_results_and_statistics_and_saves_memory(options):
    # recomputing the pair features and embedding in the backward pass: same loss, gradients and BatchNorm state
    # after a training step (the statistics move once, not twice), fewer bytes kept for the backward pass
    cfg = dict(input_dim=7, num_classes=3, trim=False, **SMALL, **options)
    torch.manual_seed(12)
    plain = ParticleTransformer(**cfg).train()
    recomputing = ParticleTransformer(**cfg, checkpoint_pairs=True).train()
    recomputing.load_state_dict(plain.state_dict())
    x, v, mask = padded_jets(length=40)

    def step(model):
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append(t.numel() * t.element_size()) or t, lambda t: t
        ):
            torch.manual_seed(0)  # the same dropout draws
            loss = model(x, v, mask).square().sum()
        loss.backward()
        return loss, sum(saved)

    loss, kept = step(plain)
    loss_recomputed, kept_recomputed = step(recomputing)
    torch.testing.assert_close(loss_recomputed, loss, atol=1e-5, rtol=1e-6)
    for (name, a), b in zip(plain.named_parameters(), recomputing.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-5, rtol=1e-5, msg=name)
    for (name, a), b in zip(plain.state_dict().items(), recomputing.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, atol=0, rtol=0, msg=name)  # running statistics identical
    assert recomputing.pair_embed.embed[0].num_batches_tracked.item() == 1
    # the pair layers' activations (16 channels per pair, three tensors a layer) are no longer kept: per jet,
    # L × proj_dim projected pairs with linear_pairs, else its n(n+1)/2 real pairs a >= b
    lengths = mask.sum(dim=(1, 2))
    pairs = x.size(0) * 40 * 8 if "linear_pairs" in options else int((lengths * (lengths + 1) / 2).sum())
    assert kept - kept_recomputed >= 3 * 16 * pairs * 4
    with torch.no_grad():  # inference is untouched
        torch.testing.assert_close(recomputing.eval()(x, v, mask), plain.eval()(x, v, mask))


def test_linear_pairs_with_identity_projection_is_dense_part():
    # E = identity: the projected pair features are the pair features, so on jets without padding LinParT
    # computes exactly dense ParT's bias, logits and outputs
    torch.manual_seed(11)
    length = 24
    cfg = dict(input_dim=7, num_classes=3, trim=False, **SMALL)
    dense = ParticleTransformer(**cfg).eval()
    linear = ParticleTransformer(**cfg, attention="linformer", proj_dim=length, max_len=length, linear_pairs=True)
    linear.eval().load_state_dict(dense.state_dict(), strict=False)
    with torch.no_grad():
        linear.pair_projection.key.copy_(torch.eye(length))
        linear.pair_projection.value.copy_(torch.eye(length))
    x, v, mask = (torch.cat(t) for t in zip(*(padded_jets(2, length, seed=s) for s in range(6)), strict=True))
    x, v, mask = x[::2], v[::2], mask[::2]  # the first jet of each is full
    assert mask.all()
    with torch.no_grad():
        torch.testing.assert_close(linear(x, v, mask), dense(x, v, mask), atol=1e-5, rtol=0)
        linear.pair_projection.key.copy_(torch.eye(length).roll(1, dims=1))  # and E is really used
        assert (linear(x, v, mask) - dense(x, v, mask)).abs().max() > 1e-3


def test_linformer_part_adds_projections_per_block_and_ignores_padding():
    torch.manual_seed(9)
    cfg = dict(input_dim=7, num_classes=3, trim=False, attention="linformer", proj_dim=8, max_len=64, **SMALL)
    model = ParticleTransformer(**cfg).eval()
    dense_params = sum(p.numel() for p in ParticleTransformer(**{**cfg, "attention": None}).parameters())
    assert sum(p.numel() for p in model.parameters()) == dense_params + SMALL["num_layers"] * 2 * 8 * 64
    assert all(block.attn.linformer is None for block in model.cls_blocks)  # class attention stays dense
    x, v, mask = padded_jets(length=30)
    extra = torch.zeros(x.size(0), 7, 20)
    padded = [torch.cat((t, extra[:, : t.size(1)]), dim=2) for t in (x, v, mask)]
    with torch.no_grad():
        torch.testing.assert_close(model(*padded), model(x, v, mask), atol=1e-5, rtol=0)
        with pytest.raises(ValueError, match="max_len=64"):
            model(*(torch.cat((t, t), dim=2) for t in padded))

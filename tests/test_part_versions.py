"""Every ParT weaver-core 0.5.3 builds (versions 1, 2, 3, 3.5, 3.6 and its other options) loads strictly into
ours (built from weaver's options at the weaver boundary, :func:`jetattn.weaver.weaver_part`) and gives the same
eval outputs; the options we do not implement are refused in one line."""

import logging

import pytest
import torch
from test_part import padded_jets
from weaver.nn.model.ParticleTransformer import ParticleTransformer as WeaverParT

from jetattn.nn.attention import KERNELS, record_attention
from jetattn.weaver import weaver_part

logging.getLogger("weaver").setLevel(logging.WARNING)

SMALL = dict(
    input_dim=7,
    num_classes=3,
    embed_dims=(32, 64, 32),
    pair_embed_dims=(16, 16),
    num_heads=4,
    num_layers=2,
    num_cls_layers=1,
    fc_params=[],
)


def perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Move every parameter and BatchNorm statistic off its initial value (norm weights, layer scales, gates and
    the pair-bias scale start at constants that would hide a misplaced one)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                noise = torch.randn(tensor.shape, generator=g)
                tensor.copy_(
                    tensor.abs() * 0.5 + 0.5 + 0.1 * noise.abs() if "running_var" in name else tensor + 0.1 * noise
                )
    return model.eval()


def weaver_and_ours(**options) -> tuple[torch.nn.Module, torch.nn.Module]:
    """weaver's model with ``options`` on top of SMALL, perturbed, and ours built alike with its state_dict."""
    torch.manual_seed(0)
    cfg = {**SMALL, **options}
    weaver_model = perturbed(WeaverParT(**cfg))
    ours = weaver_part(**cfg).eval()
    ours.load_state_dict(weaver_model.state_dict(), strict=True)
    return weaver_model, ours


def assert_same_outputs(weaver_model, ours, **jets) -> None:
    x, v, mask = padded_jets(**{"input_dim": SMALL["input_dim"], **jets})
    with torch.no_grad():
        expected, got = weaver_model(x, v, mask), ours(x, v, mask)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-5


VERSIONS = [1, 2, 3, 3.5, 3.6]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_version_loads_strict_and_matches_weaver(version):
    weaver_model, ours = weaver_and_ours(version=version)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in weaver_model.parameters())
    assert_same_outputs(weaver_model, ours)


OPTIONS = {
    "remove_self_pair": dict(remove_self_pair=True),
    "use_conv_embed": dict(use_conv_embed=True),
    "pre_activation_pair_off": dict(use_pre_activation_pair=False),
    "no_pair_features": dict(pair_input_dim=0),
    "global_token": dict(include_global_token=True, num_cls_layers=0),
    "mean_pooling": dict(num_cls_layers=0),
    "attn_mask_in_block_1_only": dict(block_ids_with_attn_mask=[1]),
    "dense_pair_embed": dict(pair_embed_sparse_eval=(False, False)),
    "timm_init_no_fix": dict(weight_init="timm", fix_init=False),
    "for_inference": dict(for_inference=True),
    "fc_activations": dict(fc_params=[(24, 0.1), (16, 0.0, "gelu"), (8, 0.0, "swiglu")]),
    "layer_scale_and_mask_scale": dict(block_params={"layer_scale_init_values": 1e-2, "scale_attn_mask": True}),
    "headwise_gate_qk_norm": dict(
        block_params={"use_qk_norm": True, "headwise_attn_output_gate": True, "elementwise_attn_output_gate": False}
    ),
    "rmsnorm_blocks_in_v1": dict(block_params={"use_rmsnorm": True, "use_bias": False}),
    "cls_blocks_with_gates": dict(cls_block_params={"use_qk_norm": True, "elementwise_attn_output_gate": True}),
    "block_heads": dict(block_params={"num_heads": 2}),
}


@pytest.mark.parametrize("version", [1, 3.5])
@pytest.mark.parametrize("name", OPTIONS)
def test_each_option_loads_strict_and_matches_weaver(name, version):
    options = OPTIONS[name]
    if version == 3.5 and "num_cls_layers" not in options:
        options = {**options, "num_cls_layers": 1}
    weaver_model, ours = weaver_and_ours(version=version, **options)
    assert_same_outputs(weaver_model, ours, seed=3)


def test_global_token_ignores_padding_and_empty_jets_stay_finite():
    weaver_model, ours = weaver_and_ours(version=3.6)
    x, v, mask = padded_jets(input_dim=7, seed=4, empty=(2,))
    longer = [torch.nn.functional.pad(t, (0, 9)) for t in (x, v, mask)]
    with torch.no_grad():
        out, out_padded = ours(x, v, mask), ours(*longer)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out_padded, out, atol=1e-5, rtol=0)


@pytest.mark.parametrize("version", VERSIONS)
def test_kernels_and_recording_on_every_version(version):
    """Each kernel gives the dense model's outputs on each version's blocks (top-k with k ≥ the longest jet is
    dense), and the recorded weights are the ones applied: recomputed from the recorded logits, they are their
    softmax, so they include QK-norm; the output gate comes with them."""
    weaver_model, ours = weaver_and_ours(version=version)
    x, v, mask = padded_jets(input_dim=7, seed=5)
    with torch.no_grad():
        expected = weaver_model(x, v, mask)
        for kernel in ("sdpa", "math", "topk", "flex"):
            if kernel == "flex" and not hasattr(torch.nn.attention, "flex_attention"):
                continue
            for module in ours.modules():
                if hasattr(module, "kernel") and isinstance(getattr(module, "topk", None), int):
                    module.kernel, module.topk = kernel, 64
            assert kernel in KERNELS
            torch.testing.assert_close(ours(x, v, mask), expected, atol=1e-5, rtol=0, msg=kernel)
        with record_attention(ours, details=True) as maps:
            recorded = ours(x, v, mask)
    torch.testing.assert_close(recorded, expected, atol=1e-5, rtol=0)
    record = maps["blocks.0.attn"][0]
    torch.testing.assert_close(record.weights, record.logits.softmax(dim=-1))
    gated = version in (3.5, 3.6)
    assert (record.output_gate is not None) == gated
    if gated:  # element-wise: one gate per channel of each head, from the block's normalised input
        assert record.output_gate.shape[-1] == ours.blocks[0].attn.head_dim
    # QK-norm: the logits are those of normalised queries and keys, bounded by √D · max|q_norm.w · k_norm.w|
    if version in (3.5, 3.6):
        attn = ours.blocks[0].attn
        bound = attn.head_dim**0.5 * (attn.q_norm.weight.abs().max() * attn.k_norm.weight.abs().max()).item()
        pair_free = record.logits - record.bias
        finite = torch.isfinite(pair_free)
        assert pair_free[finite].abs().max().item() <= bound * 1.001


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(pair_input_type="ee"), "pair_input_type='ee'"),
        (dict(pair_extra_dim=2), "pair_extra_dim=2"),
        (dict(for_segmentation=True), "for_segmentation"),
        (dict(version=4), "version=4"),
        (dict(include_global_token=True), "num_cls_layers=0"),
        (dict(block_params={"use_rmsnrom": True}), "use_rmsnrom"),
        (dict(block_params={"activation": "swish"}), "activation='swish'"),
        (dict(block_params={"headwise_attn_output_gate": True, "elementwise_attn_output_gate": True}), "one gate"),
    ],
)
def test_unsupported_options_are_refused_in_one_line(options, message):
    with pytest.raises(ValueError, match=message) as err:
        weaver_part(**{**SMALL, **options})
    assert "\n" not in str(err.value)

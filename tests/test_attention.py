"""Every attention kernel against the math path; masks; recording; loading weaver's packed projections."""

import pytest
import torch

from jetattn.nn.attention import KERNELS, Attention, math_kernel, padding_bias, record_attention, set_default_kernel


def _qkv(batch=3, heads=4, len_q=7, len_k=9, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, n, dim, generator=g) for n in (len_q, len_k, len_k)]


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernel_matches_math_path_with_bias_and_padding(name):
    q, k, v = _qkv()
    padding = torch.zeros(3, 9, dtype=torch.bool)
    padding[1, 5:] = True
    padding[2, 1:] = True
    bias = torch.randn(3, 4, 7, 9) + padding_bias(padding)
    ref, ref_w = math_kernel(q, k, v, bias)
    out, _ = KERNELS[name](q, k, v, bias, 0.0, False)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # padded keys get exactly zero weight, and each query's weights sum to one
    assert torch.all(ref_w[1, :, :, 5:] == 0) and torch.all(ref_w[2, :, :, 1:] == 0)
    torch.testing.assert_close(ref_w.sum(-1), torch.ones(3, 4, 7))


def test_padded_keys_do_not_change_the_output():
    torch.manual_seed(0)
    attn = Attention(16, 4).eval()
    x = torch.randn(2, 5, 16)
    padded = torch.cat((x, 100 * torch.randn(2, 3, 16)), dim=1)  # garbage in the padding
    padding = torch.zeros(2, 8, dtype=torch.bool)
    padding[:, 5:] = True
    out_short = attn(x)
    out_padded = attn(padded, bias=padding_bias(padding))[:, :5]
    torch.testing.assert_close(out_padded, out_short, atol=1e-5, rtol=1e-5)


def test_cross_attention_uses_context_for_keys():
    torch.manual_seed(0)
    attn = Attention(16, 2).eval()
    query, context = torch.randn(2, 1, 16), torch.randn(2, 6, 16)
    out = attn(query, context)
    assert out.shape == (2, 1, 16)
    assert not torch.allclose(out, attn(query, context.flip(0)))


def test_record_attention_returns_the_weights_applied():
    torch.manual_seed(0)
    model = torch.nn.Sequential(Attention(16, 4), Attention(16, 4)).eval()
    x = torch.randn(2, 6, 16)
    plain = model(x)
    with record_attention(model) as maps:
        recorded = model(x)
    torch.testing.assert_close(recorded, plain, atol=1e-5, rtol=1e-5)
    assert sorted(maps) == ["0", "1"]
    weights = maps["0"][0]
    assert weights.shape == (2, 4, 6, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 6))
    assert all(m.recorder is None for m in model)  # recording stops with the block


@pytest.mark.parametrize("packed_key", ["in_proj_weight", "in_proj.weight"])
def test_loads_weaver_packed_projection(packed_key):
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(16, 4, batch_first=True).eval()
    state = {k.replace("in_proj_weight", packed_key).replace("in_proj_bias", packed_key.replace("weight", "bias")): v
             for k, v in mha.state_dict().items()}
    attn = Attention(16, 4).eval()
    attn.load_state_dict(state, strict=True)
    x = torch.randn(2, 5, 16)
    padding = torch.zeros(2, 5, dtype=torch.bool)
    padding[0, 3:] = True
    ref = mha(x, x, x, key_padding_mask=padding, need_weights=False)[0]
    torch.testing.assert_close(attn(x, bias=padding_bias(padding)), ref, atol=1e-5, rtol=1e-5)


def test_unknown_kernel_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown attention kernel 'flash3'"):
        Attention(16, 4, kernel="flash3")
    with pytest.raises(ValueError, match="choose from"):
        set_default_kernel("nope")

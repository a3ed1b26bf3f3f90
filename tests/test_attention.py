"""Every attention kernel against the math path; masks; recording; loading weaver's packed projections."""

import sys

import pytest
import torch

from jetattn.nn.attention import (
    KERNELS,
    Attention,
    math_kernel,
    padding_bias,
    record_attention,
    set_default_kernel,
    topk_kernel,
)


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
    out, _ = KERNELS[name](q, k, v, bias, 0.0, False, 9)  # topk: every key
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


def _padded_bias(seed=1):
    """Pair-bias-like logits on 3 jets of 9 slots with 9, 5 and 2 real particles (-inf on padded keys)."""
    padding = torch.zeros(3, 9, dtype=torch.bool)
    padding[1, 5:] = True
    padding[2, 2:] = True
    return torch.randn(3, 4, 7, 9, generator=torch.Generator().manual_seed(seed)) + padding_bias(padding), padding


@pytest.mark.parametrize("topk", [9, 12])
def test_topk_with_every_real_key_kept_is_dense(topk):
    q, k, v = _qkv()
    bias, _ = _padded_bias()
    ref, ref_w = math_kernel(q, k, v, bias)
    out, weights = topk_kernel(q, k, v, bias, 0.0, True, topk)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(weights, ref_w, atol=1e-6, rtol=0)
    # jets 1 and 2 have 5 and 2 real keys: keeping 5 (or 2) of 9 leaves them exactly dense
    for jet, n_real in ((1, 5), (2, 2)):
        one = slice(jet, jet + 1)
        out, _ = topk_kernel(q[one], k[one], v[one], bias[one], 0.0, False, n_real)
        torch.testing.assert_close(out, ref[one], atol=1e-6, rtol=0)


def test_topk_softmaxes_the_k_largest_logits_only():
    q, k, v = _qkv()
    bias, padding = _padded_bias()
    logits = q @ k.transpose(-2, -1) / 8**0.5 + bias
    _, weights = topk_kernel(q, k, v, bias, 0.0, True, 3)
    kept = weights > 0
    assert weights.shape == (3, 4, 7, 9)
    # three keys per query, the three largest logits, where a jet has that many real particles
    assert torch.all(kept[:2].sum(-1) == 3) and torch.all(kept[2].sum(-1) == 2)
    assert not kept[padding[:, None, None, :].expand_as(kept)].any()
    expected = logits.masked_fill(logits < logits.topk(3, dim=-1).values[..., -1:], float("-inf")).softmax(-1)
    torch.testing.assert_close(weights, expected, atol=1e-6, rtol=0)

    out, weights = topk_kernel(q, k, v, bias, 0.0, True, 1)  # a hard argmax: the value of the best key
    assert torch.all(weights.max(-1).values == 1)
    torch.testing.assert_close(out, torch.take_along_dim(v[:, :, None], logits.argmax(-1)[..., None, None], dim=3)
                               .squeeze(3), atol=0, rtol=0)


def test_topk_gradients_flow_through_the_kept_entries_only():
    q, k, v = (t.requires_grad_() for t in _qkv())
    bias = _padded_bias()[0].requires_grad_()
    out, weights = topk_kernel(q, k, v, bias, 0.0, True, 3)
    (out * torch.randn_like(out)).sum().backward()
    kept = weights.detach() > 0
    assert torch.all(bias.grad[~kept] == 0) and (bias.grad[kept] != 0).float().mean() > 0.9
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (q, k, v))


def test_flex_without_gradients_on_cpu_and_a_clear_error_with():
    q, k, v = _qkv()
    bias, _ = _padded_bias()
    KERNELS["flex"](q, k, v, bias, 0.0, False, None)  # the comparison with math is in the parametrized test
    with pytest.raises(RuntimeError, match="attention 'flex'.*gradients on the CPU"):
        KERNELS["flex"](q.requires_grad_(), k, v, bias, 0.0, False, None)
    with pytest.raises(ValueError, match="attention 'flex' has no attention dropout"):
        KERNELS["flex"](q.detach(), k, v, bias, 0.1, False, None)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="flex_attention has gradients on CUDA only")
def test_flex_gradients_match_math_on_gpu():
    q, k, v = (t.cuda().requires_grad_() for t in _qkv())
    bias = _padded_bias()[0].cuda().requires_grad_()
    grads = {}
    for name in ("flex", "math"):
        out, _ = KERNELS[name](q, k, v, bias, 0.0, False, None)
        grads[name] = torch.autograd.grad(out.square().sum(), (q, k, v, bias))
    for got, expected in zip(grads["flex"], grads["math"], strict=True):
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_flex_missing_from_torch_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.nn.attention.flex_attention", None)  # import fails
    q, k, v = _qkv()
    with pytest.raises(RuntimeError, match="attention 'flex' needs torch.nn.attention.flex_attention"):
        KERNELS["flex"](q, k, v, None, 0.0, False, None)


def test_linformer_with_identity_projection_is_the_math_path():
    torch.manual_seed(0)
    attn = Attention(16, 4, kernel="linformer", proj_dim=9, max_len=9).eval()
    dense = Attention(16, 4, kernel="math").eval()
    dense.load_state_dict(attn.state_dict(), strict=False)
    with torch.no_grad():
        attn.linformer.key.copy_(torch.eye(9))
        attn.linformer.value.copy_(torch.eye(9))
    x, pair_bias = torch.randn(3, 9, 16), torch.randn(3, 4, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(attn(x, bias=pair_bias), dense(x, bias=pair_bias), atol=1e-6, rtol=0)


def test_linformer_ignores_what_the_padding_holds_and_how_long_it_is():
    torch.manual_seed(0)
    attn = Attention(16, 4, kernel="linformer", proj_dim=4, max_len=16).eval()
    x = torch.randn(2, 5, 16)
    pair_bias = torch.randn(2, 4, 5, 5)
    outputs = []
    for n_pad, scale in ((0, 0.0), (3, 100.0), (11, -50.0)):
        padded = torch.cat((x, scale * torch.randn(2, n_pad, 16)), dim=1)  # garbage keys, values and queries
        bias = scale * torch.randn(2, 4, 5 + n_pad, 5 + n_pad)
        bias[:, :, :5, :5] = pair_bias
        padding = torch.zeros(2, 5 + n_pad, dtype=torch.bool)
        padding[:, 5:] = True
        with torch.no_grad():
            outputs.append(attn(padded, bias=bias.masked_fill(padding[:, None, None, :], float("-inf")))[:, :5])
    torch.testing.assert_close(outputs[1], outputs[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(outputs[2], outputs[0], atol=1e-5, rtol=0)


def test_linformer_parameters_shared_projection_and_length_limit():
    separate = Attention(16, 4, kernel="linformer", proj_dim=4, max_len=12)
    shared = Attention(16, 4, kernel="linformer", proj_dim=4, max_len=12, share_kv_proj=True)
    assert sorted(n for n, _ in separate.named_parameters() if n.startswith("linformer")) == [
        "linformer.key", "linformer.value"]  # fmt: skip
    assert [n for n, _ in shared.named_parameters() if n.startswith("linformer")] == ["linformer.key"]
    assert separate.linformer.key.shape == (4, 12)
    assert not any(n.startswith("linformer") for n, _ in Attention(16, 4, kernel="topk").named_parameters())
    x = torch.randn(2, 12, 16, requires_grad=True)
    separate(x).sum().backward()
    assert separate.linformer.key.grad.abs().sum() > 0 and separate.linformer.value.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="13 particles, more than its max_len=12"):
        separate(torch.randn(2, 13, 16))
    with pytest.raises(ValueError, match="linformer"):
        set_default_kernel("linformer")


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_recording_keeps_outputs_and_returns_the_weights_applied(name):
    torch.manual_seed(0)
    attn = Attention(16, 4, kernel=name, topk=3, proj_dim=4, max_len=9).eval()
    x = torch.randn(3, 9, 16)
    bias, padding = _padded_bias()
    bias = bias[:, :, :1].expand(3, 4, 9, 9).contiguous()  # self-attention: 9 queries
    with torch.no_grad():
        plain = attn(x, bias=bias)
        with record_attention(attn) as maps:
            recorded = attn(x, bias=bias)
    assert torch.equal(recorded, plain)
    (weights,) = maps[""]
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, 9))
    if name == "linformer":
        assert weights.shape == (3, 4, 9, 4)  # over the projected keys
        return
    assert weights.shape == (3, 4, 9, 9) and not weights[padding[:, None, None, :].expand_as(weights)].any()
    if name == "topk":
        assert torch.all((weights > 0).sum(-1) == torch.tensor([3, 3, 2])[:, None, None])
    else:
        with torch.no_grad():
            q = attn.q_proj(x).view(3, 9, 4, 4).transpose(1, 2)
            k, v = attn.kv_proj(x).view(3, 9, 2, 4, 4).permute(2, 0, 3, 1, 4).unbind(0)
        torch.testing.assert_close(weights, math_kernel(q, k, v, bias)[1], atol=1e-6, rtol=0)

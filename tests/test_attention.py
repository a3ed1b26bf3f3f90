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
    state = {
        k.replace("in_proj_weight", packed_key).replace("in_proj_bias", packed_key.replace("weight", "bias")): v
        for k, v in mha.state_dict().items()
    }
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
    torch.testing.assert_close(
        out, torch.take_along_dim(v[:, :, None], logits.argmax(-1)[..., None, None], dim=3).squeeze(3), atol=0, rtol=0
    )


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
        "linformer.key",
        "linformer.value",
    ]
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


def _recorded_self_attention(name, details):
    """One self-attention call of 3 jets with 9, 5 and 2 particles, recorded; asserts that recording changes
    nothing, bit for bit. Returns the module, its input, the bias, the padding and the record."""
    torch.manual_seed(0)
    attn = Attention(16, 4, kernel=name, topk=3, proj_dim=4, max_len=9).eval()
    x = torch.randn(3, 9, 16)
    bias, padding = _padded_bias()
    bias = bias[:, :, :1].expand(3, 4, 9, 9).contiguous()  # self-attention: 9 queries
    with torch.no_grad():
        plain = attn(x, bias=bias)
        with record_attention(attn, details=details) as maps:
            recorded = attn(x, bias=bias)
    assert torch.equal(recorded, plain)
    (record,) = maps[""]
    return attn, x, bias, padding, record


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_recording_keeps_outputs_and_returns_the_weights_applied(name):
    attn, x, bias, padding, weights = _recorded_self_attention(name, details=False)
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


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_records_hold_the_weights_logits_bias_and_padding_of_the_call(name):
    attn, x, bias, padding, record = _recorded_self_attention(name, details=True)
    assert torch.equal(record.key_padding, padding) and torch.equal(record.query_padding, padding)
    jets = record.per_jet()
    assert [tuple(w.shape) for w in jets] == (
        [(4, 9, 4), (4, 5, 4), (4, 2, 4)] if name == "linformer" else [(4, 9, 9), (4, 5, 5), (4, 2, 2)]
    )
    for weights in jets:  # over the real particles (linformer: over the projections)
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:2]))
    if name == "linformer":
        assert record.projected and record.bias.shape == (3, 4, 9, 4)
        torch.testing.assert_close(record.logits.softmax(-1), record.weights, atol=1e-6, rtol=0)
        return
    assert torch.equal(record.bias, bias)
    with torch.no_grad():
        q = attn.q_proj(x).view(3, 9, 4, 4).transpose(1, 2)
        k = attn.kv_proj(x).view(3, 9, 2, 4, 4)[:, :, 0].transpose(1, 2)
    torch.testing.assert_close(record.logits, q @ k.transpose(-2, -1) / 2 + bias, atol=1e-6, rtol=0)
    if name == "topk":  # the softmax of the three largest logits only
        kept = record.logits >= record.logits.topk(3, dim=-1).values[..., -1:]
        assert torch.equal(record.weights, record.logits.masked_fill(~kept, float("-inf")).softmax(-1))
    else:
        torch.testing.assert_close(record.logits.softmax(-1), record.weights, atol=1e-7, rtol=0)
        torch.testing.assert_close(jets[1], record.per_jet("logits")[1].softmax(-1), atol=1e-7, rtol=0)


def test_record_of_class_attention_keeps_its_query_and_takes_a_query_padding():
    torch.manual_seed(0)
    attn = Attention(16, 2).eval()
    bias, padding = _padded_bias()
    context = torch.randn(3, 9, 16)
    with torch.no_grad(), record_attention(attn, details=True) as records:
        attn(torch.randn(3, 1, 16), context, bias=bias[:, :2, :1])
    (record,) = records[""]
    assert record.query_padding is None and torch.equal(record.key_padding, padding)
    assert [tuple(w.shape) for w in record.per_jet()] == [(2, 1, 9), (2, 1, 5), (2, 1, 2)]
    objects_padding = torch.tensor([[False], [True], [False]])
    assert [w.shape[1] for w in record.per_jet(query_padding=objects_padding)] == [1, 0, 1]

    with torch.no_grad(), record_attention(attn, details=True) as records:
        attn(context)  # no bias: nothing padded, no bias recorded
    (record,) = records[""]
    assert record.bias is None and not record.key_padding.any()
    with pytest.raises(ValueError, match="had no bias"):
        record.per_jet("bias")


def _jets(lengths=(12, 7, 3), input_dim=7, seed=3):
    g = torch.Generator().manual_seed(seed)
    size = max(lengths)
    mask = (torch.arange(size)[None] < torch.tensor(lengths)[:, None]).unsqueeze(1).float()
    x = torch.randn(len(lengths), input_dim, size, generator=g) * mask
    v = (torch.rand(len(lengths), 4, size, generator=g) + torch.tensor([0, 0, 0, 2.0])[:, None]) * mask
    return x, v, mask


def test_part_records_the_pair_bias_it_computed_and_linear_pairs_the_projected_one():
    from jetattn.nn.part import ParticleTransformer

    small = dict(embed_dims=(16,), pair_embed_dims=(8,), num_heads=2, num_layers=2, num_cls_layers=1)
    torch.manual_seed(0)
    model = ParticleTransformer(7, 2, **small).eval()
    x, v, mask = _jets()
    with torch.no_grad(), record_attention(model, details=True) as records:
        model(x, v, mask)
    padding = ~mask.squeeze(1).bool()
    with torch.no_grad():
        pair_bias = model.pair_embed(v, mask.bool()).masked_fill(padding[:, None, None, :], float("-inf"))
    for layer in (0, 1):
        (record,) = records[f"blocks.{layer}.attn"]
        assert torch.equal(record.bias, pair_bias) and torch.equal(record.key_padding, padding)
        assert [tuple(w.shape) for w in record.per_jet("bias")] == [(2, 12, 12), (2, 7, 7), (2, 3, 3)]
    (cls_record,) = records["cls_blocks.0.attn"]  # the class token and the particles are its keys
    assert [tuple(w.shape) for w in cls_record.per_jet()] == [(2, 1, 13), (2, 1, 8), (2, 1, 4)]

    torch.manual_seed(0)
    linear = ParticleTransformer(7, 2, attention="linformer", linear_pairs=True, proj_dim=5, max_len=12, **small)
    with torch.no_grad(), record_attention(linear.eval(), details=True) as records:
        plain = linear(x, v, mask)
    with torch.no_grad():
        assert torch.equal(linear(x, v, mask), plain)
    (record,) = records["blocks.1.attn"]
    assert record.projected and torch.equal(record.key_padding, padding)
    assert [tuple(w.shape) for w in record.per_jet()] == [(2, 12, 5), (2, 7, 5), (2, 3, 5)]
    for weights in record.per_jet():
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:2]))


@pytest.mark.parametrize("kernel", ["math", "sdpa", "topk"])
def test_recorded_weights_are_the_ones_each_layer_applied(kernel):
    """Each layer's map is the one computed from that layer's own input, and its output is out_proj(weights @ v):
    recomputing every layer's map from the first layer's input (a notebook's mistake) gives other maps."""
    from jetattn.nn.part import ParticleTransformer

    torch.manual_seed(3)
    model = ParticleTransformer(
        7,
        2,
        embed_dims=(16,),
        pair_embed_dims=(8,),
        num_heads=2,
        num_layers=2,
        num_cls_layers=1,
        attention=kernel,
        topk=4,
    ).eval()
    x, v, mask = _jets()
    calls = {}

    def keep_call(name):
        def hook(module, args, kwargs, output):
            calls[name] = (args, kwargs, output)

        return hook

    handles = [
        m.register_forward_hook(keep_call(n), with_kwargs=True)
        for n, m in model.named_modules()
        if isinstance(m, Attention)
    ]
    with torch.no_grad(), record_attention(model, details=True) as records:
        model(x, v, mask)
    for h in handles:
        h.remove()
    first_input = calls["blocks.0.attn"][0][0]
    for name in ("blocks.0.attn", "blocks.1.attn"):
        (record,) = records[name]
        (queries,), kwargs, output = calls[name]
        attn = model.get_submodule(name)
        with torch.no_grad():
            q = attn.q_proj(queries).view(3, -1, 2, 8).transpose(1, 2)
            k, v_heads = attn.kv_proj(queries).view(3, -1, 2, 2, 8).permute(2, 0, 3, 1, 4).unbind(0)
            _, weights = KERNELS[kernel](q, k, v_heads, kwargs["bias"], 0.0, True, 4)
            torch.testing.assert_close(record.weights, weights, atol=1e-6, rtol=0)
            torch.testing.assert_close(record.bias, kwargs["bias"], atol=0, rtol=0)
            applied = attn.out_proj((record.weights @ v_heads).transpose(1, 2).reshape(output.shape))
            torch.testing.assert_close(applied, output, atol=1e-6, rtol=0)
            if name == "blocks.1.attn":
                q0 = attn.q_proj(first_input).view(3, -1, 2, 8).transpose(1, 2)
                k0 = attn.kv_proj(first_input).view(3, -1, 2, 2, 8)[:, :, 0].transpose(1, 2)
                stale = KERNELS[kernel](q0, k0, k0, kwargs["bias"], 0.0, True, 4)[1]
                assert (stale - record.weights).abs().max() > 1e-3

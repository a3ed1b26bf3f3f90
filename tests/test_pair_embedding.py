"""The pair embedding's eval path: BatchNorms folded into the 1×1 convolutions, pairs in cache-sized slices."""

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from jetattn.nn import pairs
from jetattn.nn.pairs import PairEmbed, embed_pair_features, folded_stages


def trained_like(embed: PairEmbed, seed: int = 0) -> PairEmbed:
    """Running statistics and affine parameters away from their initial values, as after training."""
    generator = torch.Generator().manual_seed(seed)
    for module in embed.modules():
        if isinstance(module, nn.BatchNorm1d):
            size = module.num_features
            module.running_mean.copy_(torch.randn(size, generator=generator))
            module.running_var.copy_(torch.rand(size, generator=generator) * 2 + 0.2)
            module.weight.data.copy_(1 + 0.3 * torch.randn(size, generator=generator))
            module.bias.data.copy_(0.3 * torch.randn(size, generator=generator))
    return embed


class LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an operation returns."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel())
        return out


@pytest.mark.parametrize(
    "options", [{}, {"bias": False}, {"pre_activation": False}], ids=["part", "no-bias", "activation-last"]
)
def test_folded_eval_embedding_equals_the_layers_in_every_slice(options, monkeypatch):
    monkeypatch.setattr(pairs, "INFERENCE_CHUNK", 100)
    embed = trained_like(PairEmbed((16, 16, 4), **options)).eval()
    features = torch.randn(357, 4) * 3  # four slices, the last one short
    expected = embed.embed(features.T.unsqueeze(0)).squeeze(0).T  # the layers one by one, as weaver runs them
    with torch.no_grad():
        folded = embed_pair_features(embed.embed, features)
    torch.testing.assert_close(folded, expected, atol=2e-6, rtol=1e-5)
    assert len(folded_stages(embed.embed)) == 3  # one matrix product per convolution, no BatchNorm left


def test_eval_slices_keep_the_intermediates_small(monkeypatch):
    monkeypatch.setattr(pairs, "INFERENCE_CHUNK", 64)
    embed = trained_like(PairEmbed((32, 32, 4))).eval()
    features = torch.randn(1000, 4)
    with torch.no_grad(), LargestTensor() as folded:
        embed_pair_features(embed.embed, features)
    with torch.no_grad(), LargestTensor() as layers:
        embed.embed(features.T.unsqueeze(0))
    assert layers.largest == 1000 * 32  # the layers hold every pair's 32 channels at once
    assert folded.largest == 1000 * 4  # the slices' 64 × 32 never reach the (P, heads) output


def test_training_normalises_over_the_batch_as_the_convolutions_do():
    torch.manual_seed(1)
    embed = trained_like(PairEmbed((16, 4))).train()
    twin = trained_like(PairEmbed((16, 4))).train()
    twin.load_state_dict(embed.state_dict())
    features = torch.randn(500, 4, requires_grad=True)
    out = embed_pair_features(embed.embed, features)
    expected = twin.embed(features.T.unsqueeze(0)).squeeze(0).T
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    for ours, theirs in zip(embed.modules(), twin.modules(), strict=True):
        if isinstance(ours, nn.BatchNorm1d):  # running statistics moved the same way
            torch.testing.assert_close(ours.running_mean, theirs.running_mean)
            torch.testing.assert_close(ours.running_var, theirs.running_var)
    out.sum().backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()


def test_folding_follows_the_weights_after_they_change():
    embed = trained_like(PairEmbed((8, 4))).eval()
    features = torch.randn(50, 4)
    before = embed_pair_features(embed.embed, features)
    with torch.no_grad():
        embed.embed[1].weight.mul_(2)  # the first convolution, as an optimizer step would
    after = embed_pair_features(embed.embed, features)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, embed.embed(features.T.unsqueeze(0)).squeeze(0).T, atol=2e-6, rtol=1e-5)

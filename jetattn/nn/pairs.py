"""Pairwise particle features and their embedding into one attention bias per head (ParT, arXiv:2202.03772).

For particles a, b with four-momenta (px, py, pz, E) in GeV:
Δ = √((y_a − y_b)² + (φ_a − φ_b)²) in rapidity y and wrapped azimuth φ, k_T = min(pT_a, pT_b) Δ,
z = min(pT_a, pT_b) / (pT_a + pT_b), m² = (p_a + p_b)², and the features are their logarithms,
in the order (ln k_T, ln z, ln Δ, ln m²) that weaver's ParticleTransformer uses, so its weights load here.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _pt_rapidity_phi(p4: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    px, py, pz, energy = p4.unbind(dim=1)
    pt = torch.sqrt(px.square() + py.square())
    # y = ½ ln((E + pz)/(E − pz)), written so that padded (all-zero) particles give y = 0, not NaN
    rapidity = 0.5 * torch.log(1 + 2 * pz / (energy - pz).clamp(min=1e-20))
    return pt, rapidity, torch.atan2(py, px)


def pair_features(p4_a: torch.Tensor, p4_b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``p4_a, p4_b: (B, 4, ...)`` broadcastable  ->  ``(B, 4, ...)`` of (ln k_T, ln z, ln Δ, ln m²)."""
    pt_a, y_a, phi_a = _pt_rapidity_phi(p4_a)
    pt_b, y_b, phi_b = _pt_rapidity_phi(p4_b)
    dphi = torch.remainder(phi_a - phi_b + math.pi, 2 * math.pi) - math.pi
    delta = torch.sqrt((y_a - y_b).square() + dphi.square())
    pt_min = torch.minimum(pt_a, pt_b)
    ln_kt = torch.log((pt_min * delta).clamp(min=eps))
    ln_z = torch.log((pt_min / (pt_a + pt_b).clamp(min=eps)).clamp(min=eps))
    ln_delta = torch.log(delta.clamp(min=eps))
    p4_sum = p4_a + p4_b
    m2 = p4_sum[:, 3].square() - p4_sum[:, :3].square().sum(dim=1)
    ln_m2 = torch.log(m2.clamp(min=eps))
    return torch.stack((ln_kt, ln_z, ln_delta, ln_m2), dim=1)


class PairEmbed(nn.Module):
    """Pair features -> one attention bias per head: BatchNorm, then 1×1 convolutions (BN, GELU between).

    Args:
        dims: output widths of the 1×1 convolutions; the last is the number of heads.
        num_features: number of pair features (4: ln k_T, ln z, ln Δ, ln m²).
        pre_activation: leave out the GELU after the last layer (ParT's default).
        dense: compute every pair of the padded sequence (ONNX-friendly, fixed shapes) instead of only the
            pairs of real particles (faster on jets with padding).
    """

    def __init__(
        self, dims: tuple[int, ...], num_features: int = 4, pre_activation: bool = True, dense: bool = False
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.BatchNorm1d(num_features)]
        width = num_features
        for dim in dims:
            layers += [nn.Conv1d(width, dim, 1), nn.BatchNorm1d(dim), nn.GELU()]
            width = dim
        if pre_activation:
            layers = layers[:-1]
        self.embed = nn.Sequential(*layers)  # index layout matches weaver's, so its weights load unchanged
        self.num_heads = dims[-1]
        self.dense = dense

    def forward(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``p4: (B, 4, L)``, ``mask: (B, 1, L)`` bool (True = real)  ->  ``(B, heads, L, L)``, 0 off real pairs.

        The features are symmetric in (a, b), so only the lower triangle is computed and mirrored.
        """
        batch, _, length = p4.shape
        if self.dense:
            pairs = torch.ones(length, length, dtype=torch.bool, device=p4.device).tril()
            a, b = pairs.nonzero(as_tuple=True)
            features = pair_features(p4[:, :, a], p4[:, :, b])  # B, 4, num_pairs
            elements = self.embed(features)  # B, heads, num_pairs
            bias = elements.new_zeros(batch, self.num_heads, length, length)
            bias[:, :, a, b] = elements
            bias[:, :, b, a] = elements
            # padded particles are all-zero four-vectors: their φ = atan2(0, 0) is NaN in ONNX, so zero them here
            real_pairs = mask.unsqueeze(-1) & mask.unsqueeze(-2)  # B, 1, L, L
            return torch.where(real_pairs, bias, torch.zeros_like(bias))
        real_pairs = (mask.unsqueeze(-1) & mask.unsqueeze(-2)).squeeze(1).tril()  # B, L, L
        jet, a, b = real_pairs.nonzero(as_tuple=True)
        p4_t = p4.transpose(1, 2)  # B, L, 4
        features = pair_features(p4_t[jet, a].T.unsqueeze(0), p4_t[jet, b].T.unsqueeze(0))  # 1, 4, num_pairs
        elements = self.embed(features).squeeze(0).T  # num_pairs, heads
        bias = elements.new_zeros(batch, length, length, self.num_heads)
        bias[jet, a, b] = elements
        bias[jet, b, a] = elements
        return bias.permute(0, 3, 1, 2)

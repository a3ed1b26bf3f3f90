"""Pairwise particle features and their embedding into one attention bias per head (ParT, arXiv:2202.03772).

For particles a, b with four-momenta (px, py, pz, E) in GeV:
Δ = √((y_a − y_b)² + (φ_a − φ_b)²) in rapidity y and wrapped azimuth φ, k_T = min(pT_a, pT_b) Δ,
z = min(pT_a, pT_b) / (pT_a + pT_b), m² = (p_a + p_b)², and the features are their logarithms,
in the order (ln k_T, ln z, ln Δ, ln m²) that weaver's ParticleTransformer uses, so its weights load here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

# pairs per slice of the folded eval-mode embedding: 16384 × 64 float32 channels is 4 MB, which stays in cache
# between the layers (measured on the 2-core AMD EPYC: docs/benchmarks.md, "The pair embedding in inference")
INFERENCE_CHUNK = 16384


def particle_kinematics(p4: torch.Tensor) -> torch.Tensor:
    """``(B, 4, L)`` (px, py, pz, E)  ->  ``(B, 3, L)`` (pT, rapidity y, azimuth φ), once per particle.

    Computed per particle and only then paired: near-collinear pairs make Δ and m² differences of nearly
    equal numbers, so a last-bit change in y or φ moves ln Δ by units. Evaluating y and φ on the same
    (B, L) layout as weaver keeps those bits, and the outputs, equal to weaver's.
    """
    pt = torch.sqrt(p4[:, :2].square().sum(dim=1))
    pz, energy = p4[:, 2], p4[:, 3]
    # y = ½ ln((E + pz)/(E − pz)), written so that padded (all-zero) particles give y = 0, not NaN
    rapidity = 0.5 * torch.log(1 + (2 * pz) / (energy - pz).clamp(min=1e-20))
    return torch.stack((pt, rapidity, torch.atan2(p4[:, 1], p4[:, 0])), dim=1)


def pair_features(
    kin_a: torch.Tensor,
    kin_b: torch.Tensor,
    p4_a: torch.Tensor,
    p4_b: torch.Tensor,
    eps: float = 1e-8,
    min_delta: float | None = None,
) -> torch.Tensor:
    """Per-pair ``(3, P)`` kinematics and ``(4, P)`` four-vectors of both particles -> ``(4, P)`` features
    (ln k_T, ln z, ln Δ, ln m²).

    ``min_delta`` floors Δ. For particles at the same (y, φ), as Delphes writes several particles of one
    calorimeter tower, float32 makes Δ rounding noise (up to ~1e-6), and ln Δ, ln k_T then differ between
    PyTorch and onnxruntime, whose log and atan2 round differently. A floor of 1e-5, far below any detector's
    resolution, makes them agree; None keeps weaver's definition, which its checkpoints were trained with.
    """
    (pt_a, y_a, phi_a), (pt_b, y_b, phi_b) = kin_a, kin_b
    dphi = (phi_a - phi_b + math.pi) % (2 * math.pi) - math.pi
    delta = ((y_a - y_b) ** 2 + dphi**2).sqrt()
    if min_delta is not None:
        delta = delta.clamp(min=min_delta)
    ln_delta = torch.log(delta.clamp(min=eps))
    pt_min = torch.minimum(pt_a, pt_b)
    ln_kt = torch.log((pt_min * delta).clamp(min=eps))
    ln_z = torch.log((pt_min / (pt_a + pt_b).clamp(min=eps)).clamp(min=eps))
    p4_sum = p4_a + p4_b
    m2 = p4_sum[3:4].square() - p4_sum[:3].square().sum(dim=0, keepdim=True)
    ln_m2 = torch.log(m2.clamp(min=eps)).squeeze(0)
    return torch.stack((ln_kt, ln_z, ln_delta, ln_m2), dim=0)


def pair_feature_matrix(p4: torch.Tensor, mask: torch.Tensor, min_delta: float | None = None) -> torch.Tensor:
    """``p4: (B, 4, L)``, ``mask: (B, 1, L)`` bool  ->  ``(B, 4, L, L)`` pair features, 0 off real pairs.

    Every pair at once (elementwise, cheap next to embedding them), for models that project the pairs along
    one particle axis before embedding them (LinParT with ``linear_pairs``).
    """
    kin = particle_kinematics(p4).transpose(0, 1)  # 3, B, L
    p4_t = p4.transpose(0, 1)  # 4, B, L
    features = pair_features(
        kin[..., :, None], kin[..., None, :], p4_t[..., :, None], p4_t[..., None, :], min_delta=min_delta
    )
    features = torch.nan_to_num(features, nan=0.0, posinf=0.0, neginf=0.0).transpose(0, 1)  # B, 4, L, L
    real_pairs = mask.unsqueeze(-1) & mask.unsqueeze(-2)  # B, 1, L, L
    return features.masked_fill(~real_pairs, 0)


class PairEmbed(nn.Module):
    """Pair features -> one attention bias per head: BatchNorm, then 1×1 convolutions (BN, GELU between).

    Args:
        dims: output widths of the 1×1 convolutions; the last is the number of heads.
        num_features: number of pair features (4: ln k_T, ln z, ln Δ, ln m²).
        pre_activation: leave out the GELU after the last layer (ParT's default).
        dense: compute every pair of the padded sequence (ONNX-friendly, fixed shapes) instead of only the
            pairs of real particles (faster on jets with padding).
        min_delta: floor on Δ (see :func:`pair_features`); None is weaver's definition.
        bias: whether the convolutions carry biases (weaver's ParT drops them from version 3 on).
        remove_self_pair: leave each particle's pair with itself out (bias 0 on the diagonal).
        recompute: in training, keep only the inputs and the output of the pair features and their embedding for
            the backward pass, which computes them again (activation checkpointing, see :meth:`recomputed`).
    """

    def __init__(
        self,
        dims: tuple[int, ...],
        num_features: int = 4,
        pre_activation: bool = True,
        dense: bool = False,
        min_delta: float | None = None,
        bias: bool = True,
        remove_self_pair: bool = False,
        recompute: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.BatchNorm1d(num_features)]
        width = num_features
        for dim in dims:
            layers += [nn.Conv1d(width, dim, 1, bias=bias), nn.BatchNorm1d(dim), nn.GELU()]
            width = dim
        if pre_activation:
            layers = layers[:-1]
        self.embed = nn.Sequential(*layers)  # index layout matches weaver's, so its weights load unchanged
        self.num_heads = dims[-1]
        self.dense = dense
        self.min_delta = min_delta
        self.diagonal = -1 if remove_self_pair else 0
        self.recompute = recompute

    def recomputed(self, function: Callable[..., torch.Tensor], *inputs) -> torch.Tensor:
        """``function(*inputs)``, a computation that ends in this embedding's layers. With ``recompute``, in training,
        only the inputs and the output are kept for the backward pass, which runs ``function`` again with the
        BatchNorm running statistics frozen: they move once per step, as without, and the outputs, gradients and
        statistics are the same. What is not kept: ``pair_embed_dims`` channels per pair, three tensors a layer,
        against ``heads`` channels for the output."""
        if not (self.recompute and self.training and torch.is_grad_enabled()):
            return function(*inputs)
        if torch.compiler.is_compiling():  # the compiler recomputes the region itself; its mutations run once
            return checkpoint(function, *inputs, use_reentrant=False)
        return checkpoint(function, *inputs, use_reentrant=False, context_fn=self._recompute_contexts)

    def _recompute_contexts(self) -> tuple:
        return nullcontext(), frozen_running_statistics(self.embed)

    def forward(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``p4: (B, 4, L)``, ``mask: (B, 1, L)`` bool (True = real)  ->  ``(B, heads, L, L)``, 0 off real pairs.

        The features are symmetric in (a, b), so only the lower triangle is computed and mirrored.
        """
        batch, _, length = p4.shape
        real_pairs = mask.unsqueeze(-1) & mask.unsqueeze(-2)  # B, 1, L, L
        pairs = torch.ones_like(real_pairs) if self.dense else real_pairs
        jet, _, a, b = pairs.tril(self.diagonal).nonzero(as_tuple=True)  # one entry per pair a >= b (a > b)
        if jet.numel() == 0:  # a batch of empty jets
            return p4.new_zeros(batch, self.num_heads, length, length)
        kin = particle_kinematics(p4).transpose(0, 1)  # 3, B, L
        p4_t = p4.transpose(0, 1)  # 4, B, L
        elements = self.recomputed(self._embed_pairs, kin, p4_t, jet, a, b)  # P, heads
        bias = elements.new_zeros(batch, length, length, self.num_heads)
        bias[jet, a, b] = elements
        bias[jet, b, a] = elements
        bias = bias.permute(0, 3, 1, 2).contiguous()  # SDPA wants the key axis contiguous
        if self.dense:
            # padded particles are all-zero four-vectors: their φ = atan2(0, 0) is NaN in ONNX, so zero them here
            bias = torch.where(real_pairs, bias, torch.zeros_like(bias))
        return bias

    def _embed_pairs(self, kin: torch.Tensor, p4_t: torch.Tensor, jet, a, b) -> torch.Tensor:
        """``kin: (3, B, L)``, ``p4_t: (4, B, L)`` and the pairs' ``(P,)`` indices  ->  ``(P, heads)``."""
        features = pair_features(
            kin[:, jet, a], kin[:, jet, b], p4_t[:, jet, a], p4_t[:, jet, b], min_delta=self.min_delta
        )  # 4, P
        # an unphysical particle (E < |pz|, say from a NaN energy read as 0) has no rapidity: keep it from
        # turning the BatchNorm statistics, and so the whole batch, into NaN
        features = torch.nan_to_num(features, nan=0.0, posinf=0.0, neginf=0.0)
        return embed_pair_features(self.embed, features.T)

    def embed_projected(self, features: torch.Tensor) -> torch.Tensor:
        """Pair features projected along the key axis, ``(B, 4, L, proj_dim)``  ->  ``(B, heads, L, proj_dim)``;
        with ``recompute``, LinParT's largest activations (``L × proj_dim`` per channel and jet) are not kept."""
        batch, channels, length, proj_dim = features.shape
        flat = features.permute(0, 2, 3, 1).reshape(-1, channels)  # B·L·proj_dim entries, as the pairs of forward
        embedded = self.recomputed(embed_pair_features, self.embed, flat)
        return embedded.view(batch, length, proj_dim, -1).permute(0, 3, 1, 2).contiguous()  # key axis contiguous


Stage = tuple[torch.Tensor, torch.Tensor, "nn.Module | None"]


def embed_pair_features(embed: nn.Sequential, features: torch.Tensor) -> torch.Tensor:
    """:class:`PairEmbed`'s layers on ``(P, C)`` pair features  ->  ``(P, heads)``.

    In training (any BatchNorm in training mode) layer by layer, the 1×1 convolutions as the matrix products they
    are, so the BatchNorms normalise over the P pairs. In eval the BatchNorms are fixed affine maps: they are folded
    into the convolutions (:func:`folded_stages`), and the pairs go through in slices of ``INFERENCE_CHUNK``, so the
    ``pair_embed_dims``-wide intermediates of P pairs are never all in memory (a slice's stay in cache). The same
    function to float32 rounding (about 1e-6 relative). ``torch.compile`` and GPUs take the whole batch in one slice
    (the compiler fuses the region itself; on a GPU small slices would cost launches, and the slicing is measured on
    CPUs only). ONNX export keeps the layers as they are, so the graph and its int8 quantization stay as before.
    """
    if torch.onnx.is_in_onnx_export():  # the layers as they are: Conv, BatchNormalization (not int8 MatMuls)
        return embed(features.T.unsqueeze(0)).squeeze(0).T
    if any(m.training for m in embed if isinstance(m, nn.BatchNorm1d)):
        for layer in embed:
            if isinstance(layer, nn.Conv1d):
                features = F.linear(features, layer.weight[..., 0], layer.bias)
            else:  # BatchNorm1d on (P, C) normalises over the pairs, as on (1, C, P); GELU
                features = layer(features)
        return features
    stages = folded_stages(embed)
    if torch.compiler.is_compiling() or features.device.type != "cpu" or features.shape[0] <= INFERENCE_CHUNK:
        return run_stages(stages, features)
    out = features.new_empty(features.shape[0], stages[-1][0].shape[0])
    for start in range(0, features.shape[0], INFERENCE_CHUNK):
        out[start : start + INFERENCE_CHUNK] = run_stages(stages, features[start : start + INFERENCE_CHUNK])
    return out


def run_stages(stages: list[Stage], features: torch.Tensor) -> torch.Tensor:
    for weight, bias, activation in stages:
        features = F.linear(features, weight, bias)
        if activation is not None:
            features = activation(features)
    return features


def folded_stages(embed: nn.Sequential) -> list[Stage]:
    """The eval-mode layers of :class:`PairEmbed` (BatchNorm, then 1×1 convolution, BatchNorm, GELU per layer) as
    ``(weight (out, in), bias (out,), activation or None)`` stages: each BatchNorm's running statistics and affine
    parameters are the map x -> s x + t, folded into the convolution after it (the leading one, on the inputs) or
    before it (the others, on the outputs)."""
    stages: list[Stage] = []
    weight = bias = in_scale = in_shift = None
    for layer in embed:
        if isinstance(layer, nn.BatchNorm1d):
            scale = torch.rsqrt(layer.running_var + layer.eps)
            if layer.affine:
                scale = scale * layer.weight
            shift = -layer.running_mean * scale + (layer.bias if layer.affine else 0)
            if weight is None:  # the leading BatchNorm, on the inputs of the next convolution
                in_scale, in_shift = scale, shift
            else:
                weight, bias = weight * scale[:, None], bias * scale + shift
        elif isinstance(layer, nn.Conv1d):
            if weight is not None:
                stages.append((weight, bias, None))
            weight = layer.weight[..., 0]
            bias = layer.bias if layer.bias is not None else weight.new_zeros(weight.shape[0])
            if in_scale is not None:
                weight, bias = weight * in_scale, bias + weight @ in_shift
                in_scale = in_shift = None
        else:  # the activation closes a stage
            stages.append((weight, bias, layer))
            weight = bias = None
    if weight is not None:
        stages.append((weight, bias, None))
    return stages


@contextmanager
def frozen_running_statistics(module: nn.Module) -> Iterator[None]:
    """Within the block, ``module``'s BatchNorms normalise with their batch statistics as in training but leave
    their running statistics and counters as they were (checkpointing's recomputation in the backward pass)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    try:
        for m in norms:
            m.momentum = 0.0  # running = 1 · running + 0 · batch: unchanged
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved, strict=True):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)

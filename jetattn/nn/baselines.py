"""Baseline taggers: Particle Flow Network, P-CNN, and weaver-core's ParticleNet in the checkpoint layout.

All three take weaver's inputs in the order of the JetClass/TopLandscape/QuarkGluon YAMLs:
``points (N, 2, P)``, ``features (N, C, P)``, ``lorentz_vectors (N, 4, P)``, ``mask (N, 1, P)``,
with 1 in the mask for a real particle and 0 for padding. Each returns logits ``(N, num_classes)``,
or class probabilities when built with ``for_inference=True`` (what weaver asks for on ONNX export).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from weaver.nn.model.ParticleNet import EdgeConvBlock, ParticleNet, pairwise_distance

from jetattn.nn.inputs import finite, particle_mask

# The ParticleNet of the official JetClass checkpoints (ParticleNet_kin.pt and friends).
PARTICLENET_JETCLASS = {
    "conv_params": [(16, (64, 64, 64)), (16, (128, 128, 128)), (16, (256, 256, 256))],
    "fc_params": [(256, 0.1)],
    "use_fusion": False,
    "use_fts_bn": True,
    "use_counts": True,
}


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of ``x (N, C, P)`` over the real particles; an empty jet gives 0, not 0/0."""
    counts = mask.sum(dim=-1).clamp(min=1)  # N, 1
    return (x * mask).sum(dim=-1) / counts


def _classifier(in_dim: int, hidden: Sequence[tuple[int, float]], num_classes: int) -> nn.Sequential:
    """Fully connected head: (width, dropout) hidden layers with ReLU, then the class logits."""
    layers: list[nn.Module] = []
    for width, drop_rate in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU(), nn.Dropout(drop_rate)]
        in_dim = width
    layers.append(nn.Linear(in_dim, num_classes))
    return nn.Sequential(*layers)


class ParticleFlowNetwork(nn.Module):
    """Deep Sets (Komiske, Metodiev, Thaler, arXiv:1810.05165): F(sum over particles of Phi(particle)).

    Args:
        input_dims: features per particle.
        num_classes: output classes.
        phi_sizes: widths of the per-particle network Phi.
        f_sizes: widths of the jet-level network F (applied to the summed latent vector).
        for_inference: output softmax probabilities instead of logits.
    """

    def __init__(
        self,
        input_dims: int,
        num_classes: int,
        phi_sizes: Sequence[int] = (128, 128, 128),
        f_sizes: Sequence[int] = (128, 128, 128),
        for_inference: bool = False,
        **kwargs,
    ) -> None:
        super().__init__()
        phi: list[nn.Module] = []
        for width in phi_sizes:
            phi += [nn.Conv1d(input_dims, width, kernel_size=1), nn.ReLU()]
            input_dims = width
        self.phi = nn.Sequential(*phi)
        self.classifier = _classifier(input_dims, [(w, 0.0) for w in f_sizes], num_classes)
        self.for_inference = for_inference

    def forward(self, points, features, lorentz_vectors, mask) -> torch.Tensor:
        mask = particle_mask(mask, points, lorentz_vectors)
        latent = (self.phi(finite(features)) * mask).sum(dim=-1)  # N, phi_sizes[-1]
        logits = self.classifier(latent)
        return torch.softmax(logits, dim=1) if self.for_inference else logits


class _ResidualUnit(nn.Module):
    """Two kernel-3 convolutions along the pT-ordered particle sequence, with a (projected) shortcut."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv1d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm1d(out_channels),
            nn.ReLU(),
        )
        self.conv2 = nn.Sequential(
            nn.Conv1d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm1d(out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv1d(in_channels, out_channels, kernel_size=1, bias=False), nn.BatchNorm1d(out_channels)
            )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # padding is zeroed before every convolution (BatchNorm shifts it), so the last real particle's
        # neighbour beyond it reads 0, as at the end of an unpadded sequence
        hidden = self.conv1(x) * mask
        return torch.relu(self.conv2(hidden) + self.shortcut(x)) * mask


class ParticleCNN(nn.Module):
    """P-CNN, the 1D ResNet over pT-ordered particles of the CMS DeepAK8 tagger (CMS-DP-2017-049).

    Args:
        input_dims: features per particle.
        num_classes: output classes.
        conv_params: channels of the stem convolution, then one tuple per stage with one residual unit
            (two convolutions) per entry.
        fc_params: (width, dropout) of the hidden layers after the average over real particles.
        for_inference: output softmax probabilities instead of logits.
    """

    def __init__(
        self,
        input_dims: int,
        num_classes: int,
        conv_params: Sequence[Sequence[int]] = ((32,), (64, 64), (64, 64), (128, 128)),
        fc_params: Sequence[tuple[int, float]] = ((512, 0.2),),
        for_inference: bool = False,
        **kwargs,
    ) -> None:
        super().__init__()
        stem_channels = conv_params[0][-1]
        self.stem = nn.Sequential(
            nn.Conv1d(input_dims, stem_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm1d(stem_channels),
            nn.ReLU(),
        )
        units, channels = [], stem_channels
        for stage in conv_params[1:]:
            for out_channels in stage:
                units.append(_ResidualUnit(channels, out_channels))
                channels = out_channels
        self.units = nn.ModuleList(units)
        self.classifier = _classifier(channels, fc_params, num_classes)
        self.for_inference = for_inference

    def forward(self, points, features, lorentz_vectors, mask) -> torch.Tensor:
        mask = particle_mask(mask, points, lorentz_vectors)
        x = self.stem(finite(features) * mask) * mask  # N, C, P
        for unit in self.units:
            x = unit(x, mask)
        logits = self.classifier(masked_mean(x, mask))
        return torch.softmax(logits, dim=1) if self.for_inference else logits


def knn_without_self(points: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``(N, P, k)`` of each particle's k nearest neighbours in ``points (N, D, P)``, never itself.

    weaver's kNN takes the k+1 nearest and drops the first, taken to be the particle itself. Delphes jets hold
    particles at identical (eta, phi) (a tower's photon and neutral hadron), and then PyTorch and onnxruntime
    break the tie differently, so an exported ParticleNet disagrees with PyTorch. Here the particle is at
    distance -1 from itself, and ties further down go by index.
    """
    distance = pairwise_distance(points)  # N, P, P
    index = torch.arange(distance.size(-1), device=points.device)
    distance = distance.masked_fill(index.unsqueeze(0) == index.unsqueeze(1), -1.0)
    # equidistant particles at the k-th place go by index everywhere: ONNX TopK guarantees it, torch.topk does not
    if torch.onnx.is_in_onnx_export():
        return distance.topk(k + 1, dim=-1, largest=False)[1][:, :, 1:]
    return distance.sort(dim=-1, stable=True)[1][:, :, 1 : k + 1]


class _EdgeConv(EdgeConvBlock):
    """weaver's EdgeConv block (same parameters, same checkpoint keys) with ``knn_without_self``."""

    def forward(self, points: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        edges = self.get_graph_feature(features, self.k, knn_without_self(points, self.k))  # N, 2C, P, k
        for conv, bn, act in zip(self.convs, self.bns, self.acts, strict=True):
            edges = act(bn(conv(edges)))
        shortcut = features if self.sc is None else self.sc_bn(self.sc(features))
        return self.sc_act(shortcut + edges.mean(dim=-1))  # N, C_out, P


class _PaddedTrimmer(nn.Module):
    """weaver's sequence trimmer, then zero padding back up to ``min_length`` particles.

    ParticleNet's k-nearest-neighbour search needs more than k slots; the trimmer cuts a batch down to its
    longest jet, which can be shorter (or empty). The extra slots are masked, so outputs do not change.
    """

    def __init__(self, trimmer: nn.Module, min_length: int) -> None:
        super().__init__()
        self.trimmer = trimmer
        self.min_length = min_length

    def forward(self, points, features=None, mask=None, uu=None):
        points, features, mask, uu = self.trimmer(points, features, mask=mask, uu=uu)
        missing = self.min_length - points.size(-1)
        if missing > 0:

            def pad(x):
                return torch.cat((x, x.new_zeros(x.shape[:-1] + (missing,))), dim=-1)

            points, features, mask = pad(points), pad(features), pad(mask)
        return points, features, mask, uu


class ParticleNetWrapper(nn.Module):
    """weaver-core's ParticleNet under the name ``mod``, the key layout of the official checkpoints.

    Two changes that leave the parameters as they are: the k-nearest-neighbour search never counts a particle
    as its own neighbour (``knn_without_self``), and batches whose longest jet has k or fewer particles work.

    Args:
        input_dims: features per particle.
        num_classes: output classes.
        fresh_head: for fine-tuning: drop ParticleNet's last Linear and classify with a new ``fc_out``,
            so a checkpoint trained on other classes loads with only its head left over.
        for_inference: output softmax probabilities instead of logits.
        **particlenet_options: passed to weaver's ``ParticleNet`` (conv_params, fc_params, ...).
    """

    def __init__(
        self,
        input_dims: int,
        num_classes: int,
        fresh_head: bool = False,
        for_inference: bool = False,
        **particlenet_options,
    ) -> None:
        super().__init__()
        self.mod = ParticleNet(input_dims, num_classes, for_inference=for_inference, **particlenet_options)
        self.mod.for_inference = False  # softmax below, after the (fresh) head
        cpu_mode = for_inference  # weaver's ONNX-friendly gather
        self.mod.edge_convs = nn.ModuleList(
            _EdgeConv(conv.k, conv.convs[0].in_channels // 2, [c.out_channels for c in conv.convs], cpu_mode=cpu_mode)
            for conv in self.mod.edge_convs
        )
        largest_k = max(conv.k for conv in self.mod.edge_convs)
        self.mod.trimmer = _PaddedTrimmer(self.mod.trimmer, largest_k + 1)
        if fresh_head:
            last = self.mod.fc[-1]
            self.mod.fc[-1] = nn.Identity()
            self.fc_out = nn.Linear(last.in_features, num_classes)
        else:
            self.fc_out = nn.Identity()
        self.for_inference = for_inference

    def forward(self, points, features, lorentz_vectors, mask) -> torch.Tensor:
        mask = particle_mask(mask, lorentz_vectors)
        logits = self.fc_out(self.mod(finite(points), finite(features), mask))
        return torch.softmax(logits, dim=1) if self.for_inference else logits

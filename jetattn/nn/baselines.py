"""Baseline taggers: Particle Flow Network, P-CNN, and weaver-core's ParticleNet in the checkpoint layout.

All three take weaver's inputs in the order of the JetClass/TopLandscape/QuarkGluon YAMLs:
``points (N, 2, P)``, ``features (N, C, P)``, ``lorentz_vectors (N, 4, P)``, ``mask (N, 1, P)``,
with 1 in the mask for a real particle and 0 for padding. Each returns logits ``(N, num_classes)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from weaver.nn.model.ParticleNet import EdgeConvBlock, ParticleNet, pairwise_distance

from jetattn.nn.blocks import classifier_head
from jetattn.nn.inputs import finite, particle_mask


class ParticleFlowNetwork(nn.Module):
    """Deep Sets (Komiske, Metodiev, Thaler, arXiv:1810.05165): F(sum over particles of Phi(particle)).

    Parameter names follow the public ParT repository's PFN (``phi.<i>.0``, ``fc.<i>.0``), so models trained
    with it load here unchanged and compute the same function.

    Args:
        input_dims: features per particle.
        num_classes: output classes.
        phi_sizes: widths of the per-particle network Phi (1x1 convolutions, ReLU).
        f_sizes: widths of the jet-level network F applied to the summed latent vector.
        use_bn: BatchNorm on the inputs and after each Phi layer (off in the public recipe).
    """

    def __init__(
        self,
        input_dims: int,
        num_classes: int,
        phi_sizes: Sequence[int] = (128, 128, 128),
        f_sizes: Sequence[int] = (128, 128, 128),
        use_bn: bool = False,
    ) -> None:
        super().__init__()
        self.input_bn = nn.BatchNorm1d(input_dims) if use_bn else nn.Identity()
        phi: list[nn.Module] = []
        for width in phi_sizes:
            norm = nn.BatchNorm1d(width) if use_bn else nn.Identity()
            phi.append(nn.Sequential(nn.Conv1d(input_dims, width, kernel_size=1), norm, nn.ReLU()))
            input_dims = width
        self.phi = nn.Sequential(*phi)
        self.fc = classifier_head(input_dims, num_classes, [(w, 0.0) for w in f_sizes])

    def forward(self, points, features, lorentz_vectors, mask) -> torch.Tensor:
        mask = particle_mask(mask, points, lorentz_vectors)
        latent = (self.phi(self.input_bn(finite(features))) * mask).sum(dim=-1)  # N, phi_sizes[-1]
        return self.fc(latent)


class _ResidualUnit(nn.Module):
    """Two kernel-3 convolutions along the pT-ordered particle sequence, each with BatchNorm and ReLU, added to
    the input (through a bias-free 1x1 convolution where the width or the stride changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.relu = nn.ReLU()
        self.conv_sc = None
        if in_channels != out_channels or stride != 1:
            self.conv_sc = nn.Conv1d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.conv_sc is None else self.conv_sc(x)
        x = self.relu(self.bn1(self.conv1(x)))
        return shortcut + self.relu(self.bn2(self.conv2(x)))


class ParticleCNN(nn.Module):
    """P-CNN, the 1D ResNet over pT-ordered particles of the CMS DeepAK8 tagger (CMS-DP-2017-049).

    The public ParT repository's P-CNN, parameter for parameter (``fts_conv``, ``resnet_units.resnet_unit_<i>``,
    ``fc``): padded slots enter as zeros and the final average runs over every slot, padding included, so the
    output depends on the padded length (fixed by the YAML) as in that recipe, and its models load here.

    Args:
        input_dims: features per particle.
        num_classes: output classes.
        conv_params: channels of the stem convolution, then one tuple per stage with one residual unit
            per entry; every stage after the first starts by halving the sequence (stride 2).
        fc_params: (width, dropout) of the hidden layers after the average.
    """

    def __init__(
        self,
        input_dims: int,
        num_classes: int,
        conv_params: Sequence[Sequence[int]] = ((32,), (64, 64), (64, 64), (128, 128)),
        fc_params: Sequence[tuple[int, float]] = ((512, 0.2),),
    ) -> None:
        super().__init__()
        channels = conv_params[0][0]
        self.fts_conv = nn.Sequential(
            nn.BatchNorm1d(input_dims),
            nn.Conv1d(input_dims, channels, kernel_size=3, padding=1),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
        )
        self.resnet_units = nn.ModuleDict()
        for stage, widths in enumerate(conv_params[1:]):
            units = []
            for j, width in enumerate(widths):
                units.append(_ResidualUnit(channels, width, stride=2 if stage > 0 and j == 0 else 1))
                channels = width
            self.resnet_units[f"resnet_unit_{stage}"] = nn.Sequential(*units)
        self.fc = classifier_head(channels, num_classes, fc_params)

    def forward(self, points, features, lorentz_vectors, mask) -> torch.Tensor:
        mask = particle_mask(mask, points, lorentz_vectors)
        x = self.fts_conv(finite(features) * mask)  # N, C, P
        for stage in self.resnet_units.values():
            x = stage(x)  # N, C', P' (P' = P / 2 per later stage)
        return self.fc(x.mean(dim=-1))


def knn_without_self(points: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``(N, P, k)`` of each particle's k nearest neighbours in ``points (N, D, P)``, never itself.

    weaver's kNN takes the k+1 nearest and drops the first, taken to be the particle itself. Delphes jets hold
    particles at identical (eta, phi) (a tower's photon and neutral hadron), and then PyTorch and onnxruntime
    break the tie differently, so an exported ParticleNet disagrees with PyTorch. Here the particle is at
    distance -1 from itself, ties further down go by index, and distances are float64.
    """
    # in float64 (which autocast leaves alone): PyTorch and onnxruntime sum |a|^2 - 2 a.b + |b|^2 in different
    # orders, and in float32 that moves near-equal feature-space distances past each other
    distance = pairwise_distance(points.double())  # N, P, P
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

    By default it computes what the public recipe's ParticleNet computes. Two changes leave the parameters as
    they are: batches whose longest jet has k or fewer particles work (weaver's raise), and, with
    ``knn_exclude_self``, the k-nearest-neighbour search never counts a particle as its own neighbour.

    Args:
        input_dims: features per particle.
        num_classes: output classes.
        fresh_head: for fine-tuning: drop ParticleNet's last Linear and classify with a new ``fc_out``,
            so a checkpoint trained on other classes loads with only its head left over.
        knn_exclude_self: pick neighbours with :func:`knn_without_self`. weaver's search drops the nearest
            point, taken to be the particle itself; on Delphes jets with particles at identical (eta, phi) that
            tie is broken differently by PyTorch and onnxruntime, so exports disagree. Use it for models trained
            here that will be deployed through ONNX (training and prediction alike); leave it off for
            checkpoints trained with weaver's ParticleNet (the official ones), as their outputs move with it.
        onnx_gather: weaver's ONNX-friendly neighbour gather (its ParticleNet's ``for_inference`` edge convolutions);
            same outputs.
        **particlenet_options: passed to weaver's ``ParticleNet`` (conv_params, fc_params, ...).
    """

    def __init__(
        self,
        input_dims: int,
        num_classes: int,
        fresh_head: bool = False,
        knn_exclude_self: bool = False,
        onnx_gather: bool = False,
        **particlenet_options,
    ) -> None:
        super().__init__()
        self.mod = ParticleNet(input_dims, num_classes, for_inference=onnx_gather, **particlenet_options)
        self.mod.for_inference = False  # weaver's flag also adds a softmax: logits out, after the (fresh) head
        if knn_exclude_self:
            self.mod.edge_convs = nn.ModuleList(
                _EdgeConv(
                    conv.k,
                    conv.convs[0].in_channels // 2,
                    [c.out_channels for c in conv.convs],
                    cpu_mode=onnx_gather,
                )
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

    def forward(self, points, features, lorentz_vectors, mask) -> torch.Tensor:
        mask = particle_mask(mask, lorentz_vectors)
        return self.fc_out(self.mod(finite(points), finite(features), mask))

"""Sanitising weaver's inputs: every model here reads its inputs through these."""

from __future__ import annotations

import torch

# Inputs beyond this are not physical (momenta in GeV, angles in rad); bounding them keeps sums and squares finite.
FEATURE_BOUND = 1e5


def finite(x: torch.Tensor) -> torch.Tensor:
    """NaN and inf read as 0 (the standardised centre), anything else is bounded by ``FEATURE_BOUND``."""
    return torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0).clamp(-FEATURE_BOUND, FEATURE_BOUND)


def particle_mask(mask: torch.Tensor, *unused_inputs: torch.Tensor) -> torch.Tensor:
    """The (N, 1, P) float mask, 1 for real particles, whatever junk the mask input holds.

    weaver's ONNX runner feeds every input by name, but the exporter drops inputs a model never reads;
    a no-op slice to each unused input's length keeps it in the graph.
    """
    for x in unused_inputs:
        mask = mask[..., : x.size(-1)]
    return (torch.nan_to_num(mask) > 0).float()


def keep_in_graph(mask: torch.Tensor, unused_inputs) -> torch.Tensor:
    """``mask`` plus exactly 0 from each of ``unused_inputs`` (made finite first), so that an ONNX export keeps
    inputs a model never reads whatever their length (weaver's ONNX runner feeds every input by name)."""
    for x in unused_inputs:
        mask = mask + 0 * finite(x[:1, :1, :1]).sum()
    return mask

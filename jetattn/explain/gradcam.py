"""Grad-CAM for particle tokens: which particles a layer's activations make the class score depend on.

For the token activations ``A (L, C)`` of a layer and the class score ``S``, the channel weights are the gradient
averaged over the real tokens, ``α_c = mean_i ∂S/∂A_ic``, and a particle's importance is ``ReLU(Σ_c α_c A_ic)``.
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

from jetattn.deps import ToolError


def particle_blocks(model: nn.Module, stream: str | None = None) -> list[str]:
    """Names of the self-attention blocks over the particles, in order: ParT's ``blocks.<i>`` (not its class
    attention), or a multi-scale model's stream ``stream`` (``streams.pf.blocks.<i>``; none if the model has
    streams but not that one, as model_2 whose constituent streams are each jet's)."""
    names = [name for name, _ in model.named_modules() if re.search(r"(^|\.)blocks\.\d+$", name)]
    names = [name for name in names if not re.search(r"(^|\.)(cls|cross)_blocks\.", name)]
    if stream is not None and any(".streams." in f".{name}" for name in names):
        names = [name for name in names if f".streams.{stream}.blocks." in f".{name}"]
    if not names:
        return []
    stem = names[0].rsplit(".", 1)[0]
    return [name for name in names if name.rsplit(".", 1)[0] == stem]


def gradcam(
    model: nn.Module, inputs: list[torch.Tensor], layer: str, classes: torch.Tensor, padding: torch.Tensor
) -> torch.Tensor:
    """Grad-CAM of every jet for its class in ``classes (B,)``: ``(B, L)``, 0 on padding (``padding (B, L)``,
    True = padded; ``L`` at most the layer's token count). ``model(*inputs)`` gives class logits, and the
    module ``layer`` outputs the tokens ``(B, L', C)``. Each jet's score depends on its own tokens only (eval)."""
    module = dict(model.named_modules()).get(layer)
    if module is None:
        raise ToolError(f"--gradcam-layer {layer}: no such module (particle blocks: {particle_blocks(model)})")
    kept = []
    handle = module.register_forward_hook(lambda _m, _args, output: kept.append(output))
    try:
        with torch.enable_grad():
            logits = model(*inputs)
            if len(kept) != 1 or kept[0].dim() != 3:
                raise ToolError(f"--gradcam-layer {layer}: ran {len(kept)} times or gave no (jets, tokens, width)")
            tokens = kept[0]
            score = logits.gather(1, classes[:, None].to(logits.device)).sum()
            (gradient,) = torch.autograd.grad(score, tokens)
    finally:
        handle.remove()
    tokens, gradient = tokens.detach(), gradient.detach()
    length = tokens.size(1)
    real = (~padding[:, :length]).to(tokens.dtype)[..., None]  # B, L', 1
    channel_weights = (gradient * real).sum(1) / real.sum(1).clamp(min=1)  # B, C
    cam = torch.relu((tokens * channel_weights[:, None]).sum(-1)) * real[..., 0]
    return cam


class EtaPhiMap:
    """Per class, the mean over jets of each jet's Grad-CAM (normalised to sum 1) histogrammed in
    (part_deta, part_dphi)."""

    def __init__(self, classes: list[str], half_width: float = 0.8, bins: int = 32) -> None:
        self.edges = np.linspace(-half_width, half_width, bins + 1)
        self.sums = {name: np.zeros((bins, bins)) for name in classes}
        self.jets = dict.fromkeys(classes, 0)

    def add(self, name: str, deta: np.ndarray, dphi: np.ndarray, cam: np.ndarray) -> None:
        total = cam.sum()
        if total > 0:
            self.sums[name] += np.histogram2d(deta, dphi, bins=(self.edges, self.edges), weights=cam / total)[0]
        self.jets[name] += 1

    def means(self) -> dict[str, np.ndarray]:
        return {name: self.sums[name] / n for name, n in self.jets.items() if n}

"""The one attention module of jetattn, its kernels, and attention recording.

Every model here (ParT, its sparse and Linformer variants, the multi-scale transformer) attends through
:class:`Attention`. The projections are real ``nn.Linear`` layers, so dynamic int8 quantization can swap them,
and the kernel that turns ``(q, k, v, bias)`` into an output is chosen by name:

- ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention`` (fused; the default);
- ``math``: softmax(q kᵀ / √d + bias) v written out, the reference every other kernel is tested against.

A kernel is a function ``kernel(q, k, v, bias, dropout_p, need_weights) -> (out, weights | None)`` with
``q: (B, H, Lq, D)``, ``k, v: (B, H, Lk, D)`` and ``bias`` an additive float tensor broadcastable to
``(B, H, Lq, Lk)`` holding ``-inf`` where a key must be ignored. Adding one is :func:`register_kernel`.

Attention maps are read with :func:`record_attention`; while recording, every module returns the weights it
actually applied (the math path), so what is recorded is what the model used.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

Kernel = Callable[..., tuple[torch.Tensor, torch.Tensor | None]]
KERNELS: dict[str, Kernel] = {}
_default_kernel = os.environ.get("JETATTN_ATTENTION", "sdpa")


def register_kernel(name: str) -> Callable[[Kernel], Kernel]:
    """Decorator adding an attention kernel under ``name``."""

    def add(fn: Kernel) -> Kernel:
        KERNELS[name] = fn
        return fn

    return add


def set_default_kernel(name: str) -> None:
    """Choose the kernel used by every :class:`Attention` built with ``kernel=None`` (also ``$JETATTN_ATTENTION``)."""
    global _default_kernel
    if name not in KERNELS:
        raise ValueError(f"unknown attention kernel {name!r}; choose from {sorted(KERNELS)}")
    _default_kernel = name


@register_kernel("math")
def math_kernel(q, k, v, bias=None, dropout_p=0.0, need_weights=False):
    logits = (q * (1.0 / math.sqrt(q.size(-1)))) @ k.transpose(-2, -1)  # B, H, Lq, Lk
    if bias is not None:
        logits = logits + bias
    weights = logits.softmax(dim=-1)
    out = F.dropout(weights, p=dropout_p) @ v if dropout_p > 0 else weights @ v
    return out, weights


@register_kernel("sdpa")
def sdpa_kernel(q, k, v, bias=None, dropout_p=0.0, need_weights=False):
    if need_weights:  # the fused kernel cannot hand its weights back
        return math_kernel(q, k, v, bias, dropout_p, need_weights)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p), None


def padding_bias(padding_mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(B, L)`` bool, True = padded  ->  ``(B, 1, 1, L)`` additive bias, ``-inf`` on padded keys."""
    bias = torch.zeros(padding_mask.shape, dtype=dtype, device=padding_mask.device)
    return bias.masked_fill(padding_mask, float("-inf"))[:, None, None, :]


class Attention(nn.Module):
    """Multi-head attention with separate query and key/value projections and a selectable kernel.

    Args:
        dim: embedding width (input and output).
        num_heads: number of heads; ``dim`` must divide evenly.
        dropout: dropout on the attention weights, in training only.
        bias: whether the projections carry a bias.
        kernel: kernel name from :data:`KERNELS`; None follows :func:`set_default_kernel`.
    """

    def __init__(
        self, dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True, kernel: str | None = None
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding width {dim} is not divisible by {num_heads} heads")
        if kernel is not None and kernel not in KERNELS:
            raise ValueError(f"unknown attention kernel {kernel!r}; choose from {sorted(KERNELS)}")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.dropout = dropout
        self.kernel = kernel
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.kv_proj = nn.Linear(dim, 2 * dim, bias=bias)  # keys and values in one matmul
        self.out_proj = nn.Linear(dim, dim, bias=bias)
        self.recorder: Callable[[Attention, torch.Tensor], None] | None = None

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x: (B, Lq, C)`` queries; ``context: (B, Lk, C)`` keys and values (default ``x``);
        ``bias``: additive logits broadcastable to ``(B, H, Lq, Lk)``, ``-inf`` on ignored keys."""
        context = x if context is None else context
        batch, len_q, _ = x.shape
        len_k = context.size(1)
        q = self.q_proj(x).view(batch, len_q, self.num_heads, self.head_dim).transpose(1, 2)  # B, H, Lq, D
        kv = self.kv_proj(context).view(batch, len_k, 2, self.num_heads, self.head_dim)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # each B, H, Lk, D
        if bias is not None:
            bias = bias.to(q.dtype)
        kernel = KERNELS[self.kernel or _default_kernel]
        dropout_p = self.dropout if self.training else 0.0
        out, weights = kernel(q, k, v, bias, dropout_p, self.recorder is not None)
        if self.recorder is not None:
            self.recorder(self, weights)
        out = out.transpose(1, 2).reshape(batch, len_q, self.dim)
        return self.out_proj(out)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # weaver layouts: nn.MultiheadAttention (`in_proj_weight`, the official ParT checkpoints) and
        # weaver-core >= 0.5 (`in_proj.weight`) pack q, k, v in one matrix; ours splits q from k, v.
        for old in ("in_proj_", "in_proj."):
            for kind in ("weight", "bias"):
                packed = state_dict.pop(prefix + old + kind, None)
                if packed is not None:
                    state_dict[prefix + "q_proj." + kind] = packed[: self.dim]
                    state_dict[prefix + "kv_proj." + kind] = packed[self.dim :]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@contextlib.contextmanager
def record_attention(model: nn.Module) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record the attention weights of every :class:`Attention` in ``model`` while the block runs.

    Yields a dict ``{module name: [weights (B, H, Lq, Lk) per call]}``, detached; padded keys get weight 0.
    """
    maps: dict[str, list[torch.Tensor]] = {}
    modules = [(name, m) for name, m in model.named_modules() if isinstance(m, Attention)]
    for name, module in modules:
        maps[name] = []
        module.recorder = lambda _m, w, store=maps[name]: store.append(w.detach())
    try:
        yield maps
    finally:
        for _, module in modules:
            module.recorder = None

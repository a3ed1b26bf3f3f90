"""Transformer blocks: the NormFormer-style particle block and its class-attention form (ParT), its
cross-attention form (the multi-scale transformer), and the classifier head every model here ends with."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from jetattn.nn.attention import Attention


class Block(nn.Module):
    """Pre-norm attention + feed-forward block with NormFormer's extra norms and scalings.

    Particle attention: ``block(x, bias=...)``; class attention: ``block(x, cls_token=..., bias=...)`` where the
    class token queries itself and the particles.

    Args:
        dim: embedding width.
        num_heads: attention heads.
        ffn_ratio: hidden width of the feed-forward network, in units of ``dim``.
        dropout, attn_dropout, activation_dropout: dropout after attention/FFN, on weights, after the activation.
        activation: ``gelu`` or ``relu``.
        scale_attn: LayerNorm after attention; scale_fc: LayerNorm inside the FFN;
        scale_heads: a learnt scale per head; scale_resids: a learnt scale on the FFN residual.
        kernel: attention kernel name (see :mod:`jetattn.nn.attention`).
        kernel_options: the kernel's settings for :class:`Attention` (``topk``; ``proj_dim``, ``max_len``,
            ``share_kv_proj``).
    """

    def __init__(
        self,
        dim: int = 128,
        num_heads: int = 8,
        ffn_ratio: int = 4,
        dropout: float = 0.1,
        attn_dropout: float = 0.1,
        activation_dropout: float = 0.1,
        activation: str = "gelu",
        scale_attn: bool = True,
        scale_fc: bool = True,
        scale_heads: bool = True,
        scale_resids: bool = True,
        kernel: str | None = None,
        kernel_options: dict | None = None,
    ) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        ffn_dim = dim * ffn_ratio
        self.pre_attn_norm = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, dropout=attn_dropout, kernel=kernel, **(kernel_options or {}))
        self.post_attn_norm = nn.LayerNorm(dim) if scale_attn else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.pre_fc_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.act_dropout = nn.Dropout(activation_dropout)
        self.post_fc_norm = nn.LayerNorm(ffn_dim) if scale_fc else nn.Identity()
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.c_attn = nn.Parameter(torch.ones(num_heads)) if scale_heads else None
        self.w_resid = nn.Parameter(torch.ones(dim)) if scale_resids else None

    def forward(
        self,
        x: torch.Tensor,
        cls_token: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
        key_padding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x: (B, L, C)``; ``cls_token: (B, 1, C)``; ``bias``: additive attention logits, ``-inf`` on padding
        (or, with ``key_padding (B, L)``, a linformer bias already projected: see :class:`Attention`).

        Returns ``(B, L, C)``, or ``(B, 1, C)`` for class attention (then ``bias`` covers ``1 + L`` keys).
        """
        if cls_token is None:
            residual = x
            x = self.attn(self.pre_attn_norm(x), bias=bias, key_padding=key_padding)
        else:
            residual = cls_token
            context = self.pre_attn_norm(torch.cat((cls_token, x), dim=1))  # B, 1+L, C
            x = self.attn(cls_token, context, bias=bias)  # the query is the un-normalised token, as in ParT
        return self.residual_and_ffn(x, residual)

    def residual_and_ffn(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """What follows the attention: head scaling, post-attention norm, residual, then the feed-forward network."""
        if self.c_attn is not None:
            batch, length, dim = x.shape
            x = (x.view(batch, length, self.num_heads, self.head_dim) * self.c_attn.view(-1, 1)).reshape(
                batch, length, dim
            )
        x = self.dropout(self.post_attn_norm(x)) + residual

        residual = x
        x = self.act_dropout(self.act(self.fc1(self.pre_fc_norm(x))))
        x = self.dropout(self.fc2(self.post_fc_norm(x)))
        if self.w_resid is not None:
            residual = self.w_resid * residual
        return x + residual


class CrossBlock(Block):
    """:class:`Block` whose queries attend to another sequence: ``block(x, context, bias=...)``.

    The queries and the context each get their own pre-attention LayerNorm (they come from different streams);
    the rest (NormFormer scalings, feed-forward network, arguments) is :class:`Block`'s.
    """

    def __init__(self, dim: int = 128, **block_options) -> None:
        super().__init__(dim, **block_options)
        self.pre_context_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``x: (B, Lq, C)`` queries; ``context: (B, Lk, C)`` keys and values; ``bias`` broadcastable to
        ``(B, H, Lq, Lk)``, ``-inf`` on padded keys. Returns ``(B, Lq, C)``."""
        attended = self.attn(self.pre_attn_norm(x), self.pre_context_norm(context), bias=bias)
        return self.residual_and_ffn(attended, x)


def classifier_head(dim: int, num_classes: int, hidden: Sequence[tuple[int, float]] = ()) -> nn.Sequential:
    """``(width, dropout)`` hidden layers (Linear, ReLU, Dropout), then the class logits.

    Each hidden layer is its own Sequential (keys ``<i>.0.weight``), the layout of the public ParT repository's
    heads (ParT, PFN, P-CNN), so their checkpoints load unchanged.
    """
    layers: list[nn.Module] = []
    for width, drop_rate in hidden:
        layers.append(nn.Sequential(nn.Linear(dim, width), nn.ReLU(), nn.Dropout(drop_rate)))
        dim = width
    layers.append(nn.Linear(dim, num_classes))
    return nn.Sequential(*layers)

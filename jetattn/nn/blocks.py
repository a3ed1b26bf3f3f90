"""Transformer blocks: the NormFormer-style particle block and its class-attention form (ParT), its
cross-attention form (the multi-scale transformer), and the classifier head every model here ends with."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from jetattn.nn.attention import Attention, padding_bias


class RMSNorm(nn.RMSNorm):
    """``nn.RMSNorm`` (fused, ``weight`` only, eps the dtype's) that exports to ONNX: the TorchScript exporter has
    no ``aten::rms_norm``, so while exporting it runs as x / √(mean x² + eps) · weight (what weaver does)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.onnx.is_in_onnx_export():
            return super().forward(x)
        eps = self.eps if self.eps is not None else torch.finfo(x.dtype).eps
        dims = tuple(range(-len(self.normalized_shape), 0))
        x = x * torch.rsqrt(x.pow(2).mean(dim=dims, keepdim=True) + eps)
        return x if self.weight is None else x * self.weight


class LayerScale(nn.Module):
    """A learnt scale per channel on a residual branch (CaiT); key ``gamma`` as in weaver and timm."""

    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class DropPath(nn.Module):
    """Stochastic depth: in training, drop a residual branch for whole jets with probability ``p``, scaling the
    kept ones by 1 / (1 − p)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.size(0),) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


@dataclass
class BlockConfig:
    """What a :class:`Block` is made of, apart from its width and heads: one object, passed ParT -> Block ->
    Attention, from which weaver-core's ParT versions 1, 2, 3, 3.5 and 3.6 are all built (see :func:`version_config`).

    Attributes:
        ffn_ratio: hidden width of the feed-forward network, in units of the block width.
        dropout, attn_dropout, activation_dropout: after attention and FFN; on the weights; after the activation.
        activation: the feed-forward network: ``gelu`` or ``relu`` MLP, or ``swiglu`` (SiLU(x W_g) ⊙ x W_1, then W_2).
        norm: ``layer`` (LayerNorm) or ``rms`` (RMSNorm), for every norm of the block, QK-norm included.
        bias: whether the attention and feed-forward Linears carry biases.
        qk_norm: normalise queries and keys per head before their product.
        output_gate: None, ``headwise`` (a sigmoid gate per head) or ``elementwise`` (per channel) on the attention
            output, computed from the attention's queries.
        layer_scale: initial value of a learnt per-channel scale on both residual branches; None for none.
        drop_path: stochastic-depth rate of both residual branches (training only).
        scale_attn_mask: a learnt scalar multiplying the pair bias.
        scale_attn, scale_fc, scale_heads, scale_resids: NormFormer's norm after attention, norm inside the FFN,
            scale per head and scale on the FFN residual.
        kernel: attention kernel name (see :mod:`jetattn.nn.attention`); None follows the global default.
        kernel_options: the kernel's settings for :class:`Attention` (``topk``; ``proj_dim``, ``max_len``,
            ``share_kv_proj``).
    """

    ffn_ratio: int = 4
    dropout: float = 0.1
    attn_dropout: float = 0.1
    activation_dropout: float = 0.1
    activation: str = "gelu"
    norm: str = "layer"
    bias: bool = True
    qk_norm: bool = False
    output_gate: str | None = None
    layer_scale: float | None = None
    drop_path: float = 0.0
    scale_attn_mask: bool = False
    scale_attn: bool = True
    scale_fc: bool = True
    scale_heads: bool = True
    scale_resids: bool = True
    kernel: str | None = None
    kernel_options: dict | None = None

    def __post_init__(self) -> None:
        choices = {
            "activation": ("gelu", "relu", "swiglu"),
            "norm": ("layer", "rms"),
            "output_gate": (None, "headwise", "elementwise"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"block option {name}={getattr(self, name)!r}: choose from {allowed}")

    def norm_layer(self, dim: int) -> nn.Module:
        return RMSNorm(dim) if self.norm == "rms" else nn.LayerNorm(dim)

    def updated(self, options: dict | None) -> BlockConfig:
        """A copy with ``options`` applied: our field names, or weaver-core's ``block_params`` names
        (``use_rmsnorm``, ``use_bias``, ``use_qk_norm``, ``headwise_attn_output_gate``,
        ``elementwise_attn_output_gate``, ``layer_scale_init_values``, ``drop_path_rate``)."""
        options = options or {}
        if options.get("headwise_attn_output_gate") and options.get("elementwise_attn_output_gate"):
            raise ValueError("headwise_attn_output_gate and elementwise_attn_output_gate: choose one gate")
        fields = {}
        for name, value in options.items():
            if name == "use_rmsnorm":
                fields["norm"] = "rms" if value else "layer"
            elif name in ("headwise_attn_output_gate", "elementwise_attn_output_gate"):
                if value:
                    fields["output_gate"] = name.split("_")[0]
                elif self.output_gate == name.split("_")[0] and "output_gate" not in fields:
                    fields["output_gate"] = None
            elif name in WEAVER_BLOCK_NAMES:
                fields[WEAVER_BLOCK_NAMES[name]] = value
            elif name in BlockConfig.__dataclass_fields__:
                fields[name] = value
            else:
                raise ValueError(f"unknown block option {name!r}; known: {sorted(BlockConfig.__dataclass_fields__)}")
        return replace(self, **fields)


# weaver-core's Block arguments that are one of ours under another name
WEAVER_BLOCK_NAMES = {
    "use_bias": "bias",
    "use_qk_norm": "qk_norm",
    "layer_scale_init_values": "layer_scale",
    "drop_path_rate": "drop_path",
}

# weaver-core 0.5.3's ParticleTransformer `version`s: what each changes in the blocks, as its constructor does
VERSIONS = (1, 2, 3, 3.5, 3.6)


def version_config(version: float) -> BlockConfig:
    """The particle blocks of weaver-core's ParT ``version``: 1 the paper's (NormFormer, GELU); 2 SwiGLU without
    the NormFormer scalings; 3 also RMSNorm, no biases, no dropout, drop path 0.1; 3.5 and 3.6 also QK-norm and an
    element-wise output gate (3.6 also swaps the class-attention blocks for a global token; see ParT)."""
    if version not in VERSIONS:
        raise ValueError(f"version={version!r}: weaver-core 0.5.3's ParT versions are {', '.join(map(str, VERSIONS))}")
    config = BlockConfig()
    if version > 1:
        config = replace(
            config, activation="swiglu", scale_attn=False, scale_fc=False, scale_heads=False, scale_resids=False
        )
    if version > 2:
        config = replace(
            config, norm="rms", bias=False, dropout=0.0, attn_dropout=0.0, activation_dropout=0.0, drop_path=0.1
        )
    if version > 3:
        config = replace(config, qk_norm=True, output_gate="elementwise")
    return config


class Block(nn.Module):
    """Pre-norm attention + feed-forward block, NormFormer's extra norms and scalings as the config asks.

    Particle attention: ``block(x, bias=...)``; class attention: ``block(x, cls_token=..., bias=...)`` where the
    class token queries itself and the particles.

    Args:
        dim: embedding width.
        num_heads: attention heads.
        config: what the block is made of (:class:`BlockConfig`; default the paper's ParT block).
        options: fields of the config to override, by our names or weaver-core's (:meth:`BlockConfig.updated`).
    """

    def __init__(self, dim: int = 128, num_heads: int = 8, config: BlockConfig | None = None, **options) -> None:
        super().__init__()
        config = (config or BlockConfig()).updated(options)
        self.config = config
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        ffn_dim = dim * config.ffn_ratio
        self.pre_attn_norm = config.norm_layer(dim)
        self.attn = Attention(
            dim,
            num_heads,
            dropout=config.attn_dropout,
            bias=config.bias,
            kernel=config.kernel,
            qk_norm=config.norm_layer if config.qk_norm else None,
            output_gate=config.output_gate,
            **(config.kernel_options or {}),
        )
        self.post_attn_norm = config.norm_layer(dim) if config.scale_attn else nn.Identity()
        self.dropout = nn.Dropout(config.dropout)
        self.ls1 = LayerScale(dim, config.layer_scale) if config.layer_scale else nn.Identity()
        self.drop_path1 = DropPath(config.drop_path) if config.drop_path > 0 else nn.Identity()
        self.pre_fc_norm = config.norm_layer(dim)
        self.fc1 = nn.Linear(dim, ffn_dim, bias=config.bias)
        swiglu = config.activation == "swiglu"
        self.fc1_g = nn.Linear(dim, ffn_dim, bias=config.bias) if swiglu else None  # SwiGLU's gate
        self.act = nn.SiLU() if swiglu else nn.GELU() if config.activation == "gelu" else nn.ReLU()
        self.act_dropout = nn.Dropout(config.activation_dropout)
        self.post_fc_norm = config.norm_layer(ffn_dim) if config.scale_fc else nn.Identity()
        self.fc2 = nn.Linear(ffn_dim, dim, bias=config.bias)
        self.ls2 = LayerScale(dim, config.layer_scale) if config.layer_scale else nn.Identity()
        self.drop_path2 = DropPath(config.drop_path) if config.drop_path > 0 else nn.Identity()
        self.c_mask = nn.Parameter(torch.ones(1)) if config.scale_attn_mask else None
        self.c_attn = nn.Parameter(torch.ones(num_heads)) if config.scale_heads else None
        self.w_resid = nn.Parameter(torch.ones(dim)) if config.scale_resids else None

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
            if self.c_mask is not None and bias is not None:  # scale the pair bias, not the padding's -inf
                bias = torch.where(torch.isneginf(bias), bias, bias * self.c_mask)
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
        x = self.drop_path1(self.ls1(self.dropout(self.post_attn_norm(x)))) + residual

        residual = x
        x = self.pre_fc_norm(x)
        hidden = self.fc1(x)
        hidden = self.act(hidden) if self.fc1_g is None else self.act(self.fc1_g(x)) * hidden
        x = self.dropout(self.fc2(self.post_fc_norm(self.act_dropout(hidden))))
        x = self.drop_path2(self.ls2(x))
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
        self.pre_context_norm = self.config.norm_layer(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``x: (B, Lq, C)`` queries; ``context: (B, Lk, C)`` keys and values; ``bias`` broadcastable to
        ``(B, H, Lq, Lk)``, ``-inf`` on padded keys. Returns ``(B, Lq, C)``."""
        attended = self.attn(self.pre_attn_norm(x), self.pre_context_norm(context), bias=bias)
        return self.residual_and_ffn(attended, x)


class SwiGLU(nn.Module):
    """SwiGLU feed-forward layer of weaver's classifier heads: ``w3(SiLU(x W_1) ⊙ x W_2)``, one matmul for both
    (keys ``w12``, ``w3`` as weaver's ``SwiGLUFFN``)."""

    def __init__(self, dim: int, hidden: int, out: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden, bias=bias)
        self.drop = nn.Dropout(dropout)
        self.w3 = nn.Linear(hidden, out, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(self.drop(F.silu(x1) * x2))


def class_attention_kernel(kernel: str | None) -> str | None:
    """The kernel of class-attention blocks beside particle blocks running ``kernel``: dense (``sdpa``, or ``math``
    when that is chosen). One query over 1 + L keys costs little; sparsity or projections would only blur the jet."""
    return kernel if kernel in (None, "sdpa", "math") else "sdpa"


def class_attention(blocks: nn.ModuleList, cls_token: torch.Tensor, x: torch.Tensor, padding: torch.Tensor):
    """The class token ``(1, 1, C)`` read through class-attention ``blocks`` over ``x: (B, L, C)`` (``padding:
    (B, L)``, True where padded), the token itself always a key  ->  ``(B, C)``."""
    bias = padding_bias(torch.cat((padding.new_zeros(padding.size(0), 1), padding), dim=1), x.dtype)
    token = cls_token.expand(x.size(0), -1, -1)
    for block in blocks:
        token = block(x, cls_token=token, bias=bias)
    return token.squeeze(1)


def classifier_head(
    dim: int,
    num_classes: int,
    hidden: Sequence[tuple] = (),
    bias: bool = True,
    norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
) -> nn.Sequential:
    """Hidden layers given as ``(width, dropout)`` or ``(width, dropout, activation)`` (``relu``, the default,
    ``gelu``: Linear, activation, Dropout; ``swiglu``: a :class:`SwiGLU` of hidden width 4·width, then a norm),
    then the class logits (always with a bias). ``bias``: of the hidden Linears (weaver's ParT drops them from
    version 3 on).

    Each hidden layer is its own Sequential (keys ``<i>.0.weight``), the layout of the public ParT repository's
    heads (ParT, PFN, P-CNN) and of weaver-core's, so their checkpoints load unchanged.
    """
    layers: list[nn.Module] = []
    for width, drop_rate, *activation in hidden:
        activation = activation[0] if activation else "relu"
        if activation == "swiglu":
            layers.append(nn.Sequential(SwiGLU(dim, 4 * width, width, drop_rate, bias), norm_layer(width)))
        elif activation in ("relu", "gelu"):
            act = nn.GELU() if activation == "gelu" else nn.ReLU()
            layers.append(nn.Sequential(nn.Linear(dim, width, bias=bias), act, nn.Dropout(drop_rate)))
        else:
            raise ValueError(f"fc_params activation {activation!r}: choose relu, gelu or swiglu")
        dim = width
    layers.append(nn.Linear(dim, num_classes))
    return nn.Sequential(*layers)

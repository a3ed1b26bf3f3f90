"""Particle Transformer (ParT), arXiv:2202.03772.

Same architecture and parameter layout as weaver-core's ``ParticleTransformer`` with ``version=1``, so its
state_dicts (official checkpoints included) load here with ``strict=True`` and give the same outputs; the
attention goes through :class:`jetattn.nn.attention.Attention`, so kernels and recording are selectable.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from jetattn.nn.attention import Attention, LinformerProjection, keep_a_key, padding_bias
from jetattn.nn.blocks import (
    Block,
    BlockConfig,
    class_attention,
    class_attention_kernel,
    classifier_head,
    version_config,
)
from jetattn.nn.inputs import finite
from jetattn.nn.packed import check_packable, packed_forward, run_packed
from jetattn.nn.pairs import PairEmbed, pair_feature_matrix


class Embed(nn.Module):
    """Per-particle embedding: BatchNorm over the input features, then (LayerNorm, Linear, GELU) per width; with
    ``conv``, weaver's ``use_conv_embed``: (bias-free 1×1 Conv, BatchNorm, GELU) per width, no last GELU."""

    def __init__(self, input_dim: int, dims: tuple[int, ...], activation: str = "gelu", conv: bool = False) -> None:
        super().__init__()
        self.input_bn = nn.BatchNorm1d(input_dim)
        layers: list[nn.Module] = []
        for dim in dims:
            act = nn.GELU() if activation == "gelu" else nn.ReLU()
            if conv:
                layers += [nn.Conv1d(input_dim, dim, 1, bias=False), nn.BatchNorm1d(dim), act]
            else:
                layers += [nn.LayerNorm(input_dim), nn.Linear(input_dim, dim), act]
            input_dim = dim
        # key layout as weaver's: `conv_embed.<i>` or `embed.<i>`
        self.conv_embed = nn.Sequential(*layers[:-1]) if conv else nn.Identity()
        self.embed = nn.Identity() if conv else nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, L)`` -> ``(B, L, dims[-1])``."""
        return self.embed(self.conv_embed(self.input_bn(x)).transpose(1, 2))


class SequenceTrimmer(nn.Module):
    """Drops trailing padding: in evaluation down to the longest jet of the batch; in training to a random
    quantile (90–100%) of the jet lengths, after shuffling each jet's particles so that the ones dropped from
    the longest jets are random (ParT's augmentation). Outputs are unchanged in evaluation.

    Args:
        quantile_range: range of the random length quantile in training.
        multiple: round the kept length up to a multiple of this, so that a compiled model sees a few shapes
            (128 slots, multiple 32: four) instead of one per batch.
    """

    def __init__(self, quantile_range: tuple[float, float] = (0.9, 1.02), multiple: int = 1) -> None:
        super().__init__()
        self.quantile_range = quantile_range
        self.multiple = multiple

    @torch.compiler.disable  # data-dependent lengths (.item()): run eagerly, compile what follows as one graph
    def forward(
        self, x: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lengths = mask.sum(dim=-1, dtype=torch.float32)  # B, 1
        if self.training:
            q = min(torch.empty(()).uniform_(*self.quantile_range).item(), 1.0)
            max_len = int(torch.quantile(lengths.squeeze(1), q).ceil().item())
            order = torch.rand(mask.shape, device=mask.device).masked_fill(~mask, -1).argsort(dim=-1, descending=True)
            mask = mask.gather(-1, order)
            x = x.gather(-1, order.expand_as(x))
            v = v.gather(-1, order.expand_as(v))
        else:
            max_len = int(lengths.max().item())
        max_len = -(-max(max_len, 1) // self.multiple) * self.multiple
        if max_len < mask.size(-1):
            x, v, mask = x[..., :max_len], v[..., :max_len], mask[..., :max_len]
        return x, v, mask


def length_buckets(mask: torch.Tensor, buckets: int, multiple: int = 1) -> list[tuple[torch.Tensor, int]]:
    """Split a batch into ``buckets`` groups of jets of similar length, each with the length it needs.

    ``mask: (B, 1, L)`` bool  ->  ``[(jet indices, length)]``: the jets sorted by their number of particles,
    cut into groups of equal count; a group's length is its longest jet's, rounded up to ``multiple``.
    """
    lengths = mask.sum(dim=(1, 2))  # B
    order = lengths.argsort()
    groups = []
    for jets in order.tensor_split(buckets):
        if jets.numel():
            longest = max(int(lengths[jets[-1]].item()), 1)
            groups.append((jets, min(-(-longest // multiple) * multiple, mask.size(-1))))
    return groups


def check_part_options(pair_input_dim: int, weight_init: str | None) -> None:
    """One line for a value of an option that jetattn's ParT does not implement."""
    if pair_input_dim not in (0, 4):
        raise ValueError(f"pair_input_dim={pair_input_dim}: ParT's pair features are 4 (ln kT, ln z, ln Δ, ln m²)")
    if weight_init not in (None, "moco", "timm"):
        raise ValueError(f"weight_init={weight_init!r}: choose 'moco', 'timm' or None")


def block_setup(base: BlockConfig, ours: dict, params: dict | None, num_heads: int) -> tuple[int, BlockConfig]:
    """Heads and config of a kind of block: ``base`` with our settings, then the user's ``block_params`` (weaver's
    names too; ``num_heads`` overrides the heads)."""
    params = dict(params or {})
    return params.pop("num_heads", num_heads), base.updated({**ours, **params})


class ParticleTransformer(nn.Module):
    """ParT: particle embedding, pair-feature attention bias, particle blocks, class-attention blocks, classifier.

    The architecture options of weaver-core 0.5.3's ``ParticleTransformer`` have its names, meanings and defaults;
    weaver's run settings (``for_inference``, ``use_amp``, ``compile_model``) and the options it has that jetattn
    refuses are handled at the weaver boundary (:mod:`jetattn.weaver.adapters`; see docs/compatibility.md).

    Args:
        input_dim: number of per-particle input features.
        num_classes: classifier outputs; None with ``fc_params=None`` returns the class-token embedding.
        pair_input_dim: pair features from the four-vectors (4: ln k_T, ln z, ln Δ, ln m²; 0: none).
        remove_self_pair: leave each particle's pair with itself out of the pair embedding.
        use_pre_activation_pair: no GELU after the last pair-embedding layer.
        use_conv_embed: particle embedding by bias-free 1×1 convolutions and BatchNorms (see :class:`Embed`).
        embed_dims: widths of the particle embedding; the last is the model width.
        pair_embed_dims: widths of the pair embedding before its last layer (which has ``num_heads`` outputs).
        dense_pairs: embed every pair of the padded sequence (fixed shapes, for ONNX export) instead of only the
            real particles' pairs; outputs are the same.
        num_heads, num_layers, num_cls_layers: attention heads, particle blocks, class-attention blocks.
        block_params, cls_block_params: overrides of the :class:`BlockConfig` of each kind of block, by our field
            names or weaver's (``use_rmsnorm``, ``use_qk_norm``, ``elementwise_attn_output_gate``, ...), and
            ``num_heads``.
        block_ids_with_attn_mask: indices of the particle blocks that get the pair bias (default: all); the others
            see the padding only.
        include_global_token: a token prepended to the particles, attending with them in the particle blocks and
            read out as the jet (instead of class-attention blocks: ``num_cls_layers`` must be 0).
        fc_params: hidden classifier layers as ``(width, dropout)`` or ``(width, dropout, activation)``; None for
            no classifier.
        activation: ``gelu`` or ``relu``.
        version: weaver-core's ParT version (1, 2, 3, 3.5, 3.6): the block defaults of :func:`version_config`,
            RMSNorm for the final norm and bias-free pair embedding and hidden classifier layers from 3 on, and
            from 3.6 a global token instead of class attention. Without class-attention blocks or a global token,
            the jet is the mean of its particles.
        weight_init: ``moco`` (weaver's default), ``timm`` or None (PyTorch's defaults); fix_init: shrink each
            particle block's output projections by 1/√(2·depth).
        trim: drop trailing padding (see :class:`SequenceTrimmer`); off for an export (fixed shapes).
        attention: attention kernel of the particle blocks (see :mod:`jetattn.nn.attention`; None: the global
            default, ``sdpa``). The class-attention blocks stay dense (``sdpa``, or ``math`` when that is chosen):
            one query over 1 + L keys costs little, and sparsity or projections would only blur the jet summary.
        topk: keys kept per query with ``attention="topk"``; no parameters are added, so a checkpoint trained
            densely evaluates under top-k.
        proj_dim, max_len, share_kv_proj: with ``attention="linformer"``, the projected length, the longest
            sequence (padding included) and one projection for keys and values; adds ``E`` per block.
        linear_pairs: with ``attention="linformer"``, make the pair bias linear in N too: one projection ``E``
            for every block (Linformer's layer-wise sharing) projects the pair *features* (4 per pair) along the
            key axis, and only the ``N × proj_dim`` projected pairs are embedded; without it each block projects
            the embedded ``N × N`` bias, which costs what dense ParT's does.
        checkpoint_pairs: in training, recompute the pair features and the pair embedding in the backward pass
            instead of keeping their activations (less memory, one more pass of the pair embedding; same outputs,
            gradients and BatchNorm statistics), padded, packed or projected (``linear_pairs``).
        pair_min_delta: floor on the pair separation Δ; 1e-5 makes ONNX exports agree with PyTorch on jets
            with particles at identical (y, φ); None (default) is weaver's definition, for its checkpoints.
        buckets: padding-free attention: after the embeddings (whose BatchNorms see the whole batch), jets are
            sorted by length into this many groups, each run through the attention blocks at its own longest
            jet's length, so short jets do not pay for the longest one. Outputs equal the padded model's, in
            training too (the blocks hold LayerNorms only).
        packed: packed execution (see :mod:`jetattn.nn.packed`): real particles and real pairs only, attention
            within each jet; same weights and outputs.
        length_multiple: round trimmed lengths up to a multiple of this (32 for a compiled model: few shapes).
    """

    # The options are weaver-core's, flat, by name, so that a weaver `-o NAME VALUE` maps onto one argument; the
    # signature alone is 35 lines, the body builds each part in a few lines.
    def __init__(
        self,
        input_dim: int,
        num_classes: int | None = None,
        pair_input_dim: int = 4,
        remove_self_pair: bool = False,
        use_pre_activation_pair: bool = True,
        use_conv_embed: bool = False,
        embed_dims: tuple[int, ...] = (128, 512, 128),
        pair_embed_dims: tuple[int, ...] | None = (64, 64, 64),
        num_heads: int = 8,
        num_layers: int = 8,
        block_params: dict | None = None,
        block_ids_with_attn_mask: list[int] | None = None,
        include_global_token: bool = False,
        num_cls_layers: int = 2,
        cls_block_params: dict | None = None,
        fc_params: list | tuple | None = (),
        activation: str = "gelu",
        version: float = 1,
        weight_init: str | None = "moco",
        fix_init: bool = True,
        trim: bool = True,
        attention: str | None = None,
        topk: int = 30,
        proj_dim: int = 32,
        max_len: int = 128,
        share_kv_proj: bool = False,
        linear_pairs: bool = False,
        checkpoint_pairs: bool = False,
        pair_min_delta: float | None = None,
        dense_pairs: bool = False,
        buckets: int = 1,
        packed: bool = False,
        length_multiple: int = 1,
    ) -> None:
        super().__init__()
        check_part_options(pair_input_dim, weight_init)
        dim = embed_dims[-1] if embed_dims else input_dim
        base = version_config(version)
        base = replace(base, activation=activation) if version == 1 else base
        if version == 3.6:
            include_global_token, num_cls_layers = True, 0
        if include_global_token and num_cls_layers > 0:
            raise ValueError(
                f"include_global_token reads the jet from the global token: set num_cls_layers=0, not {num_cls_layers}"
            )
        kernel_options = dict(topk=topk, proj_dim=proj_dim, max_len=max_len, share_kv_proj=share_kv_proj)
        block_heads, particle_config = block_setup(
            base, {"kernel": attention, "kernel_options": kernel_options}, block_params, num_heads
        )
        self.embed = Embed(input_dim, tuple(embed_dims), activation, use_conv_embed) if embed_dims else nn.Identity()
        self.pair_embed = (
            PairEmbed(
                (*pair_embed_dims, block_heads),
                pair_input_dim,
                use_pre_activation_pair,
                dense=dense_pairs,
                min_delta=pair_min_delta,
                bias=base.bias,
                remove_self_pair=remove_self_pair,
                recompute=checkpoint_pairs,
            )
            if pair_embed_dims is not None and pair_input_dim > 0
            else None
        )
        self.blocks = nn.ModuleList([Block(dim, block_heads, particle_config) for _ in range(num_layers)])
        ids = range(num_layers) if block_ids_with_attn_mask is None else block_ids_with_attn_mask
        self.pair_bias_blocks = [i in ids for i in range(num_layers)]
        self.pair_projection = None
        if linear_pairs:
            self.share_pair_projection(
                attention, include_global_token, LinformerProjection(proj_dim, max_len, share_kv_proj)
            )
        cls_options = {"kernel": class_attention_kernel(attention), "dropout": 0.0, "attn_dropout": 0.0}
        cls_options["activation_dropout"] = 0.0
        cls_heads, cls_config = block_setup(base, cls_options, cls_block_params, num_heads)
        self.cls_blocks = nn.ModuleList([Block(dim, cls_heads, cls_config) for _ in range(num_cls_layers)])
        self.include_global_token = include_global_token
        self.norm = base.norm_layer(dim)
        self.fc = (
            classifier_head(dim, num_classes, fc_params, bias=base.bias, norm_layer=base.norm_layer)
            if fc_params is not None
            else None
        )
        has_token = include_global_token or num_cls_layers > 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if has_token else None
        self.multiple = length_multiple
        self.trimmer = SequenceTrimmer(multiple=length_multiple) if trim else None
        self.buckets = buckets
        self.packed = bool(packed)
        if self.packed:
            check_packable(
                attention,
                buckets,
                include_global_token=include_global_token,
                remove_self_pair=remove_self_pair,
                use_conv_embed=use_conv_embed,
                block_ids_with_attn_mask=not all(self.pair_bias_blocks),
            )
        self._init_weights(weight_init, fix_init)

    def share_pair_projection(
        self, attention: str | None, include_global_token: bool, projection: LinformerProjection
    ) -> None:
        """``linear_pairs``: one Linformer projection for every block, which also projects the pair features."""
        if attention != "linformer":
            raise ValueError(f"linear_pairs needs attention='linformer', not {attention!r}")
        if include_global_token or not all(self.pair_bias_blocks):
            raise ValueError(
                "linear_pairs projects one pair bias for every block: it takes neither "
                "include_global_token nor block_ids_with_attn_mask"
            )
        self.pair_projection = projection
        for block in self.blocks:
            block.attn.linformer = projection

    def compile_blocks(self, backend: str = "inductor") -> None:
        """Compile what follows the data-dependent trimming and packing (the attention blocks and the head) with
        ``torch.compile``: one graph per length, few lengths with ``length_multiple``."""
        self.attend = torch.compile(self.attend, backend=backend)
        self.run_packed = torch.compile(self.run_packed, backend=backend)

    def _init_weights(self, mode: str | None, fix_init: bool) -> None:
        # moco (MoCo-v3, as weaver): Xavier-uniform Linears with q, k and v each treated as its own matrix, zero
        # biases; timm: truncated normal (std 0.02). fix_init: block output projections shrunk by 1/√(2·depth).
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear) and mode is not None:
                if mode == "timm":
                    nn.init.trunc_normal_(module.weight, std=0.02)
                else:
                    fan_in = module.weight.shape[1]
                    fan_out = module.weight.shape[0] // (2 if name.endswith("kv_proj") else 1)
                    bound = math.sqrt(6.0 / (fan_in + fan_out))
                    nn.init.uniform_(module.weight, -bound, bound)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        with torch.no_grad():
            for depth, block in enumerate(self.blocks if fix_init else [], start=1):
                block.attn.out_proj.weight.div_(math.sqrt(2.0 * depth))
                block.fc2.weight.div_(math.sqrt(2.0 * depth))

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"cls_token"}

    def forward(self, x: torch.Tensor, v: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x: (B, C, L)`` particle features; ``v: (B, 4, L)`` (px, py, pz, E); ``mask: (B, 1, L)``, 1 = real.

        Returns logits ``(B, num_classes)``, or the class-token embedding.
        """
        # non-finite inputs (a broken feature) must not poison the whole batch through BatchNorm and attention
        x = finite(x)
        mask = torch.ones_like(x[:, :1], dtype=torch.bool) if mask is None else mask.bool()
        v = torch.zeros_like(x[:, :4]) if v is None else finite(v)
        if self.trimmer is not None:
            with torch.no_grad():
                x, v, mask = self.trimmer(x, v, mask)

        if self.packed:
            return packed_forward(self, x, v, mask)
        padding = ~mask.squeeze(1)  # B, L; True = padded
        padding = keep_a_key(padding)  # a jet with no particles still attends to something
        # the embeddings (and their BatchNorm statistics, in training) see the whole batch ...
        x = self.embed(x).masked_fill(~mask.transpose(1, 2), 0)  # B, L, C
        if self.pair_projection is not None:  # linear in L: the bias is (B, H, L, proj_dim), or none
            bias = None
            if self.pair_embed is not None:
                features = pair_feature_matrix(v, mask, self.pair_embed.min_delta)  # B, 4, L, L
                projected = self.pair_projection.project(features, padding)
                bias = self.pair_embed.embed_projected(projected)
        elif self.pair_embed is not None:
            bias = self.pair_embed(v, mask).masked_fill(padding[:, None, None, :], float("-inf"))  # B, H, L, L
        else:
            bias = padding_bias(padding, x.dtype)
        if self.buckets == 1 or x.size(0) == 1:
            return self.attend(x, bias, padding)
        # ... the attention blocks (LayerNorms only: per particle) run on groups of jets of similar length
        output = None
        for jets, length in length_buckets(mask, self.buckets, self.multiple):
            if bias is None:
                bucket_bias = None
            elif self.pair_projection is not None:  # queries are particles, keys the projections
                bucket_bias = bias[jets, :, :length]
            else:
                bucket_bias = bias[jets, :, :length, :length] if bias.size(2) > 1 else bias[jets, :, :, :length]
            part = self.attend(x[jets, :length], bucket_bias, padding[jets, :length])
            output = part.new_empty((x.size(0),) + part.shape[1:]) if output is None else output
            output[jets] = part
        return output

    def read_out(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """The jet from the particle blocks' output ``(B, L, C)``: the global token, the class-attention blocks'
        class token, or (with neither) the mean over real particles  ->  ``(B, C)``."""
        if self.include_global_token:
            return x[:, 0]
        if len(self.cls_blocks) == 0:
            real = (~padding).unsqueeze(-1).to(x.dtype)  # B, L, 1
            return (x * real).sum(dim=1) / real.sum(dim=1).clamp(min=1)
        return class_attention(self.cls_blocks, self.cls_token, x, padding)

    def attend(self, x: torch.Tensor, bias: torch.Tensor | None, padding: torch.Tensor) -> torch.Tensor:
        """Particle blocks, class-attention blocks and the classifier: what ``compile`` compiles.

        ``x: (B, L, C)`` embedded particles, ``bias``: attention bias broadcastable to ``(B, H, L, L)`` with
        ``-inf`` on padded keys (``linear_pairs``: projected, ``(B, H, L, proj_dim)`` or None),
        ``padding: (B, L)`` True where padded.
        """
        key_padding = padding if self.pair_projection is not None else None
        if self.include_global_token:  # one more particle, first, never padded, without pair bias
            x = torch.cat((self.cls_token.expand(x.size(0), -1, -1), x), dim=1)
            padding = F.pad(padding, (1, 0), value=False)
            bias = F.pad(bias, (1, 0, 1, 0) if self.pair_embed is not None else (1, 0))
            bias = bias.masked_fill(padding[:, None, None, :], float("-inf"))
        padding_only = None if all(self.pair_bias_blocks) else padding_bias(padding, x.dtype)
        for block, with_pairs in zip(self.blocks, self.pair_bias_blocks, strict=True):
            x = block(x, bias=bias if with_pairs else padding_only, key_padding=key_padding)
        return self.classify(x, padding)

    def classify(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """The jet read out from per-particle tokens ``x: (B, L, C)`` (``padding: (B, L)``), then the classifier:
        the part the padded and the packed model share."""
        x_cls = self.norm(self.read_out(x, padding))
        if self.fc is None:
            return x_cls
        return self.fc(x_cls)

    def run_packed(self, tokens, kinematics, four_vectors, packed) -> torch.Tensor:
        """The packed model after packing (:func:`jetattn.nn.packed.run_packed`): what ``compile`` compiles."""
        return run_packed(self, tokens, kinematics, four_vectors, packed)


__all__ = ["Attention", "Block", "Embed", "ParticleTransformer", "SequenceTrimmer"]

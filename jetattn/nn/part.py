"""Particle Transformer (ParT), arXiv:2202.03772.

Same architecture and parameter layout as weaver-core's ``ParticleTransformer`` with ``version=1``, so its
state_dicts (official checkpoints included) load here with ``strict=True`` and give the same outputs; the
attention goes through :class:`jetattn.nn.attention.Attention`, so kernels and recording are selectable.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from jetattn.nn.attention import Attention, LinformerProjection, padding_bias
from jetattn.nn.blocks import Block, classifier_head
from jetattn.nn.inputs import finite
from jetattn.nn.packed import check_packable, packed_forward, run_packed
from jetattn.nn.pairs import PairEmbed, pair_feature_matrix


class Embed(nn.Module):
    """Per-particle embedding: BatchNorm over the input features, then (LayerNorm, Linear, GELU) per width."""

    def __init__(self, input_dim: int, dims: tuple[int, ...], activation: str = "gelu") -> None:
        super().__init__()
        self.input_bn = nn.BatchNorm1d(input_dim)
        layers: list[nn.Module] = []
        for dim in dims:
            act = nn.GELU() if activation == "gelu" else nn.ReLU()
            layers += [nn.LayerNorm(input_dim), nn.Linear(input_dim, dim), act]
            input_dim = dim
        self.embed = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, L)`` -> ``(B, L, dims[-1])``."""
        return self.embed(self.input_bn(x).transpose(1, 2))


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


class ParticleTransformer(nn.Module):
    """ParT: particle embedding, pair-feature attention bias, particle blocks, class-attention blocks, classifier.

    Args:
        input_dim: number of per-particle input features.
        num_classes: classifier outputs; None with ``fc_params=None`` returns the class-token embedding.
        pair_input_dim: pair features from the four-vectors (4: ln k_T, ln z, ln Δ, ln m²; 0: none).
        use_pre_activation_pair: no GELU after the last pair-embedding layer.
        embed_dims: widths of the particle embedding; the last is the model width.
        pair_embed_dims: widths of the pair embedding before its last layer (which has ``num_heads`` outputs).
        num_heads, num_layers, num_cls_layers: attention heads, particle blocks, class-attention blocks.
        block_params, cls_block_params: overrides of :class:`Block` arguments for each kind of block.
        fc_params: hidden classifier layers as ``(width, dropout)``; None for no classifier.
        activation: ``gelu`` or ``relu``.
        trim: drop trailing padding (see :class:`SequenceTrimmer`); off for inference.
        for_inference: softmax output, no trimming, fixed-shape pair embedding (ONNX export).
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
        checkpoint_pairs: with ``linear_pairs``, recompute the pair embedding in the backward pass instead of
            keeping its activations (less memory in training, one more pair-embedding pass; same results).
        pair_min_delta: floor on the pair separation Δ; 1e-5 makes ONNX exports agree with PyTorch on jets
            with particles at identical (y, φ); None (default) is weaver's definition, for its checkpoints.
        buckets: padding-free attention: after the embeddings (whose BatchNorms see the whole batch), jets are
            sorted by length into this many groups, each run through the attention blocks at its own longest
            jet's length, so short jets do not pay for the longest one. Outputs equal the padded model's, in
            training too (the blocks hold LayerNorms only).
        packed: packed execution (see :mod:`jetattn.nn.packed`): real particles and real pairs only, attention
            within each jet; same weights and outputs. Off with ``for_inference`` (ONNX export keeps fixed shapes).
        compile_model: set by weaver's ``--compile``: trimmed lengths are rounded up to multiples of 32 so that
            the compiled model sees few shapes. ``compile``: compile the attention blocks and the head here
            (``--network-option compile 1``, or a torch.compile backend name), for weaver runs without
            ``--compile``.
        use_amp: accepted from weaver's trainer, which applies it itself.
    """

    def __init__(
        self,
        input_dim: int,
        num_classes: int | None = None,
        pair_input_dim: int = 4,
        use_pre_activation_pair: bool = True,
        embed_dims: tuple[int, ...] = (128, 512, 128),
        pair_embed_dims: tuple[int, ...] | None = (64, 64, 64),
        num_heads: int = 8,
        num_layers: int = 8,
        num_cls_layers: int = 2,
        block_params: dict | None = None,
        cls_block_params: dict | None = None,
        fc_params: list | tuple | None = (),
        activation: str = "gelu",
        trim: bool = True,
        for_inference: bool = False,
        attention: str | None = None,
        topk: int = 30,
        proj_dim: int = 32,
        max_len: int = 128,
        share_kv_proj: bool = False,
        linear_pairs: bool = False,
        checkpoint_pairs: bool = False,
        pair_min_delta: float | None = None,
        buckets: int = 1,
        packed: bool = False,
        use_amp: bool = False,
        compile_model: bool = False,
        compile: bool | str = False,
    ) -> None:
        super().__init__()
        if pair_input_dim not in (0, 4):
            raise ValueError(f"pair_input_dim={pair_input_dim}: ParT's pair features are 4 (ln kT, ln z, ln Δ, ln m²)")
        self.for_inference = for_inference
        dim = embed_dims[-1] if embed_dims else input_dim
        kernel_options = dict(topk=topk, proj_dim=proj_dim, max_len=max_len, share_kv_proj=share_kv_proj)
        block_cfg = dict(dim=dim, num_heads=num_heads, activation=activation)
        self.embed = Embed(input_dim, tuple(embed_dims), activation) if embed_dims else nn.Identity()
        self.pair_embed = (
            PairEmbed(
                (*pair_embed_dims, num_heads),
                pair_input_dim,
                use_pre_activation_pair,
                dense=for_inference,
                min_delta=pair_min_delta,
            )
            if pair_embed_dims is not None and pair_input_dim > 0
            else None
        )
        particle_cfg = {**block_cfg, "kernel": attention, "kernel_options": kernel_options, **(block_params or {})}
        self.blocks = nn.ModuleList([Block(**particle_cfg) for _ in range(num_layers)])
        self.pair_projection = None
        if linear_pairs:
            if attention != "linformer":
                raise ValueError(f"linear_pairs needs attention='linformer', not {attention!r}")
            self.pair_projection = LinformerProjection(proj_dim, max_len, share_kv_proj)
            for block in self.blocks:
                block.attn.linformer = self.pair_projection
        elif checkpoint_pairs:
            raise ValueError("checkpoint_pairs needs linear_pairs (the dense pair bias is not checkpointed)")
        self.checkpoint_pairs = checkpoint_pairs
        cls_cfg = {**block_cfg, "dropout": 0.0, "attn_dropout": 0.0, "activation_dropout": 0.0}
        cls_cfg["kernel"] = attention if attention in (None, "sdpa", "math") else "sdpa"
        cls_cfg.update(cls_block_params or {})
        self.cls_blocks = nn.ModuleList([Block(**cls_cfg) for _ in range(num_cls_layers)])
        self.norm = nn.LayerNorm(dim)
        self.fc = classifier_head(dim, num_classes, fc_params) if fc_params is not None else None
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.multiple = 32 if (compile_model or compile) else 1
        self.trimmer = SequenceTrimmer(multiple=self.multiple) if trim and not for_inference else None
        self.buckets = 1 if for_inference else buckets  # an exported graph has fixed control flow
        # an export (and the tools, which build for inference) runs the padded model: same weights and outputs
        self.packed = bool(packed) and not for_inference
        if self.packed:
            check_packable(attention, buckets)
        if compile:
            backend = "inductor" if compile in (True, 1) else compile
            self.attend = torch.compile(self.attend, backend=backend)
            self.run_packed = torch.compile(self.run_packed, backend=backend)
        self._init_weights()

    def _init_weights(self) -> None:
        # MoCo-v3 style (as weaver): Xavier-uniform Linears with q, k and v each treated as its own matrix,
        # zero biases, a small class token, and block output projections shrunk by 1/√(2·depth).
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                fan_in = module.weight.shape[1]
                fan_out = module.weight.shape[0] // (2 if name.endswith("kv_proj") else 1)
                bound = math.sqrt(6.0 / (fan_in + fan_out))
                nn.init.uniform_(module.weight, -bound, bound)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        with torch.no_grad():
            for depth, block in enumerate(self.blocks, start=1):
                block.attn.out_proj.weight.div_(math.sqrt(2.0 * depth))
                block.fc2.weight.div_(math.sqrt(2.0 * depth))

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"cls_token"}

    def forward(self, x: torch.Tensor, v: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x: (B, C, L)`` particle features; ``v: (B, 4, L)`` (px, py, pz, E); ``mask: (B, 1, L)``, 1 = real.

        Returns logits ``(B, num_classes)`` (softmax when ``for_inference``), or the class-token embedding.
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
        # a jet with no particles would have nothing to attend to (softmax of all -inf = NaN): let it see its padding
        padding = padding & ~padding.all(dim=1, keepdim=True)
        # the embeddings (and their BatchNorm statistics, in training) see the whole batch ...
        x = self.embed(x).masked_fill(~mask.transpose(1, 2), 0)  # B, L, C
        if self.pair_projection is not None:  # linear in L: the bias is (B, H, L, proj_dim), or none
            bias = None
            if self.pair_embed is not None:
                features = pair_feature_matrix(v, mask, self.pair_embed.min_delta)  # B, 4, L, L
                projected = self.pair_projection.project(features, padding)
                bias = self.pair_embed.embed_projected(projected, recompute=self.checkpoint_pairs)
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

    def attend(self, x: torch.Tensor, bias: torch.Tensor | None, padding: torch.Tensor) -> torch.Tensor:
        """Particle blocks, class-attention blocks and the classifier: what ``compile`` compiles.

        ``x: (B, L, C)`` embedded particles, ``bias``: attention bias broadcastable to ``(B, H, L, L)`` with
        ``-inf`` on padded keys (``linear_pairs``: projected, ``(B, H, L, proj_dim)`` or None),
        ``padding: (B, L)`` True where padded.
        """
        key_padding = padding if self.pair_projection is not None else None
        for block in self.blocks:
            x = block(x, bias=bias, key_padding=key_padding)
        return self.classify(x, padding)

    def classify(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """Class-attention blocks and the classifier on per-jet tokens ``x: (B, L, C)``, ``padding: (B, L)``."""
        cls_bias = padding_bias(torch.cat((padding.new_zeros(padding.size(0), 1), padding), dim=1), x.dtype)
        cls_token = self.cls_token.expand(x.size(0), -1, -1)
        for block in self.cls_blocks:
            cls_token = block(x, cls_token=cls_token, bias=cls_bias)
        x_cls = self.norm(cls_token.squeeze(1))
        if self.fc is None:
            return x_cls
        output = self.fc(x_cls)
        return torch.softmax(output, dim=1) if self.for_inference else output

    def run_packed(self, tokens, kinematics, four_vectors, packed) -> torch.Tensor:
        """The packed model after packing (:func:`jetattn.nn.packed.run_packed`): what ``compile`` compiles."""
        return run_packed(self, tokens, kinematics, four_vectors, packed)


__all__ = ["Attention", "Block", "Embed", "ParticleTransformer", "SequenceTrimmer"]

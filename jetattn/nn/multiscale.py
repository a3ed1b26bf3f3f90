"""Multi-scale cross-attention transformer (Hammad, Moretti, Nojiri, arXiv:2207.09959, 2401.00452) and its
concatenation baseline, built from ParT's attention module and blocks (so kernels, recording and int8 apply).

Each input stream (the constituents of a jet, the reconstructed objects of the event) is embedded to its own
width, runs through self-attention blocks and is projected to the common width. Three configurations:

- ``model_1``: the constituents ``pf`` alone, self-attention, then the readout (``objects``: the same over the
  objects ``obj`` alone, the talk's kinematics-only baseline);
- ``model_2``: constituents of two jets, ``jet1`` and ``jet2``, and the objects ``obj``; the objects are the
  queries of the cross-attention layers, the two jets' constituents (one sequence) their keys and values;
- ``model_3``: constituents ``pf`` and objects ``obj``; the objects query the constituents.

Cross layer i + 1 takes layer i's output as its queries; the keys and values are the constituent streams'
outputs throughout. The readout (a class token attending to the final sequence, or its mean over real
entries) feeds the classifier. Padded entries are masked as keys everywhere, so neither what the padding holds
nor how much of it there is changes the output (in evaluation; in training the input BatchNorms see it).

Inputs are weaver's, by name: ``<stream>_features (N, C, P)`` and ``<stream>_mask (N, 1, P)`` (1 = real) for
each stream, and ``<stream>_vectors (N, 4, P)`` (px, py, pz, E) for a constituent stream with ``pair_bias``.
The forward takes the inputs positionally in ``input_names`` order; inputs no stream reads are kept in the ONNX
graph (weaver's ONNX runner feeds every input it has).
"""

from __future__ import annotations

import torch
from torch import nn

from jetattn.nn.attention import keep_a_key, padding_bias
from jetattn.nn.blocks import Block, CrossBlock, class_attention, class_attention_kernel, classifier_head
from jetattn.nn.inputs import finite, keep_in_graph, particle_mask
from jetattn.nn.pairs import PairEmbed
from jetattn.nn.part import Embed

# configuration -> (constituent streams, object stream or None): the keys/values and the queries of cross-attention
CONFIGS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "model_1": (("pf",), None),
    "model_2": (("jet1", "jet2"), "obj"),
    "model_3": (("pf",), "obj"),
    "objects": (("obj",), None),  # the talk's kinematics-only baseline: self-attention over the objects alone
}
# the talk's settings for every stream: 5 heads, 2 self-attention layers (width: the common one)
STREAM_DEFAULTS = {"dim": None, "num_heads": 5, "num_layers": 2, "embed_dims": None}


def stream_names(config: str) -> tuple[str, ...]:
    """The input streams of a configuration, constituents first."""
    if config not in CONFIGS:
        raise ValueError(f"unknown multi-scale configuration {config!r}; choose from {sorted(CONFIGS)}")
    constituents, objects = CONFIGS[config]
    return constituents + ((objects,) if objects else ())


def masked_mean(x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
    """``x: (B, L, C)`` averaged over the entries not ``padding`` ``(B, L)``; 0 for a sequence with none."""
    real = (~padding).unsqueeze(-1).to(x.dtype)
    return (x * real).sum(dim=1) / real.sum(dim=1).clamp(min=1)


class Stream(nn.Module):
    """One input stream: :class:`~jetattn.nn.part.Embed` (input BatchNorm, then Linear layers) to the stream's
    width, self-attention :class:`Block` s, and a Linear to the common width where the stream's differs.

    Args:
        input_dim: features per entry.
        dim: the common width the stream's output has.
        stream_dim: the stream's own width (None: ``dim``); ``num_heads`` must divide it.
        num_heads, num_layers: heads and depth of the self-attention.
        embed_dims: widths of the embedding before the last (which is ``stream_dim``).
        block_options: :class:`Block` arguments (kernel, dropouts, ...).
        pair_embed: a :class:`~jetattn.nn.pairs.PairEmbed` with ``num_heads`` outputs: ParT's pair features of
            the four-vectors as an attention bias per head (the same in every layer, as in ParT), or None.
    """

    def __init__(
        self,
        input_dim: int,
        dim: int,
        stream_dim: int | None = None,
        num_heads: int = 5,
        num_layers: int = 2,
        embed_dims: tuple[int, ...] | None = None,
        block_options: dict | None = None,
        pair_embed: PairEmbed | None = None,
    ) -> None:
        super().__init__()
        stream_dim = stream_dim or dim
        self.embed = Embed(input_dim, (*(embed_dims or ()), stream_dim))
        self.pair_embed = pair_embed
        options = {**(block_options or {}), "dim": stream_dim, "num_heads": num_heads}
        self.blocks = nn.ModuleList([Block(**options) for _ in range(num_layers)])
        self.project = nn.Linear(stream_dim, dim) if stream_dim != dim else nn.Identity()

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, vectors: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: (B, C, L)``, ``mask: (B, 1, L)`` bool, ``vectors: (B, 4, L)`` for the pair bias  ->
        ``(B, L, dim)`` and the padding ``(B, L)``, True where padded."""
        padding = ~mask.squeeze(1)
        x = self.embed(finite(x)).masked_fill(~mask.transpose(1, 2), 0)  # B, L, C
        bias = padding_bias(keep_a_key(padding), x.dtype)
        if self.pair_embed is not None:
            bias = self.pair_embed(finite(vectors), mask) + bias  # B, H, L, L
        for block in self.blocks:
            x = block(x, bias=bias)
        return self.project(x), padding


class StreamModel(nn.Module):
    """What both models share: one :class:`Stream` per input stream of the configuration, reading the inputs by
    name, and the classifier head on a ``head_dim``-wide summary (built by the subclass).

    Args:
        input_dims: features per entry of each stream, ``{'pf': 3, 'obj': 5}``.
        num_classes: classifier outputs.
        config: ``model_1``, ``model_2``, ``model_3`` or ``objects`` (see the module docstring).
        dim: the common width of the streams' outputs (and of the cross-attention and readout).
        stream_params: per stream, overrides of ``dim`` (its own width), ``num_heads``, ``num_layers`` and
            ``embed_dims``: ``{'obj': {'num_layers': 3}}``; defaults: 5 heads, 2 layers, the common width.
        fc_params: hidden classifier layers as ``(width, dropout)``.
        block_params: :class:`Block` overrides for the attention blocks (dropouts, ...).
        attention: kernel of the streams' self-attention (and of the cross-attention; see
            :mod:`jetattn.nn.attention`). topk, proj_dim, max_len: that kernel's settings.
        pair_bias: ParT's pair features of ``<stream>_vectors`` as a per-head bias of each constituent stream's
            self-attention; pair_embed_dims: the pair embedding's widths before its last (heads) layer.
        input_names: the order of the forward's inputs (weaver's ``data_config.input_names``); default the
            groups the configuration reads, stream by stream (features, mask, vectors).
        dense_pairs: embed every pair of the padded sequence (fixed shapes, for ONNX export); same outputs.
    """

    def __init__(
        self,
        input_dims: dict[str, int],
        num_classes: int,
        config: str = "model_3",
        dim: int = 40,
        stream_params: dict[str, dict] | None = None,
        fc_params: list | tuple = ((64, 0.2),),
        block_params: dict | None = None,
        attention: str | None = None,
        topk: int = 30,
        proj_dim: int = 32,
        max_len: int = 128,
        pair_bias: bool = False,
        pair_embed_dims: tuple[int, ...] = (32, 32),
        input_names: tuple[str, ...] | None = None,
        dense_pairs: bool = False,
    ) -> None:
        super().__init__()
        names = stream_names(config)
        missing = [n for n in names if n not in input_dims]
        if missing:
            raise ValueError(f"config {config} needs input dims for streams {names}; missing {missing}")
        unknown = set(stream_params or {}) - set(names)
        if unknown:
            raise ValueError(f"stream_params for {sorted(unknown)}: config {config} has streams {names}")
        self.config, self.dim = config, dim
        self.constituents, self.objects = CONFIGS[config]
        self.pair_bias = pair_bias
        self.input_names = tuple(input_names or required_inputs(config, pair_bias))
        absent = [n for n in required_inputs(config, pair_bias) if n not in self.input_names]
        if absent:
            raise ValueError(f"config {config} reads inputs {absent}, absent from input_names {self.input_names}")
        kernel_options = dict(topk=topk, proj_dim=proj_dim, max_len=max_len)
        self.block_options = {"kernel": attention, "kernel_options": kernel_options, **(block_params or {})}
        self.attention = attention
        self.streams = nn.ModuleDict()
        for name in names:
            params = {**STREAM_DEFAULTS, **(stream_params or {}).get(name, {})}
            pairs = None
            if pair_bias and name in self.constituents:
                pairs = PairEmbed((*pair_embed_dims, params["num_heads"]), 4, dense=dense_pairs)
            self.streams[name] = Stream(
                input_dims[name],
                dim,
                params["dim"],
                params["num_heads"],
                params["num_layers"],
                params["embed_dims"],
                self.block_options,
                pairs,
            )
        self.norm = nn.LayerNorm(self.head_dim)
        self.fc = classifier_head(self.head_dim, num_classes, fc_params)

    @property
    def head_dim(self) -> int:
        """Width of what the classifier reads."""
        return self.dim

    def encode(self, inputs: tuple[torch.Tensor, ...]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The positional inputs (``input_names`` order)  ->  ``{stream: ((B, L, dim), padding (B, L))}``."""
        by_name = dict(zip(self.input_names, inputs, strict=True))
        read = required_inputs(self.config, self.pair_bias)
        unused = [x for name, x in by_name.items() if name not in read]
        encoded = {}
        for i, (name, stream) in enumerate(self.streams.items()):
            mask = particle_mask(by_name[f"{name}_mask"])
            if i == 0:
                mask = keep_in_graph(mask, unused)
            vectors = by_name.get(f"{name}_vectors") if stream.pair_embed is not None else None
            encoded[name] = stream(by_name[f"{name}_features"], mask.bool(), vectors)
        return encoded

    def classify(self, summary: torch.Tensor) -> torch.Tensor:
        """``(B, head_dim)``  ->  logits."""
        return self.fc(self.norm(summary))


def required_inputs(config: str, pair_bias: bool = False) -> tuple[str, ...]:
    """The weaver input groups a configuration reads, e.g. ``('pf_features', 'pf_mask', 'obj_features', ...)``."""
    constituents, _ = CONFIGS.get(config, ((), None))
    names = []
    for name in stream_names(config):
        names += [f"{name}_features", f"{name}_mask"]
        if pair_bias and name in constituents:
            names.append(f"{name}_vectors")
    return tuple(names)


class MultiScaleTransformer(StreamModel):
    """Streams, cross-attention of the objects over the constituents, readout, classifier.

    Args:
        input_dims, num_classes, stream_options: see :class:`StreamModel` (``config``, ``dim``, ``stream_params``,
            ``attention``, ``pair_bias``, ...).
        num_cross_layers, cross_heads: depth and heads of the cross-attention (none in ``model_1``).
        readout: ``cls`` (a class token attending to the final sequence through ParT's class-attention blocks,
            which stay dense whatever ``attention`` is) or ``mean`` (its mean over real entries).
        num_cls_layers: class-attention blocks with ``readout='cls'``.
    """

    def __init__(
        self,
        input_dims: dict[str, int],
        num_classes: int,
        num_cross_layers: int = 2,
        cross_heads: int = 8,
        readout: str = "cls",
        num_cls_layers: int = 1,
        **stream_options,
    ) -> None:
        super().__init__(input_dims, num_classes, **stream_options)
        if readout not in ("cls", "mean"):
            raise ValueError(f"readout={readout!r}: choose 'cls' (class token) or 'mean' (mean over real entries)")
        self.readout = readout
        cross_options = {**self.block_options, "dim": self.dim, "num_heads": cross_heads}
        num_cross_layers = num_cross_layers if self.objects else 0
        self.cross_blocks = nn.ModuleList([CrossBlock(**cross_options) for _ in range(num_cross_layers)])
        cls_options = dict(dim=self.dim, num_heads=cross_heads, dropout=0.0, attn_dropout=0.0, activation_dropout=0.0)
        cls_options["kernel"] = class_attention_kernel(self.attention)
        num_cls_layers = num_cls_layers if readout == "cls" else 0
        self.cls_blocks = nn.ModuleList([Block(**cls_options) for _ in range(num_cls_layers)])
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"cls_token"}

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Inputs in ``input_names`` order  ->  logits ``(B, num_classes)``."""
        encoded = self.encode(inputs)
        # keys and values: the constituent streams as one sequence
        context = torch.cat([encoded[name][0] for name in self.constituents], dim=1)  # B, Lc, C
        context_padding = torch.cat([encoded[name][1] for name in self.constituents], dim=1)
        if self.objects is None:
            x, padding = context, context_padding
        else:
            x, padding = encoded[self.objects]  # B, Lo, C: the queries
            context_bias = padding_bias(keep_a_key(context_padding), x.dtype)
            for block in self.cross_blocks:
                x = block(x, context, bias=context_bias)
        if self.readout == "mean":
            return self.classify(masked_mean(x, padding))
        return self.classify(class_attention(self.cls_blocks, self.cls_token, x, padding))


class ConcatTransformer(StreamModel):
    """The baseline without cross-attention: the same streams, each averaged over its real entries, concatenated,
    classified. Arguments: :class:`StreamModel`'s."""

    @property
    def head_dim(self) -> int:
        return self.dim * len(stream_names(self.config))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Inputs in ``input_names`` order  ->  logits ``(B, num_classes)``."""
        pooled = [masked_mean(x, padding) for x, padding in self.encode(inputs).values()]
        return self.classify(torch.cat(pooled, dim=1))

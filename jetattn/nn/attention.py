"""The one attention module of jetattn, its kernels, and attention recording.

Every model here (ParT, its sparse and Linformer variants, the multi-scale transformer) attends through
:class:`Attention`. The projections are real ``nn.Linear`` layers, so dynamic int8 quantization can swap them,
and the kernel that turns ``(q, k, v, bias)`` into an output is chosen by name:

- ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention`` (fused; the default);
- ``math``: softmax(q kᵀ / √d + bias) v written out, the reference every other kernel is tested against;
- ``topk``: per query and head, the softmax over only the ``topk`` largest logits (bias included), zero weight
  elsewhere; ``topk`` at least the number of keys is dense attention, and 1 a hard argmax;
- ``flex``: ``torch.nn.attention.flex_attention``, the bias as a score modification and padded keys as a
  block mask (on the CPU, this torch computes it without gradients);
- ``linformer``: the keys, values and bias projected along the key axis to ``proj_dim`` learned mixtures of
  the particles (Wang et al., arXiv:2006.04768), then dense attention; the projections are parameters of
  :class:`Attention`, and padded particles are zeroed before projection so that they contribute nothing.

A kernel is a function ``kernel(q, k, v, bias, dropout_p, need_weights, topk) -> (out, weights | None)`` with
``q: (B, H, Lq, D)``, ``k, v: (B, H, Lk, D)``, ``bias`` an additive float tensor broadcastable to
``(B, H, Lq, Lk)`` holding ``-inf`` where a key must be ignored, and ``topk`` the one kernel setting (others
ignore it). Adding one is :func:`register_kernel`. The output never depends on ``need_weights``.

Attention maps are read with :func:`record_attention`: every module then also hands over the weights it applied
(for ``topk`` the sparse softmax, zeros elsewhere; for ``linformer`` ``(B, H, Lq, proj_dim)`` over the projected
keys), and its outputs stay bit for bit what they are without recording. With ``details=True`` each call gives an
:class:`AttentionRecord`: the weights, the pre-softmax logits, the bias added to them and the padding, from the
very tensors of that call (so a later layer overwriting its input cannot change what was recorded).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

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
    if name == "linformer":
        raise ValueError("attention 'linformer' has parameters of its own: pass kernel='linformer' to the module")
    _default_kernel = name


def attention_logits(q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """q kᵀ / √d + bias: ``(B, H, Lq, Lk)``."""
    logits = (q * (1.0 / math.sqrt(q.size(-1)))) @ k.transpose(-2, -1)
    return logits if bias is None else logits + bias


def _apply(weights: torch.Tensor, v: torch.Tensor, dropout_p: float) -> torch.Tensor:
    return F.dropout(weights, p=dropout_p) @ v if dropout_p > 0 else weights @ v


@register_kernel("math")
def math_kernel(q, k, v, bias=None, dropout_p=0.0, need_weights=False, topk=None):
    weights = attention_logits(q, k, bias).softmax(dim=-1)
    return _apply(weights, v, dropout_p), weights


@register_kernel("sdpa")
def sdpa_kernel(q, k, v, bias=None, dropout_p=0.0, need_weights=False, topk=None):
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)
    # the fused kernel cannot hand its weights back: recompute them beside it, leaving the output as it is
    return out, attention_logits(q, k, bias).softmax(dim=-1) if need_weights else None


@register_kernel("topk")
def topk_kernel(q, k, v, bias=None, dropout_p=0.0, need_weights=False, topk=None):
    logits = attention_logits(q, k, bias)  # B, H, Lq, Lk
    if topk is not None and topk < logits.size(-1):
        # exactly topk keys per query (a tie at the k-th place goes either way); padded keys (-inf) lose to
        # every real one
        kept, index = logits.topk(topk, dim=-1)
        logits = torch.full_like(logits, float("-inf")).scatter(-1, index, kept)
    weights = logits.softmax(dim=-1)
    return _apply(weights, v, dropout_p), weights


def hidden_keys(bias: torch.Tensor) -> torch.Tensor:
    """The keys ``bias`` hides from every query (``-inf`` down their whole column): ``(B | 1, H | 1, 1, Lk)``."""
    return (bias == float("-inf")).all(dim=-2, keepdim=True)


@register_kernel("flex")
def flex_kernel(q, k, v, bias=None, dropout_p=0.0, need_weights=False, topk=None):
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except ImportError as err:
        raise RuntimeError(
            f"attention 'flex' needs torch.nn.attention.flex_attention, which torch {torch.__version__} lacks; "
            "choose another attention (sdpa, math, topk, linformer)"
        ) from err
    if dropout_p > 0:
        raise ValueError("attention 'flex' has no attention dropout: set attn_dropout=0 in block_params")
    if q.device.type == "cpu" and torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        raise RuntimeError(
            f"attention 'flex': torch {torch.__version__} has no flex_attention gradients on the CPU; "
            "train with attention sdpa (or on a GPU) and evaluate with flex"
        )
    batch, heads, len_q, _ = q.shape
    len_k = k.size(-2)
    block_mask = None
    score_mod = None
    if bias is not None:
        padded = hidden_keys(bias)  # B | 1, H | 1, 1, Lk
        key_padding = padded.squeeze(-2).expand(batch, heads, len_k)
        # padded keys go to the block mask; any other -inf stays in the bias
        pair_bias = bias.masked_fill(padded, 0).expand(batch, heads, len_q, len_k)

        def score_mod(score, b, h, q_idx, kv_idx):
            return score + pair_bias[b, h, q_idx, kv_idx]

        def keep(b, h, q_idx, kv_idx):
            return ~key_padding[b, h, kv_idx]

        block_mask = create_block_mask(keep, batch, heads, len_q, len_k, device=q.device)
    out = flex_attention(q, k, v, score_mod=score_mod, block_mask=block_mask)
    return out, attention_logits(q, k, bias).softmax(dim=-1) if need_weights else None


# linformer's projections are parameters of the module (LinformerProjection); its kernel is dense attention
# over the projected keys
KERNELS["linformer"] = sdpa_kernel


def padding_bias(padding_mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(B, L)`` bool, True = padded  ->  ``(B, 1, 1, L)`` additive bias, ``-inf`` on padded keys."""
    bias = torch.zeros(padding_mask.shape, dtype=dtype, device=padding_mask.device)
    return bias.masked_fill(padding_mask, float("-inf"))[:, None, None, :]


def keep_a_key(padding: torch.Tensor) -> torch.Tensor:
    """``(B, L)`` True where padded  ->  the same, with the first slot of a sequence that has no real entry
    kept as a key: a softmax over nothing but ``-inf`` is NaN. That slot holds the same thing whatever the padding
    held and however long it is, where attending to all of the padding would depend on its length."""
    first = torch.arange(padding.size(1), device=padding.device) == 0
    return padding & ~(padding.all(dim=1, keepdim=True) & first)


@dataclass
class AttentionRecord:
    """What one call of an :class:`Attention` applied, detached.

    Attributes:
        weights: ``(B, H, Lq, Lk)`` the weights multiplying the values (before attention dropout, which is off in
            evaluation): softmax over the keys, 0 on padded keys; ``topk``: the sparse softmax; ``linformer``:
            ``(B, H, Lq, proj_dim)`` over the projected keys.
        logits: the same shape, q kᵀ / √d + bias, pre-softmax (``topk``: before keeping the k largest).
        bias: the additive bias of the logits as the kernel got it, broadcastable to ``weights`` (``-inf`` on
            padded keys; ``linformer``: projected along the keys), or None when the call had none.
        key_padding: ``(B, Lk)`` True where a key (a particle, before any projection) is padded.
        query_padding: ``(B, Lq)`` for self-attention (the keys' padding); None where the queries are another
            sequence (class token, cross-attention), whose padding the module does not know.
        projected: True for ``linformer``: the last axis of ``weights`` counts projections, not particles.
        output_gate: ``(B, Lq, H, 1 | D)`` the sigmoid gate that multiplied each head's output (after the weights
            were applied, so the weights stay the softmax), or None without an output gate.
    """

    weights: torch.Tensor
    logits: torch.Tensor
    bias: torch.Tensor | None
    key_padding: torch.Tensor
    query_padding: torch.Tensor | None
    projected: bool = False
    output_gate: torch.Tensor | None = None

    def per_jet(self, what: str = "weights", query_padding: torch.Tensor | None = None) -> list[torch.Tensor]:
        """``weights``, ``logits`` or ``bias`` of each jet without padding: a list of ``(H, n_q, n_k)``.

        ``query_padding (B, Lq)`` overrides the recorded one (e.g. the objects' padding of cross-attention);
        with neither, every query is kept. Projected keys (``linformer``) are all kept.
        """
        values = getattr(self, what)
        if values is None:
            raise ValueError(f"this attention call had no {what}")
        values = values.expand(self.weights.shape)
        query_padding = self.query_padding if query_padding is None else query_padding
        jets = []
        for jet, table in enumerate(values):  # H, Lq, Lk
            # index_select: boolean indexing of a 3-d tensor is a hundred times slower on the CPU
            if query_padding is not None:
                table = table.index_select(1, (~query_padding[jet]).nonzero().squeeze(1))
            if not self.projected:
                table = table.index_select(2, (~self.key_padding[jet]).nonzero().squeeze(1))
            jets.append(table)
        return jets


def key_padding_of(bias: torch.Tensor | None, batch: int, length: int, device: torch.device) -> torch.Tensor:
    """``(B, L)`` True for keys the bias hides from every query and head (``-inf``): the padding."""
    if bias is None:
        return torch.zeros(batch, length, dtype=torch.bool, device=device)
    return hidden_keys(bias).squeeze(-2).all(dim=1).expand(batch, length)


class LinformerProjection(nn.Module):
    """Linformer's learned projections ``E: (proj_dim, max_len)`` along the particle axis.

    Keys and values become ``proj_dim`` mixtures of the particles, ``E k`` and ``E v``, and the bias ``bias Eᵀ``
    (the key projection, since (q kᵀ + bias) Eᵀ = q (E k)ᵀ + bias Eᵀ). A key is padded where the bias is
    ``-inf`` for every query; padded keys, values and bias entries are zeroed first, so that neither what the
    padding holds nor how much of it there is changes the result (any other ``-inf`` in the bias is read as 0).

    Given ``key_padding``, the bias is taken as already projected (``(…, Lq, proj_dim)``, see :meth:`project`):
    a model that projects its pair features once, before embedding them, never forms an ``Lq × L`` bias.

    Args:
        proj_dim: number of projected keys.
        max_len: the most particles a sequence may have (``E`` is sliced to the sequence).
        share_kv_proj: one ``E`` for keys and values.
    """

    def __init__(self, proj_dim: int = 32, max_len: int = 128, share_kv_proj: bool = False) -> None:
        super().__init__()
        self.max_len = max_len
        self.key = nn.Parameter(torch.randn(proj_dim, max_len) / math.sqrt(proj_dim))
        self.value = None if share_kv_proj else nn.Parameter(torch.randn(proj_dim, max_len) / math.sqrt(proj_dim))

    def _key_projection(self, length: int) -> torch.Tensor:
        if length > self.max_len:
            raise ValueError(
                f"attention 'linformer' got {length} particles, more than its max_len={self.max_len}: "
                "raise the network option max_len (or pad/trim the inputs to at most that length)"
            )
        return self.key[:, :length]

    def project(self, pairs: torch.Tensor, key_padding: torch.Tensor) -> torch.Tensor:
        """Project anything indexed by key along its last axis as the keys are: ``(B, …, L)`` with
        ``key_padding: (B, L)`` True where padded  ->  ``(B, …, proj_dim)``, padded keys counted as 0."""
        padding = key_padding.view(key_padding.size(0), *([1] * (pairs.dim() - 2)), key_padding.size(1))
        return pairs.masked_fill(padding, 0) @ self._key_projection(pairs.size(-1)).T

    def forward(
        self, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, key_padding: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``k, v: (B, H, L, D)``, ``bias`` broadcastable to ``(B, H, Lq, L)`` (or already projected, with
        ``key_padding: (B, L)``)  ->  ``(B, H, proj_dim, D)`` twice, and the bias
        ``(B | 1, H | 1, Lq | 1, proj_dim)``."""
        proj_k = self._key_projection(k.size(-2))
        proj_v = proj_k if self.value is None else self.value[:, : k.size(-2)]
        if key_padding is not None:
            padded = key_padding[:, None, :, None]  # B, 1, L, 1
            k, v = k.masked_fill(padded, 0), v.masked_fill(padded, 0)
        elif bias is not None:
            padded = hidden_keys(bias).transpose(-1, -2)  # B | 1, H | 1, L, 1
            k, v = k.masked_fill(padded, 0), v.masked_fill(padded, 0)
            bias = bias.masked_fill(bias == float("-inf"), 0) @ proj_k.T
        return proj_k @ k, proj_v @ v, bias


class Attention(nn.Module):
    """Multi-head attention with separate query and key/value projections and a selectable kernel.

    Args:
        dim: embedding width (input and output).
        num_heads: number of heads; ``dim`` must divide evenly.
        dropout: dropout on the attention weights, in training only.
        bias: whether the projections carry a bias.
        kernel: kernel name from :data:`KERNELS`; None follows :func:`set_default_kernel`.
        topk: keys kept per query by the ``topk`` kernel.
        proj_dim, max_len, share_kv_proj: the ``linformer`` kernel's :class:`LinformerProjection` (made only
            for that kernel; no other kernel adds parameters).
        qk_norm: a norm factory (``nn.LayerNorm``, an RMSNorm) applied to each head's queries and keys before their
            product (QK-norm); None for none. The kernels and the recorded logits see the normalised ones.
        output_gate: ``headwise`` (one sigmoid gate per head) or ``elementwise`` (one per channel) multiplying the
            attention output before ``out_proj``, from a Linear of the queries' input (``gate_proj``); None for none.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        kernel: str | None = None,
        topk: int = 30,
        proj_dim: int = 32,
        max_len: int = 128,
        share_kv_proj: bool = False,
        qk_norm: Callable[[int], nn.Module] | None = None,
        output_gate: str | None = None,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding width {dim} is not divisible by {num_heads} heads")
        if kernel is not None and kernel not in KERNELS:
            raise ValueError(f"unknown attention kernel {kernel!r}; choose from {sorted(KERNELS)}")
        if topk < 1:
            raise ValueError(f"topk={topk}: attention 'topk' keeps at least one key per query")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.dropout = dropout
        self.kernel = kernel
        self.topk = topk
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.kv_proj = nn.Linear(dim, 2 * dim, bias=bias)  # keys and values in one matmul
        self.out_proj = nn.Linear(dim, dim, bias=bias)
        self.q_norm = qk_norm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = qk_norm(self.head_dim) if qk_norm else nn.Identity()
        if output_gate not in (None, "headwise", "elementwise"):
            raise ValueError(f"output_gate={output_gate!r}: choose None, 'headwise' or 'elementwise'")
        gates = {None: 0, "headwise": num_heads, "elementwise": dim}[output_gate]
        self.gate_proj = nn.Linear(dim, gates, bias=bias) if gates else None
        self.linformer = LinformerProjection(proj_dim, max_len, share_kv_proj) if kernel == "linformer" else None
        self.recorder: Callable[[Attention, AttentionRecord], None] | None = None

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
        key_padding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x: (B, Lq, C)`` queries; ``context: (B, Lk, C)`` keys and values (default ``x``);
        ``bias``: additive logits broadcastable to ``(B, H, Lq, Lk)``, ``-inf`` on ignored keys.
        ``key_padding: (B, Lk)``, linformer only: the padded keys, with ``bias`` already projected
        (``(…, Lq, proj_dim)``, by :meth:`LinformerProjection.project`)."""
        context = x if context is None else context
        batch, len_q, _ = x.shape
        len_k = context.size(1)
        # QK-norm on the projections' own (B, L, H, D) layout, where each head's channels are contiguous
        q = self.q_norm(self.q_proj(x).view(batch, len_q, self.num_heads, self.head_dim)).transpose(1, 2)
        k, v = self.kv_proj(context).view(batch, len_k, 2, self.num_heads, self.head_dim).unbind(2)
        k, v = self.k_norm(k).transpose(1, 2), v.transpose(1, 2)  # each B, H, Lk, D
        if bias is not None:
            bias = bias.to(q.dtype)
        if self.recorder is not None:
            padding = key_padding if key_padding is not None else key_padding_of(bias, batch, len_k, x.device)
        if self.linformer is not None:
            k, v, bias = self.linformer(k, v, bias, key_padding)  # B, H, proj_dim, D
        elif key_padding is not None:
            raise ValueError("key_padding is for attention 'linformer' with a projected bias")
        kernel = KERNELS[self.kernel or _default_kernel]
        dropout_p = self.dropout if self.training else 0.0
        out, weights = kernel(q, k, v, bias, dropout_p, self.recorder is not None, self.topk)
        gate = None
        if self.gate_proj is not None:  # B, Lq, H, 1 | D
            gate = torch.sigmoid(self.gate_proj(x)).view(batch, len_q, self.num_heads, -1)
        if self.recorder is not None:
            # the same q, k and bias as the kernel's: the logits it softmaxed (for math and topk, bit for bit)
            logits = attention_logits(q, k, bias)
            record = AttentionRecord(
                weights.detach(),
                logits.detach(),
                None if bias is None else bias.detach(),
                padding,
                padding if context is x else None,
                projected=self.linformer is not None,
                output_gate=None if gate is None else gate.detach(),
            )
            self.recorder(self, record)
        out = out.transpose(1, 2)  # B, Lq, H, D
        if gate is not None:
            out = out * gate
        return self.out_proj(out.reshape(batch, len_q, self.dim))

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
def record_attention(
    model: nn.Module, details: bool = False
) -> Iterator[dict[str, list[torch.Tensor]] | dict[str, list[AttentionRecord]]]:
    """Record the attention every :class:`Attention` in ``model`` applies while the block runs.

    Yields a dict ``{module name: [weights (B, H, Lq, Lk) per call]}``, detached; padded keys get weight 0
    (``linformer``: ``(B, H, Lq, proj_dim)``, over the projected keys). With ``details=True`` the lists hold an
    :class:`AttentionRecord` per call (weights, logits, bias, padding; :meth:`AttentionRecord.per_jet` strips the
    padding). Outputs are bit for bit the same as without recording.
    """
    maps: dict[str, list] = {}
    modules = [(name, m) for name, m in model.named_modules() if isinstance(m, Attention)]
    for name, module in modules:
        maps[name] = []
        if details:
            module.recorder = lambda _m, record, store=maps[name]: store.append(record)
        else:
            module.recorder = lambda _m, record, store=maps[name]: store.append(record.weights)
    try:
        yield maps
    finally:
        for _, module in modules:
            module.recorder = None

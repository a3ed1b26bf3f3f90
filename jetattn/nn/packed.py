"""Packed execution of ParT (``-o packed 1``): only real particles and real pairs are computed.

The padded model pays for every slot of a batch cut at its longest jet: with JetClass multiplicities (mean 44 of
128) most particle tokens, attention entries and pairs are padding. Packed execution lays the real particles of a
batch out as one sequence, jet after jet, and

- embeds the real particles only (``Σ nᵢ`` tokens; the input BatchNorm still normalises the padded batch, so its
  statistics are the padded model's);
- computes the pair features and the pair embedding on the real pairs a ≥ b of each jet only (``Σ nᵢ(nᵢ+1)/2``
  pairs, never ``B·L²``), with ``checkpoint_pairs`` again in the backward pass instead of keeping them;
- attends within each jet: the sequence is cut into rows of ``R`` slots (``R`` the longest jet rounded up to 32),
  each row holding whole jets (packed best-fit, longest first), and each row runs dense
  attention whose bias is the pair embedding inside a jet and ``-inf`` between jets (a block-diagonal mask).
  The work is ``rows·R²`` ≈ ``Σ nᵢ·R`` instead of ``B·L²``, with plain ``scaled_dot_product_attention``: the
  same kernel on the CPU and CUDA, with gradients on both (flex_attention has no CPU gradients in this torch);
- runs the class-attention blocks and the head on per-jet tokens, gathered back to ``(B, R)``.

Same state_dict as the padded model, same outputs in evaluation and the same gradients in training. No BatchNorm
sees other statistics than in the padded model: the input BatchNorm normalises the padded ``(B, C, L)`` batch, its
padded slots included, and the pair embedding's BatchNorms normalise over the real pairs a ≥ b of each jet,
``Σ nᵢ(nᵢ+1)/2`` entries, as our padded model and weaver's eager training (``PairEmbed._forward_sparse``) do;
only the order of the sums differs. weaver's ``--compile`` training differs from all three: it embeds all
``B·L(L+1)/2`` pairs a ≥ b of the trimmed batch, padded slots included (``docs/benchmarks.md``, packed section).

Shapes: one read of the jet lengths to the host per batch (before any heavy work; the trimmer before it reads
them too) decides the rows; the number of rows is rounded up to a multiple of ``B/16`` (at least 8) and ``R`` to
a multiple of 32, so a compiled model sees a handful of ``(rows, R)`` shapes. The token and pair counts vary per
batch and are marked dynamic, so they never trigger a recompile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from jetattn.nn.pairs import embed_pair_features, pair_features, particle_kinematics

ROW_MULTIPLE = 32  # row length R: the longest jet rounded up to this


def check_packable(attention: str | None, buckets: int, **unsupported: bool) -> None:
    """One clear line for the options packed execution cannot honour; ``unsupported``: option name -> given."""
    if attention not in (None, "sdpa", "math"):
        raise ValueError(f"packed=1 runs dense attention within each jet: attention {attention!r} is not supported")
    if buckets != 1:
        raise ValueError("packed=1 already drops the padding: leave buckets at 1")
    for name, given in unsupported.items():
        if given:
            raise ValueError(f"packed=1 does not support {name} (yet): leave packed at 0 for this model")


@dataclass
class PackedBatch:
    """Where each real particle and real pair of a batch goes. ``T = Σ nᵢ`` tokens, ``P = Σ nᵢ(nᵢ+1)/2`` pairs.

    Attributes:
        token_jet, token_particle: ``(T,)`` the jet and padded slot of each packed token.
        token_slot: ``(T,)`` its slot in the rows, flattened ``(rows·R)``.
        pair_a, pair_b: ``(P,)`` the packed tokens of each pair, a ≥ b within one jet.
        pair_slot: ``(P,)`` slot of the bias entry (a, b) in the flattened ``(rows·R·R)`` attention bias;
            ``pair_slot_mirror`` that of (b, a).
        jet_slots: ``(B, R)`` row slot of each jet's k-th particle (0 past its end); ``jet_padding`` True there.
        rows, row_len: the static shape of the attention rows.
    """

    token_jet: torch.Tensor
    token_particle: torch.Tensor
    token_slot: torch.Tensor
    pair_a: torch.Tensor
    pair_b: torch.Tensor
    pair_slot: torch.Tensor
    pair_slot_mirror: torch.Tensor
    jet_slots: torch.Tensor
    jet_padding: torch.Tensor
    rows: int
    row_len: int

    @property
    def num_pairs(self) -> int:
        return self.pair_a.numel()


def assign_rows(lengths: np.ndarray, row_len: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Pack jets of ``lengths`` particles into rows of ``row_len`` slots, each jet whole in one row.

    Best fit, longest first: a row starts with the longest jet left and is topped up with the longest jets that
    still fit (jets kept by length, so a row costs at most ``row_len`` steps; well under a millisecond for 512
    jets). Returns each jet's row and first slot (empty jets: row 0, slot 0; they hold no slot), and the number
    of rows used.
    """
    by_length: list[list[int]] = [[] for _ in range(row_len + 1)]
    for jet in np.argsort(lengths, kind="stable"):
        by_length[lengths[jet]].append(int(jet))
    row = np.zeros(len(lengths), dtype=np.int64)
    start = np.zeros(len(lengths), dtype=np.int64)
    left, longest, rows = int((lengths > 0).sum()), row_len, 0
    while left:
        while not by_length[longest]:
            longest -= 1
        free, n = row_len, longest
        while n > 0 and left:
            if by_length[n]:
                jet = by_length[n].pop()
                row[jet], start[jet] = rows, row_len - free
                free, left = free - n, left - 1
                n = min(n, free)
            else:
                n -= 1
        rows += 1
    return row, start, rows


def pack_batch(mask: torch.Tensor) -> PackedBatch:
    """``mask: (B, 1, L)`` bool, True = real  ->  the :class:`PackedBatch` of its real particles and pairs.

    The lengths are read to the host once (the row assignment); every index is then built on the device.
    """
    device = mask.device
    real = mask.squeeze(1)  # B, L
    lengths_dev = real.sum(dim=1)
    lengths = lengths_dev.cpu().numpy()  # the one host read of the batch
    batch = len(lengths)
    row_len = max(ROW_MULTIPLE, -(-int(lengths.max(initial=1)) // ROW_MULTIPLE) * ROW_MULTIPLE)
    row, start, rows = assign_rows(lengths, row_len)
    row_multiple = max(8, -(-batch // 16))
    rows = -(-rows // row_multiple) * row_multiple
    first_slot = torch.from_numpy(row * row_len + start).to(device, non_blocking=True)  # B
    num_tokens, num_pairs = int(lengths.sum()), int((lengths * (lengths + 1) // 2).sum())

    jets = torch.arange(batch, device=device)
    token_jet = jets.repeat_interleave(lengths_dev, output_size=num_tokens)
    token_offset = lengths_dev.cumsum(0) - lengths_dev  # B
    local = torch.arange(num_tokens, device=device) - token_offset[token_jet]  # k-th real particle of its jet
    # real slots in order, wherever the mask puts them
    real_slots = (~real).to(torch.int8).argsort(dim=1, stable=True)
    token_particle = real_slots[token_jet, local]
    token_slot = first_slot[token_jet] + local

    # pairs a >= b of a jet of n particles: the first n(n+1)/2 entries of the row-major lower triangle
    tri_a, tri_b = torch.tril_indices(row_len, row_len, device=device)
    pair_counts = lengths_dev * (lengths_dev + 1) // 2
    pair_jet = jets.repeat_interleave(pair_counts, output_size=num_pairs)
    pair_local = torch.arange(num_pairs, device=device) - (pair_counts.cumsum(0) - pair_counts)[pair_jet]
    a, b = tri_a[pair_local], tri_b[pair_local]
    slot_a, slot_b = first_slot[pair_jet] + a, first_slot[pair_jet] + b  # slots in the flattened rows
    row_of_pair = slot_a // row_len
    in_row_a, in_row_b = slot_a % row_len, slot_b % row_len
    base = row_of_pair * row_len * row_len

    k = torch.arange(row_len, device=device)
    jet_padding = k[None] >= lengths_dev[:, None]  # B, R
    jet_slots = (first_slot[:, None] + k[None]).masked_fill(jet_padding, 0)
    return PackedBatch(
        token_jet=token_jet,
        token_particle=token_particle,
        token_slot=token_slot,
        pair_a=token_offset[pair_jet] + a,
        pair_b=token_offset[pair_jet] + b,
        pair_slot=base + in_row_a * row_len + in_row_b,
        pair_slot_mirror=base + in_row_b * row_len + in_row_a,
        jet_slots=jet_slots,
        jet_padding=jet_padding,
        rows=rows,
        row_len=row_len,
    )


def packed_inputs(model, x: torch.Tensor, v: torch.Tensor, packed: PackedBatch) -> tuple[torch.Tensor, ...]:
    """The per-token inputs of :func:`run_packed`: the input-normalised features ``(T, C)``, and the kinematics
    ``(3, T)`` (pT, y, φ) and four-vectors ``(4, T)`` of each token.

    The input BatchNorm and the kinematics run on the padded ``(B, ·, L)`` layout: the first so that its batch
    statistics are the padded model's (padding zeros included, as in weaver), the second for bit-equal pair
    features (see :func:`jetattn.nn.pairs.particle_kinematics`).
    """
    jet, slot = packed.token_jet, packed.token_particle
    normalised = model.embed.input_bn(x) if hasattr(model.embed, "input_bn") else x
    tokens = normalised.transpose(1, 2)[jet, slot]  # T, C
    kinematics = particle_kinematics(v)[jet, :, slot].T  # 3, T
    four_vectors = v[jet, :, slot].T  # 4, T
    return tokens, kinematics, four_vectors


def pair_elements(pair_embed, kinematics, four_vectors, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The pair features of the packed tokens ``a, b`` (``(P,)``; ``kinematics (3, T)``, ``four_vectors (4, T)``)
    through the pair embedding's layers  ->  ``(P, heads)``."""
    features = pair_features(
        kinematics[:, a], kinematics[:, b], four_vectors[:, a], four_vectors[:, b], min_delta=pair_embed.min_delta
    )
    features = torch.nan_to_num(features, nan=0.0, posinf=0.0, neginf=0.0)  # as the padded PairEmbed
    return embed_pair_features(pair_embed.embed, features.T)


def run_packed(model, tokens, kinematics, four_vectors, packed: PackedBatch) -> torch.Tensor:
    """Embeddings, pair bias, particle blocks, class attention and head on a packed batch: what ``compile``
    compiles. Returns what the padded model's :meth:`~jetattn.nn.part.ParticleTransformer.attend` returns."""
    rows, row_len = packed.rows, packed.row_len
    slots = rows * row_len
    embedded = model.embed.embed(tokens) if hasattr(model.embed, "embed") else tokens  # T, C
    x = embedded.new_zeros(slots, embedded.size(1)).index_copy(0, packed.token_slot, embedded)
    x = x.view(rows, row_len, -1)  # rows, R, C

    heads = model.blocks[0].attn.num_heads if len(model.blocks) else 1
    # every slot sees itself (an empty slot then attends to itself alone), nothing across jets
    bias = x.new_full((slots * row_len, heads), float("-inf"))
    slot = torch.arange(slots, device=x.device)
    bias = bias.index_fill(0, slot * row_len + slot % row_len, 0.0)  # the diagonal of each row
    if model.pair_embed is not None:
        elements = model.pair_embed.recomputed(
            pair_elements, model.pair_embed, kinematics, four_vectors, packed.pair_a, packed.pair_b
        ).to(bias.dtype)  # P, heads
    else:
        elements = bias.new_zeros(packed.num_pairs, heads)
    bias = bias.index_copy(0, packed.pair_slot_mirror, elements).index_copy(0, packed.pair_slot, elements)
    bias = bias.view(rows, row_len, row_len, heads).permute(0, 3, 1, 2).contiguous()  # rows, H, R, R
    for block in model.blocks:
        x = block(x, bias=bias)
    per_jet = x.view(slots, -1)[packed.jet_slots]  # B, R, C
    return model.classify(per_jet, packed.jet_padding)


@torch.compiler.disable  # reads the lengths on the host: runs eagerly, under weaver's --compile too
def prepare(model, x: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> tuple:
    packed = pack_batch(mask)
    inputs = packed_inputs(model, x, v, packed)
    tokens, kinematics, four_vectors = inputs
    # the token and pair counts vary per batch: symbolic, so that they never trigger a recompile
    for tensor, axis in (
        (tokens, 0),
        (kinematics, 1),
        (four_vectors, 1),
        (packed.token_slot, 0),
        (packed.pair_a, 0),
        (packed.pair_b, 0),
        (packed.pair_slot, 0),
        (packed.pair_slot_mirror, 0),
    ):
        torch._dynamo.maybe_mark_dynamic(tensor, axis)
    return (*inputs, packed)


def packed_forward(model, x: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x: (B, C, L)``, ``v: (B, 4, L)``, ``mask: (B, 1, L)`` bool, after trimming  ->  the model's output."""
    return model.run_packed(*prepare(model, x, v, mask))

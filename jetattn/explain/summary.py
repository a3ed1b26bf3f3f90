"""Numbers from recorded attention, gathered batch by batch: the distribution of attention scores, mean maps per
class with particles ordered by pT, cross-attention maps, and the attention shared between subjets and given to
leptons."""

from __future__ import annotations

import numpy as np
import torch

from jetattn.nn.attention import AttentionRecord

SCORE_EDGES = np.linspace(0.0, 1.0, 51)


class MeanMaps:
    """Mean over jets of ``(H, rows, cols)`` maps whose jets may fill fewer rows and columns (NaN where none)."""

    def __init__(self) -> None:
        self.sums: dict[tuple, np.ndarray] = {}
        self.counts: dict[tuple, np.ndarray] = {}

    def add(self, key: tuple, table: np.ndarray, shape: tuple[int, int]) -> None:
        if key not in self.sums:
            self.sums[key] = np.zeros((table.shape[0], *shape))
            self.counts[key] = np.zeros(shape)
        rows, cols = table.shape[1:]
        self.sums[key][:, :rows, :cols] += table
        self.counts[key][:rows, :cols] += 1

    def means(self) -> dict[tuple, np.ndarray]:
        with np.errstate(invalid="ignore"):
            return {key: self.sums[key] / self.counts[key] for key in self.sums}


class AttentionSummary:
    """What the plots show of one model's attention, accumulated over batches.

    Args:
        layers: names of the particle self-attention modules (``mod.blocks.0.attn``, ...), in order.
        classes: short class names, by class index.
        max_particles: leading particles (by pT) in the mean maps.
        subjets: number of exclusive-kT subjets per class name (classes absent are skipped).
    """

    def __init__(self, layers: list[str], classes: list[str], max_particles: int, subjets: dict[str, int]) -> None:
        self.layers, self.classes, self.max_particles, self.subjets = layers, classes, max_particles, subjets
        self.score_counts = np.zeros(len(SCORE_EDGES) - 1, dtype=np.int64)
        self.scores_low = self.scores_high = self.scores_total = 0
        self.maps = MeanMaps()
        self.cross = MeanMaps()
        # class -> layer -> list of (heads,) per jet
        self.between_subjets: dict[str, dict[str, list[np.ndarray]]] = {}
        self.to_leptons: dict[str, dict[str, list[np.ndarray]]] = {}
        self.projected = False

    def add_batch(
        self,
        records: dict[str, list[AttentionRecord]],
        labels: np.ndarray,
        pts: list[np.ndarray],
        subjets: list[np.ndarray | None],
        leptons: list[np.ndarray | None],
    ) -> None:
        """One batch: the records of one forward, each jet's class, particle pTs, subjet index per particle
        (None: not computed) and lepton flags (None: none in the files)."""
        for layer in self.layers:
            (record,) = records[layer]
            self.projected |= record.projected
            for jet, weights in enumerate(record.per_jet()):
                weights = weights.double().cpu().numpy()  # H, n, n (or n, proj_dim)
                name = self.classes[labels[jet]]
                self._add_scores(weights)
                if record.projected:
                    continue
                if weights.shape[1] != len(pts[jet]):
                    raise ValueError(f"{layer}: {weights.shape[1]} tokens for a jet of {len(pts[jet])} particles")
                order = np.argsort(-pts[jet], kind="stable")[: self.max_particles]
                ordered = weights[:, order][:, :, order]
                self.maps.add((name, layer), ordered, (self.max_particles, self.max_particles))
                n = len(order)
                if subjets[jet] is not None and n:
                    between = subjets[jet][:, None] != subjets[jet][None, :]
                    self.between_subjets.setdefault(name, {}).setdefault(layer, []).append(
                        (weights * between).sum((1, 2)) / weights.shape[1]
                    )
                if leptons[jet] is not None and n:
                    self.to_leptons.setdefault(name, {}).setdefault(layer, []).append(
                        weights[:, :, leptons[jet]].sum((1, 2)) / weights.shape[1]
                    )

    def _add_scores(self, weights: np.ndarray) -> None:
        self.score_counts += np.histogram(weights.clip(0, 1), bins=SCORE_EDGES)[0]
        self.scores_low += int((weights < 0.1).sum())
        self.scores_high += int((weights > 0.9).sum())
        self.scores_total += weights.size

    def add_cross(
        self,
        records: dict[str, list[AttentionRecord]],
        labels: np.ndarray,
        signal: np.ndarray,
        object_padding: torch.Tensor,
        key_order: list[np.ndarray | None],
        num_keys: int,
    ) -> None:
        """Cross-attention (objects querying constituents), head-averaged, per layer, signal vs background:
        ``signal`` per class index; keys in ``key_order`` (pT order, or None: as the stream holds them)."""
        for layer, calls in records.items():
            if ".cross_blocks." not in f".{layer}" or not calls:
                continue
            (record,) = calls
            for jet, weights in enumerate(record.per_jet(query_padding=object_padding)):
                weights = weights.double().cpu().numpy().mean(0)  # objects, constituents
                if key_order[jet] is not None and len(key_order[jet]) == weights.shape[1]:
                    weights = weights[:, key_order[jet]]
                group = "signal" if signal[labels[jet]] else "background"
                table = weights[None, :, :num_keys]
                self.cross.add((group, layer), table, (object_padding.size(1), num_keys))

    def score_summary(self) -> dict:
        total = max(self.scores_total, 1)
        return {
            "bin_edges": SCORE_EDGES.tolist(),
            "counts": self.score_counts.tolist(),
            "fraction_below_0.1": self.scores_low / total,
            "fraction_above_0.9": self.scores_high / total,
            "scores": self.scores_total,
            "over_projected_keys": self.projected,
        }


FRACTION_BINS = np.linspace(0, 1, 26)


def fraction_table(values: dict[str, dict[str, list[np.ndarray]]]) -> dict[str, dict]:
    """Per class: the histogram (``FRACTION_BINS``) of every jet-and-head value pooled over layers, as plotted,
    their number, their mean, and the mean per layer."""
    table = {}
    for name, by_layer in values.items():
        pooled = np.concatenate([np.concatenate(v) for v in by_layer.values()])
        counts, _ = np.histogram(np.clip(pooled, 0, 1), bins=FRACTION_BINS)
        table[name] = {
            "bin_edges": FRACTION_BINS.tolist(),
            "counts": counts.tolist(),
            "entries": len(pooled),
            "mean": float(pooled.mean()),
            "mean_per_layer": {layer: float(np.concatenate(v).mean()) for layer, v in by_layer.items()},
            "jets": len(next(iter(by_layer.values()))),
        }
    return table

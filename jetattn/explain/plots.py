"""The figures, each saved as PNG and PDF (written under a temporary name, then renamed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jetattn.plotting import pyplot, save

MARKERS = {"ChargedHadron": "o", "NeutralHadron": "s", "Photon": "^", "Electron": "P", "Muon": "X", "particle": "o"}


def score_distribution(scores: dict[str, dict], out: Path) -> list[str]:
    """Attention scores of every layer, head, real query and key; one histogram per model, log y."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 7))
    for (model, summary), style in zip(scores.items(), ("-", "--"), strict=False):
        edges, counts = np.array(summary["bin_edges"]), np.array(summary["counts"])
        label = (
            f"{model}: {100 * summary['fraction_below_0.1']:.1f}% < 0.1, "
            f"{100 * summary['fraction_above_0.9']:.1f}% > 0.9"
        )
        ax.stairs(counts / max(counts.sum(), 1), edges, ls=style, label=label)
    ax.set(yscale="log", xlabel="attention score", ylabel="fraction of scores", xlim=(0, 1))
    ax.legend(fontsize=14)
    return save(fig, out, "attention_scores")


def mean_maps(name: str, layers: list[str], maps: dict[str, np.ndarray], out: Path) -> list[str]:
    """Rows: layers; columns: heads and their mean; particles ordered by pT (leading first)."""
    plt = pyplot()
    heads = maps[layers[0]].shape[0]
    fig, axes = plt.subplots(len(layers), heads + 1, figsize=(2.6 * (heads + 1), 2.6 * len(layers)), squeeze=False)
    for row, layer in enumerate(layers):
        panels = [*maps[layer], np.nanmean(maps[layer], axis=0)]
        for col, table in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(table, cmap="viridis", vmin=0, origin="upper")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title("mean" if col == heads else f"head {col}", fontsize=12)
            if col == 0:
                ax.set_ylabel(f"layer {row}", fontsize=12)
    fig.suptitle(f"{name}: mean attention, particles by p$_T$ (query rows, key columns)", fontsize=16)
    return save(fig, out, f"attention_maps_{name}")


def cross_maps(
    layer: str, maps: dict[str, np.ndarray], out: Path, index: int, object_names: list[str] | None = None
) -> list[str]:
    """Objects (rows) attending to the leading constituents (columns), signal beside background, on one scale."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(maps), figsize=(8.5 * len(maps), 4.5), squeeze=False)
    # one colour scale from the smallest to the largest mean: near-uniform maps still show their structure
    low = min(float(np.nanmin(table)) for table in maps.values())
    top = max(float(np.nanmax(table)) for table in maps.values())
    for ax, (group, table) in zip(axes[0], maps.items(), strict=True):
        image = ax.imshow(table, cmap="viridis", vmin=low, vmax=top, aspect="auto")
        ax.set_title(f"{group}, {layer}", fontsize=16)
        ax.set(xlabel="constituent (by p$_T$)", ylabel="object (query)")
        if object_names and len(object_names) == table.shape[0]:
            ax.set_yticks(range(len(object_names)), object_names, fontsize=14)
        fig.colorbar(image, ax=ax, label="mean attention")
    fig.tight_layout(w_pad=3)
    return save(fig, out, f"cross_attention_{index}")


def attention_graph(graph: dict, out: Path, stem: str) -> list[str]:
    """A jet in (Δη, Δφ): particles by type, area ∝ pT; lines by attention weight, solid within a subjet,
    dotted between subjets."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 8))
    deta, dphi, pt = (np.array(graph[k]) for k in ("deta", "dphi", "pt"))
    subjet, types = np.array(graph["subjet"]), graph["types"]
    for query, key, weight in graph["edges"]:
        same = subjet[query] == subjet[key]
        ax.plot(
            [deta[query], deta[key]],
            [dphi[query], dphi[key]],
            color="black",
            lw=0.5 + 3 * weight,
            alpha=min(1.0, 0.15 + weight),
            ls="-" if same else ":",
        )
    size = 400 * pt / max(pt.max(), 1e-9) + 10
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for kind in dict.fromkeys(types):
        pick = np.array([t == kind for t in types])
        ax.scatter(
            deta[pick],
            dphi[pick],
            s=size[pick],
            marker=MARKERS.get(kind, "o"),
            c=[colors[s % len(colors)] for s in subjet[pick]],
            edgecolors="black",
            label=kind,
        )
    ax.set(xlabel=r"$\Delta\eta$", ylabel=r"$\Delta\phi$", title=graph["title"])
    ax.legend(fontsize=12, loc="upper right")
    return save(fig, out, stem)


def panel_grid(count: int, width: float, height: float, columns: int = 5):
    """A figure with ``count`` panels, at most ``columns`` per row; the unused panels hidden."""
    plt = pyplot()
    cols = min(count, columns)
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, axes.flat[:count]


def fraction_histograms(title: str, xlabel: str, tables: dict[str, dict[str, dict]], out: Path, stem: str):
    """Per class, the jet-and-head distribution of a fraction for each model (trained, untrained)."""
    names = sorted({name for table in tables.values() for name in table})
    fig, axes = panel_grid(len(names), 6, 5.5)
    for ax, name in zip(axes, names, strict=True):
        for (model, table), style in zip(tables.items(), ("-", "--"), strict=False):
            if name in table:
                edges, counts = np.array(table[name]["bin_edges"]), np.array(table[name]["counts"], dtype=float)
                density = counts / max(counts.sum(), 1) / np.diff(edges)
                ax.stairs(density, edges, ls=style, label=f"{model} (mean {table[name]['mean']:.2f})")
        ax.set_title(name, fontsize=20)
        ax.set(xlabel=xlabel, ylabel="density", xlim=(0, 1))
        ax.legend(fontsize=12, loc="upper right")
    fig.suptitle(title, fontsize=20)
    fig.tight_layout()
    return save(fig, out, stem)


def gradcam_maps(maps: dict[str, np.ndarray], edges: np.ndarray, layer: str, out: Path) -> list[str]:
    """Per class, the mean Grad-CAM of the jets in (Δη, Δφ)."""
    fig, axes = panel_grid(len(maps), 6.5, 5.5)
    for ax, (name, table) in zip(axes, maps.items(), strict=True):
        image = ax.pcolormesh(edges, edges, table.T, cmap="magma")
        ax.set_title(name, fontsize=20)
        ax.set(xlabel=r"$\Delta\eta$", ylabel=r"$\Delta\phi$")
        fig.colorbar(image, ax=ax)
    fig.suptitle(f"Grad-CAM of {layer}, mean over jets", fontsize=20)
    fig.tight_layout()
    return save(fig, out, "gradcam")

"""The second stage of the explain tool: draw the figures of :class:`~jetattn.explain.collect.Collected` and
write every number plotted to explain.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jetattn.explain import plots
from jetattn.explain.collect import Collected, ExplainConfig

# fraction -> (figure title, file stem)
FRACTION_FIGURES = {
    "between_subjets": ("attention between exclusive-kT subjets", "subjet_attention"),
    "to_leptons": ("attention to leptons", "lepton_attention"),
}


def listed(array: np.ndarray) -> list:
    """A numpy array as JSON lists, NaN as null, to 6 decimals (means of weights in [0, 1])."""
    array = np.round(np.asarray(array, dtype=float), 6)
    return np.where(np.isnan(array), None, array).tolist()


def listed_twice(tables: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, list]]:
    return {outer: {inner: listed(table) for inner, table in by_inner.items()} for outer, by_inner in tables.items()}


def render(collected: Collected, config: ExplainConfig) -> dict:
    """Draw every figure into ``config.out`` (PNG and PDF) and write explain.json there; returns its content."""
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    if collected.layers:
        written += plots.score_distribution(collected.scores, out)
    for name, by_layer in collected.mean_maps.items():
        written += plots.mean_maps(name, collected.layers, by_layer, out)
    for index, (layer, tables) in enumerate(collected.cross_maps.items()):
        written += plots.cross_maps(layer, tables, out, index, config.object_names)
    for name, graph in collected.graphs.items():
        written += plots.attention_graph(graph, out, f"graph_{name}")
    for kind, tables in collected.fractions.items():
        title, stem = FRACTION_FIGURES[kind]
        written += plots.fraction_histograms(title, "fraction", tables, out, stem)
    if collected.gradcam_layer is not None:
        written += plots.gradcam_maps(collected.gradcam_maps, collected.gradcam_edges, collected.gradcam_layer, out)
    result = explain_json(collected, config, written)
    write_json(out / "explain.json", result)
    return result


def explain_json(collected: Collected, config: ExplainConfig, written: list[str]) -> dict:
    """What explain.json holds: the run's settings, every number plotted, what was skipped, the files written."""
    return {
        "checkpoint": str(config.checkpoint),
        "network": str(config.network),
        "jets_per_class": collected.jets_per_class,
        "layers": collected.layers,
        "attention_scores": collected.scores,
        "mean_maps": {"max_particles": config.max_particles, "maps": listed_twice(collected.mean_maps)},
        "cross_attention": {"constituents": config.cross_particles, "maps": listed_twice(collected.cross_maps)},
        "graphs": collected.graphs,
        "fractions": collected.fractions,
        "gradcam": {
            "layer": collected.gradcam_layer,
            "bin_edges": collected.gradcam_edges.tolist(),
            "maps": {name: listed(table) for name, table in collected.gradcam_maps.items()},
        },
        "skipped": collected.notes,
        "files": written,
        "command": config.command,
    }


def write_json(path: Path, result: dict) -> None:
    """One line per top-level key: the matrices inside stay on one line each instead of one number per line."""
    from jetattn.io import write_text_atomic

    lines = [f"  {json.dumps(key)}: {json.dumps(value, separators=(',', ':'))}" for key, value in result.items()]
    write_text_atomic(path, "{\n" + ",\n".join(lines) + "\n}\n")

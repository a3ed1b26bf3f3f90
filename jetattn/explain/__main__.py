"""What a trained attention model looks at: attention and Grad-CAM figures for one checkpoint.

    python -m jetattn.explain CHECKPOINT --network networks/example_ParticleTransformer.py \\
        --data-config data/JetClass/JetClass_full.yaml --files test/*.root --out DIR [--num-jets N]

The jets come through weaver's own loader and data config (the inputs the model was trained on); the particle
branches the figures need (part_px/py/pz/energy, part_deta, part_dphi, particle-type flags) are read from the same
files with uproot and checked to be the same jets in the same order. Written to DIR, each as PNG and PDF, with
every number plotted in DIR/explain.json:

- attention_scores: distribution of the attention scores of the particle blocks (log y), fractions < 0.1, > 0.9;
- attention_maps_<class>: mean attention per layer and head (and their mean), particles ordered by pT;
- cross_attention_<i>: objects attending to the leading constituents, signal vs background (multi-scale models);
- graph_<class>: the η–φ attention graph of an example jet (lines solid within an exclusive-kT subjet, dotted
  between);
- subjet_attention, lepton_attention: the fraction of attention between subjets, and to leptons (t→bℓν, H→ℓνqq′),
  over jets and heads, against the same network untrained (``--no-compare-untrained`` to skip);
- gradcam: Grad-CAM of a particle block per particle, in (Δη, Δφ), mean over the jets of each class.

A figure whose inputs the files lack (no lepton flags, a class absent) is skipped with a message. The attention
recorded is the one each layer applied (see jetattn.nn.attention.record_attention); linformer's is over its
projections, so only the score distribution is drawn for it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from jetattn.deps import ToolError, exit_if_missing
from jetattn.io import prepare_outputs

LEPTON_CLASSES = ("Tbl", "Hqql")


def listed(array: np.ndarray) -> list:
    """A numpy array as JSON lists, NaN as null, to 6 decimals (means of weights in [0, 1])."""
    array = np.round(np.asarray(array, dtype=float), 6)
    return np.where(np.isnan(array), None, array).tolist()


def build_models(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.nn.Module | None, dict]:
    """The checkpoint's network and, for the comparison, the same network untrained (seeded)."""
    from jetattn.nn.part import ParticleTransformer
    from jetattn.weaver import build_network, load_checkpoint, parse_options

    options = parse_options(args.network_option)
    options.pop("compile", None)  # recording reads every call eagerly
    models = []
    for trained in (True, args.compare_untrained):
        if not trained:
            models.append(None)
            continue
        torch.manual_seed(args.seed)
        model, info = build_network(args.network, args.data_config, options, for_inference=False)
        if len(models) == 0:
            load_checkpoint(model, args.checkpoint)
        for module in model.modules():
            if isinstance(module, ParticleTransformer):
                module.buckets = 1  # one call per layer, over the whole batch, so records line up with jets
        models.append(model.to(args.device).eval())
    return models[0], models[1], info


def explain(args: argparse.Namespace) -> dict:
    from tqdm import tqdm

    from jetattn.explain import graphs, jets, plots
    from jetattn.explain.gradcam import EtaPhiMap, gradcam, particle_blocks
    from jetattn.explain.summary import AttentionSummary, fraction_table
    from jetattn.nn.attention import record_attention

    lacking = [str(f) for f in args.files if not f.is_file()]
    if lacking:
        raise ToolError(f"{lacking[0]}: no such file ({len(lacking)} of --files missing)")
    model, untrained, info = build_models(args)
    sample = jets.load(args.data_config, args.files, args.num_jets)
    names = [jets.short_name(c) for c in sample.classes]
    present = sorted(set(sample.labels.tolist()))
    print(f"{len(sample)} jets of {', '.join(names[c] for c in present)} from {len(args.files)} file(s)")
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        print(f"skipped: {message}", file=sys.stderr)

    absent = [names[c] for c in range(len(names)) if c not in present]
    if absent:
        note(f"classes without jets in the files: {', '.join(absent)}")
    objects = getattr(getattr(model, "mod", model), "objects", None)
    blocks = particle_blocks(model, sample.stream)
    if not blocks and objects is None:
        raise ToolError(f"{args.network}: no particle attention blocks (blocks.<i>) to explain")
    if not blocks:
        note(
            f"particle attention, graphs and Grad-CAM: no stream of the model holds the particle sequence "
            f"'{sample.stream}' of the data config; cross-attention only"
        )
    layers = [f"{block}.attn" for block in blocks]
    gradcam_layer = args.gradcam_layer or (blocks[-1] if blocks else None)
    summaries = {"trained": AttentionSummary(layers, names, args.max_particles, graphs.SUBJETS)}
    if untrained is not None:
        summaries["untrained"] = AttentionSummary(layers, names, args.max_particles, graphs.SUBJETS)
    without_subjets = sorted({names[c] for c in present} - set(graphs.SUBJETS))
    if without_subjets:
        note(f"no subjet count for class(es) {', '.join(without_subjets)}: left out of the subjet fractions")
    has_leptons = sample.has(*jets.LEPTONS)
    if not has_leptons:
        note("lepton attention: the files lack part_isElectron/part_isMuon")
    elif not any(names[c] in LEPTON_CLASSES for c in present):
        note(f"lepton attention: no {' or '.join(LEPTON_CLASSES)} jets")

    wanted = [jets.short_name(c) for c in args.graph_classes]
    examples = {}
    for name in wanted:
        index = names.index(name) if name in names else -1
        jet = np.nonzero(sample.labels == index)[0]
        if len(jet):
            examples[int(jet[0])] = name
        else:
            note(f"attention graph of {name}: no such jets")

    is_signal = np.array(["QCD" not in n for n in names])
    if is_signal.all():
        is_signal = np.arange(len(names)) == 0
    cams = EtaPhiMap(names)
    graph_data = {}
    input_names = info["input_names"]
    mask = sample.inputs[f"{sample.stream}_mask"]
    for start in tqdm(range(0, len(sample), args.batch_size), desc="explain", unit="batch"):
        stop = min(start + args.batch_size, len(sample))
        batch = [sample.inputs[n][start:stop].to(args.device) for n in input_names]
        labels = sample.labels[start:stop]
        jets_here = range(start, stop)
        pts = [sample.pt(j) for j in jets_here]
        subjets, leptons = [], []
        for j in jets_here:
            name = names[sample.labels[j]]
            p4 = np.stack([sample.particles[b][j] for b in ("part_px", "part_py", "part_pz", "part_energy")], 1)
            count = graphs.SUBJETS.get(name)
            subjets.append(None if count is None else graphs.subjet_of_particles(p4, count, args.kt_radius))
            lepton = has_leptons and name in LEPTON_CLASSES
            leptons.append(sum(sample.particles[b][j] > 0 for b in jets.LEPTONS) > 0 if lepton else None)
        for model_name, summary in summaries.items():
            network = model if model_name == "trained" else untrained
            with torch.no_grad(), record_attention(network, details=True) as records:
                network(*batch)
            summary.add_batch(records, labels, pts, subjets, leptons)
            if objects is not None:
                object_padding = sample.inputs[f"{objects}_mask"][start:stop, 0].le(0).to(args.device)
                orders = [np.argsort(-pt, kind="stable") for pt in pts]
                summary.add_cross(records, labels, is_signal, object_padding, orders, args.cross_particles)
            if model_name == "trained" and layers:
                graph_data.update(
                    graph_entries(
                        records[layers[-1]][0], examples, start, stop, sample, subjets, names, args.edge_threshold, note
                    )
                )
        if gradcam_layer is None:
            continue
        padding = mask[start:stop, 0].le(0).to(args.device)
        cam = gradcam(model, batch, gradcam_layer, torch.from_numpy(labels), padding).cpu().numpy()
        for row, j in enumerate(jets_here):
            n = len(pts[row])
            cams.add(
                names[sample.labels[j]],
                sample.particles["part_deta"][j],
                sample.particles["part_dphi"][j],
                cam[row, :n],
            )

    args.out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    trained = summaries["trained"]
    scores = {k: s.score_summary() for k, s in summaries.items()}
    if layers:
        written += plots.score_distribution(scores, args.out)
    means = trained.maps.means()
    maps_json = {}
    for c in present:
        by_layer = {layer: means[(names[c], layer)] for layer in layers if (names[c], layer) in means}
        if by_layer:
            written += plots.mean_maps(names[c], layers, by_layer, args.out)
            maps_json[names[c]] = {layer: listed(table) for layer, table in by_layer.items()}
    cross_json = {}
    cross_means = trained.cross.means()
    cross_layers = sorted({layer for _, layer in cross_means})
    for index, layer in enumerate(cross_layers):
        tables = {
            g: np.nanmean(cross_means[(g, layer)], axis=0)
            for g in ("signal", "background")
            if (g, layer) in cross_means
        }
        written += plots.cross_maps(layer, tables, args.out, index, args.object_names)
        cross_json[layer] = {g: listed(t) for g, t in tables.items()}
    if objects is None:
        note("cross-attention maps: the network has no cross-attention (not a multi-scale model with objects)")
    for key, graph in graph_data.items():
        written += plots.attention_graph(graph, args.out, f"graph_{key}")
    fractions = {}
    for kind, title, xlabel in (
        ("between_subjets", "attention between exclusive-kT subjets", "fraction"),
        ("to_leptons", "attention to leptons", "fraction"),
    ):
        tables = {k: fraction_table(getattr(s, kind)) for k, s in summaries.items()}
        if tables["trained"]:
            stem = "subjet_attention" if kind == "between_subjets" else "lepton_attention"
            written += plots.fraction_histograms(title, xlabel, tables, args.out, stem)
            fractions[kind] = tables
        elif kind == "between_subjets":
            note("subjet attention: no jet of a class with a subjet count (or attention over projections)")
    cam_means = cams.means()
    if gradcam_layer is not None:
        written += plots.gradcam_maps(cam_means, cams.edges, gradcam_layer, args.out)
    return {
        "checkpoint": str(args.checkpoint),
        "network": str(args.network),
        "jets_per_class": {names[c]: int((sample.labels == c).sum()) for c in present},
        "layers": layers,
        "attention_scores": scores,
        "mean_maps": {"max_particles": args.max_particles, "maps": maps_json},
        "cross_attention": {"constituents": args.cross_particles, "maps": cross_json},
        "graphs": graph_data,
        "fractions": fractions,
        "gradcam": {
            "layer": gradcam_layer,
            "bin_edges": cams.edges.tolist(),
            "maps": {k: listed(v) for k, v in cam_means.items()},
        },
        "skipped": notes,
        "files": written,
    }


def graph_entries(record, examples, start, stop, sample, subjets, names, threshold, note) -> dict:
    """The η–φ graphs of the example jets in this batch, from the last particle layer, mean over heads."""
    from jetattn.explain import graphs, jets

    entries = {}
    if record.projected:
        if any(start <= j < stop for j in examples):
            note("attention graphs: the attention is over linformer projections, not particles")
        return entries
    per_jet = record.per_jet()
    for j, name in examples.items():
        if not start <= j < stop:
            continue
        weights = per_jet[j - start].double().mean(0).cpu().numpy()
        owner = subjets[j - start]
        if owner is None:
            owner = np.zeros(len(weights), dtype=np.int64)
        entries[name] = {
            "title": f"{name}, jet {j}",
            "jet": j,
            "deta": sample.particles["part_deta"][j].tolist(),
            "dphi": sample.particles["part_dphi"][j].tolist(),
            "pt": sample.pt(j).tolist(),
            "types": graphs.particle_types(sample.particles, j, jets.PARTICLE_TYPES),
            "subjet": owner.tolist(),
            "edges": graphs.attention_edges(weights, threshold)[:300],
            "edge_threshold": threshold,
        }
    return entries


def main(argv: list[str] | None = None) -> int:
    from jetattn.weaver import add_network_arguments

    parser = argparse.ArgumentParser(
        prog="python -m jetattn.explain", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path, help="trained checkpoint (state_dict) of --network")
    add_network_arguments(parser)  # --network, --data-config, --network-option (the options of the training)
    parser.add_argument("--files", nargs="+", type=Path, required=True, help="ROOT files of jets (held out)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the figures and explain.json")
    parser.add_argument("--num-jets", type=int, default=2000, help="jets to read (the first ones; %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="jets per forward pass (%(default)s)")
    parser.add_argument("--max-particles", type=int, default=30, help="leading particles in the mean maps")
    parser.add_argument("--cross-particles", type=int, default=20, help="leading constituents in cross maps")
    parser.add_argument(
        "--graph-classes",
        nargs="+",
        default=["label_Tbl", "label_Tbqq", "label_H4q"],
        help="classes with an example η–φ graph (%(default)s)",
    )
    parser.add_argument(
        "--object-names",
        nargs="+",
        help="names of the objects in cross-attention maps, in order (DiHiggs: 'jet 1' 'jet 2' di-jet)",
    )
    parser.add_argument("--edge-threshold", type=float, default=0.1, help="least weight drawn in graphs")
    parser.add_argument("--kt-radius", type=float, default=0.8, help="R of the exclusive-kT subjet clustering")
    parser.add_argument("--gradcam-layer", help="module whose tokens Grad-CAM reads (default: last particle block)")
    parser.add_argument(
        "--compare-untrained",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fractions also for the network untrained (seeded, no checkpoint)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the untrained network")
    parser.add_argument("--device", default="cpu", help="torch device (%(default)s)")
    args = parser.parse_args(argv)
    try:
        if args.num_jets < 1 or args.batch_size < 1:
            raise ToolError("--num-jets and --batch-size must be positive")
        prepare_outputs(folders={"--out": args.out})
        result = explain(args)
    except ToolError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    import json

    from jetattn.io import write_text_atomic

    result["command"] = " ".join(["python -m jetattn.explain", *(argv if argv is not None else sys.argv[1:])])
    # one line per top-level key: the matrices inside stay on one line each instead of one number per line
    lines = [f"  {json.dumps(key)}: {json.dumps(value, separators=(',', ':'))}" for key, value in result.items()]
    write_text_atomic(args.out / "explain.json", "{\n" + ",\n".join(lines) + "\n}\n")
    print(f"wrote {len(result['files'])} figures and explain.json to {args.out}")
    return 0


if __name__ == "__main__":
    with exit_if_missing():
        sys.exit(main())

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
projections, so only the score distribution is drawn for it. The class names are the data config's labels;
--background names the classes the cross-attention maps call background.

Two stages: collect (jetattn.explain.collect: load, record, Grad-CAM) gives the numbers, render
(jetattn.explain.render) draws them and writes explain.json.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from jetattn.deps import ToolError, exit_if_missing
from jetattn.explain.collect import ExplainConfig
from jetattn.io import prepare_outputs


def parser() -> argparse.ArgumentParser:
    from jetattn.weaver import add_network_arguments

    defaults = ExplainConfig
    parser = argparse.ArgumentParser(
        prog="python -m jetattn.explain", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("checkpoint", type=Path, help="trained checkpoint (state_dict) of --network")
    add_network_arguments(parser)  # --network, --data-config, --network-option (the options of the training)
    add("--files", nargs="+", type=Path, required=True, help="ROOT files of jets (held out)")
    add("--out", type=Path, required=True, help="folder for the figures and explain.json")
    add("--num-jets", type=int, default=defaults.num_jets, help="jets to read (the first ones; %(default)s)")
    add("--batch-size", type=int, default=defaults.batch_size, help="jets per forward pass (%(default)s)")
    add("--max-particles", type=int, default=defaults.max_particles, help="leading particles in the mean maps")
    add("--cross-particles", type=int, default=defaults.cross_particles, help="leading constituents in cross maps")
    add(
        "--graph-classes",
        nargs="+",
        default=list(defaults.graph_classes),
        help="classes with an example η–φ graph (%(default)s)",
    )
    add(
        "--background",
        nargs="+",
        help="classes that are background in the cross-attention maps, as the data config names them (label_QCD) "
        "or short (QCD); default: those whose name holds QCD, else every class but the first",
    )
    add(
        "--object-names",
        nargs="+",
        help="names of the objects in cross-attention maps, in order (DiHiggs: 'jet 1' 'jet 2' di-jet)",
    )
    add("--edge-threshold", type=float, default=defaults.edge_threshold, help="least weight drawn in graphs")
    add("--kt-radius", type=float, default=defaults.kt_radius, help="R of the exclusive-kT subjet clustering")
    add("--gradcam-layer", help="module whose tokens Grad-CAM reads (default: last particle block)")
    add(
        "--compare-untrained",
        action=argparse.BooleanOptionalAction,
        default=defaults.compare_untrained,
        help="fractions also for the network untrained (seeded, no checkpoint)",
    )
    add("--seed", type=int, default=defaults.seed, help="seed of the untrained network")
    add("--device", default=defaults.device, help="torch device (%(default)s)")
    return parser


def config_from(args: argparse.Namespace, command: str) -> ExplainConfig:
    """The settings of the command line (``--network-option`` values read as weaver reads them)."""
    from jetattn.weaver import parse_options

    values = {f.name: getattr(args, f.name) for f in fields(ExplainConfig) if hasattr(args, f.name)}
    for name in ("graph_classes", "background", "object_names"):
        values[name] = None if values[name] is None else tuple(values[name])
    return ExplainConfig(**values, network_options=parse_options(args.network_option), command=command)


def main(argv: list[str] | None = None) -> int:
    from jetattn.explain.collect import collect
    from jetattn.explain.render import render

    args = parser().parse_args(argv)
    command = " ".join(["python -m jetattn.explain", *(argv if argv is not None else sys.argv[1:])])
    try:
        config = config_from(args, command)
        prepare_outputs(folders={"--out": config.out})
        result = render(collect(config), config)
    except ToolError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {len(result['files'])} figures and explain.json to {config.out}")
    return 0


if __name__ == "__main__":
    with exit_if_missing():
        sys.exit(main())

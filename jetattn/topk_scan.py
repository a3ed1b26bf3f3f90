"""One ParT checkpoint evaluated with top-k attention for several k: the table of arXiv:2412.03673.

    python -m jetattn.topk_scan CHECKPOINT --data-config data/JetClass/JetClass_full.yaml --files test/*.root \\
        [--network networks/example_ParT_topk.py] [--network-option NAME VALUE ...] \\
        [--k 1 2 3 4 6 10 20 30 all] [--num-jets N] --out DIR

A densely trained checkpoint loads unchanged (top-k adds no parameters); each particle then attends to its k
highest-scoring particles only, ``all`` being dense attention. For each k it prints and writes (``DIR/topk.md``,
``DIR/topk.json``) accuracy and AUC, and on JetClass the rejection of QCD jets per signal class at that class's
efficiency (50%; 99% for H→ℓνqq′, 99.5% for t→bℓν), as in the ParT paper.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from jetattn.deps import ToolError, exit_if_missing
from jetattn.io import prepare_outputs, write_json, write_text_atomic
from jetattn.weaver.tools import add_network_arguments

DEFAULT_KS = ["1", "2", "3", "4", "6", "10", "20", "30", "all"]
DENSE = 1 << 30  # top-k with k above any jet's multiplicity is dense attention (tested)


def parse_k(value: str) -> int:
    return DENSE if value == "all" else int(value)


def evaluate(args: argparse.Namespace) -> list[dict]:
    from tqdm import tqdm
    from weaver.utils.data.config import DataConfig

    from jetattn.metrics import jetclass_metrics
    from jetattn.quantize import predict_torch
    from jetattn.weaver import build_network, load_checkpoint, load_jets, parse_options

    classes = list(DataConfig.load(str(args.data_config), load_observers=False).label_value)
    inputs, labels = load_jets(args.data_config, [str(f) for f in args.files], args.num_jets)
    print(f"{len(labels)} jets of {len(classes)} classes from {len(args.files)} file(s)")
    options = parse_options(args.network_option)
    rows = []
    for k in tqdm(args.k, desc="top-k", unit="k"):
        topk = {**options, "attention": "topk", "topk": parse_k(k)}
        model, info = build_network(args.network, args.data_config, topk, for_inference=False)
        load_checkpoint(model, args.checkpoint)
        start = time.perf_counter()
        logits = predict_torch(model, [inputs[name] for name in info["input_names"]], torch.device("cpu"))
        scores = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
        rows.append({"k": k, **jetclass_metrics(scores, labels.numpy(), classes)})
        rows[-1]["seconds"] = time.perf_counter() - start
    return rows


def markdown(rows: list[dict], caption: str) -> str:
    """The table, one row per k: accuracy, AUC and each rejection (1/ε_B) present."""
    rejections = [key for key in rows[0] if key.startswith("rej_")]
    head = ["k", "accuracy", "AUC"] + [key.removeprefix("rej_") for key in rejections]
    lines = [caption, "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in rows:
        cells = [row["k"], f"{row['accuracy']:.4f}", f"{row['auc']:.4f}"]
        cells += ["inf" if math.isinf(row[key]) else f"{row[key]:.0f}" for key in rejections]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jetattn.topk_scan", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path, help="ParT checkpoint (state_dict), trained densely or not")
    add_network_arguments(parser, Path(__file__).parents[1] / "networks/example_ParT_topk.py")
    parser.add_argument("--files", nargs="+", type=Path, required=True, help="held-out ROOT files")
    parser.add_argument("--num-jets", type=int, default=100_000, help="jets to evaluate (the first ones)")
    parser.add_argument("--k", nargs="+", default=DEFAULT_KS, help="k values; 'all' is dense (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="folder for topk.md and topk.json")
    args = parser.parse_args(argv)
    try:
        prepare_outputs(folders={"--out": args.out})
        for k in args.k:
            if k != "all" and (not k.isdigit() or int(k) < 1):
                raise ToolError(f"--k {k}: give positive integers or 'all'")
        missing = [str(f) for f in args.files if not f.is_file()]
        if missing:
            raise ToolError(f"{missing[0]}: no such file ({len(missing)} of --files missing)")
        rows = evaluate(args)
    except ToolError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    command = " ".join(["python -m jetattn.topk_scan", *(argv if argv is not None else sys.argv[1:])])
    table = markdown(rows, f"Top-k attention on {args.checkpoint.name} (`{command}`)")
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "topk.md", table)
    write_json(args.out / "topk.json", {"command": command, "rows": rows})
    return 0


if __name__ == "__main__":
    with exit_if_missing():
        sys.exit(main())

#!/usr/bin/env python3
"""The multi-scale comparison of arXiv:2401.00452 on generated di-Higgs events: the talk's four models (self-
attention on the constituents alone, on the objects alone, both concatenated, cross-attention model_2 and
model_3) and particle-only ParT, each trained REPEATS times with the same epochs, events and optimiser through
./train_DiHiggs.sh, then the paper's table (accuracy, AUC, 1/eB at 50% and 30%) as mean and spread over the
repeats, and the rejection curves.

    ./studies/dihiggs_multiscale.py --out runs/dihiggs_multiscale [--repeats 3] [--epochs 4] [--jobs 2]
        [--summary-to docs/multiscale]

Needs generated events (./get_datasets.py DiHiggs --generate --num-events N; DATADIR_DiHiggs or env.sh).
A finished run (its run.json exists) is not trained again, so an interrupted study resumes where it stopped.
weaver-core has no seed option: repeats differ in initialisation and batch order, drawn afresh by each run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jetattn.io import atomic_path, write_json, write_text_atomic  # noqa: E402
from jetattn.metrics import (  # noqa: E402
    BINARY_TASKS,
    binary_metrics,
    bootstrap_spread,
    load_predictions,
    spread_over_files,
    task_metrics,
    task_table,
)
from jetattn.plotting import pyplot, save  # noqa: E402
from studies.runs import slug, train, unfinished  # noqa: E402

WIDTH = ["-o", "dim", "40", "-o", "fc_params", "[(64, 0.1)]"]  # the talk: 5 heads per stream, MLP head of 64
# name -> (train_DiHiggs.sh model, its options); every stream 2 self-attention layers of 5 heads (the defaults)
MODELS = {
    "constituents (model_1)": ("MST", ["-o", "config", "model_1", *WIDTH]),
    "objects": ("MST", ["-o", "config", "objects", *WIDTH]),
    "concatenation": ("Concat", ["-o", "config", "model_3", *WIDTH]),
    "cross-attention model_2": ("MST", ["-o", "config", "model_2", "-o", "cross_heads", "8", *WIDTH]),
    "cross-attention model_3": ("MST", ["-o", "config", "model_3", "-o", "cross_heads", "8", *WIDTH]),
    "ParT (constituents)": (
        "ParT",
        [
            "-o",
            "embed_dims",
            "[40, 40]",
            "-o",
            "pair_embed_dims",
            "[16, 16]",
            "-o",
            "num_heads",
            "5",
            "-o",
            "num_layers",
            "2",
            "-o",
            "num_cls_layers",
            "1",
        ],
    ),
}


def run_folder(out: Path, name: str, repeat: int) -> Path:
    return out / slug(name) / f"repeat{repeat}"


def train_one(out: Path, name: str, repeat: int, args: argparse.Namespace) -> dict:
    folder = run_folder(out, name, repeat)
    model, options = MODELS[name]
    steps = args.train_events // args.batch_size
    cmd = [
        str(REPO / "train_DiHiggs.sh"),
        model,
        *options,
        "--num-epochs",
        str(args.epochs),
        "--batch-size",
        str(args.batch_size),
        "--optimizer",
        "adam",
        "--start-lr",
        str(args.lr),
        "--in-memory",
        "--steps-per-epoch",
        str(steps),
        "--num-workers",
        "0",
        "--model-prefix",
        str(folder / "net"),
        "--predict-output",
        str(unfinished(folder) / "pred.root"),
        "--log-file",
        str(folder / "train.log"),
    ]
    return train(folder, name, cmd, args.threads, repeat=repeat)


def plot_curves(curves: dict[str, list[dict]], path: Path) -> None:
    import numpy as np

    fig, ax = pyplot().subplots(figsize=(9, 8))
    grid = np.linspace(0.05, 1, 96)
    for name, repeats in curves.items():
        rejections = []
        for roc in repeats:
            eff_b = np.interp(grid, roc["signal_eff"], roc["background_eff"])
            # no background event left: the rejection is only bounded by the test sample's size, not drawn
            rejections.append(np.where(eff_b > 0, 1 / np.where(eff_b > 0, eff_b, 1), np.nan))
        low, mid, high = np.nanpercentile(rejections, [0, 50, 100], axis=0)
        line = ax.plot(grid, mid, label=name)[0]
        ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2)
    ax.set(
        yscale="log",
        xlim=(0, 1),
        xlabel=r"signal efficiency (gg → H → hh → b$\bar{b}$b$\bar{b}$, $m_H$ = 1 TeV)",
        ylabel=r"background rejection 1/$\varepsilon_B$ (QCD + $t\bar{t}$)",
    )
    ax.legend(fontsize=14, title="median and range of the repeats", title_fontsize=14)
    save(fig, path.parent, path.name)


def cell(values: list[float], digits: int) -> str:
    """Mean ± standard deviation over the repeats; the values themselves where one is infinite (a rejection
    when no background event of the test sample passes)."""
    import numpy as np

    if all(np.isfinite(values)):
        return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"
    return ", ".join("inf" if not np.isfinite(v) else f"{v:.{digits}f}" for v in sorted(values))


def summarise(out: Path, records: list[dict], args: argparse.Namespace) -> str:
    rows, curves, lines = [], {}, []
    for name in MODELS:
        per_repeat = []
        for repeat in range(1, args.repeats + 1):
            columns = load_predictions(run_folder(out, name, repeat) / "pred.root")
            roc: dict = {}
            signal, background = BINARY_TASKS["DiHiggs"]
            binary_metrics(columns, signal, [background], signal_effs=(), roc=roc)
            curves.setdefault(name, []).append(roc)
            per_repeat.append(
                {
                    "file": f"{name} #{repeat}",
                    "metrics": task_metrics(columns, "DiHiggs"),
                    "uncertainty": bootstrap_spread(columns, "DiHiggs", args.bootstrap),
                }
            )
        summary = spread_over_files(per_repeat)
        seconds = [r["seconds"] for r in records if r["model"] == name]
        rows.append({"model": name, "repeats": per_repeat, **summary, "train_seconds": seconds})
        cells = [
            cell([r["metrics"][k] for r in per_repeat], 4 if k in ("accuracy", "auc") else 1)
            for k in ("accuracy", "auc", "rejection_at_50", "rejection_at_30")
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {sum(seconds) / len(seconds) / 60:.1f} |")
        rows[-1]["table"] = task_table(per_repeat, "DiHiggs")
    header = [
        "| model | accuracy | AUC | 1/εB at εS = 50% | 1/εB at εS = 30% | min per run |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    table = "\n".join(header + lines)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    write_json(out / "results.json", {"rows": rows, "settings": settings})
    plot_curves(curves, out / "rejection")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs, results.json, rejection.png")
    parser.add_argument("--repeats", type=int, default=3, help="trainings per model (at least 3 for a spread)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam start learning rate (weaver's flat+decay)")
    parser.add_argument("--train-events", type=int, default=9600, help="events per epoch (the training file)")
    parser.add_argument("--jobs", type=int, default=2, help="trainings at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training")
    parser.add_argument("--bootstrap", type=int, default=100, help="resamplings for each run's uncertainty")
    parser.add_argument("--summary-to", type=Path, help="also copy table.md, results.json and the plots here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(name, repeat) for repeat in range(1, args.repeats + 1) for name in MODELS]
    with ThreadPoolExecutor(args.jobs) as pool:
        records = list(pool.map(lambda job: train_one(args.out, *job, args), jobs))
    table = summarise(args.out, records, args)
    write_text_atomic(args.out / "table.md", table + "\n")
    print(table)
    if args.summary_to:
        args.summary_to.mkdir(parents=True, exist_ok=True)
        for name in ("table.md", "results.json", "rejection.png", "rejection.pdf"):
            with atomic_path(args.summary_to / name) as tmp:
                shutil.copyfile(args.out / name, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())

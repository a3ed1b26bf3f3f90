#!/usr/bin/env python3
"""Does a TopLandscape tagger trained on generated jets carry over to real ones (issue 19, docs/results.md)?

For each run folder (the `make demo` layout: ``RUN/pred.root`` on its own generated test jets, ``RUN/pred_real.root``
on the real jets, and optionally ``RUN/pred_heldout.root`` on a larger generated sample made with another seed),
prints the AUC on each, the share of QCD jets called top (top score above 0.5) with its binomial error, and the gap
between real and generated with the error of the difference. The demo's test set holds 500 QCD jets, so its share
carries about 1.5 points of noise on its own; the held-out sample is there to measure the gap without it.

    ./studies/carryover.py RUN [RUN ...] [--json carryover.json]
    ./studies/carryover.py "seed 6=runs/s6/ParT" ...      # NAME=RUN names the row (default: the folder)
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jetattn.io import write_json  # noqa: E402
from jetattn.metrics import binary_metrics, load_predictions  # noqa: E402

SIGNAL = "jet_isTop"
SAMPLES = {"test": "pred.root", "heldout": "pred_heldout.root", "real": "pred_real.root"}


def called_signal(columns: dict[str, np.ndarray], signal: str = SIGNAL) -> dict[str, float]:
    """The share of background jets whose signal score is above 0.5, its binomial error, and the share of signal
    jets called signal."""
    is_signal = columns[signal].astype(bool)
    called = columns["score_" + signal] > 0.5
    background = called[~is_signal]
    share = float(background.mean())
    return {
        "background_called_signal": share,
        "background_called_signal_error": math.sqrt(share * (1 - share) / len(background)),
        "signal_called_signal": float(called[is_signal].mean()),
        "num_background": int(len(background)),
    }


def sample_figures(path: Path) -> dict[str, float]:
    columns = load_predictions(path)
    return {"auc": binary_metrics(columns, SIGNAL)["auc"], **called_signal(columns)}


def gap(real: dict[str, float], generated: dict[str, float]) -> dict[str, float]:
    """Real minus generated share of QCD jets called top, and the error of the difference (independent jets)."""
    return {
        "gap": real["background_called_signal"] - generated["background_called_signal"],
        "gap_error": math.hypot(real["background_called_signal_error"], generated["background_called_signal_error"]),
    }


def run_figures(run: Path) -> dict:
    """The figures of one run folder: per sample found, and the gaps to the real jets."""
    if not (run / SAMPLES["real"]).exists():
        raise FileNotFoundError(f"{run}: no {SAMPLES['real']} (predict the real jets first)")
    figures = {name: sample_figures(run / file) for name, file in SAMPLES.items() if (run / file).exists()}
    for name in ("test", "heldout"):
        if name in figures:
            figures[f"gap_{name}"] = gap(figures["real"], figures[name])
    return figures


def points(share: float, error: float) -> str:
    return f"{100 * share:.1f} ± {100 * error:.1f}%"


def table(rows: dict[str, dict]) -> str:
    lines = [
        "| run | AUC test / held-out / real | QCD called top: test | held-out | real | gap to test | gap to held-out |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, f in rows.items():
        aucs = " / ".join(f"{f[s]['auc']:.4f}" if s in f else "—" for s in SAMPLES)
        shares = [
            points(f[s]["background_called_signal"], f[s]["background_called_signal_error"]) if s in f else "—"
            for s in SAMPLES
        ]
        gaps = [
            f"{100 * f[g]['gap']:+.1f} ± {100 * f[g]['gap_error']:.1f}" if g in f else "—"
            for g in ("gap_test", "gap_heldout")
        ]
        lines.append(f"| {name} | {aucs} | {' | '.join(shares)} | {' | '.join(gaps)} |")
    return "\n".join(lines)


def named_run(arg: str) -> tuple[str, Path]:
    """``NAME=RUN`` or ``RUN``: the row's name and the run folder."""
    name, sep, run = arg.partition("=")
    return (name, Path(run)) if sep else (arg, Path(arg))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "runs", nargs="+", type=named_run, help="run folders (pred.root, pred_real.root, ...), or NAME=RUN"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    try:
        rows = {name: run_figures(run) for name, run in args.runs}
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(table(rows))
    if args.json:
        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Tagging metrics from weaver's prediction files: accuracy, AUC, background rejection at fixed signal efficiency.

    python -m jetattn.metrics PRED.root [PRED2.root ...] --task JetClass|TopLandscape|QuarkGluon|DiHiggs
                              [--bootstrap 100] [--json out.json] [--markdown out.md] [--roc roc.png]
        the papers' table, one row per file (several files: their mean and spread too), each figure with its
        bootstrap uncertainty (standard deviation over resamplings of the test jets); --roc draws each row's
        ROC curves (one panel per signal class)
    python -m jetattn.metrics "ParT:runs/part/pred_*.root" "PN:runs/pn/pred_*.root" --task JetClass
        LABEL:PATTERN rows: the files matching PATTERN (weaver's per-class outputs) form one test set, named LABEL
    python -m jetattn.metrics PRED.root --signal jet_isTop [--background jet_isQCD] [--json out.json] [--plot r.png]
        one signal against chosen backgrounds

For a signal class S against background classes B the discriminant is score_S / (score_S + Σ score_B), as in the
ParT paper's JetClass tables (for two classes it is score_S itself). Rejection is 1/ε_B at the given ε_S.
Tasks: JetClass: accuracy, one-vs-rest macro AUC, and QCD rejection per signal class at 50% (99% for H→ℓνqq′,
99.5% for t→bℓν); TopLandscape (top vs QCD), QuarkGluon (quark vs gluon), DiHiggs (signal vs background):
accuracy, AUC, rejection at 50% and 30%.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from jetattn.deps import ToolError, exit_if_missing
from jetattn.io import prepare_outputs, write_json, write_text_atomic


def load_predictions(path: Path) -> dict[str, np.ndarray]:
    """Columns of a weaver prediction file (ROOT tree ``Events`` or parquet) as numpy arrays."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such prediction file")
    if path.suffix == ".parquet":
        import awkward as ak

        table = ak.from_parquet(path)
        return {name: ak.to_numpy(table[name]) for name in table.fields}
    import uproot

    try:
        with uproot.open(path) as f:
            return {k: v for k, v in f["Events"].arrays(library="np").items()}
    except Exception as err:  # uproot raises a zoo of types for broken or foreign files
        raise ValueError(f"{path}: not a weaver prediction file ({type(err).__name__}: {err})") from None


def classes_in(columns: dict[str, np.ndarray]) -> list[str]:
    return [name.removeprefix("score_") for name in columns if name.startswith("score_")]


def rejection_at(fpr: np.ndarray, tpr: np.ndarray, signal_eff: float) -> float:
    """1/ε_B at signal efficiency ``signal_eff``, interpolating the ROC curve; inf if no background passes."""
    background_eff = float(np.interp(signal_eff, tpr, fpr))
    return math.inf if background_eff <= 0 else 1.0 / background_eff


def binary_metrics(
    columns: dict[str, np.ndarray],
    signal: str,
    backgrounds: list[str] | None = None,
    signal_effs: tuple[float, ...] = (0.3, 0.5),
    roc: dict | None = None,
) -> dict[str, float]:
    """Accuracy (argmax over all classes), AUC and rejections of ``signal`` against ``backgrounds``.

    Pass a dict as ``roc`` to receive the ROC curve (``signal_eff``, ``background_eff`` arrays)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    classes = classes_in(columns)
    if signal not in classes:
        raise ValueError(f"signal class {signal!r} not in the prediction file (classes: {', '.join(classes)})")
    backgrounds = backgrounds or [c for c in classes if c != signal]
    unknown = [b for b in backgrounds if b not in classes]
    if unknown:
        raise ValueError(f"background class(es) {unknown} not in the prediction file (classes: {', '.join(classes)})")
    scores = np.stack([columns["score_" + c] for c in classes], axis=1)
    truth = np.stack([columns[c] for c in classes], axis=1).astype(bool)
    accuracy = float((scores.argmax(1) == truth.argmax(1)).mean())

    is_signal = truth[:, classes.index(signal)]
    is_background = truth[:, [classes.index(b) for b in backgrounds]].any(axis=1)
    keep = is_signal | is_background
    if is_signal[keep].all() or not is_signal[keep].any():
        raise ValueError(f"need both {signal} and {'/'.join(backgrounds)} jets to compute a ROC curve")
    s = columns["score_" + signal][keep]
    b = sum(columns["score_" + c][keep] for c in backgrounds)
    discriminant = s / np.clip(s + b, 1e-12, None)
    fpr, tpr, _ = roc_curve(is_signal[keep], discriminant)
    if roc is not None:
        roc.update(signal_eff=tpr, background_eff=fpr)
    result = {
        "accuracy": accuracy,
        "auc": float(roc_auc_score(is_signal[keep], discriminant)),
        "num_signal": int(is_signal[keep].sum()),
        "num_background": int((~is_signal[keep]).sum()),
    }
    for eff in signal_effs:
        result[f"rejection_at_{round(100 * eff)}"] = rejection_at(fpr, tpr, eff)
    return result


def prediction_columns(scores: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, np.ndarray]:
    """Scores ``(jets, classes)`` and class indices laid out as a weaver prediction file's columns."""
    columns = {name: labels == i for i, name in enumerate(classes)}
    columns.update({"score_" + name: scores[:, i] for i, name in enumerate(classes)})
    return columns


def classifier_metrics(scores: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Accuracy and AUC of class scores ``(jets, classes)`` against class indices ``labels``.

    Two classes: the AUC of the first against the second, as :func:`binary_metrics` computes it. More: the
    macro average of the one-vs-rest AUCs (scores renormalised to sum to one per jet)."""
    from sklearn.metrics import roc_auc_score

    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if len(classes) == 2:
        result = binary_metrics(prediction_columns(scores, labels, classes), classes[0], signal_effs=())
        return {"accuracy": result["accuracy"], "auc": result["auc"], "auc_kind": f"{classes[0]} vs {classes[1]}"}
    probabilities = scores / np.clip(scores.sum(axis=1, keepdims=True), 1e-12, None)
    return {
        "accuracy": float((scores.argmax(1) == labels).mean()),
        "auc": float(
            roc_auc_score(labels, probabilities, multi_class="ovr", average="macro", labels=np.arange(len(classes)))
        ),
        "auc_kind": "one-vs-rest macro",
    }


# The ParT paper's JetClass table: each signal class against QCD (discriminant s_X / (s_X + s_QCD)), its
# background rejection read at this signal efficiency.
JETCLASS_SIGNAL_EFFS = {
    "label_Hbb": 0.5,
    "label_Hcc": 0.5,
    "label_Hgg": 0.5,
    "label_H4q": 0.5,
    "label_Hqql": 0.99,
    "label_Zqq": 0.5,
    "label_Wqq": 0.5,
    "label_Tbqq": 0.5,
    "label_Tbl": 0.995,
}
JETCLASS_BACKGROUND = "label_QCD"


def jetclass_metrics(scores: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, float]:
    """The ParT paper's JetClass row: accuracy, one-vs-rest macro AUC, and per signal class the rejection of
    QCD jets at that class's signal efficiency (``rej_<class>``, e.g. ``rej_Hbb`` at 50%, ``rej_Tbl`` at 99.5%)."""
    result = classifier_metrics(scores, labels, classes)
    columns = prediction_columns(scores, labels, classes)
    for signal, eff in JETCLASS_SIGNAL_EFFS.items():
        if signal in classes and JETCLASS_BACKGROUND in classes:
            rejection = binary_metrics(columns, signal, [JETCLASS_BACKGROUND], signal_effs=(eff,))
            result["rej_" + signal.removeprefix("label_")] = rejection[f"rejection_at_{round(100 * eff)}"]
    return result


# task -> (signal, background) labels of the binary tasks, rejections at 50% and 30% as in the papers
BINARY_TASKS = {
    "TopLandscape": ("jet_isTop", "jet_isQCD"),
    "QuarkGluon": ("jet_isQ", "jet_isG"),
    "DiHiggs": ("label_signal", "label_background"),
}
TASKS = ("JetClass", *BINARY_TASKS)


def task_metrics(columns: dict[str, np.ndarray], task: str) -> dict[str, float]:
    """The papers' row for ``task`` from a prediction file's columns (see the module docstring)."""
    classes = classes_in(columns)
    if task == "JetClass":
        labels = ["label_" + c.removeprefix("label_") for c in JETCLASS_SIGNAL_EFFS] + [JETCLASS_BACKGROUND]
        missing = [c for c in labels if c not in classes]
        if missing:
            raise ValueError(f"task JetClass needs the scores of {', '.join(missing)} (file has {', '.join(classes)})")
        scores = np.stack([columns["score_" + c] for c in classes], axis=1)
        truth = np.stack([columns[c] for c in classes], axis=1).astype(bool)
        result = jetclass_metrics(scores, truth.argmax(axis=1), classes)
        result["num_background"] = int(truth[:, classes.index(JETCLASS_BACKGROUND)].sum())
        return result
    if task not in BINARY_TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    signal, background = BINARY_TASKS[task]
    result = binary_metrics(columns, signal, [background], signal_effs=(0.5, 0.3))
    return {key: result[key] for key in ("accuracy", "auc", "rejection_at_50", "rejection_at_30", "num_background")}


def bootstrap_spread(
    columns: dict[str, np.ndarray], task: str, resamples: int = 100, seed: int = 0, progress: bool = False
) -> dict[str, float]:
    """Standard deviation of each of :func:`task_metrics` over ``resamples`` resamplings of the jets with
    replacement (an infinite rejection, no background jet passing, is left out; NaN where fewer than two are
    finite)."""
    rng = np.random.default_rng(seed)
    num_jets = len(next(iter(columns.values())))
    draws: dict[str, list[float]] = {}
    for _ in _progress(range(resamples), progress, f"bootstrap ({task})"):
        index = rng.integers(0, num_jets, num_jets)
        for key, value in task_metrics({k: v[index] for k, v in columns.items()}, task).items():
            if isinstance(value, float):
                draws.setdefault(key, []).append(value)
    spread = {}
    for key, values in draws.items():
        finite = np.asarray([v for v in values if math.isfinite(v)])
        spread[key] = float(finite.std(ddof=1)) if len(finite) > 1 else math.nan
    return spread


def _progress(iterable, show: bool, description: str):
    if not show:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=description, leave=False)


def _figure(value: float, error: float | None = None, num_background: int | None = None) -> str:
    """``value ± error``; an infinite rejection (no background jet passes) as the bound ``> N`` where the number
    of background jets N is known."""
    if not math.isfinite(value):
        if value > 0:
            return f"> {num_background}" if num_background else "inf"
        return "nan"
    digits = 4 if abs(value) < 2 else 1
    text = f"{value:.{digits}f}"
    return text if error is None or not math.isfinite(error) else f"{text} ± {error:.{digits}f}"


def task_table(rows: list[dict], task: str, summary: bool = True) -> str:
    """Markdown: one line per file (value ± bootstrap spread), then (``summary``, for repeats of one training)
    the mean ± standard deviation over files. A rejection with no background jet passing shows as ``> N``, N the
    file's background jets; a mean over files with such a rejection is ``inf``."""
    keys = [k for k, v in rows[0]["metrics"].items() if isinstance(v, float)]
    heads = {
        "accuracy": "accuracy",
        "auc": "AUC",
        "rejection_at_50": "1/εB at εS = 50%",
        "rejection_at_30": "1/εB at εS = 30%",
    }
    names = [heads.get(k, k.replace("rej_", "1/εB ")) for k in keys]
    lines = ["| file | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(keys)]
    for row in rows:
        bound = row["metrics"].get("num_background")
        cells = [_figure(row["metrics"][k], row["uncertainty"].get(k), bound) for k in keys]
        lines.append(f"| {row['file']} | " + " | ".join(cells) + " |")
    if summary and len(rows) > 1:
        spread = spread_over_files(rows)
        cells = [_figure(spread["mean"][k], spread["std"][k]) for k in keys]
        lines.append(f"| mean ± std over {len(rows)} files | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def spread_over_files(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation (ddof 1) of each metric over the files (e.g. training seeds)."""
    keys = [k for k, v in rows[0]["metrics"].items() if isinstance(v, float)]
    values = {k: np.asarray([row["metrics"][k] for row in rows]) for k in keys}
    return {
        "mean": {k: float(v.mean()) for k, v in values.items()},
        # NaN, without numpy's warning, where a file's rejection is infinite
        "std": {k: float(v.std(ddof=1)) if np.isfinite(v).all() else math.nan for k, v in values.items()},
    }


def task_signals(task: str, classes: list[str]) -> list[tuple[str, list[str], float]]:
    """(signal, backgrounds, the signal efficiency the paper quotes) of each ROC curve of ``task``."""
    if task == "JetClass":
        return [(s, [JETCLASS_BACKGROUND], eff) for s, eff in JETCLASS_SIGNAL_EFFS.items() if s in classes]
    signal, background = BINARY_TASKS[task]
    return [(signal, [background], 0.5)]


def plot_task_rocs(rows: list[tuple[str, dict[str, np.ndarray]]], task: str, path: Path) -> None:
    """1/ε_B against ε_S for every row (a curve each) and signal class of ``task`` (a panel each), log scale."""
    from jetattn.plotting import pyplot, save

    signals = task_signals(task, classes_in(rows[0][1]))
    ncols = min(3, len(signals))
    nrows = math.ceil(len(signals) / ncols)
    fig, axes = pyplot().subplots(nrows, ncols, figsize=(7 * ncols, 6.3 * nrows), squeeze=False)
    for ax, (signal, backgrounds, eff) in zip(axes.flat[: len(signals)], signals, strict=True):
        for label, columns in rows:
            roc: dict = {}
            result = binary_metrics(columns, signal, backgrounds, signal_effs=(), roc=roc)
            passing = roc["background_eff"] > 0
            ax.plot(
                roc["signal_eff"][passing],
                1 / roc["background_eff"][passing],
                label=f"{label} (AUC {result['auc']:.3f})",
            )
        grid = np.linspace(0.01, 1, 100)
        ax.plot(grid, 1 / grid, ls=":", color="grey", label="random")
        ax.axvline(eff, color="grey", lw=0.8, ls="--")
        background_names = " + ".join(b.removeprefix("label_") for b in backgrounds)
        ax.set(
            yscale="log",
            xlim=(0, 1),
            xlabel=rf"$\varepsilon_S$ ({signal.removeprefix('label_')})",
            ylabel=rf"$1/\varepsilon_B$ ({background_names})",
        )
        ax.legend(loc="upper right", fontsize=11)
    for ax in axes.flat[len(signals) :]:
        ax.set_axis_off()
    fig.tight_layout()
    save(fig, path.parent, path.stem, (path.suffix or ".png",))


def plot_rejection(roc: dict, result: dict, signal: str, path: Path) -> None:
    """Background rejection 1/ε_B against signal efficiency ε_S, log scale, as in the ParT paper's figures."""
    from jetattn.plotting import pyplot, save

    fig, ax = pyplot().subplots(figsize=(8, 7))
    passing = roc["background_eff"] > 0
    ax.plot(
        roc["signal_eff"][passing],
        1 / roc["background_eff"][passing],
        label=f"AUC = {result['auc']:.4f}, {result['num_background']} background jets",
    )
    ax.plot(np.linspace(0.01, 1, 100), 1 / np.linspace(0.01, 1, 100), ls=":", color="grey", label="random")
    ax.set(
        yscale="log",
        xlim=(0, 1),
        xlabel=f"signal efficiency ({signal})",
        ylabel=r"background rejection 1/$\varepsilon_B$",
    )
    ax.legend(loc="upper right", fontsize=16)
    save(fig, path.parent, path.stem, (path.suffix,))


def format_metrics(result: dict[str, float], signal: str) -> str:
    lines = [
        f"{signal}: {result['num_signal']} signal, {result['num_background']} background jets",
        f"  accuracy            {result['accuracy']:.4f}",
        f"  AUC                 {result['auc']:.4f}",
    ]
    for key, value in result.items():
        if key.startswith("rejection_at_"):
            lines.append(f"  1/eB at eS = {key.removeprefix('rejection_at_')}%   {value:.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jetattn.metrics", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "predictions",
        nargs="+",
        help="weaver --predict-output file(s) (.root, .parquet); with --task also LABEL:PATTERN, "
        "the files matching PATTERN as one test set named LABEL",
    )
    parser.add_argument("--task", choices=TASKS, help="the paper's table for this dataset (one row per file)")
    parser.add_argument("--bootstrap", type=int, default=100, help="--task: resamplings for uncertainties (0: none)")
    parser.add_argument("--markdown", type=Path, help="--task: also write the table to this Markdown file")
    parser.add_argument("--roc", type=Path, help="--task: also draw each row's ROC curves into this image")
    parser.add_argument(
        "--combine",
        action="store_true",
        help="--task: the files are parts of one test set (weaver's per-group outputs): one row",
    )
    parser.add_argument("--signal", help="signal label name, e.g. jet_isTop or label_Tbqq")
    parser.add_argument("--background", nargs="+", help="background label name(s) (default: all other classes)")
    parser.add_argument("--eff", nargs="+", type=float, default=[0.3, 0.5], help="signal efficiencies")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--plot", type=Path, help="also draw 1/eB against eS into this image (png, pdf)")
    args = parser.parse_args(argv)
    if (args.task is None) == (args.signal is None):
        parser.error("give either --task (the paper's table) or --signal (one signal against backgrounds)")
    if args.task is None and len(args.predictions) > 1:
        parser.error("--signal reads one prediction file; --task reads several")
    try:
        outputs = {"--json": args.json, "--plot": args.plot, "--roc": args.roc, "--markdown": args.markdown}
        prepare_outputs(outputs)
    except ToolError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.task is not None:
        return task_main(args)
    try:
        roc: dict = {}
        columns = load_predictions(Path(args.predictions[0]))
        result = binary_metrics(columns, args.signal, args.background, tuple(args.eff), roc)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(format_metrics(result, args.signal))
    if args.json:
        write_json(args.json, result)
    if args.plot:
        plot_rejection(roc, result, args.signal, args.plot)
        print(f"plot: {args.plot}")
    return 0


def concatenate(samples: list[dict[str, np.ndarray]], what: str) -> dict[str, np.ndarray]:
    """The columns of several prediction files (weaver's per-group outputs of one test set) as one."""
    if any(set(columns) != set(samples[0]) for columns in samples):
        raise ValueError(f"{what}: the prediction files do not have the same columns")
    return {k: np.concatenate([c[k] for c in samples]) for k in samples[0]}


def task_samples(arguments: list[str], combine: bool) -> list[tuple[str, dict[str, np.ndarray]]]:
    """(row name, columns) per argument: a file, or LABEL:PATTERN (the matching files as one test set);
    ``combine``: all of them as one row."""
    import glob

    samples = []
    for argument in arguments:
        label, _, pattern = argument.partition(":")
        if pattern and not Path(argument).exists():
            files = sorted(glob.glob(pattern))
            if not files:
                raise FileNotFoundError(f"{argument}: no prediction file matches {pattern}")
            samples.append((label, concatenate([load_predictions(Path(f)) for f in files], argument)))
        else:
            samples.append((argument, load_predictions(Path(argument))))
    if combine and len(samples) > 1:  # weaver writes one file per test group (train_JetClass.sh: one per class)
        samples = [(f"{len(samples)} files combined", concatenate([c for _, c in samples], "--combine"))]
    elif len(samples) > 1 and all(len(true_classes(columns)) == 1 for _, columns in samples):
        raise ValueError(
            f"each of the {len(samples)} files holds jets of one class (weaver's per-class outputs of one test "
            "set, as train_JetClass.sh writes them): add --combine to score them as one test set"
        )
    return samples


def true_classes(columns: dict[str, np.ndarray]) -> set[str]:
    """The classes whose truth column is set for some jet of a prediction file."""
    return {name for name in classes_in(columns) if name in columns and np.asarray(columns[name]).any()}


def task_rows(
    samples: list[tuple[str, dict[str, np.ndarray]]], task: str, bootstrap: int, progress: bool = False
) -> list[dict]:
    """The papers' row of each (name, columns) sample, with its bootstrap spread (none for ``bootstrap`` 0)."""
    return [
        {
            "file": name,
            "metrics": task_metrics(columns, task),
            "uncertainty": bootstrap_spread(columns, task, bootstrap, progress=progress) if bootstrap else {},
        }
        for name, columns in samples
    ]


def task_main(args: argparse.Namespace) -> int:
    try:
        samples = task_samples(args.predictions, args.combine)
        rows = task_rows(samples, args.task, args.bootstrap, progress=sys.stderr.isatty())
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    # LABEL:PATTERN rows are different models, not repeats: no mean over them
    repeats = not any(":" in a and not Path(a).exists() for a in args.predictions)
    table = task_table(rows, args.task, summary=repeats)
    print(table)
    if args.markdown:
        write_text_atomic(args.markdown, table + "\n")
    if args.json:
        result = {"task": args.task, "bootstrap": args.bootstrap, "rows": rows}
        if repeats and len(rows) > 1:
            result.update(spread_over_files(rows))
        write_json(args.json, result)
    if args.roc:
        plot_task_rocs(samples, args.task, args.roc)
        print(f"ROC curves: {args.roc}")
    return 0


if __name__ == "__main__":
    with exit_if_missing():  # the packages this imports on use
        sys.exit(main())

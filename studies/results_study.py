#!/usr/bin/env python3
"""The results study of docs/results.md on generated data, at a scale a 2-core machine trains in about an hour:

- JetClass-format jets: ParT against ParticleNet, PFN and P-CNN on the `full` features, with the same epochs,
  jets, batch size and learning rate; ParT on `kin`, `kinpid` and `full`;
- TopLandscape-format jets: ParT from scratch against ParT fine-tuned from the JetClass-format ParT (kin), both
  also tested on the 1000 real TopLandscape jets of ../shared/data/real/ where that folder exists;
- QuarkGluon-format jets: the same with the JetClass-format ParT (kinpid).

Every training goes through the user's train script (./train_JetClass.sh, ./train_TopLandscape.sh,
./train_QuarkGluon.sh) with the options printed in each run's run.json. Then the papers' tables (python -m
jetattn.metrics), ROC curves, validation accuracy per epoch, and table.md / results.json.

    ./studies/results_study.py --out runs/study [--jobs 2] [--summary-to docs/results/study]

Needs generated data: ./get_datasets.py JetClass|TopLandscape|QuarkGluon --generate ... (env.sh or
DATADIR_<dataset>). A finished run (its run.json exists) is not trained again: an interrupted study resumes.
weaver-core has no seed option: a rerun draws a new initialisation and batch order.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jetattn.datasets.processes import JETCLASS_FILE_GROUPS  # noqa: E402
from jetattn.io import atomic_path, write_json, write_text_atomic  # noqa: E402
from jetattn.metrics import (  # noqa: E402
    binary_metrics,
    plot_task_rocs,
    task_rows,
    task_samples,
    task_table,
)
from studies.runs import slug, train, unfinished  # noqa: E402

REAL = REPO.parent / "shared" / "data" / "real"
# the small ParT of docs/interpretability (about 0.2 M parameters against the paper's 2.1 M)
PART = [
    "-o",
    "embed_dims",
    "[64, 64]",
    "-o",
    "pair_embed_dims",
    "[32, 32]",
    "-o",
    "num_heads",
    "4",
    "-o",
    "num_layers",
    "3",
    "-o",
    "num_cls_layers",
    "1",
]
# ParticleNet with two EdgeConv blocks of 16 neighbours and 32, 64 channels (the paper's: three blocks, 64 to 256
# channels, which train at about 10 jets/s on one of these cores; this one at about 50, half the small ParT's speed)
PN = ["-o", "conv_params", "[(16, (32, 32, 32)), (16, (64, 64, 64))]", "-o", "fc_params", "[(128, 0.1)]"]


@dataclass
class Run:
    name: str
    dataset: str  # JetClass, TopLandscape or QuarkGluon
    model: str  # the train script's MODEL
    features: str | None
    options: list[str] = field(default_factory=list)
    pretrained: str | None = None  # the name of the JetClass run it is fine-tuned from

    @property
    def folder_name(self) -> str:
        return f"{self.dataset.lower()}/{slug(self.name)}"


# In this order (two at a time, the longest early): the pretrained runs first, as a fine-tuning waits for its
# JetClass run, which must have started before it
RUNS = [
    Run("ParT (kin)", "JetClass", "ParT", "kin", PART),
    Run("ParT (kinpid)", "JetClass", "ParT", "kinpid", PART),
    Run("ParticleNet (full)", "JetClass", "PN", "full", PN),
    Run("ParT (full)", "JetClass", "ParT", "full", PART),
    Run("ParT from scratch", "TopLandscape", "ParT", None, PART),
    Run("ParT fine-tuned", "TopLandscape", "ParT-FineTune", None, PART, pretrained="ParT (kin)"),
    Run("ParT from scratch", "QuarkGluon", "ParT", "kinpid", PART),
    Run("ParT fine-tuned", "QuarkGluon", "ParT-FineTune", "kinpid", PART, pretrained="ParT (kinpid)"),
    Run("PFN (full)", "JetClass", "PFN", "full"),
    Run("P-CNN (full)", "JetClass", "PCNN", "full"),
]


def data_dir(dataset: str) -> Path:
    """DATADIR_<dataset> as the train scripts resolve it (the environment, else env.sh)."""
    import os
    import subprocess

    value = os.environ.get(f"DATADIR_{dataset}")
    if not value and (REPO / "env.sh").exists():
        value = subprocess.run(
            ["bash", "-c", f'source env.sh; echo "${{DATADIR_{dataset}:-}}"'], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    if not value:
        raise SystemExit(f"error: no DATADIR_{dataset}: generate the data (./get_datasets.py {dataset} --generate)")
    return Path(value)


def real_hbb_file(out: Path) -> Path | None:
    """The real JetClass H→bb jets with the jet observables the JetClass YAMLs read (soft-drop mass, τN), which
    the ../shared sample lacks: python -m jetattn.subjets adds them (made once, under ``out/real``)."""
    source = REAL / "JetClass_Hbb_sample_1000.root"
    if not source.exists():
        return None
    target = out / "real" / source.name
    if not target.exists():
        import subprocess

        subprocess.run(
            [sys.executable, "-m", "jetattn.subjets", str(source), "-o", str(target.parent)],
            check=True,
            cwd=REPO,
            capture_output=True,
        )
    return target


def test_files(run: Run, out: Path) -> list[str]:
    """weaver --data-test groups: the generated test set, and the real jets where they fit the features."""
    root = data_dir(run.dataset)
    if run.dataset == "JetClass":
        groups = [f"{c}:{root}/test/{c}_*.root" for c in JETCLASS_FILE_GROUPS]
        real = real_hbb_file(out) if run.features == "kin" else None
        if real:
            groups.append(f"real_HToBB:{real}")
        return groups
    if run.dataset == "TopLandscape":
        groups = [f"generated:{root}/test_file.root"]
        if (REAL / "TopLandscape_sample_1000.root").exists():
            groups.append(f"real:{REAL / 'TopLandscape_sample_1000.root'}")
        return groups
    return [f"generated:{root}/test_file_*.root"]


def command(run: Run, out: Path, args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    folder = out / run.folder_name
    jetclass = run.dataset == "JetClass"
    epochs = args.jetclass_epochs if jetclass else args.finetune_epochs
    samples = args.jetclass_samples if jetclass else args.finetune_samples
    lr = args.finetune_lr if run.pretrained else args.lr
    cmd = [
        str(REPO / f"train_{run.dataset}.sh"),
        run.model,
        *([run.features] if run.features else []),
        *run.options,
        "--gpus",
        "",
        "--batch-size",
        str(args.batch_size),
        "--start-lr",
        str(lr),
        "--num-epochs",
        str(epochs),
        "--samples-per-epoch",
        str(samples),
        "--samples-per-epoch-val",
        str(samples // 8),
        "--in-memory",
        "--fetch-step",
        "1",
        "--num-workers",
        "0",
        "--data-test",
        *test_files(run, out),
        "--model-prefix",
        str(folder / "net"),
        "--log-file",
        str(folder / "train.log"),
        "--predict-output",
        str(unfinished(folder) / "pred.root"),
    ]
    env = {}
    if run.pretrained:
        source = next(r for r in RUNS if r.name == run.pretrained and r.dataset == "JetClass")
        env["PRETRAINED"] = str(out / source.folder_name / "net_best_epoch_state.pt")
    return cmd, env


def validation_curve(log: Path) -> list[float]:
    """weaver's validation metric (accuracy) per epoch, from its log."""
    pattern = re.compile(r"Epoch #(\d+): Current validation metric: ([0-9.]+)")
    values = {}
    for match in pattern.finditer(log.read_text(errors="replace")):
        values[int(match.group(1))] = float(match.group(2))
    return [values[i] for i in sorted(values)]


def prediction_groups(run: Run, out: Path) -> dict[str, str]:
    """Row label -> files pattern of a run's test predictions (weaver writes pred_<group>.root)."""
    folder = out / run.folder_name
    if run.dataset == "JetClass":
        return {run.name: f"{folder}/pred_[A-Z]*.root"}  # the ten classes, not real_HToBB
    names = {"generated": f"{run.name}, generated jets"}
    if (folder / "pred_real.root").exists():
        names["real"] = f"{run.name}, real jets"
    return {label: str(folder / f"pred_{group}.root") for group, label in names.items()}


def table(rows: list[tuple[str, dict]], task: str, bootstrap: int) -> tuple[str, list[dict]]:
    records = task_rows(rows, task, bootstrap)
    return task_table(records, task, summary=False).replace("| file |", "| model |", 1), records


def flavour_rows(rows: list[tuple[str, dict]]) -> tuple[str, list[dict]]:
    """What displacement should change: H→bb against H→cc (discriminant s_bb / (s_bb + s_cc)), and how often H→bb
    and H→cc jets are called what they are."""
    lines = [
        "| model | AUC Hbb vs Hcc | AUC Hcc vs Hgg | Hbb called Hbb | Hcc called Hcc | Hcc called Hbb |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    records = []
    for label, columns in rows:
        called = called_classes(columns)
        record = {
            "model": label,
            "auc_hbb_vs_hcc": binary_metrics(columns, "label_Hbb", ["label_Hcc"], signal_effs=())["auc"],
            "auc_hcc_vs_hgg": binary_metrics(columns, "label_Hcc", ["label_Hgg"], signal_effs=())["auc"],
        }
        for truth, guess in (("Hbb", "Hbb"), ("Hcc", "Hcc"), ("Hcc", "Hbb")):
            jets = columns["label_" + truth].astype(bool)
            record[f"{truth}_called_{guess}"] = float((called[jets] == "label_" + guess).mean())
        records.append(record)
        lines.append(
            f"| {label} | {record['auc_hbb_vs_hcc']:.4f} | {record['auc_hcc_vs_hgg']:.4f} | "
            f"{record['Hbb_called_Hbb']:.3f} | {record['Hcc_called_Hcc']:.3f} | "
            f"{record['Hcc_called_Hbb']:.3f} |"
        )
    return "\n".join(lines), records


def called_classes(columns: dict):
    """Per jet, the label (``label_X``) of its highest score, as a numpy array."""
    import numpy as np

    classes = [c.removeprefix("score_") for c in columns if c.startswith("score_")]
    return np.asarray(classes)[np.stack([columns["score_" + c] for c in classes], axis=1).argmax(axis=1)]


def real_hbb(run: Run, out: Path) -> dict | None:
    """The JetClass-format ParT (kin) on real JetClass H→bb jets: how often it calls them H→bb, and the fraction
    passing the H→bb-vs-QCD cut that keeps 50% of generated H→bb jets."""
    import numpy as np

    from jetattn.metrics import load_predictions

    folder = out / run.folder_name
    if not (folder / "pred_real_HToBB.root").exists():
        return None
    real = load_predictions(folder / "pred_real_HToBB.root")
    generated = load_predictions(folder / "pred_HToBB.root")
    classes = [c.removeprefix("score_") for c in real if c.startswith("score_")]
    called = called_classes

    def discriminant(columns):
        return columns["score_label_Hbb"] / (columns["score_label_Hbb"] + columns["score_label_QCD"] + 1e-12)

    cut = float(np.quantile(discriminant(generated), 0.5))
    return {
        "real_called_Hbb": float((called(real) == "label_Hbb").mean()),
        "generated_called_Hbb": float((called(generated) == "label_Hbb").mean()),
        "real_pass_50pct_cut": float((discriminant(real) > cut).mean()),
        "real_called": {c.removeprefix("label_"): float((called(real) == c).mean()) for c in classes},
        "generated_called": {c.removeprefix("label_"): float((called(generated) == c).mean()) for c in classes},
        "num_real": int(len(discriminant(real))),
    }


def plot_curves(curves: dict[str, list[float]], path: Path, title: str) -> None:
    from jetattn.plotting import pyplot, save

    fig, ax = pyplot().subplots(figsize=(9, 7))
    for label, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", label=label)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set(xlabel="epoch", ylabel="validation accuracy", title=title)
    ax.legend(fontsize=14)
    save(fig, path.parent, path.name, (".png",))


def summarise(out: Path, records: dict[str, dict], args: argparse.Namespace) -> str:
    sections, results = [], {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}

    def rows_of(runs: list[Run]) -> list[tuple[str, dict]]:
        return task_samples(
            [f"{label}:{pattern}" for run in runs for label, pattern in prediction_groups(run, out).items()],
            combine=False,
        )

    jetclass = {run.name: run for run in RUNS if run.dataset == "JetClass"}
    for key, names, heading in (
        ("models", ["ParT (full)", "ParticleNet (full)", "PFN (full)", "P-CNN (full)"], "JetClass-format: models"),
        ("features", ["ParT (kin)", "ParT (kinpid)", "ParT (full)"], "JetClass-format: ParT feature sets"),
    ):
        rows = rows_of([jetclass[n] for n in names])
        text, records_ = table(rows, "JetClass", args.bootstrap)
        flavour, flavour_records = flavour_rows(rows)
        plot_task_rocs(rows, "JetClass", out / f"roc_jetclass_{key}.png")
        results[f"jetclass_{key}"] = {"rows": records_, "flavour": flavour_records}
        sections.append(f"## {heading}\n\n{text}\n\n{flavour}\n\nROC curves: roc_jetclass_{key}.png")
    curves = {name: validation_curve(out / run.folder_name / "train.log") for name, run in jetclass.items()}
    plot_curves(curves, out / "validation_jetclass", "JetClass-format generated jets")
    results["jetclass_validation_accuracy"] = curves
    hbb = real_hbb(jetclass["ParT (kin)"], out)
    if hbb:
        results["real_hbb"] = hbb

        def text(value) -> str:
            if isinstance(value, dict):
                return ", ".join(f"{k} {v:.3f}" for k, v in value.items())
            return f"{value:.3f}" if isinstance(value, float) else str(value)

        facts = "\n".join(f"- {key}: {text(value)}" for key, value in hbb.items())
        sections.append(f"## ParT (kin) on real JetClass H→bb jets\n\n{facts}")
    for dataset in ("TopLandscape", "QuarkGluon"):
        runs = [run for run in RUNS if run.dataset == dataset]
        rows = rows_of(runs)
        text, records_ = table(rows, dataset, args.bootstrap)
        plot_task_rocs(rows, dataset, out / f"roc_{dataset.lower()}.png")
        curves = {run.name: validation_curve(out / run.folder_name / "train.log") for run in runs}
        plot_curves(curves, out / f"validation_{dataset.lower()}", f"{dataset}-format generated jets")
        results[dataset.lower()] = {"rows": records_, "validation_accuracy": curves}
        sections.append(
            f"## {dataset}-format: from scratch against fine-tuned\n\n{text}\n\n"
            f"Validation accuracy per epoch: {curves}\n\n"
            f"ROC curves: roc_{dataset.lower()}.png"
        )
    times = ["| run | minutes |", "| --- | --- |"]
    times += [f"| {run.dataset} {run.name} | {records[run.folder_name]['seconds'] / 60:.1f} |" for run in RUNS]
    results["runs"] = {run.folder_name: records[run.folder_name] for run in RUNS}
    sections.append("## Training times (one thread each, two at a time)\n\n" + "\n".join(times))
    write_json(out / "results.json", results)
    return "\n\n".join(sections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs, results.json, the plots")
    parser.add_argument("--jetclass-epochs", type=int, default=3)
    parser.add_argument(
        "--jetclass-samples",
        type=int,
        default=32000,
        help="JetClass jets per epoch (3 epochs: about 1.8 passes over the 52,000 training jets of "
        "6500 generated per class)",
    )
    parser.add_argument("--finetune-epochs", type=int, default=8, help="epochs on TopLandscape and QuarkGluon")
    parser.add_argument("--finetune-samples", type=int, default=5120, help="TopLandscape / QuarkGluon jets per epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3, help="start learning rate (ranger, weaver's flat+decay)")
    parser.add_argument(
        "--finetune-lr",
        type=float,
        default=3e-4,
        help="fine-tuning start learning rate (the recipe's 1/10 of training from scratch; the new "
        "classifier learns 50 times faster; no decay, as in the recipe)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="trainings at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training")
    parser.add_argument("--bootstrap", type=int, default=100, help="resamplings for the uncertainties")
    parser.add_argument("--only", nargs="+", help="train only these runs (folder names, e.g. jetclass/pfn_full)")
    parser.add_argument("--summary-to", type=Path, help="also copy table.md, results.json and the plots here")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    runs = [run for run in RUNS if not args.only or run.folder_name in args.only]
    futures = {}
    with ThreadPoolExecutor(args.jobs) as pool:

        def job(run: Run) -> dict:
            if run.pretrained:  # the JetClass run it starts from was submitted (so started) before it
                source = next(r for r in RUNS if r.name == run.pretrained and r.dataset == "JetClass")
                if source.folder_name in futures:
                    futures[source.folder_name].result()
            cmd, env = command(run, args.out, args)
            return train(args.out / run.folder_name, f"{run.dataset} {run.name}", cmd, args.threads, env)

        for run in runs:
            futures[run.folder_name] = pool.submit(job, run)
        records = {name: future.result() for name, future in futures.items()}
    if args.only:
        return 0
    text = summarise(args.out, records, args)
    write_text_atomic(args.out / "table.md", text + "\n")
    print(text)
    if args.summary_to:
        args.summary_to.mkdir(parents=True, exist_ok=True)
        for path in [args.out / "table.md", args.out / "results.json", *args.out.glob("*.png")]:
            with atomic_path(args.summary_to / path.name) as tmp:
                shutil.copyfile(path, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())

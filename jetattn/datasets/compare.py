"""Compare generated jets with real ones, class by class, in the quantities a jet tagger reads.

    python -m jetattn.datasets.compare GENERATED REAL --dataset TopLandscape [--plot DIR] [--markdown FILE]

GENERATED and REAL are ROOT files (TTree `tree`) or folders of them, in the datasets' layout (`part_px` ... and
the labels). Per class present in both, and per distribution, it prints the means, their ratio (generated / real)
and the Kolmogorov-Smirnov distance, then the issue-19 targets (met or not). Everything is computed from the
stored constituents (at most 128 per jet), so both sides are cut alike:

- `n_constituents`; `share_below_{0.5,1,2}GeV`: per jet, the share of its constituents with pT below the value;
- `leading_pt_fraction`: pT of the hardest constituent over the jet's; `softest_pt`: the softest constituent's pT;
- `deta_spread`, `dphi_spread`: pT-weighted rms of the constituents' Δη and Δφ to the jet axis;
- `jet_mass`, `sdmass` (soft drop, beta = 0, z_cut = 0.1) and `tau32` (WTA kT axes) of the constituents;
- `pair_ln_kt`, `pair_ln_delta`: ln kT = ln(min(pT_a, pT_b) Δ) and ln Δ of every constituent pair (as ParT's
  pair features, `jetattn.nn.pairs`), pooled over the jets.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np

from jetattn.datasets.processes import JETCLASS_LABELS
from jetattn.io import atomic_path

CLASS_NAMES = {
    "TopLandscape": {"label": {0: "QCD", 1: "top"}},
    "QuarkGluon": {"label": {0: "gluon", 1: "quark"}},
    "JetClass": {name: {1: name.removeprefix("label_")} for name in JETCLASS_LABELS},
}
JET_RADIUS = {"TopLandscape": 0.8, "QuarkGluon": 0.4, "JetClass": 0.8}
SOFT_THRESHOLDS = (0.5, 1.0, 2.0)
PAIR_JETS = 300  # jets whose constituent pairs are pooled (a 100-constituent jet has 4950 pairs)
PARTICLE_BRANCHES = ("part_px", "part_py", "part_pz", "part_energy", "part_deta", "part_dphi")


@dataclass(frozen=True)
class Target:
    """An issue-19 target: |ratio - 1| <= limit, |difference| <= limit (in points) or KS <= limit."""

    distribution: str
    measure: str  # "ratio", "difference" or "ks"
    limit: float


TARGETS = (
    Target("n_constituents", "ratio", 0.05),
    Target("share_below_1GeV", "difference", 0.03),
    Target("leading_pt_fraction", "ratio", 0.05),
    Target("n_constituents", "ks", 0.1),
)


def root_files(path: Path) -> list[Path]:
    files = sorted(path.rglob("*.root")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise FileNotFoundError(f"{path}: no ROOT file there")
    return files


def read_classes(path: Path, dataset: str) -> dict[str, ak.Array]:
    """The jets of each class in the file(s) at `path`: per-particle and per-jet branches, by class name."""
    import uproot

    names = CLASS_NAMES[dataset]
    classes: dict[str, list[ak.Array]] = {}
    for file in root_files(path):
        with uproot.open(file) as root:
            if "tree" not in root:
                raise ValueError(f"{file}: no TTree named 'tree'")
            tree = root["tree"]
            labels = [name for name in names if name in tree]
            missing = [b for b in (*PARTICLE_BRANCHES, "jet_pt") if b not in tree] + (
                [] if labels else [" or ".join(names)]
            )
            if missing:
                raise ValueError(f"{file}: lacks the branch(es) {', '.join(missing)} of a {dataset} file")
            jets = tree.arrays([*PARTICLE_BRANCHES, "jet_pt", *labels])
        for label in labels:
            for value, class_name in names[label].items():
                selected = jets[ak.values_astype(jets[label], np.int64) == value]
                if len(selected):
                    classes.setdefault(class_name, []).append(selected)
    return {name: ak.concatenate(parts) for name, parts in classes.items()}


def _pair_features(jets: ak.Array) -> dict[str, np.ndarray]:
    """ln kT and ln Δ of every constituent pair of the first PAIR_JETS jets, through ParT's own pair features."""
    import torch

    from jetattn.nn.pairs import pair_feature_matrix

    jets = jets[:PAIR_JETS]
    length = int(ak.max(ak.num(jets.part_px)))
    p4 = np.stack(
        [ak.to_numpy(ak.fill_none(ak.pad_none(jets[f"part_{c}"], length), 0.0)) for c in ("px", "py", "pz", "energy")],
        axis=1,
    )  # B, 4, L
    mask = np.arange(length)[None, :] < ak.to_numpy(ak.num(jets.part_px))[:, None]  # B, L
    ln_kt, ln_delta = [], []
    upper = np.triu(np.ones((length, length), bool), k=1)
    for start in range(0, len(p4), 50):
        block_mask = mask[start : start + 50]
        features = pair_feature_matrix(
            torch.from_numpy(p4[start : start + 50]).double(), torch.from_numpy(block_mask[:, None, :])
        ).numpy()  # B, 4, L, L
        pairs = block_mask[:, :, None] & block_mask[:, None, :] & upper
        ln_kt.append(features[:, 0][pairs])
        ln_delta.append(features[:, 2][pairs])
    return {"pair_ln_kt": np.concatenate(ln_kt), "pair_ln_delta": np.concatenate(ln_delta)}


def distributions(jets: ak.Array, radius: float) -> dict[str, np.ndarray]:
    """Every compared distribution of one class (see the module docstring)."""
    from jetattn.datasets.observables import nsubjettiness, softdrop_mass

    pt = np.hypot(jets.part_px, jets.part_py)
    n = ak.to_numpy(ak.num(pt))
    weights = pt / ak.sum(pt, axis=1)
    result = {"n_constituents": n.astype(float)}
    for threshold in SOFT_THRESHOLDS:
        result[f"share_below_{threshold:g}GeV"] = ak.to_numpy(ak.sum(pt < threshold, axis=1)) / n
    result["leading_pt_fraction"] = ak.to_numpy(ak.max(pt, axis=1) / jets.jet_pt)
    result["softest_pt"] = ak.to_numpy(ak.min(pt, axis=1))
    for name in ("deta", "dphi"):
        values = jets[f"part_{name}"]
        mean = ak.sum(weights * values, axis=1)
        result[f"{name}_spread"] = ak.to_numpy(np.sqrt(ak.sum(weights * (values - mean) ** 2, axis=1)))
    energy, px, py, pz = (ak.sum(jets[f"part_{c}"], axis=1) for c in ("energy", "px", "py", "pz"))
    result["jet_mass"] = ak.to_numpy(np.sqrt(np.maximum(energy**2 - px**2 - py**2 - pz**2, 0.0)))
    sdmass, tau32 = [], []
    flat = np.stack(
        [ak.to_numpy(ak.flatten(jets[f"part_{c}"])).astype(np.float64) for c in ("px", "py", "pz", "energy")]
    )
    for constituents in np.split(flat, np.cumsum(n)[:-1], axis=1):  # awkward records are slow to walk
        sdmass.append(softdrop_mass(*constituents, R0=radius))
        taus = nsubjettiness(*constituents, n_max=3, R0=radius)
        tau32.append(taus[2] / taus[1] if taus[1] > 0 else np.nan)
    result["sdmass"] = np.array(sdmass)
    result["tau32"] = np.array(tau32)
    return {**result, **_pair_features(jets)}


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import ks_2samp

    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    return float(ks_2samp(a, b).statistic)


def compare(generated: dict[str, np.ndarray], real: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per distribution: both means, their ratio, their difference and the KS distance."""
    rows = {}
    for name in generated:
        mean_generated, mean_real = float(np.nanmean(generated[name])), float(np.nanmean(real[name]))
        rows[name] = {
            "generated": mean_generated,
            "real": mean_real,
            "ratio": mean_generated / mean_real,
            "difference": mean_generated - mean_real,
            "ks": ks_distance(generated[name], real[name]),
            "jets_generated": len(generated["n_constituents"]),
            "jets_real": len(real["n_constituents"]),
        }
    return rows


def target_lines(class_name: str, rows: dict[str, dict[str, float]]) -> list[str]:
    lines = []
    for target in TARGETS:
        row = rows[target.distribution]
        value = abs(row[target.measure] - 1) if target.measure == "ratio" else abs(row[target.measure])
        shown = {
            "ratio": f"ratio {row['ratio']:.3f}",
            "difference": f"difference {100 * row['difference']:+.1f} points",
            "ks": f"KS {row['ks']:.3f}",
        }[target.measure]
        limit = {
            "ratio": f"within {100 * target.limit:g}%",
            "difference": f"within {100 * target.limit:g} points",
            "ks": f"below {target.limit:g}",
        }[target.measure]
        lines.append(
            f"{class_name}: {target.distribution} {shown} ({limit}): {'met' if value <= target.limit else 'NOT met'}"
        )
    return lines


def markdown_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = [
        "| class | distribution | generated mean | real mean | ratio | KS |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for class_name, rows in results.items():
        for name, row in rows.items():
            lines.append(
                f"| {class_name} | {name} | {row['generated']:.4g} | {row['real']:.4g} | {row['ratio']:.3f} | "
                f"{row['ks']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def plot_class(out: Path, stem: str, class_name: str, generated: dict, real: dict) -> list[str]:
    from jetattn.plotting import pyplot, save

    plt = pyplot()
    names = list(generated)
    columns = 4
    fig, axes = plt.subplots(-(-len(names) // columns), columns, figsize=(6 * columns, 4.5 * -(-len(names) // columns)))
    for ax, name in zip(axes.flat, names, strict=False):
        both = np.concatenate([generated[name], real[name]])
        both = both[np.isfinite(both)]
        low, high = np.quantile(both, [0.005, 0.995])
        bins = np.arange(low - 0.5, high + 1.5) if name == "n_constituents" else np.linspace(low, high, 41)
        for values, label, style in ((real[name], "real", "step"), (generated[name], "generated", "stepfilled")):
            ax.hist(
                values[np.isfinite(values)],
                bins=bins,
                density=True,
                histtype=style,
                alpha=0.8 if style == "step" else 0.35,
                label=label,
                linewidth=1.5,
            )
        ax.set_xlabel(name, fontsize=14)
        ax.tick_params(labelsize=11)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=12, title=class_name, title_fontsize=12)
    fig.tight_layout()
    return save(fig, out, stem, (".png",))


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jetattn.datasets.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("generated", type=Path, help="generated jets: a ROOT file or a folder of them")
    parser.add_argument("real", type=Path, help="real jets: a ROOT file or a folder of them")
    parser.add_argument(
        "--dataset",
        required=True,
        choices=list(CLASS_NAMES),
        help="which layout and labels (TopLandscape: label 1 = top; QuarkGluon: 1 = quark)",
    )
    parser.add_argument("--max-jets", type=int, default=2000, help="jets per class and side (default 2000)")
    parser.add_argument("--plot", type=Path, help="folder for one picture per class (compare_<dataset>_<class>.png)")
    parser.add_argument("--markdown", type=Path, help="write the table and the targets to this file")
    parser.add_argument("--json", type=Path, help="write every number to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = parser()
    args = arguments.parse_args(argv)
    if args.max_jets <= 0:
        arguments.error(f"--max-jets must be positive, got {args.max_jets}")
    try:
        generated, real = (read_classes(path, args.dataset) for path in (args.generated, args.real))
    except (OSError, ValueError) as err:
        print(f"error: {err}".replace("\n", " "), file=sys.stderr)
        return 1
    shared = [name for name in generated if name in real]
    if not shared:
        print(
            f"error: no class in both: generated has {', '.join(generated) or 'none'}, real has "
            f"{', '.join(real) or 'none'}",
            file=sys.stderr,
        )
        return 1
    results, targets = {}, []
    for class_name in shared:
        radius = JET_RADIUS[args.dataset]
        sides = [distributions(jets[class_name][: args.max_jets], radius) for jets in (generated, real)]
        results[class_name] = compare(*sides)
        targets += target_lines(class_name, results[class_name])
        if args.plot:
            args.plot.mkdir(parents=True, exist_ok=True)
            plot_class(args.plot, f"compare_{args.dataset}_{class_name}", class_name, *sides)
    table = markdown_table(results)
    print(table + "\n" + "\n".join(targets))
    write_outputs(args, table, results, targets)
    return 0


def write_outputs(args: argparse.Namespace, table: str, results: dict, targets: list[str]) -> None:
    """The table and target lines as Markdown (``--markdown``) and every number as JSON (``--json``)."""
    if args.markdown:
        with atomic_path(args.markdown) as tmp:
            tmp.write_text(table + "\n" + "".join(f"- {line}\n" for line in targets))
    if args.json:
        summary = {"dataset": args.dataset, "generated": str(args.generated), "real": str(args.real)}
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps({**summary, "classes": results, "targets": targets}, indent=1))


if __name__ == "__main__":
    sys.exit(main())

"""Benchmarks that print figures (not tests).

python -m jetattn.bench part [--batch-size 256] [--version 3.5] [--packed] [--bucketed] [--checkpoint-pairs]
    [--tensor-memory]
    inference and training jets/s of our ParT and weaver-core's ParticleTransformer, same configuration
    and weights, JetClass ``full`` shapes (17 features, 128 particles, multiplicities like JetClass),
    both trimming each batch at its longest jet; ``--packed``: ours packed too (``-o packed 1``);
    ``--checkpoint-pairs``: each of ours also recomputing its pair embedding in the backward pass;
    ``--tensor-memory``: the tensors' peak memory of one step of each model.
python -m jetattn.bench attention [--json rows.json] [--quick | --no-compile | --compile-only | --sweep-only]
    weaver-core's ParT against ours in every precision, compilation and attention variant (dense, padding-
    free, flex, top-k, LinParT) at JetClass shapes, then a sweep over the number of particles for dense,
    top-k and LinParT attention: inference and training jets/s and peak memory, one JSON row each (the file
    rewritten after every row). ``--quick``: only the rows of the packed ParT's targets (weaver eager and
    compiled, ours padded and packed), with a time budget, for a GPU session of a few minutes.
python -m jetattn.bench generate [--num-jets 200]
    jets per second per core of the Pythia 8 + FastJet generator, per class.
python -m jetattn.bench loader [--files ...] [--num-workers N ...] [--fetch-step F ...] [--json out.json]
    jets/s that weaver's own data loader delivers for training, per setting, beside ParT's training rate
    (jetattn/bench_loader.py; --help there).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from jetattn.deps import exit_if_missing
from jetattn.io import write_json
from jetattn.measure import (
    PeakMemory,
    device_name,
    interleaved_rates,
    jetclass_like_batch,
    make_step,
    tensor_peak_mb,
)


def bench_part(args: argparse.Namespace) -> dict:
    from weaver.nn.model.ParticleTransformer import ParticleTransformer as WeaverParT

    from jetattn.weaver import weaver_part

    logging.getLogger("weaver").setLevel(logging.WARNING)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cfg = dict(input_dim=17, num_classes=10, fc_params=[], version=args.version)
    torch.manual_seed(0)
    weaver_model = WeaverParT(**cfg).to(device)
    # ParT's training trimmer cuts each batch at a random 90-100% quantile of the jet lengths; over a few timed
    # steps that randomness, not the code, decides the figure. Every model trims at the longest jet here.
    weaver_model.trimmer.target = (1.0, 1.0)
    ours_options = {"ours": {}, "ours-packed": {"packed": True}} if args.packed else {"ours": {}}
    if args.bucketed:
        ours_options["ours-bucketed"] = {"buckets": 4}
    if args.checkpoint_pairs:
        ours_options.update({f"{name}-recompute": {**o, "checkpoint_pairs": True} for name, o in ours_options.items()})
    models = {}
    for name, options in ours_options.items():
        models[name] = weaver_part(**cfg, **options).to(device)
        models[name].load_state_dict(weaver_model.state_dict(), strict=True)
        models[name].trimmer.quantile_range = (1.0, 1.0)
    models = {"ours": models.pop("ours"), "weaver": weaver_model, **models}
    batch = jetclass_like_batch(args.batch_size)
    mean_n = batch[2].sum(-1).mean().item()
    print(
        f"device: {device_name(device)}; ParT version {args.version}; batch {args.batch_size}, 128 slots, "
        f"{mean_n:.1f} particles per jet"
    )
    result = {
        "device": device_name(device),
        "version": args.version,
        "batch_size": args.batch_size,
        "mean_particles": mean_n,
    }
    if args.packed:
        result.update(pair_counts(batch[2]))
        print(", ".join(f"{key} {value:,}" for key, value in pair_counts(batch[2]).items()))
    for mode in ("infer", "train"):
        steps = {name: make_step(model, batch, device, mode == "train") for name, model in models.items()}
        rates = interleaved_rates(steps, args.batch_size, args.steps, args.warmup, device)
        for name, rate in rates.items():
            result[f"{name}_{mode}_jets_per_s"] = rate
            tensors = ""
            if args.tensor_memory:
                result[f"{name}_{mode}_peak_tensor_mb"] = tensor_peak_mb(steps[name])
                tensors = f", tensors' peak {result[f'{name}_{mode}_peak_tensor_mb']:.0f} MB"
            print(f"{mode:5s} {name:6s} {rate:9.1f} jets/s{tensors}", flush=True)
    return result


@dataclass(frozen=True)
class Variant:
    """One benchmarked configuration; the fields are those of the JSON rows."""

    model: str  # weaver-ParT, ParT, ParT-topk, LinParT
    precision: str = "fp32"  # fp32, bf16, fp16 (autocast) or int8 (dynamic quantization, inference only)
    compiled: bool = False
    variant: str = "padded"  # padded, bucketed (padding-free), packed, flex
    k: int | None = None  # top-k keys or Linformer projection
    version: float = 1  # weaver-core's ParT version (3.5: RMSNorm, SwiGLU, QK-norm, output gate)

    def options(self, n_particles: int) -> dict:
        """Options of our ParT for this variant (:func:`jetattn.weaver.weaver_part`'s)."""
        from jetattn.weaver import LINPART_RECIPE

        options: dict = {}
        if self.variant == "bucketed":
            options["buckets"] = 4
        if self.variant == "packed":  # compiled: -o compile 1 (after the packing, which reads the lengths)
            options.update(packed=True, compile=self.compiled)
        if self.variant == "flex":  # flex_attention has no attention dropout
            options.update(attention="flex", block_params={"attn_dropout": 0.0})
        if self.model == "ParT-topk":
            options.update(attention="topk", topk=self.k)
        if self.model == "LinParT":  # networks/example_LinParT.py's recipe, at this k and length
            linear_pairs = LINPART_RECIPE["linear_pairs"]
            options.update(
                attention=LINPART_RECIPE["attention"],
                linear_pairs=linear_pairs,
                checkpoint_pairs=linear_pairs,
                proj_dim=self.k,
                max_len=n_particles,
            )
        return options


def jetclass_variants(compile_models: bool, cuda: bool, compiled_only: bool = False) -> list[Variant]:
    """The JetClass-shape table: weaver's ParT as users run it, and ours in each variant."""
    if compiled_only:
        return [v for v in jetclass_variants(True, cuda) if v.compiled]
    half = ["bf16", "fp16"] if cuda else ["bf16"]
    rows = [Variant("weaver-ParT"), *(Variant("weaver-ParT", p) for p in half)]
    rows += [Variant("ParT"), *(Variant("ParT", p) for p in half), Variant("ParT", "int8")]
    rows += [
        Variant("ParT", variant="bucketed"),
        Variant("ParT", "bf16", variant="bucketed"),
        Variant("ParT", "int8", variant="bucketed"),
        Variant("ParT", variant="flex"),
    ]
    rows += [Variant("ParT", variant="packed"), Variant("ParT", "bf16", variant="packed")]
    rows += [Variant("ParT-topk", k=k) for k in (4, 30)] + [Variant("LinParT", k=32)]
    for version in (2, 3, 3.5, 3.6):  # weaver-core's later versions: weaver, ours padded and padding-free
        rows += [
            Variant("weaver-ParT", version=version),
            Variant("ParT", version=version),
            Variant("ParT", variant="bucketed", version=version),
        ]
    rows.append(Variant("ParT", "int8", version=3.5))
    if compile_models:
        rows += [Variant(m, p, compiled=True) for m in ("weaver-ParT", "ParT") for p in ("fp32", "bf16")]
        rows += [Variant("ParT", "bf16", compiled=True, variant=v) for v in ("bucketed", "packed")]
    return rows


def weaver_states(versions: set[float]) -> dict[float, dict]:
    """The weights every row of a version shares: weaver's paper-size ParT of that version, seeded."""
    from weaver.nn.model.ParticleTransformer import ParticleTransformer as WeaverParT

    states = {}
    for version in sorted(versions):
        torch.manual_seed(0)
        states[version] = WeaverParT(input_dim=17, num_classes=10, fc_params=[], version=version).state_dict()
    return states


def quick_variants(compile_models: bool) -> list[Variant]:
    """The rows that decide the packed ParT's targets, most telling first (a run cut short keeps those):
    weaver as users run it (fp32, ``--use-amp`` bf16), ours padded and packed, then the compiled bf16 rows."""
    rows = [
        Variant("weaver-ParT"),
        Variant("weaver-ParT", "bf16"),
        Variant("ParT", "bf16"),
        Variant("ParT", "bf16", variant="packed"),
        Variant("ParT", variant="packed"),
    ]
    if compile_models:
        rows += [Variant("ParT", "bf16", True, "packed"), Variant("weaver-ParT", "bf16", compiled=True)]
    return rows


def pair_counts(mask: torch.Tensor) -> dict:
    """What a batch costs in pairs (``mask: (B, 1, L)``): the real pairs Σ nᵢ², the pairs a >= b that both our
    models embed, Σ nᵢ(nᵢ+1)/2, and the attention entries per head of the padded model cut at its longest jet,
    B·L², and of the packed one, rows·R²."""
    from jetattn.nn.packed import pack_batch

    lengths = mask.sum(dim=(1, 2)).long()
    packed = pack_batch(mask.bool())
    return {
        "real_pairs": int((lengths**2).sum()),
        "embedded_pairs": packed.num_pairs,
        "padded_attention_entries": len(lengths) * int(lengths.max()) ** 2,
        "packed_attention_entries": packed.rows * packed.row_len**2,
    }


def build_model(variant: Variant, weaver_state: dict, n_particles: int, device: torch.device) -> torch.nn.Module:
    """The paper's ParT (JetClass `full`: 17 features, 10 classes) with ``weaver_state``'s weights."""
    from weaver.nn.model.ParticleTransformer import ParticleTransformer as WeaverParT

    from jetattn.weaver import weaver_part

    cfg = dict(input_dim=17, num_classes=10, fc_params=[], compile_model=variant.compiled, version=variant.version)
    if variant.model == "weaver-ParT":
        model = WeaverParT(**cfg)
        model.trimmer.target = (1.0, 1.0)  # trim at the longest jet, as ours below: the draw would decide
    else:
        model = weaver_part(**cfg, **variant.options(n_particles))
        model.trimmer.quantile_range = (1.0, 1.0)
    missing, unexpected = model.load_state_dict(weaver_state, strict=False)
    # LinParT's projections are new (left at their initialisation); everything else must come from weaver
    new_keys = all(".linformer." in key or key.startswith("pair_projection.") for key in missing)
    assert not unexpected and new_keys, (missing, unexpected)
    model = model.to(device)
    if variant.precision == "int8":
        model = torch.ao.quantization.quantize_dynamic(model.eval(), {torch.nn.Linear}, dtype=torch.qint8)
    return torch.compile(model) if variant.compiled and variant.variant != "packed" else model


def measure(
    variant: Variant,
    states: dict[float, dict],
    batch,
    device: torch.device,
    steps: int,
    warmup: int,
    modes: tuple[str, ...] = ("infer", "train"),
    tensor_memory: bool = False,
) -> dict:
    """Inference and training jets/s (training: not for int8) and peak memory of one variant, for ``modes``;
    ``tensor_memory`` (CPU): also ``peak_tensor_mb``, the tensors' peak over one step of each mode."""
    n_particles, batch_size = batch[0].size(-1), batch[0].size(0)
    row = {
        "model": variant.model,
        "version": variant.version,
        "k": variant.k,
        "precision": variant.precision,
        "compiled": variant.compiled,
        "variant": variant.variant,
        "n_particles": n_particles,
        "batch": batch_size,
        "infer_jets_per_s": None,
        "train_jets_per_s": None,
        "peak_mem_mb": None,
        "device": device_name(device),
    }
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(variant.precision)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
    try:
        model = build_model(variant, states[variant.version], n_particles, device)
        for mode in [m for m in modes if m == "infer" or variant.precision != "int8"]:
            step = make_step(model, batch, device, train=mode == "train")
            with autocast:
                with PeakMemory(device) as memory:
                    rate = interleaved_rates({"": step}, batch_size, steps, warmup, device)[""]
            row[f"{mode}_jets_per_s"] = rate
            row["peak_mem_mb"] = max(row["peak_mem_mb"] or 0.0, memory.peak_mb)
            if tensor_memory and device.type == "cpu":
                with autocast:
                    row["peak_tensor_mb"] = max(row.get("peak_tensor_mb", 0.0), tensor_peak_mb(step))
    except Exception as error:  # a variant this torch or device cannot run is a row that says so
        row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return row


def print_row(row: dict) -> None:
    def figure(value, width: int) -> str:
        return f"{value:{width}.1f}" if value is not None else " " * (width - 1) + "-"

    name = row["model"] if row["k"] is None else f"{row['model']}(k={row['k']})"
    name += f" v{row['version']}" if row.get("version", 1) != 1 else ""
    mode = "compiled" if row["compiled"] else "eager"
    tensors = f" (tensors {row['peak_tensor_mb']:.1f} MB)" if "peak_tensor_mb" in row else ""
    print(
        f"{name:14s} {row['precision']:5s} {mode:8s} {row['variant']:8s} N={row['n_particles']:<5d} "
        f"B={row['batch']:<4d} {figure(row['infer_jets_per_s'], 9)} {figure(row['train_jets_per_s'], 9)} "
        f"{figure(row['peak_mem_mb'], 8)} MB{tensors}  {row.get('error', '')}",
        flush=True,
    )


TARGETS = Path(__file__).resolve().parents[1] / "docs/targets.yaml"


def attention_targets(rows: list[dict], sweep_rows: list[dict], targets: Path = TARGETS) -> list[str]:
    """Each target of ``targets`` (docs/targets.yaml) whose two sides the rows give: the ratio, the target, met
    or not."""
    import yaml

    def side(spec: dict) -> float | None:
        if "value" in spec:
            return float(spec["value"])
        match = {k: v for k, v in spec.items() if k not in ("key", "rows")}
        table = sweep_rows if spec.get("rows") == "sweep" else rows
        values = [r[spec["key"]] for r in table if r.get(spec["key"]) and all(r.get(k) == v for k, v in match.items())]
        return max(values) if values else None

    lines = []
    for target in yaml.safe_load(targets.read_text())["targets"]:
        ours, theirs = side(target["ours"]), side(target["theirs"])
        if ours and theirs:
            ratio, wanted = ours / theirs, target["ratio"]
            verdict = "met" if ratio >= wanted else "NOT met"
            lines.append(f"{target['text']}: {ratio:.2f}x (target {wanted}x: {verdict})")
    return lines


def bench_attention(args: argparse.Namespace) -> list[dict]:
    logging.getLogger("weaver").setLevel(logging.WARNING)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    batch_size = args.batch_size or (512 if device.type == "cuda" else 256)
    batch = jetclass_like_batch(batch_size)
    print(
        f"device: {device_name(device)}; torch {torch.__version__}; JetClass shapes: batch {batch_size}, 128 "
        f"slots, {batch[2].sum(-1).mean().item():.1f} particles per jet"
    )
    pairs = pair_counts(batch[2])
    print(
        f"pairs per batch: real Σn² = {pairs['real_pairs']:,}, embedded Σn(n+1)/2 = {pairs['embedded_pairs']:,}; "
        f"attention entries per head: padded B·L² = {pairs['padded_attention_entries']:,}, packed rows·R² = "
        f"{pairs['packed_attention_entries']:,}"
    )
    print("model          prec  mode     variant  shape              infer/s   train/s  peak mem")
    rows = []
    cuda = device.type == "cuda"
    if args.quick:
        variants = quick_variants(not args.no_compile)
    else:
        variants = [] if args.sweep_only else jetclass_variants(not args.no_compile, cuda, args.compile_only)
    variants = [
        v
        for v in variants
        if (not args.models or v.model in args.models)
        and (not args.precisions or v.precision in args.precisions)
        and (not args.variants or v.variant in args.variants)
        and (not args.versions or v.version in args.versions)
    ]
    states = weaver_states({1} | {v.version for v in variants})
    started = time.perf_counter()
    for variant in variants:
        if args.budget_s and time.perf_counter() - started > args.budget_s:
            print(f"time budget of {args.budget_s} s spent: {variant} left out", flush=True)
            continue
        warmup = max(args.warmup, 3) if variant.compiled else args.warmup  # compilation, then steady steps
        rows.append(measure(variant, states, batch, device, args.steps, warmup, tuple(args.modes), args.tensor_memory))
        rows[-1].update(pairs)
        print_row(rows[-1])
        if args.json:  # row by row: a run cut short keeps what it measured
            write_json(args.json, rows)
    sweep_batch = args.sweep_batch or (64 if device.type == "cuda" else 8)
    sweep_rows = []
    for n in args.sweep:
        full = jetclass_like_batch(sweep_batch, length=n, multiplicity=n)
        for variant in (Variant("ParT"), Variant("ParT-topk", k=30), Variant("LinParT", k=32)):
            sweep_rows.append(
                measure(variant, states, full, device, args.steps, args.warmup, tuple(args.modes), args.tensor_memory)
            )
            print_row(sweep_rows[-1])
            if args.json:
                write_json(args.json, rows + sweep_rows)
    for line in attention_targets(rows, sweep_rows):
        print(line)
    return rows + sweep_rows


def bench_generate(args: argparse.Namespace) -> dict:
    from jetattn.datasets.generate import benchmark
    from jetattn.datasets.recipes import jet_dataset

    rates = benchmark(jet_dataset("JetClass"), args.num_jets, args.seed)
    for name, rate in rates.items():
        print(f"{name:12s} {rate:7.1f} jets/s per core")
    return {"jets_per_s_per_core": rates, "device": device_name(torch.device("cpu"))}


def part_arguments(sub) -> argparse.ArgumentParser:
    part = sub.add_parser("part", help="our ParT vs weaver's ParticleTransformer")
    part.add_argument("--batch-size", type=int, default=256)
    part.add_argument("--steps", type=int, default=6, help="timed steps per model and mode")
    part.add_argument("--warmup", type=int, default=6, help="untimed steps first")
    part.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    part.add_argument("--version", type=float, default=1, help="weaver-core's ParT version (1, 2, 3, 3.5, 3.6)")
    part.add_argument("--packed", action="store_true", help="also ours with -o packed 1, timed in the same turns")
    part.add_argument("--bucketed", action="store_true", help="also ours with -o buckets 4, timed in the same turns")
    part.add_argument(
        "--checkpoint-pairs", action="store_true", help="also each of ours with -o checkpoint_pairs 1, same turns"
    )
    part.add_argument("--tensor-memory", action="store_true", help="the tensors' peak memory of one step per model")
    return part


def attention_arguments(sub) -> argparse.ArgumentParser:
    attention = sub.add_parser("attention", help="every attention variant, precision and compilation")
    attention.add_argument("--batch-size", type=int, default=None, help="JetClass-shape batch (256 CPU, 512 GPU)")
    attention.add_argument(
        "--sweep",
        type=int,
        nargs="*",
        default=[64, 128, 256, 512, 1024],
        help="particle counts of the sweep (every jet full)",
    )
    attention.add_argument("--sweep-batch", type=int, default=None, help="batch of the sweep (8 CPU, 64 GPU)")
    attention.add_argument("--steps", type=int, default=None, help="timed steps per row and mode (3; --quick: 10)")
    attention.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation included)")
    attention.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    attention.add_argument("--no-compile", action="store_true", help="leave out the torch.compile rows")
    attention.add_argument("--compile-only", action="store_true", help="only the torch.compile rows")
    attention.add_argument(
        "--modes",
        nargs="+",
        choices=("infer", "train"),
        default=["infer", "train"],
        help="what to time (compiling for training takes long on a CPU: --modes infer)",
    )
    attention.add_argument(
        "--quick",
        action="store_true",
        help="only the packed ParT's target rows, no sweep, within --budget-s (GPU: under 4 min)",
    )
    attention.add_argument(
        "--budget-s", type=float, default=None, help="start no row after this many seconds (--quick: 150)"
    )
    attention.add_argument("--sweep-only", action="store_true", help="only the sweep over particle counts")
    attention.add_argument("--models", nargs="+", help="JetClass-shape rows of these models only (e.g. ParT)")
    attention.add_argument("--precisions", nargs="+", help="... of these precisions only (fp32 bf16 int8)")
    attention.add_argument("--variants", nargs="+", help="... of these variants only (padded bucketed flex)")
    attention.add_argument("--versions", nargs="+", type=float, help="... of these weaver ParT versions only (1 3.5)")
    attention.add_argument(
        "--tensor-memory",
        action="store_true",
        help="CPU: also the tensors' peak memory (torch.profiler), besides the resident set size",
    )
    return attention


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jetattn.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    part, attention = part_arguments(sub), attention_arguments(sub)
    gen = sub.add_parser("generate", help="Pythia 8 + FastJet generation speed per class")
    gen.add_argument("--num-jets", type=int, default=200, help="jets per class")
    gen.add_argument("--seed", type=int, default=1)
    for p in (part, attention, gen):
        p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    sub.add_parser("loader", add_help=False, help="weaver's data loader, jets/s per setting (loader --help)")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["loader"]:
        from jetattn.bench_loader import main as loader_main

        return loader_main(argv[1:])
    args = parser.parse_args(argv)
    if args.what == "attention" and args.quick:
        args.sweep = []
        args.budget_s = 150.0 if args.budget_s is None else args.budget_s
    if args.what == "attention" and args.steps is None:
        args.steps = 10 if args.quick else 3
    if args.what == "attention":
        rows = bench_attention(args)
        if args.json:
            write_json(args.json, rows)
        return 0
    result = bench_part(args) if args.what == "part" else bench_generate(args)
    result["torch"] = torch.__version__
    result["command"] = " ".join([Path(sys.executable).name, "-m", "jetattn.bench", *(argv or sys.argv[1:])])
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    with exit_if_missing():  # the packages this imports on use
        sys.exit(main())

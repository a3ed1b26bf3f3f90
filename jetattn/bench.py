"""Benchmarks that print figures (not tests).

    python -m jetattn.bench part [--batch-size 256] [--json out.json]
        inference and training jets/s of our ParT and weaver-core's ParticleTransformer, same configuration
        and weights, JetClass ``full`` shapes (17 features, 128 particles, multiplicities like JetClass),
        both trimming each batch at its longest jet.
    python -m jetattn.bench generate [--num-jets 200]
        jets per second per core of the Pythia 8 + FastJet generator, per class.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from pathlib import Path

import torch

from jetattn.deps import exit_if_missing
from jetattn.io import write_json


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def jetclass_like_batch(batch_size: int, length: int = 128, input_dim: int = 17, seed: int = 0):
    """Padded jets whose multiplicities follow JetClass roughly (mean ≈ 45, tail to 128), massless particles
    in a cone of R ≈ 0.8 around a 500–1000 GeV jet; features are standard normal on real particles."""
    g = torch.Generator().manual_seed(seed)
    n = (torch.distributions.Gamma(4.0, 4.0 / 45.0).sample((batch_size,))).round().clamp(5, length).long()
    mask = (torch.arange(length)[None] < n[:, None]).unsqueeze(1).float()
    pt = 700 * torch.distributions.Exponential(1.0).sample((batch_size, 1, length)) / n[:, None, None]
    eta = 0.3 * torch.randn(batch_size, 1, length, generator=g)
    phi = 0.3 * torch.randn(batch_size, 1, length, generator=g)
    v = torch.cat([pt * phi.cos(), pt * phi.sin(), pt * eta.sinh(), pt * eta.cosh()], dim=1) * mask
    x = torch.randn(batch_size, input_dim, length, generator=g) * mask
    return x, v, mask


def weaver_inputs(info: dict, batch_size: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """A :func:`jetclass_like_batch` laid out for a network file's ``model_info``: one tensor per input name,
    by its suffix: ``*_points`` (Δη, Δφ of each particle), ``*_features``, ``*_vectors`` (px, py, pz, E), ``*_mask``.
    Widths and the sequence length come from ``info["input_shapes"]``."""
    shapes = info["input_shapes"]
    features = next((name for name in info["input_names"] if name.endswith("features")), None)
    if features is None:
        raise ValueError(f"no *_features input among {info['input_names']}")
    x, v, mask = jetclass_like_batch(batch_size, shapes[features][2], shapes[features][1], seed)
    pt = v[:, :2].norm(dim=1, keepdim=True).clamp(min=1e-6)
    points = torch.cat([torch.asinh(v[:, 2:3] / pt), torch.atan2(v[:, 1:2], v[:, 0:1])], dim=1) * mask
    by_suffix = {"points": points, "features": x, "vectors": v, "mask": mask}
    inputs = []
    for name in info["input_names"]:
        suffix = name.rpartition("_")[2]
        if suffix not in by_suffix:
            known = ", ".join("*_" + k for k in by_suffix)
            raise ValueError(f"input {name!r}: cannot make a JetClass-like batch for it (known: {known})")
        inputs.append(by_suffix[suffix][:, : shapes[name][1], : shapes[name][2]])
    return tuple(inputs)


def make_step(model: torch.nn.Module, batch, device: torch.device, train: bool, num_classes: int = 10):
    """One inference call (eval, no grad) or one training step (forward, backward, AdamW) on ``batch``, the
    model's inputs in order."""
    inputs = tuple(t.to(device) for t in batch)
    if not train:
        model.eval()

        def step():
            with torch.no_grad():
                model(*inputs)

        return step
    model.train()
    labels = torch.randint(0, num_classes, (inputs[0].size(0),), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        loss = torch.nn.functional.cross_entropy(model(*inputs), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def interleaved_rates(steps: dict, batch_size: int, repeats: int, warmup: int, device: torch.device) -> dict:
    """Jets/s of each step function, timed in turns (A, B, A, B, ...) so that a busy or throttled machine
    slows all of them alike."""
    for _ in range(warmup):  # weaver's trimmer only starts trimming after 5 calls: give every model the same
        for step in steps.values():
            step()
    seconds = dict.fromkeys(steps, 0.0)
    for _ in range(repeats):
        for name, step in steps.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds[name] += time.perf_counter() - start
    return {name: batch_size * repeats / total for name, total in seconds.items()}


def bench_part(args: argparse.Namespace) -> dict:
    from weaver.nn.model.ParticleTransformer import ParticleTransformer as WeaverParT

    from jetattn.nn.part import ParticleTransformer

    logging.getLogger("weaver").setLevel(logging.WARNING)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cfg = dict(input_dim=17, num_classes=10, fc_params=[])
    torch.manual_seed(0)
    weaver_model = WeaverParT(**cfg).to(device)
    ours = ParticleTransformer(**cfg).to(device)
    ours.load_state_dict(weaver_model.state_dict(), strict=True)
    # ParT's training trimmer cuts each batch at a random 90-100% quantile of the jet lengths; over a few timed
    # steps that randomness, not the code, decides the figure. Both models trim at the longest jet here.
    ours.trimmer.quantile_range = (1.0, 1.0)
    weaver_model.trimmer.target = (1.0, 1.0)
    models = {"ours": ours, "weaver": weaver_model}
    batch = jetclass_like_batch(args.batch_size)
    mean_n = batch[2].sum(-1).mean().item()
    print(f"device: {device_name(device)}; batch {args.batch_size}, 128 slots, {mean_n:.1f} particles per jet")
    result = {"device": device_name(device), "batch_size": args.batch_size, "mean_particles": mean_n}
    for mode in ("infer", "train"):
        steps = {name: make_step(model, batch, device, mode == "train") for name, model in models.items()}
        rates = interleaved_rates(steps, args.batch_size, args.steps, args.warmup, device)
        for name, rate in rates.items():
            result[f"{name}_{mode}_jets_per_s"] = rate
            print(f"{mode:5s} {name:6s} {rate:9.1f} jets/s", flush=True)
    return result


def bench_generate(args: argparse.Namespace) -> dict:
    from jetattn.datasets.generate import benchmark

    rates = benchmark(num_jets=args.num_jets, seed=args.seed)
    for name, rate in rates.items():
        print(f"{name:12s} {rate:7.1f} jets/s per core")
    return {"jets_per_s_per_core": rates, "device": device_name(torch.device("cpu"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jetattn.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    part = sub.add_parser("part", help="our ParT vs weaver's ParticleTransformer")
    part.add_argument("--batch-size", type=int, default=256)
    part.add_argument("--steps", type=int, default=6, help="timed steps per model and mode")
    part.add_argument("--warmup", type=int, default=6, help="untimed steps first")
    part.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    gen = sub.add_parser("generate", help="Pythia 8 + FastJet generation speed per class")
    gen.add_argument("--num-jets", type=int, default=200, help="jets per class")
    gen.add_argument("--seed", type=int, default=1)
    for p in (part, gen):
        p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    result = bench_part(args) if args.what == "part" else bench_generate(args)
    result["torch"] = torch.__version__
    result["command"] = " ".join([Path(sys.executable).name, "-m", "jetattn.bench", *(argv or sys.argv[1:])])
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    with exit_if_missing():  # the packages this imports on use
        sys.exit(main())

"""Inference with the pair embedding layer by layer (as weaver runs it) against folded and sliced
(`jetattn.nn.pairs.embed_pair_features`), timed in turns on one JetClass-like batch: the paper's ParT, padded and
packed, and the pair embedding alone; then the tensors' peak memory of one call each.

    python scripts/bench_pair_folding.py [--batch-size 256] [--repeats 6] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

import torch

from jetattn.measure import device_name, interleaved_rates, jetclass_like_batch, tensor_peak_mb
from jetattn.nn import packed, pairs
from jetattn.nn.part import ParticleTransformer


def layer_by_layer(embed: torch.nn.Sequential, features: torch.Tensor) -> torch.Tensor:
    return embed(features.T.unsqueeze(0)).squeeze(0).T


@contextlib.contextmanager
def unfolded():
    """The eval pair embedding as before folding: every layer on all pairs at once."""
    saved = pairs.embed_pair_features, packed.embed_pair_features
    pairs.embed_pair_features = packed.embed_pair_features = layer_by_layer
    try:
        yield
    finally:
        pairs.embed_pair_features, packed.embed_pair_features = saved


def trained_statistics(model: torch.nn.Module) -> None:
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    x, v, mask = jetclass_like_batch(args.batch_size)
    mask = mask.bool()
    models = {name: ParticleTransformer(17, 10, packed=name == "packed").eval() for name in ("padded", "packed")}
    for model in models.values():
        trained_statistics(model)
    models["packed"].load_state_dict(models["padded"].state_dict())
    embed = models["padded"].pair_embed
    n = mask.sum(dim=(1, 2))
    features = torch.randn(int((n * (n + 1) // 2).sum()), 4)

    def call(fn, fold: bool):
        def step():
            with torch.no_grad(), contextlib.nullcontext() if fold else unfolded():
                fn()

        return step

    steps = {}
    for name, model in models.items():
        for fold in (False, True):
            steps[f"ParT {name}, pairs {'folded' if fold else 'layer by layer'}"] = call(
                lambda m=model: m(x, v, mask), fold
            )
    steps["pair embedding alone, layer by layer"] = call(lambda: layer_by_layer(embed.embed, features), True)
    steps["pair embedding alone, folded"] = call(lambda: pairs.embed_pair_features(embed.embed, features), True)
    with torch.no_grad():
        reference = models["padded"](x, v, mask)
        with unfolded():
            unfolded_out = models["padded"](x, v, mask)
    rates = interleaved_rates(steps, args.batch_size, args.repeats, 2, torch.device("cpu"))
    result = {
        "device": device_name(torch.device("cpu")),
        "batch_size": args.batch_size,
        "pairs_a_ge_b": features.shape[0],
        "max_abs_difference_of_outputs": float((reference - unfolded_out).abs().max()),
        "jets_per_s": rates,
        "tensor_peak_mb": {name: tensor_peak_mb(step) for name, step in steps.items() if name.startswith("ParT")},
    }
    print(f"{result['device']}, batch {args.batch_size}, {features.shape[0]:,} pairs a >= b")
    for name, rate in rates.items():
        peak = result["tensor_peak_mb"].get(name)
        print(f"  {name:45s} {rate:9,.0f} jets/s" + (f"   peak {peak:7.1f} MB" if peak is not None else ""))
    difference = result["max_abs_difference_of_outputs"]
    print(f"  largest |difference| of the outputs, folded against layer by layer: {difference:.1e}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

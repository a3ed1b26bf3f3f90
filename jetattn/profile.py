"""Where a network's time goes, layer by layer, and whether each layer waits on arithmetic or on memory.

    python -m jetattn.profile --network networks/X.py --data-config Y.yaml [--network-option NAME VALUE ...]
        [--batch-size 256] [--device cpu|cuda] [--steps N] [--train] [--bf16] [--trace out.json]

Runs a JetClass-shaped batch (jetattn.bench's jets, laid out for the YAML's inputs; no data files) under
torch.profiler, each top-level layer of the model (``embed``, ``pair_embed``, ``blocks.i``, ``cls_blocks.i``,
``fc``, ...) inside a ``record_function`` range of its name, and prints per layer: time per step, share of the
step, FLOPs (torch.utils.flop_counter: matmuls, convolutions, attention; elementwise work is not counted), bytes
moved (parameters + input and output tensors: a lower bound on traffic), arithmetic intensity = FLOPs/bytes, and
"compute-bound" when that is at least the device's ridge point (peak FLOP/s ÷ peak bytes/s), else "memory-bound".

Peaks: a table for known GPUs (dense bf16 with --bf16, else non-tensor-core fp32), measured on the CPU (a large
matmul, a large copy), or --peak-flops/--peak-bandwidth, which win. FLOPs and bytes are those of one forward in
eval mode; with --train the step's backward and optimizer appear as one further row of time only.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from jetattn.deps import ToolError, exit_if_missing
from jetattn.io import atomic_path, prepare_outputs, write_json

# Dense peaks from the vendor's datasheets: (bf16 FLOP/s, fp32 non-tensor FLOP/s, memory bytes/s), by a name part.
GPU_PEAKS = {
    "H200": (989e12, 67e12, 4.8e12),
    "H100": (989e12, 67e12, 3.35e12),  # SXM
}
LABEL = "layer:"  # prefix of our record_function ranges


@dataclass
class Layer:
    name: str
    seconds: float = 0.0  # per step
    share: float = 0.0  # of the step
    flops: float = 0.0
    bytes: float = 0.0
    intensity: float = 0.0  # FLOPs per byte
    bound: str = ""


def top_layers(model: nn.Module) -> tuple[str, list[tuple[str, nn.Module]]]:
    """The layers to time: the children of the model's core (reached through wrappers that hold a single
    module, like weaver's ``mod``), with each ModuleList opened into its elements; named from the core, after
    the core's own name (``mod.``), which is returned first."""
    prefix, core = "", model
    while len(children := list(core.named_children())) == 1:
        name, core = children[0]
        prefix += name + "."
    layers = []
    for name, child in core.named_children():
        if isinstance(child, nn.ModuleList):
            layers += [(f"{name}.{i}", block) for i, block in enumerate(child)]
        else:
            layers.append((name, child))
    return prefix, layers


@contextlib.contextmanager
def labelled(layers: list[tuple[str, nn.Module]]) -> Iterator[None]:
    """Every call of each layer inside a ``record_function`` range named ``layer:<name>``."""
    handles, open_ranges = [], {}

    def enter(name):
        def hook(module, args):
            open_ranges.setdefault(name, []).append(torch.autograd.profiler.record_function(LABEL + name).__enter__())

        return hook

    def leave(name):
        def hook(module, args, output):
            open_ranges[name].pop().__exit__(None, None, None)

        return hook

    for name, module in layers:
        handles += [module.register_forward_pre_hook(enter(name)), module.register_forward_hook(leave(name))]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def tensor_bytes(*values) -> int:
    total = 0
    for value in values:
        if isinstance(value, torch.Tensor):
            total += value.numel() * value.element_size()
        elif isinstance(value, (list, tuple)):
            total += tensor_bytes(*value)
        elif isinstance(value, dict):
            total += tensor_bytes(*value.values())
    return total


def count_work(
    model: nn.Module, prefix: str, layers: list[tuple[str, nn.Module]], inputs, bf16: bool, device: torch.device
) -> dict[str, tuple[float, float]]:
    """``{layer: (FLOPs, bytes)}`` of one eval-mode forward. Bytes: the layer's parameters and buffers once per
    call, plus its input and output tensors."""
    from torch.utils.flop_counter import FlopCounterMode

    moved = dict.fromkeys((name for name, _ in layers), 0)

    def measure(name, module):
        weights = tensor_bytes(list(module.parameters()), list(module.buffers()))

        def hook(module, args, kwargs, output):
            moved[name] += weights + tensor_bytes(args, kwargs, output)

        return module.register_forward_hook(hook, with_kwargs=True)

    handles = [measure(name, module) for name, module in layers]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    # with autograd on: the counter's module tracker needs grad_fns on parameters it sees expanded
    try:
        with FlopCounterMode(display=False) as counter, autocast:
            model.eval()(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    counts = counter.get_flop_counts()
    root = f"{type(model).__name__}.{prefix}"
    return {name: (float(sum(counts.get(root + name, {}).values())), float(moved[name])) for name, _ in layers}


def measured_cpu_peaks(dtype: torch.dtype = torch.float32) -> tuple[float, float]:
    """FLOP/s of a 1024² matmul and bytes/s (read + write) of a 64 MB copy, best of a few, on this CPU."""
    a, b = torch.randn(1024, 1024, dtype=dtype), torch.randn(1024, 1024, dtype=dtype)
    src = torch.empty(16 * 2**20)
    dst = torch.empty_like(src)

    def best(fn, repeats=5):
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    flops = 2 * 1024**3 / best(lambda: a @ b)
    bandwidth = 2 * src.numel() * src.element_size() / best(lambda: dst.copy_(src))
    return flops, bandwidth


def device_peaks(
    device: torch.device, bf16: bool, peak_flops: float | None, peak_bandwidth: float | None
) -> tuple[float, float, str]:
    """Peak FLOP/s, peak bytes/s and where they came from."""
    if peak_flops and peak_bandwidth:
        return peak_flops, peak_bandwidth, "given"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        known = next((peaks for key, peaks in GPU_PEAKS.items() if key in name), None)
        if known is None:
            raise SystemExit(f"error: no peak figures for {name}; give --peak-flops and --peak-bandwidth")
        flops, bandwidth, source = (known[0] if bf16 else known[1]), known[2], f"datasheet ({name})"
    else:
        flops, bandwidth = measured_cpu_peaks(torch.bfloat16 if bf16 else torch.float32)
        source = "measured on this CPU"
    return peak_flops or flops, peak_bandwidth or bandwidth, source


def layer_times(prof, names: list[str], device: torch.device, steps: int) -> tuple[dict[str, float], float]:
    """Seconds per step of each labelled layer and of the whole step, from the profiler's events."""
    totals: dict[str, float] = {}
    for event in prof.key_averages():
        if event.key.startswith(LABEL) or event.key == "step":
            us = event.device_time_total if device.type == "cuda" and event.device_time_total > 0 else 0
            totals[event.key] = (us or event.cpu_time_total) / 1e6 / steps
    return {name: totals.get(LABEL + name, 0.0) for name in names}, totals.get("step", 0.0)


def timed_step(model: nn.Module, inputs: tuple, device: torch.device, train: bool, bf16: bool):
    """One inference call or training step of ``model`` on ``inputs``, under bfloat16 autocast with ``bf16``."""
    from jetattn.measure import autocast_inference, make_step

    num_classes = model.eval()(*(t[:1] for t in inputs)).size(-1)
    plain = make_step(model, inputs, device, train, num_classes)
    if not bf16:
        return plain

    def step():
        context = torch.autocast(device.type, dtype=torch.bfloat16) if train else autocast_inference(model, device)
        with context:
            plain()

    return step


def profiled(step, layers: list[tuple[str, nn.Module]], device: torch.device, warmup: int, steps: int):
    """torch.profiler over ``steps`` calls of ``step`` after ``warmup``, each layer's calls labelled."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    for _ in range(warmup):
        step()
    with labelled(layers), torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            with torch.autograd.profiler.record_function("step"):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize()
    return prof


def profile(args: argparse.Namespace) -> dict:
    """Collect: each top-level layer's time, work and bound on a JetClass-shaped batch; then :func:`report`."""
    from jetattn.measure import device_name, weaver_inputs
    from jetattn.weaver import build_network, parse_options

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, info = build_network(args.network, args.data_config, parse_options(args.network_option), for_inference=False)
    model.to(device)
    inputs = tuple(t.to(device) for t in weaver_inputs(info, args.batch_size))
    prefix, layers = top_layers(model)
    work = count_work(model, prefix, layers, inputs, args.bf16, device)
    step = timed_step(model, inputs, device, args.train, args.bf16)
    prof = profiled(step, layers, device, args.warmup, args.steps)
    names = [name for name, _ in layers]
    times, step_seconds = layer_times(prof, names, device, args.steps)
    peak_flops, peak_bandwidth, source = device_peaks(device, args.bf16, args.peak_flops, args.peak_bandwidth)
    ridge = peak_flops / peak_bandwidth
    rows = []
    for name in names:
        flops, moved = work[name]
        intensity = flops / moved if moved else 0.0
        share = times[name] / step_seconds if step_seconds else 0
        bound = "compute-bound" if intensity >= ridge else "memory-bound"
        rows.append(Layer(name, times[name], share, flops, moved, intensity, bound))
    if args.trace:
        with atomic_path(args.trace) as tmp:
            prof.export_chrome_trace(str(tmp))
    result = {
        "device": device_name(device),
        "batch_size": args.batch_size,
        "train": args.train,
        "bf16": args.bf16,
        "steps": args.steps,
        "step_seconds": step_seconds,
        "peak_flops": peak_flops,
        "peak_bandwidth": peak_bandwidth,
        "peaks_source": source,
        "ridge_point": ridge,
        "layers": [asdict(row) for row in rows],
        "rest_seconds": step_seconds - sum(times.values()),
    }
    report(result, args.trace)
    return result


def report(result: dict, trace: Path | None = None) -> None:
    """Render: the per-layer table of :func:`profile`'s result."""
    step_seconds, ridge = result["step_seconds"], result["ridge_point"]
    mode = ("training" if result["train"] else "inference") + (", bf16 autocast" if result["bf16"] else "")
    print(
        f"device: {result['device']}; batch {result['batch_size']}, {mode}; "
        f"{result['steps']} profiled steps of {step_seconds * 1e3:.2f} ms"
    )
    print(
        f"peaks ({result['peaks_source']}): {result['peak_flops'] / 1e12:.3f} TFLOP/s, "
        f"{result['peak_bandwidth'] / 1e9:.1f} GB/s; ridge point {ridge:.2f} FLOP/byte"
    )
    print(f"{'layer':28s} {'ms':>9s} {'%':>6s} {'GFLOP':>9s} {'MB':>9s} {'FLOP/B':>8s}  bound")
    for row in result["layers"]:
        print(
            f"{row['name']:28s} {row['seconds'] * 1e3:9.3f} {100 * row['share']:6.1f} {row['flops'] / 1e9:9.4f} "
            f"{row['bytes'] / 1e6:9.3f} {row['intensity']:8.2f}  {row['bound']}"
        )
    rest = result["rest_seconds"]
    rest_name = "rest (backward, optimizer)" if result["train"] else "rest (between layers)"
    print(f"{rest_name:28s} {rest * 1e3:9.3f} {100 * rest / step_seconds if step_seconds else 0:6.1f}")
    if trace:
        print(f"trace: {trace} (chrome://tracing or https://ui.perfetto.dev)")


def main(argv: list[str] | None = None) -> int:
    from jetattn.weaver import add_network_arguments

    parser = argparse.ArgumentParser(
        prog="python -m jetattn.profile", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_network_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--steps", type=int, default=3, help="profiled steps")
    parser.add_argument("--warmup", type=int, default=2, help="unprofiled steps first")
    parser.add_argument("--train", action="store_true", help="profile training steps (forward, backward, AdamW)")
    parser.add_argument("--bf16", action="store_true", help="under bfloat16 autocast")
    parser.add_argument("--trace", type=Path, help="write the Chrome trace here")
    parser.add_argument("--peak-flops", type=float, help="peak FLOP/s of the device (instead of table/measurement)")
    parser.add_argument("--peak-bandwidth", type=float, help="peak memory bytes/s of the device")
    parser.add_argument("--json", type=Path, help="also write the table to this JSON file")
    args = parser.parse_args(argv)

    try:
        prepare_outputs({"--trace": args.trace, "--json": args.json})
        result = profile(args)
    except ToolError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    with exit_if_missing():  # the packages this imports on use
        sys.exit(main())

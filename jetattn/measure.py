"""What the bench and the profiler measure with: JetClass-shaped batches without data files, one inference call
or training step, rates timed in turns, peak memory on a CPU or a GPU, and bfloat16 inference."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import threading
import time
from collections.abc import Callable, Iterator

import torch
from torch import nn


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def jetclass_like_batch(
    batch_size: int, length: int = 128, input_dim: int = 17, seed: int = 0, multiplicity: int | None = None
):
    """Padded jets whose multiplicities follow JetClass roughly (mean ≈ 45, tail to 128), massless particles
    in a cone of R ≈ 0.8 around a 500–1000 GeV jet; features are standard normal on real particles.
    ``multiplicity``: every jet has exactly that many particles instead."""
    g = torch.Generator().manual_seed(seed)
    if multiplicity is None:
        n = (torch.distributions.Gamma(4.0, 4.0 / 45.0).sample((batch_size,))).round().clamp(5, length).long()
    else:
        n = torch.full((batch_size,), multiplicity)
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
            if device.type == "cuda":  # CUDA events: the GPU's time, not the launch queue's
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                step()
                end.record()
                end.synchronize()
                seconds[name] += start.elapsed_time(end) / 1000
                continue
            start = time.perf_counter()
            step()
            seconds[name] += time.perf_counter() - start
    return {name: batch_size * repeats / total for name, total in seconds.items()}


def release_freed_memory() -> None:
    """Hand memory that glibc keeps after ``free`` back to the system (no-op where there is no glibc)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory (MB) of the block above what was in use when it started: CUDA's allocator statistics on a
    GPU; on a CPU the resident set size, sampled every millisecond from /proc (Linux)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak_mb = device, None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
            return self
        release_freed_memory()  # else the block reuses what earlier blocks freed and the RSS does not show it
        self.start = self._rss()
        self.samples, self.running = [self.start], True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mb = (torch.cuda.max_memory_allocated(self.device) - self.start) / 2**20
            return
        self.running = False
        self.thread.join()
        self.peak_mb = (max(self.samples) - self.start) / 2**20

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while self.running:
            self.samples.append(self._rss())
            time.sleep(0.001)


def tensor_peak_mb(step: Callable[[], None]) -> float:
    """Peak of the memory held by tensors during one call of ``step``, above what was held when it began (MB),
    from torch.profiler's memory timeline: on a CPU, what CUDA's allocator statistics give on a GPU, without the C
    library's heap slack that the resident set size also counts."""
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action, MemoryProfile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        step()
    live = peak = 0
    for _, action, _, size in MemoryProfile(prof.profiler.kineto_results).timeline:
        if action == Action.CREATE:
            live += size
        elif action == Action.DESTROY:
            live -= size
        peak = max(peak, live)
    return peak / 2**20


@contextlib.contextmanager
def autocast_inference(model: nn.Module, device: torch.device | str) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode, without autograd, under bfloat16 autocast on ``device`` (CPU or CUDA):
    matmuls in bfloat16, reductions and normalisations where autocast keeps them in float32."""
    device = torch.device(device)
    model.eval()
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
        yield model

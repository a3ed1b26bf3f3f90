"""The worker pool of the generator: tasks (a chunk of one class each) run on spawned processes, with one progress
bar over all of them, and the random streams each task draws from its own entropy."""

import multiprocessing as mp
import queue
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jetattn.datasets import signals


@dataclass(frozen=True)
class Task:
    """One chunk of one class of a recipe (`generate.Recipe`): a Pythia run of its own, whose selected jets (or
    events) fill `outputs` in order."""

    recipe: Any
    class_index: int
    chunk: int
    seed: int
    outputs: tuple[tuple[Path, int], ...]  # (file, number of jets or events)

    @property
    def class_name(self) -> str:
        return self.recipe.classes[self.class_index]

    @property
    def num_entries(self) -> int:
        return sum(n for _, n in self.outputs)

    def seeds(self) -> tuple[int, np.random.Generator]:
        """Pythia's seed and the detector's generator, both from (seed, recipe, class, chunk)."""
        return task_seeds(self.seed, self.recipe.seed_stream, self.class_index, self.chunk)


def task_seeds(*entropy: int) -> tuple[int, np.random.Generator]:
    """Pythia's seed (1 .. 900 000 000) and a numpy generator (the detector's), both drawn from ``entropy``:
    one task's, so that every task of a run gets its own, reproducible streams."""
    sequence = np.random.SeedSequence(list(entropy))
    pythia_seed = int(sequence.generate_state(1)[0]) % 900_000_000 + 1
    return pythia_seed, np.random.default_rng(sequence.spawn(1)[0])


class Progress:
    """One tqdm bar over all jets (or events), with those made per class in its postfix."""

    def __init__(self, classes: list[str], total: int, unit: str = "jet"):
        from tqdm import tqdm

        self.made = dict.fromkeys(classes, 0)
        self.bar = tqdm(total=total, unit=unit, desc="generating", dynamic_ncols=True)

    def update(self, name: str, n: int) -> None:
        self.made[name] += n
        self.bar.set_postfix_str(" ".join(f"{k}={v}" for k, v in self.made.items()), refresh=False)
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def worker_loop(tasks, messages, run_task) -> None:
    """A worker process: takes ``(index, task)`` from ``tasks`` until None, runs ``run_task(task, report)`` and
    reports on ``messages``: ``("progress", class, jets)``, ``("done", index, result)`` or
    ``("failed", index, traceback)``."""
    import traceback

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it kills the workers
    signals.stop_with_parent()  # SIGTERM, SIGHUP or the parent's death (even SIGKILL): deletes its open file, exits
    while (item := tasks.get()) is not None:
        index, task = item
        try:
            result = run_task(task, lambda name, n: messages.put(("progress", name, n)))
        except Exception:
            messages.put(("failed", index, traceback.format_exc()))
            return
        messages.put(("done", index, result))


def run_tasks(tasks: list, workers: int, progress: Progress, run_task: Callable) -> list[dict]:
    """``run_task(task, report)`` for every task on `workers` spawned processes (in this one for 1); its results
    in task order. `run_task` must be a module-level function (the workers import it by name)."""
    if workers == 1:
        return [run_task(task, lambda name, n: progress.update(name, n)) for task in tasks]
    # Plain processes rather than multiprocessing.Pool: on Ctrl-C the workers are killed outright, and nothing
    # here waits on a lock that a killed worker may hold (Pool.terminate can hang on its task queue's lock).
    context = mp.get_context("spawn")  # a fresh interpreter per worker: Pythia and FastJet are not fork-safe
    signals.start_resource_tracker()  # before the queues need it, so that it outlives a hangup
    task_queue, messages = context.Queue(), context.Queue()
    task_queue.cancel_join_thread()  # never block the parent's exit on tasks nobody will read
    for item in enumerate(tasks):
        task_queue.put(item)
    for _ in range(workers):
        task_queue.put(None)
    processes = [
        context.Process(target=worker_loop, args=(task_queue, messages, run_task), daemon=True) for _ in range(workers)
    ]
    try:
        for process in processes:
            process.start()
        results = _collect(processes, messages, len(tasks), progress)
        for process in processes:
            process.join()
        return results
    except BaseException:
        for process in processes:
            if process.is_alive():
                process.kill()  # stops the workers mid-file; the caller deletes their temporary files
        for process in processes:
            if process.pid is not None:
                process.join()
        raise


def _collect(processes: list, messages, num_tasks: int, progress: Progress) -> list[dict]:
    """The workers' results in task order, their progress passed on to `progress`; stops at the first worker
    that fails or dies."""
    results: list[dict | None] = [None] * num_tasks
    remaining = num_tasks
    while remaining:
        try:
            kind, *payload = messages.get(timeout=1.0)
        except queue.Empty:
            codes = [process.exitcode for process in processes]
            crashed = [code for code in codes if code not in (None, 0)]
            if crashed:  # stop at once: the other workers' jets would be deleted anyway
                signal_note = f" (signal {-crashed[0]})" if crashed[0] < 0 else ""
                raise RuntimeError(
                    f"a generator worker died with exit code {crashed[0]}{signal_note}; "
                    "nothing was kept, rerun to start again"
                ) from None
            if not any(process.is_alive() for process in processes):
                raise RuntimeError(f"generator workers exited with {codes} before finishing") from None
            continue
        if kind == "progress":
            progress.update(*payload)
        elif kind == "done":
            results[payload[0]] = payload[1]
            remaining -= 1
        else:
            raise RuntimeError(f"a generator worker failed:\n{payload[1]}")
    return results

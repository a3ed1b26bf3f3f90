"""Resonant di-Higgs events with Pythia 8 and FastJet: gg -> H -> hh -> bb̄bb̄ against QCD multijets and tt̄.

An event is kept when its two leading anti-kT R = 0.8 jets (clustered from the detector model's measured
particles, as the jet datasets are) both have pT > PT_MIN_FRACTION * M and |eta| < ABS_ETA_MAX, and their
invariant mass lies in MJJ_WINDOW * M, M being the heavy scalar's mass. Each kept event stores the constituents
of both jets and the reconstructed objects (jet 1, jet 2, the di-jet system). The batch machinery (event record in
numpy, detector model, clustering, worker pool, part files merged and shuffled) is the jet generator's
(`jetattn.datasets.generate`). docs/generator.md lists the settings, branches, cross-sections and speed.
"""

import json
import math
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np

from jetattn.datasets import generate as gen
from jetattn.datasets.processes import COMMON_SETTINGS, DatasetSpec
from jetattn.datasets.writer import TreeWriter, merge_shuffled, temp_path

NAME = "DiHiggs"
JET_RADIUS = 0.8
MAX_PARTICLES = 100  # constituents stored per jet, the leading ones in pT
ABS_ETA_MAX = 2.5
PT_MIN_FRACTION = 0.3  # both leading jets above 0.3 M: 300 GeV for M = 1 TeV
MJJ_WINDOW = (0.6, 1.2)  # di-jet mass window, in units of M
# the background's pT-hat threshold: 0.8 of the jet threshold, so that few selected events come from below it
PTHAT_FRACTION = 0.8 * PT_MIN_FRACTION
WIDTH_FRACTION = 0.01  # the heavy scalar is made narrow (1 % of M): Pythia's default couplings make it ~M wide
RECORDS = ("jet1_part", "jet2_part", "obj")
LABELS = ("label_signal", "label_background")
OBJECTS = ("jet1", "jet2", "dijet")
FLUSH_EVENTS = 500
REPORT_EVENTS = 10
BLOCK_EVENTS = 5000  # events per shuffled block of the merge (about 100 MB)
_SEED_STREAM = 8  # keeps the seeds of DiHiggs tasks apart from those of the jet datasets (0, 1, 2)


@dataclass(frozen=True)
class Process:
    """One Pythia process of the sample: `code` is the event's `process` branch."""

    name: str
    code: int
    signal: bool
    settings: Callable[[float], tuple[str, ...]]  # heavy-scalar mass (GeV) -> readString lines


def _signal_settings(mass: float) -> tuple[str, ...]:
    return (
        "Higgs:useBSM = on",
        "HiggsBSM:gg2H2 = on",
        f"35:m0 = {mass}",
        f"35:mWidth = {WIDTH_FRACTION * mass}",
        "35:doForceWidth = on",
        "35:onMode = off",
        "35:onIfMatch = 25 25",
        "25:onMode = off",
        "25:onIfMatch = 5 -5",
    )


def _qcd_settings(mass: float) -> tuple[str, ...]:
    return ("HardQCD:all = on", f"PhaseSpace:pTHatMin = {PTHAT_FRACTION * mass}")


def _ttbar_settings(mass: float) -> tuple[str, ...]:
    return ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on", f"PhaseSpace:pTHatMin = {PTHAT_FRACTION * mass}")


PROCESSES = (
    Process("signal", 0, True, _signal_settings),
    Process("QCD", 1, False, _qcd_settings),
    Process("ttbar", 2, False, _ttbar_settings),
)


def pythia_settings(process: Process, mass: float, sqrt_s: float, seed: int) -> list[str]:
    """All `readString` lines for one process and one random seed."""
    return [
        f"Beams:eCM = {sqrt_s}",
        *COMMON_SETTINGS,
        *process.settings(mass),
        "Random:setSeed = on",
        f"Random:seed = {seed}",
    ]


def _four_vector_columns(p4: np.ndarray) -> dict[str, np.ndarray]:
    """(n, 4) px, py, pz, E  ->  pt, eta, phi, mass, energy (float32)."""
    pt, eta, phi = gen._pt_eta_phi(p4)
    mass = np.sqrt(np.maximum(p4[:, 3] ** 2 - np.sum(p4[:, :3] ** 2, axis=1), 0.0))
    return {
        name: value.astype(np.float32)
        for name, value in {"pt": pt, "eta": eta, "phi": phi, "mass": mass, "energy": p4[:, 3]}.items()
    }


class _EventMaker:
    """Turns batches of events into selected events: both jets' constituents and the three objects."""

    def __init__(self, mass: float, particles, rng: np.random.Generator):
        self.pt_min = PT_MIN_FRACTION * mass
        self.mjj_range = (MJJ_WINDOW[0] * mass, MJJ_WINDOW[1] * mass)
        spec = DatasetSpec(NAME, JET_RADIUS, (self.pt_min, math.inf), ABS_ETA_MAX, False, ())
        self.jets = gen._JetMaker(spec, None, particles, rng)  # its detector pass and clustering

    def events(self, events: "gen._EventBatch") -> Iterator[tuple[int, dict]]:
        """(position of the event in the batch, its columns) for each selected event."""
        counts, measured = self.jets._measure(events)
        jets_p4, jets_constituents = self.jets._cluster(events, counts, measured)
        for event in range(events.num_events):
            selected = self._select(jets_p4[event], jets_constituents[event], measured)
            if selected is not None:
                yield event, selected

    def _select(self, jets_p4: np.ndarray, constituents: list, measured: dict) -> dict | None:
        if len(jets_p4) < 2:
            return None
        leading = np.argsort(-np.hypot(jets_p4[:, 0], jets_p4[:, 1]))[:2]
        p4 = jets_p4[leading].astype(np.float64)
        objects = _four_vector_columns(np.vstack([p4, p4.sum(axis=0)]))  # jet 1, jet 2, di-jet
        if objects["pt"][:2].min() < self.pt_min or np.abs(objects["eta"][:2]).max() >= ABS_ETA_MAX:
            return None
        mjj = float(objects["mass"][2])
        if not self.mjj_range[0] <= mjj < self.mjj_range[1]:
            return None
        columns = {"obj": objects, "mjj": mjj}
        for j, (jet, jet_eta, jet_phi) in enumerate(
            zip(leading, objects["eta"][:2], objects["phi"][:2], strict=True), start=1
        ):
            members = constituents[jet]
            pt = np.hypot(measured["px"][members], measured["py"][members])
            kept = members[np.argsort(-pt)[:MAX_PARTICLES]]
            columns[f"jet{j}_part"] = gen._particle_columns(
                {k: v[kept] for k, v in measured.items()}, float(jet_eta), float(jet_phi)
            )
            columns[f"jet{j}_nparticles"] = len(members)
        return columns


def _jagged(rows: list[dict[str, np.ndarray]]) -> ak.Array:
    counts = [len(next(iter(row.values()))) for row in rows]
    return ak.zip({name: ak.unflatten(np.concatenate([row[name] for row in rows]), counts) for name in rows[0]})


def _columns(process: Process, events: list[dict]) -> dict:
    n = len(events)
    columns: dict = {record: _jagged([event[record] for event in events]) for record in RECORDS}
    for j in (1, 2):
        columns[f"jet{j}_nparticles"] = np.array([e[f"jet{j}_nparticles"] for e in events], dtype=np.int32)
    columns["mjj"] = np.array([event["mjj"] for event in events], dtype=np.float32)
    columns["process"] = np.full(n, process.code, dtype=np.int32)
    columns["label_signal"] = np.full(n, process.signal)
    columns["label_background"] = np.full(n, not process.signal)
    return columns


# ---------------------------------------------------------------------------------------------------------------
# One chunk of one process, run inside a worker


@dataclass(frozen=True)
class _Task:
    process_index: int
    chunk: int
    seed: int
    sqrt_s: float
    mass: float
    outputs: tuple[tuple[Path, int], ...]  # (file, number of events), filled in this order

    @property
    def process(self) -> Process:
        return PROCESSES[self.process_index]

    @property
    def num_events(self) -> int:
        return sum(n for _, n in self.outputs)

    def seeds(self) -> tuple[int, np.random.Generator]:
        return gen.task_seeds(self.seed, _SEED_STREAM, self.process_index, self.chunk)


def _make_pythia(task: _Task):
    pythia_seed, _ = task.seeds()
    return gen.start_pythia(pythia_settings(task.process, task.mass, task.sqrt_s, pythia_seed), task.process.name)


def _event_stream(task: _Task, pythia=None) -> Iterator[tuple[int, dict]]:
    """(events generated so far, columns) for each selected event of the task's process, without end."""
    _, rng = task.seeds()
    pythia = pythia or _make_pythia(task)
    maker = _EventMaker(task.mass, gen._ParticleTable(pythia.particleData), rng)
    generated = 0
    while True:
        batch = gen._EventBatch.from_awkward(pythia.nextBatch(gen.EVENTS_PER_BATCH))
        for position, columns in maker.events(batch):
            yield generated + position + 1, columns
        generated += batch.num_events


def _run_task(task: _Task, report: Callable[[str, int], None]) -> dict:
    """Generate and write the task's events; returns the events kept and generated (up to the last kept one),
    Pythia's cross-section (pb), seconds and the peak memory (MB)."""
    start = time.perf_counter()
    pythia = _make_pythia(task)
    stream = _event_stream(task, pythia)
    generated = 0
    for path, n_events in task.outputs:
        with TreeWriter(path) as writer:
            pending: list[dict] = []
            unreported = 0
            for made in range(n_events):
                generated, columns = next(stream)
                pending.append(columns)
                unreported += 1
                if unreported == REPORT_EVENTS:
                    report(task.process.name, unreported)
                    unreported = 0
                if len(pending) == FLUSH_EVENTS or made == n_events - 1:
                    writer.extend(_columns(task.process, pending))
                    pending = []
            report(task.process.name, unreported)
    return {
        "process": task.process.name,
        "events": task.num_events,
        "generated": generated,
        "sigma_pb": pythia.infoPython().sigmaGen() * 1e9,
        "seconds": time.perf_counter() - start,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# ---------------------------------------------------------------------------------------------------------------
# Public interface


def cross_sections(results: list[dict]) -> dict[str, dict[str, float]]:
    """Per process: Pythia's cross-section (pb; the mean over chunks weighted by their events), the selection
    efficiency, events kept, and `weight`, the cross-section in pb each kept event stands for. The signal's
    weights are per 1 pb of gg -> H -> hh -> bb̄bb̄ before selection: Pythia's couplings of the heavy scalar
    are placeholders, so its own cross-section means nothing."""
    table = {}
    for process in PROCESSES:
        rows = [r for r in results if r["process"] == process.name]
        if not rows:
            continue
        generated = sum(r["generated"] for r in rows)
        kept = sum(r["events"] for r in rows)
        sigma = sum(r["sigma_pb"] * r["generated"] for r in rows) / generated
        normalisation = 1.0 if process.signal else sigma
        table[process.name] = {
            "sigma_pb": sigma,
            "efficiency": kept / generated,
            "events": kept,
            "weight": normalisation / generated,
        }
    return table


def _check_arguments(
    num_events: int, split: tuple[float, float, float], workers: int | None, sqrt_s: float, mass: float
) -> None:
    if isinstance(num_events, bool) or not isinstance(num_events, int) or num_events < 2:
        raise ValueError(f"num_events must be an integer of at least 2 (events per class), got {num_events!r}")
    gen._check_arguments("TopLandscape", num_events, split, workers, sqrt_s)  # the checks every dataset shares
    if not 2 * 125.0 < mass < sqrt_s:
        raise ValueError(f"mass must lie between 250 GeV (two Higgs bosons) and sqrt_s, got {mass!r}")


def _plan(
    root: Path, num_events: int, seed: int, workers: int, split: tuple[float, float, float], sqrt_s: float, mass: float
) -> list[_Task]:
    """Signal: num_events; background: num_events, half QCD and half tt̄, each in chunks and splits."""
    per_process = [num_events, num_events - num_events // 2, num_events // 2]
    tasks = []
    for index, (process, n) in enumerate(zip(PROCESSES, per_process, strict=True)):
        n_chunks = gen._num_chunks(n, len(PROCESSES), workers)
        for chunk in range(n_chunks):
            chunk_events = n // n_chunks + (chunk < n % n_chunks)
            outputs = tuple(
                (root / ".parts" / f"{process.name}_{chunk:03d}_{split_name}.root", count)
                for split_name, count in zip(
                    ("train", "val", "test"), gen._split_counts(chunk_events, list(split)), strict=True
                )
                if count
            )
            tasks.append(_Task(index, chunk, seed, sqrt_s, mass, outputs))
    return tasks


def generate_dihiggs(
    outdir: Path,
    num_events: int,
    mass: float = 1000.0,
    seed: int = 1,
    workers: int | None = None,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    sqrt_s: float = 14000.0,
) -> Path:
    """Generate `num_events` signal and `num_events` background events (half QCD, half tt̄) under
    outdir/DiHiggs/{train,val,test}_file.root, signal and background shuffled together, and return the folder.
    `mass`: the heavy scalar's mass (GeV). The cross-sections, efficiencies and weights go to
    outdir/DiHiggs/cross_sections.json (and stderr). A fixed seed (and worker count) reproduces the same events.
    """
    _check_arguments(num_events, split, workers, sqrt_s, mass)
    root = Path(outdir) / NAME
    gen._check_writable(root)
    gen._require_generators()

    workers = workers or os.cpu_count() or 1
    tasks = _plan(root, num_events, seed, workers, split, sqrt_s, mass)
    staging = root / ".parts"
    temporaries = [temp_path(path) for task in tasks for path, _ in task.outputs]
    progress = gen._Progress([p.name for p in PROCESSES], sum(task.num_events for task in tasks), unit="event")
    try:
        staging.mkdir(exist_ok=True)
        results = gen._run_tasks(tasks, min(workers, len(tasks)), progress, _run_task)
        table = cross_sections(results)
        weights = np.array([table[p.name]["weight"] for p in PROCESSES])

        def add_weight(block: dict) -> dict:
            return {**block, "weight": weights[block["process"]].astype(np.float32)}

        rng = np.random.default_rng(np.random.SeedSequence([seed, _SEED_STREAM, 7919]))
        for split_name in ("train", "val", "test"):
            parts = [path for task in tasks for path, _ in task.outputs if path.name.endswith(f"_{split_name}.root")]
            if parts:
                merge_shuffled(parts, root / f"{split_name}_file.root", RECORDS, rng, BLOCK_EVENTS, add_weight)
        summary = {"mass": mass, "sqrt_s": sqrt_s, "processes": table}
        (root / "cross_sections.json").write_text(json.dumps(summary, indent=2) + "\n")
        shutil.rmtree(staging)
    except BaseException:
        gen.remove_unfinished(temporaries, [root], staging)
        raise
    finally:
        progress.close()
    for name, row in table.items():
        print(
            f"{name}: sigma {row['sigma_pb']:.4g} pb, selection efficiency {row['efficiency']:.3g}, "
            f"{row['events']} events",
            file=sys.stderr,
        )
    peak_mb = max(result["peak_mb"] for result in results)
    print(
        f"{NAME}: {sum(r['events'] for r in results)} events written under {root}; "
        f"peak memory per worker {peak_mb:.0f} MB",
        file=sys.stderr,
    )
    return root


def benchmark(num_events: int = 50, mass: float = 1000.0, seed: int = 1) -> dict[str, float]:
    """Selected events per second per core of each process, one process: events over the CPU time spent making
    them (Pythia's initialisation excluded)."""
    gen._require_generators()
    rates = {}
    for index, process in enumerate(PROCESSES):
        task = _Task(index, 0, seed, 14000.0, mass, ())
        stream = _event_stream(task, _make_pythia(task))
        start = time.process_time()
        for _ in range(num_events):
            next(stream)
        rates[process.name] = num_events / (time.process_time() - start)
    return rates

"""Resonant di-Higgs events with Pythia 8 and FastJet: gg -> H -> hh -> bb̄bb̄ against QCD multijets and tt̄.

An event is kept when its two leading anti-kT R = 0.8 jets (clustered from the detector model's measured
particles, as the jet datasets are) both have pT > PT_MIN_FRACTION * M and |eta| < ABS_ETA_MAX, and their
invariant mass lies in MJJ_WINDOW * M, M being the heavy scalar's mass. Each kept event stores the constituents
of both jets and the reconstructed objects (jet 1, jet 2, the di-jet system). `DiHiggs` is the recipe that
`generate.generate` runs, with the stages the jet datasets use (events, detector, jets, the worker pool, part
files merged and shuffled). docs/generator.md lists the settings, branches, cross-sections and speed.
"""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from jetattn.datasets.detector import measure_events
from jetattn.datasets.events import EventBatch, ParticleTable, pt_eta_phi
from jetattn.datasets.generate import generate
from jetattn.datasets.jets import AntiKt, jagged, particle_columns
from jetattn.datasets.processes import COMMON_SETTINGS

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
    pt, eta, phi = pt_eta_phi(p4)
    mass = np.sqrt(np.maximum(p4[:, 3] ** 2 - np.sum(p4[:, :3] ** 2, axis=1), 0.0))
    return {
        name: value.astype(np.float32)
        for name, value in {"pt": pt, "eta": eta, "phi": phi, "mass": mass, "energy": p4[:, 3]}.items()
    }


class EventSelection:
    """The selected events of one process, batch by batch: both jets' constituents and the three objects."""

    def __init__(self, mass: float, particles: ParticleTable, rng: np.random.Generator, name: str):
        self.pt_min = PT_MIN_FRACTION * mass
        self.mjj_range = (MJJ_WINDOW[0] * mass, MJJ_WINDOW[1] * mass)
        self.particles = particles
        self.rng = rng
        # FastJet hands over only the jets above 0.9 of the threshold: fewer to convert, none lost
        self.anti_kt = AntiKt(JET_RADIUS, 0.9 * self.pt_min, name)

    def select(self, events: EventBatch) -> Iterator[tuple[int, dict]]:
        """(position of the event in the batch, its columns) for each selected event."""
        counts, measured = measure_events(events, self.particles, self.rng, "simple")
        jets_p4, jets_constituents = self.anti_kt.cluster(counts, measured)
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
            columns[f"jet{j}_part"] = particle_columns(
                {k: v[kept] for k, v in measured.items()}, float(jet_eta), float(jet_phi)
            )
            columns[f"jet{j}_nparticles"] = len(members)
        return columns


def _columns(process: Process, events: list[dict]) -> dict:
    n = len(events)
    columns: dict = {record: jagged([event[record] for event in events]) for record in RECORDS}
    for j in (1, 2):
        columns[f"jet{j}_nparticles"] = np.array([e[f"jet{j}_nparticles"] for e in events], dtype=np.int32)
    columns["mjj"] = np.array([event["mjj"] for event in events], dtype=np.float32)
    columns["process"] = np.full(n, process.code, dtype=np.int32)
    columns["label_signal"] = np.full(n, process.signal)
    columns["label_background"] = np.full(n, not process.signal)
    return columns


def cross_sections(results: list[dict]) -> dict[str, dict[str, float]]:
    """Per process, from the tasks' results (`generate.write_task`): Pythia's cross-section (pb; the mean over
    chunks weighted by their events), the selection efficiency, events kept, and `weight`, the cross-section in
    pb each kept event stands for. The signal's weights are per 1 pb of gg -> H -> hh -> bb̄bb̄ before
    selection: Pythia's couplings of the heavy scalar are placeholders, so its own cross-section means nothing."""
    table = {}
    for process in PROCESSES:
        rows = [r for r in results if r["class"] == process.name]
        if not rows:
            continue
        generated = sum(r["generated"] for r in rows)
        kept = sum(r["entries"] for r in rows)
        sigma = sum(r["sigma_pb"] * r["generated"] for r in rows) / generated
        normalisation = 1.0 if process.signal else sigma
        table[process.name] = {
            "sigma_pb": sigma,
            "efficiency": kept / generated,
            "events": kept,
            "weight": normalisation / generated,
        }
    return table


# ---------------------------------------------------------------------------------------------------------------
# The recipe


@dataclass(frozen=True)
class DiHiggs:
    """The sample for a heavy scalar of `mass` (GeV) at `sqrt_s` (GeV): per class of `number` asked for, that
    many signal events and as many background events, half QCD and half tt̄."""

    mass: float = 1000.0
    sqrt_s: float = 14000.0

    name: ClassVar[str] = NAME
    unit: ClassVar[str] = "event"
    classes: ClassVar[tuple[str, ...]] = tuple(process.name for process in PROCESSES)
    seed_stream: ClassVar[int] = 8  # apart from those of the jet datasets (0, 1, 2)
    min_entries: ClassVar[int] = 2  # one background event each for QCD and tt̄
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    merged: ClassVar[bool] = True
    records: ClassVar[tuple[str, ...]] = RECORDS
    merge_block: ClassVar[int] = 5000  # events per shuffled block of the merge (about 100 MB)
    shuffle_entropy: ClassVar[tuple[int, ...]] = (8, 7919)
    report_entries: ClassVar[int] = 10
    flush_entries: ClassVar[int] = 500

    def folder(self, outdir: Path) -> Path:
        return outdir / NAME

    def merged_name(self, split: str) -> str:
        return f"{split}_file.root"

    def entries_per_class(self, number: int) -> list[int]:
        return [number, number - number // 2, number // 2]

    def check(self) -> None:
        if not 2 * 125.0 < self.mass < self.sqrt_s:
            raise ValueError(f"mass must lie between 250 GeV (two Higgs bosons) and sqrt_s, got {self.mass!r}")

    def pythia_settings(self, class_index: int, seed: int) -> list[str]:
        return pythia_settings(PROCESSES[class_index], self.mass, self.sqrt_s, seed)

    def selection(self, class_index: int, particles: ParticleTable, rng: np.random.Generator) -> EventSelection:
        return EventSelection(self.mass, particles, rng, PROCESSES[class_index].name)

    def columns(self, class_index: int, events: list[dict]) -> dict:
        return _columns(PROCESSES[class_index], events)

    def finish(self, root: Path, results: list[dict], merge: Callable) -> list[str]:
        """The merged files, each event weighted by its process's cross-section; cross_sections.json."""
        table = cross_sections(results)
        weights = np.array([table[p.name]["weight"] for p in PROCESSES])

        def add_weight(block: dict) -> dict:
            return {**block, "weight": weights[block["process"]].astype(np.float32)}

        merge(add_weight)
        summary = {"mass": self.mass, "sqrt_s": self.sqrt_s, "processes": table}
        (root / "cross_sections.json").write_text(json.dumps(summary, indent=2) + "\n")
        return [
            f"{name}: sigma {row['sigma_pb']:.4g} pb, selection efficiency {row['efficiency']:.3g}, "
            f"{row['events']} events"
            for name, row in table.items()
        ]


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
    return generate(DiHiggs(mass, sqrt_s), outdir, num_events, seed, workers, split)

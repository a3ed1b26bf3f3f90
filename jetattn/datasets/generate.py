"""Offline jet datasets from Pythia 8 and FastJet in the JetClass, TopLandscape and QuarkGluon layouts.

Each worker process runs one Pythia per (class, chunk) and reads whole batches of events into numpy through
`Pythia.nextBatch` (no per-particle Python). The detector model measures every visible final-state particle of
the batch at once, FastJet's vectorised interface clusters the measured particles, and the selected,
truth-matched jets stream to ROOT files written under temporary names.
docs/generator.md lists the processes, the truth matching and the measured speed.
"""

import contextlib
import math
import multiprocessing as mp
import os
import queue
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import awkward as ak
import numpy as np

from jetattn.datasets import signals
from jetattn.datasets.detector import DETECTORS, measure
from jetattn.datasets.processes import DATASETS, DatasetSpec, JetClassSpec, pythia_settings
from jetattn.datasets.writer import TMP_SUFFIX, TreeWriter, merge_shuffled, temp_path

MAX_PARTICLES = 128
RECORDS = ("part", "subjet", "aux_genpart", "aux_hadron")
EVENTS_PER_BATCH = 40
FLUSH_JETS = 1000  # jets held in memory before they are appended to the file
REPORT_JETS = 20  # progress messages to the parent every this many jets
MAX_JETS_PER_FILE = 100_000  # as in the official JetClass files
MIN_JETS_PER_CHUNK = 1000  # a Pythia initialisation (~1 s) costs about 10 % of a chunk this small
# JetClass-style files per class and split (--files-per-class overrides): 4 below 8,000 jets per class, else 8 of at
# least MIN_JETS_PER_FILE; see default_files_per_class and docs/benchmarks.md (the loader)
FILES_PER_CLASS_SMALL, FILES_PER_CLASS_LARGE, MIN_JETS_PER_FILE = 4, 8, 1000
TASKS_PER_WORKER = 4  # several chunks per worker, so that the slow classes do not leave a long tail

_NEUTRINOS = np.array([12, 14, 16])
_RESONANCES = (6, 23, 24, 25)
_LEPTONS = (11, 13, 15)
_VISIBLE_PARTONS = (1, 2, 3, 4, 5, 21)
# weakly decaying heavy-flavour hadrons: their flight distance is what displaced tracks come from
_B_HADRONS = np.array([511, 521, 531, 541, 5122, 5132, 5232, 5332])
_C_HADRONS = np.array([411, 421, 431, 4122, 4132, 4232, 4332])
_INSTALL_HINT = "event generation needs Pythia 8 and FastJet: pip install -e .[generate]"


def _require_generators() -> None:
    try:
        import fastjet  # noqa: F401
        import pythia8mc  # noqa: F401
    except ImportError as err:
        raise ImportError(f"{_INSTALL_HINT} ({err})") from err


# ---------------------------------------------------------------------------------------------------------------
# Event record in numpy


@dataclass
class _EventBatch:
    """A batch of Pythia events, flattened: per-event indices i map to global offsets[event] + i."""

    offsets: np.ndarray  # (n_events + 1,)
    pid: np.ndarray
    status: np.ndarray
    mother1: np.ndarray
    daughter1: np.ndarray
    daughter2: np.ndarray
    p4: np.ndarray  # (n, 4) px, py, pz, E in GeV
    mass: np.ndarray
    vertex: np.ndarray  # (n, 3) production vertex in mm

    @classmethod
    def from_awkward(cls, batch) -> "_EventBatch":
        particles = batch.prt
        counts = ak.to_numpy(ak.num(particles))
        flat = ak.flatten(particles)
        momentum = flat.p
        vertex = flat.vProd  # None where Pythia set no vertex, i.e. at the origin
        column = ak.to_numpy
        return cls(
            offsets=np.concatenate([[0], np.cumsum(counts)]),
            pid=column(flat.id),
            status=column(flat.status),
            mother1=column(flat.mother1),
            daughter1=column(flat.daughter1),
            daughter2=column(flat.daughter2),
            p4=np.stack([column(momentum[c]) for c in ("px", "py", "pz", "e")], axis=1),
            mass=column(flat.m),
            vertex=np.stack([column(ak.fill_none(vertex[c], 0.0)) for c in ("px", "py", "pz")], axis=1),
        )

    @property
    def num_events(self) -> int:
        return len(self.offsets) - 1


def _pt_eta_phi(p4: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pt = np.hypot(p4[..., 0], p4[..., 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(p4[..., 2] / pt)
    return pt, eta, np.arctan2(p4[..., 1], p4[..., 0])


def _rapidity(p4: np.ndarray) -> float:
    return 0.5 * math.log((p4[3] + p4[2]) / (p4[3] - p4[2]))


def _wrap_phi(dphi: np.ndarray) -> np.ndarray:
    return (dphi + np.pi) % (2 * np.pi) - np.pi


def _delta_r(eta1, phi1, eta2, phi2) -> np.ndarray:
    return np.hypot(eta1 - eta2, _wrap_phi(phi1 - phi2))


# ---------------------------------------------------------------------------------------------------------------
# Truth: resonances and their decay products, hard partons, heavy-flavour hadrons (all indices global)


class _Truth:
    """Truth objects of one event: index arithmetic on the numpy event record."""

    def __init__(self, events: _EventBatch, event: int):
        self.events = events
        self.start = events.offsets[event]
        self.stop = events.offsets[event + 1]

    def _global(self, local: int) -> int:
        return self.start + local

    def bottom_copy(self, i: int) -> int:
        ev = self.events
        while ev.daughter1[i] > 0 and ev.daughter1[i] == ev.daughter2[i]:
            child = self._global(ev.daughter1[i])
            if ev.pid[child] != ev.pid[i]:
                break
            i = child
        return i

    def decay_products(self, i: int) -> list[int]:
        """Visible decay products (quarks, gluons, charged leptons) of resonance i, through W/Z/t decays."""
        ev = self.events
        products = []
        for local in range(ev.daughter1[i], ev.daughter2[i] + 1):
            d = self._global(local)
            pid = abs(ev.pid[d])
            if pid in _RESONANCES:
                products += self.decay_products(self.bottom_copy(d))
            elif pid in _VISIBLE_PARTONS or pid in _LEPTONS:
                products.append(d)
        return products

    def resonances(self, pids: tuple[int, ...]) -> list[int]:
        """Decaying copies of the resonances with |pid| in pids."""
        ev = self.events
        abs_pid = np.abs(ev.pid[self.start : self.stop])
        found = []
        for i in self.start + np.flatnonzero(np.isin(abs_pid, pids)):
            d1 = ev.daughter1[i]
            if d1 > 0 and ev.pid[self._global(d1)] != ev.pid[i]:
                found.append(int(i))
        return found

    def hard_partons(self, pids: tuple[int, ...]) -> list[int]:
        ev = self.events
        window = slice(self.start, self.stop)
        hard = (np.abs(ev.status[window]) == 23) & np.isin(np.abs(ev.pid[window]), pids)
        return [int(i) for i in self.start + np.flatnonzero(hard)]

    def heavy_hadrons(self) -> tuple[np.ndarray, np.ndarray]:
        """Weakly decaying b and c hadrons: global indices and proper decay lengths c*tau = L m / p (mm).

        L runs from where the hadron was made (before any B0/Bs oscillation, which Pythia books as a
        1 -> 1 decay into the partner) to its decay vertex, the production vertex of its first daughter."""
        ev = self.events
        abs_pid = np.abs(ev.pid[self.start : self.stop])
        candidates = self.start + np.flatnonzero(np.isin(abs_pid, _B_HADRONS) | np.isin(abs_pid, _C_HADRONS))
        indices, ctau = [], []
        for i in candidates:
            d1 = ev.daughter1[i]
            if d1 <= 0 or abs(ev.pid[self._global(d1)]) == abs(ev.pid[i]):
                continue  # not decayed, or oscillated: counted through its partner
            origin = i
            while abs(ev.pid[self._global(ev.mother1[origin])]) == abs(ev.pid[i]):
                origin = self._global(ev.mother1[origin])
            length = np.linalg.norm(ev.vertex[self._global(d1)] - ev.vertex[origin])
            momentum = np.linalg.norm(ev.p4[i, :3])
            indices.append(int(i))
            ctau.append(length * ev.mass[i] / momentum)
        return np.array(indices, dtype=np.int64), np.array(ctau)


# ---------------------------------------------------------------------------------------------------------------
# Jets


class _ParticleTable:
    """Charge and particle/antiparticle status per PDG id from Pythia's particle data, cached: an event holds a
    few dozen species."""

    def __init__(self, particle_data):
        self.particle_data = particle_data
        self.cache: dict[int, tuple[float, bool]] = {}

    def _lookup(self, pid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        species, inverse = np.unique(pid, return_inverse=True)
        table = np.empty((len(species), 2))
        for k, s in enumerate(species.tolist()):
            if s not in self.cache:
                self.cache[s] = (float(self.particle_data.charge(s)), bool(self.particle_data.hasAnti(s)))
            table[k] = self.cache[s]
        return table[inverse, 0], table[inverse, 1].astype(bool)

    def charge(self, pid: np.ndarray) -> np.ndarray:
        return self._lookup(pid)[0]

    def conjugate(self, pid: np.ndarray) -> np.ndarray:
        """The charge-conjugate PDG ids (self-conjugate ones unchanged)."""
        return np.where(self._lookup(pid)[1], -pid, pid)


@dataclass
class _Jet:
    columns: dict[str, float]  # one value per jet
    particles: dict[str, np.ndarray]  # constituents, pT-ordered, at most MAX_PARTICLES
    subjets: dict[str, np.ndarray]  # exclusive-kT subjets of all constituents (observables.subjet_columns)
    genparts: dict[str, np.ndarray]
    hadrons: dict[str, np.ndarray]


def _particle_columns(measured: dict[str, np.ndarray], jet_eta: float, jet_phi: float) -> dict[str, np.ndarray]:
    p4 = np.stack([measured[c] for c in ("px", "py", "pz", "energy")], axis=1)
    _, eta, phi = _pt_eta_phi(p4)
    pid, charge = measured["pid"], measured["charge"]
    abs_pid = np.abs(pid)
    neutral = charge == 0
    lepton = (abs_pid == 11) | (abs_pid == 13)
    eta_sign = 1.0 if jet_eta >= 0 else -1.0  # ParT convention: deta counted away from the beam axis
    columns = {
        "px": p4[:, 0],
        "py": p4[:, 1],
        "pz": p4[:, 2],
        "energy": p4[:, 3],
        "deta": (eta - jet_eta) * eta_sign,
        "dphi": _wrap_phi(phi - jet_phi),
        "charge": charge,
        "isChargedHadron": ~neutral & ~lepton,
        "isNeutralHadron": neutral & (abs_pid != 22),
        "isPhoton": abs_pid == 22,
        "isElectron": abs_pid == 11,
        "isMuon": abs_pid == 13,
        "pid": pid,
        **{name: measured[name] for name in ("d0val", "d0err", "dzval", "dzerr")},
    }
    return {name: np.asarray(value, dtype=np.int32 if name == "pid" else np.float32) for name, value in columns.items()}


def _truth_columns(events: _EventBatch, indices: list[int] | np.ndarray, ctau: np.ndarray | None = None):
    indices = np.asarray(indices, dtype=np.int64)
    pt, eta, phi = _pt_eta_phi(events.p4[indices])
    columns = {"pt": pt, "eta": eta, "phi": phi, "mass": events.mass[indices]}
    if ctau is not None:
        columns["ctau"] = ctau
    columns = {name: value.astype(np.float32) for name, value in columns.items()}
    columns["pid"] = events.pid[indices].astype(np.int32)
    return columns


class _JetMaker:
    """Turns batches of events into selected, truth-matched jets of one class."""

    def __init__(
        self,
        dataset: DatasetSpec,
        cls: JetClassSpec,
        particles: _ParticleTable,
        rng: np.random.Generator,
        detector: str = "simple",
    ):
        import fastjet

        self.dataset = dataset
        self.cls = cls
        self.particles = particles
        self.rng = rng
        self.detector = detector
        self.jet_definition = fastjet.JetDefinition(fastjet.antikt_algorithm, dataset.radius)
        self._first_clustering = True

    def _measure(self, events: _EventBatch) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The measured objects of the whole batch (event by event) and how many each event has."""
        # Pythia can emit a final-state photon of exactly zero four-momentum, and a particle along the beam has
        # no pT: neither reaches a detector (the model would turn them into NaN, which crashes FastJet)
        measurable = (events.p4[:, 3] > 0) & (np.hypot(events.p4[:, 0], events.p4[:, 1]) > 0)
        visible = np.flatnonzero((events.status > 0) & ~np.isin(np.abs(events.pid), _NEUTRINOS) & measurable)
        p4, vertex = events.p4[visible], events.vertex[visible]
        particles = {
            "px": p4[:, 0],
            "py": p4[:, 1],
            "pz": p4[:, 2],
            "energy": p4[:, 3],
            "charge": self.particles.charge(events.pid[visible]),
            "pid": events.pid[visible],
            "xprod": vertex[:, 0],
            "yprod": vertex[:, 1],
            "zprod": vertex[:, 2],
        }
        event = np.searchsorted(events.offsets, visible, side="right") - 1
        measured = measure(particles, event, self.rng, self.detector)  # one call serves the whole batch
        return np.bincount(measured.pop("event"), minlength=events.num_events), measured

    def _cluster(self, events: _EventBatch, counts: np.ndarray, measured: dict[str, np.ndarray]):
        """anti-kT on the measured objects (`counts` per event): per event, jet four-momenta (n_jets, 4) and, per
        jet, the positions of its constituents in the `measured` arrays."""
        import fastjet

        bad = ~np.isfinite(np.stack([measured[k] for k in ("px", "py", "pz", "energy")])).all(axis=0)
        if bad.any():  # FastJet segfaults on NaN momenta: say which particle instead
            raise ValueError(
                f"detector model returned a non-finite four-momentum for {self.cls.name} particle(s) "
                f"with PDG id {sorted(set(measured['pid'][bad].tolist()))}"
            )
        momenta = ak.unflatten(
            ak.zip({"px": measured["px"], "py": measured["py"], "pz": measured["pz"], "E": measured["energy"]}), counts
        )
        with _quiet_stdout(self._first_clustering):  # FastJet prints its banner on first use
            sequence = fastjet.ClusterSequence(momenta, self.jet_definition)
            min_pt = 0.9 * self.dataset.pt_range[0]
            jets = sequence.inclusive_jets(min_pt)
            constituents = sequence.constituent_index(min_pt)
        self._first_clustering = False
        starts = np.concatenate([[0], np.cumsum(counts)])
        jets_p4 = [
            np.stack([ak.to_numpy(jet[c]) for c in ("px", "py", "pz", "E")], axis=-1).reshape(-1, 4) for jet in jets
        ]
        jets_constituents = [
            [starts[event] + ak.to_numpy(c) for c in constituents[event]] for event in range(events.num_events)
        ]
        return jets_p4, jets_constituents

    def _symmetrise_charge(self, events: _EventBatch) -> None:
        """Charge-conjugate a random half of the events. Pythia can only fix which W sign decays leptonically
        (W+ here), so without this every lepton in the semileptonic classes would be positive."""
        flip = self.rng.random(events.num_events) < 0.5
        flip_particle = np.repeat(flip, np.diff(events.offsets))
        events.pid[flip_particle] = self.particles.conjugate(events.pid[flip_particle])

    def jets(self, events: _EventBatch) -> Iterator[_Jet]:
        if self.cls.n_leptons:
            self._symmetrise_charge(events)
        counts, measured = self._measure(events)
        jets_p4, jets_constituents = self._cluster(events, counts, measured)
        for event in range(events.num_events):
            if len(jets_p4[event]) == 0:
                continue
            truth = _Truth(events, event)
            order = np.argsort(-np.hypot(jets_p4[event][:, 0], jets_p4[event][:, 1]))
            if self.dataset.leading_jets is not None:
                order = order[: self.dataset.leading_jets]
            elif self.cls.match == "leading":
                order = order[:2]
            targets = self._targets(truth)
            if self.cls.match != "leading" and not targets:
                continue
            hadrons = None
            for j in order:
                jet = self._build(jets_p4[event][j], measured, jets_constituents[event][j])
                if jet is None:
                    continue
                matched = self._match(events, jet, targets)
                if matched is None:
                    continue
                if hadrons is None:
                    hadrons = truth.heavy_hadrons()
                self._add_truth(events, jet, matched, hadrons)
                yield jet

    def _targets(self, truth: _Truth) -> list:
        cls = self.cls
        if cls.match == "resonance":
            targets = []
            for i in truth.resonances(cls.resonance):
                products = truth.decay_products(i)
                leptons = sum(abs(truth.events.pid[d]) in _LEPTONS for d in products)
                if leptons == cls.n_leptons:
                    targets.append([i, *products])
            return targets
        if cls.match == "parton":
            return [[i] for i in truth.hard_partons(cls.partons)]
        return []

    def _match(self, events: _EventBatch, jet: _Jet, targets: list) -> list[int] | None:
        """The truth object whose every member lies within the jet radius (an empty list for QCD jets)."""
        if self.cls.match == "leading":
            return []
        jet_eta, jet_phi = jet.columns["eta"], jet.columns["phi"]
        for target in targets:
            _, eta, phi = _pt_eta_phi(events.p4[target])
            if np.all(_delta_r(eta, phi, jet_eta, jet_phi) < self.dataset.radius):
                return target
        return None

    def _build(self, jet_p4: np.ndarray, measured: dict[str, np.ndarray], constituents: np.ndarray) -> _Jet | None:
        """Selection on the jet (the E-scheme sum of its measured constituents), then its branches."""
        jet_pt, jet_eta, jet_phi = _pt_eta_phi(jet_p4)
        low, high = self.dataset.pt_range
        position = abs(_rapidity(jet_p4)) if self.dataset.use_rapidity else abs(jet_eta)
        if not (low <= jet_pt < high and position < self.dataset.abs_eta_max):
            return None
        p4 = np.stack([measured[c][constituents] for c in ("px", "py", "pz", "energy")], axis=1)
        kept = constituents[np.argsort(-np.hypot(p4[:, 0], p4[:, 1]))[:MAX_PARTICLES]]
        particles = _particle_columns(
            {name: value[kept] for name, value in measured.items()}, float(jet_eta), float(jet_phi)
        )
        from jetattn.datasets.observables import subjet_columns, substructure

        mass = math.sqrt(max(jet_p4[3] ** 2 - jet_p4[0] ** 2 - jet_p4[1] ** 2 - jet_p4[2] ** 2, 0.0))
        columns = {
            "pt": jet_pt,
            "eta": jet_eta,
            "phi": jet_phi,
            "energy": jet_p4[3],
            "mass": mass,
            "nparticles": len(constituents),
            **substructure(*p4.T, R0=self.dataset.radius),
        }
        subjets = subjet_columns(*p4.T, float(jet_eta), float(jet_phi))
        return _Jet(columns, particles, subjets, {}, {})

    def _add_truth(self, events: _EventBatch, jet: _Jet, matched: list[int], hadrons) -> None:
        jet.genparts = _truth_columns(events, matched)
        indices, ctau = hadrons
        if len(indices):
            _, eta, phi = _pt_eta_phi(events.p4[indices])
            inside = _delta_r(eta, phi, jet.columns["eta"], jet.columns["phi"]) < self.dataset.radius
            indices, ctau = indices[inside], ctau[inside]
        jet.hadrons = _truth_columns(events, indices, ctau)


@contextlib.contextmanager
def _quiet_stdout(active: bool):
    """Silence C-level stdout (FastJet's banner) for the duration of the block."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


# ---------------------------------------------------------------------------------------------------------------
# Columns for the writer


def _jagged(jets: list[_Jet], attribute: str) -> ak.Array:
    per_jet = [getattr(jet, attribute) for jet in jets]
    names = next((p.keys() for p in per_jet if p), None)
    if names is None:  # no truth objects at all in this block (QCD): keep the branches, empty
        names = ("pt", "eta", "phi", "mass", "pid") + (("ctau",) if attribute == "hadrons" else ())
        per_jet = [{n: np.zeros(0, np.int32 if n == "pid" else np.float32) for n in names} for _ in per_jet]
    counts = np.array([len(next(iter(p.values()))) if p else 0 for p in per_jet])
    fields = {}
    for name in names:
        dtype = next(p[name].dtype for p in per_jet if p)
        flat = np.concatenate([p[name] if p else np.zeros(0, dtype) for p in per_jet])
        fields[name] = ak.unflatten(flat, counts)
    return ak.zip(fields)


def _columns(dataset: DatasetSpec, cls: JetClassSpec, jets: list[_Jet]) -> dict:
    columns: dict = {"part": _jagged(jets, "particles"), "subjet": _jagged(jets, "subjets")}
    for name in jets[0].columns:
        dtype = np.int32 if name == "nparticles" else np.float32  # as in the JetClass files
        columns[f"jet_{name}"] = np.array([jet.columns[name] for jet in jets], dtype=dtype)
    n = len(jets)
    if dataset.labels:
        for label in dataset.labels:
            columns[label] = np.full(n, label == cls.label)
    else:
        columns["label"] = np.full(n, cls.label_value, dtype=np.int32)
    columns["aux_genpart"] = _jagged(jets, "genparts")
    columns["aux_hadron"] = _jagged(jets, "hadrons")
    return columns


# ---------------------------------------------------------------------------------------------------------------
# One chunk of one class, run inside a worker (or in-process for workers=1 and the benchmark)


@dataclass(frozen=True)
class _Task:
    dataset: str
    class_index: int
    chunk: int
    seed: int
    sqrt_s: float
    outputs: tuple[tuple[Path, int], ...]  # (file, number of jets), filled in this order
    detector: str | None = None  # None: the dataset's own

    @property
    def detector_name(self) -> str:
        return self.detector or DATASETS[self.dataset].detector

    @property
    def cls(self) -> JetClassSpec:
        return DATASETS[self.dataset].classes[self.class_index]

    @property
    def num_jets(self) -> int:
        return sum(n for _, n in self.outputs)

    def seeds(self) -> tuple[int, np.random.Generator]:
        """Pythia's seed and the detector's generator, both from (seed, dataset, class, chunk)."""
        return task_seeds(self.seed, list(DATASETS).index(self.dataset), self.class_index, self.chunk)


def task_seeds(*entropy: int) -> tuple[int, np.random.Generator]:
    """Pythia's seed (1 .. 900 000 000) and a numpy generator (the detector's), both drawn from ``entropy``:
    one task's, so that every task of a run gets its own, reproducible streams."""
    sequence = np.random.SeedSequence(list(entropy))
    pythia_seed = int(sequence.generate_state(1)[0]) % 900_000_000 + 1
    return pythia_seed, np.random.default_rng(sequence.spawn(1)[0])


def start_pythia(settings: list[str], name: str):
    """An initialised Pythia (quiet: no banner) from `readString` lines; `name` says what failed."""
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    for line in settings:
        if not pythia.readString(line):
            raise RuntimeError(f"Pythia rejected the setting {line!r}")
    if not pythia.init():
        raise RuntimeError(f"Pythia failed to initialise for {name}")
    return pythia


def _make_pythia(task: _Task, pythia_seed: int):
    settings = pythia_settings(task.cls, task.sqrt_s, pythia_seed, DATASETS[task.dataset].settings)
    return start_pythia(settings, f"class {task.cls.name}")


def _jet_batches(task: _Task, pythia=None) -> Iterator[list[_Jet]]:
    """The jets of each batch of events of the task's class, without end; `pythia` is an initialised generator
    for the task's seed, made here when not given."""
    pythia_seed, rng = task.seeds()
    if pythia is None:
        pythia = _make_pythia(task, pythia_seed)
    maker = _JetMaker(DATASETS[task.dataset], task.cls, _ParticleTable(pythia.particleData), rng, task.detector_name)
    while True:
        yield list(maker.jets(_EventBatch.from_awkward(pythia.nextBatch(EVENTS_PER_BATCH))))


def _jet_stream(task: _Task) -> Iterator[_Jet]:
    for jets in _jet_batches(task):
        yield from jets


def _run_task(task: _Task, report: Callable[[str, int], None]) -> dict:
    """Generate the task's jets and write them; returns jets made, seconds and the peak memory (MB)."""
    dataset = DATASETS[task.dataset]
    start = time.perf_counter()
    stream = _jet_stream(task)
    for path, n_jets in task.outputs:
        with TreeWriter(path) as writer:
            pending: list[_Jet] = []
            unreported = 0
            for made in range(n_jets):
                pending.append(next(stream))
                unreported += 1
                if unreported == REPORT_JETS:
                    report(task.cls.name, unreported)
                    unreported = 0
                if len(pending) == FLUSH_JETS or made == n_jets - 1:
                    writer.extend(_columns(dataset, task.cls, pending))
                    pending = []
            report(task.cls.name, unreported)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"jets": task.num_jets, "seconds": time.perf_counter() - start, "peak_mb": peak_mb}


# ---------------------------------------------------------------------------------------------------------------
# Worker pool


def _worker_loop(tasks, messages, run_task) -> None:
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


def _run_tasks(tasks: list, workers: int, progress, run_task: Callable = _run_task) -> list[dict]:
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
        context.Process(target=_worker_loop, args=(task_queue, messages, run_task), daemon=True) for _ in range(workers)
    ]
    results: list[dict | None] = [None] * len(tasks)
    remaining = len(tasks)
    try:
        for process in processes:
            process.start()
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


class _Progress:
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


# ---------------------------------------------------------------------------------------------------------------
# Public interface


def _check_arguments(
    dataset: str,
    num_jets: int,
    split: tuple[float, float, float],
    workers: int | None,
    sqrt_s: float,
    detector: str | None = None,
) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    if detector is not None and detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}: choose one of {', '.join(DETECTORS)}")
    if isinstance(num_jets, bool) or not isinstance(num_jets, int) or num_jets <= 0:
        raise ValueError(f"num_jets must be a positive integer (jets per class), got {num_jets!r}")
    if len(split) != 3 or any(f < 0 for f in split) or not math.isclose(sum(split), 1.0, abs_tol=1e-6):
        raise ValueError(f"split must be three non-negative fractions (train, val, test) summing to 1, got {split!r}")
    if split[0] <= 0:
        raise ValueError(f"split must give the training set a positive fraction, got {split!r}")
    if workers is not None and (not isinstance(workers, int) or workers <= 0):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if not sqrt_s > 0:
        raise ValueError(f"sqrt_s must be positive (GeV), got {sqrt_s!r}")


def _check_writable(folder: Path) -> None:
    """Fail before any generation if the output folder cannot be made or written to."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise type(err)(err.errno, f"output folder {folder} is not writable: {err.strerror}") from err


def _split_counts(num_jets: int, fractions: list[float]) -> list[int]:
    """Largest-remainder split of num_jets; every split with a positive fraction gets at least one jet."""
    exact = [num_jets * f for f in fractions]
    counts = [int(x) for x in exact]
    for k in sorted(range(len(exact)), key=lambda k: exact[k] - counts[k], reverse=True)[: num_jets - sum(counts)]:
        counts[k] += 1
    for k, f in enumerate(fractions):
        if f > 0 and counts[k] == 0:
            raise ValueError(f"num_jets={num_jets} is too small to fill every split of {fractions}")
    return counts


def _num_chunks(num_jets: int, num_classes: int, workers: int) -> int:
    """Chunks per class: files stay below MAX_JETS_PER_FILE, and there are enough tasks to keep every worker
    busy while chunks stay above MIN_JETS_PER_CHUNK."""
    by_size = -(-num_jets // MAX_JETS_PER_FILE)
    by_workers = -(-TASKS_PER_WORKER * workers // num_classes) if workers > 1 else 1
    return max(by_size, min(by_workers, max(1, num_jets // MIN_JETS_PER_CHUNK)))


def default_files_per_class(num_jets: int) -> int:
    """Files per class and split of a JetClass-style sample: enough for the train scripts' loader workers under
    DDP (2 workers x 2-4 processes; weaver gives each its own files of every class), as few as keep files of about
    a thousand jets or more, and files below MAX_JETS_PER_FILE."""
    return max(
        FILES_PER_CLASS_SMALL if num_jets < 8 * MIN_JETS_PER_FILE else FILES_PER_CLASS_LARGE,
        -(-num_jets // MAX_JETS_PER_FILE),
    )


def _plan(
    spec: DatasetSpec,
    root: Path,
    staging: Path | None,
    num_jets: int,
    seed: int,
    workers: int,
    fractions: list[float],
    sqrt_s: float,
    files_per_class: int | None = None,
) -> list[_Task]:
    """The tasks of a run: chunks of each class (a Pythia run each), writing their jets in order to their files.

    JetClass-style (``staging`` None): each split of each class is spread over ``files_per_class`` files (fewer
    where a split has fewer jets), ``{class}_{NNN}.root``, the files dealt round-robin to the class's chunks.
    Merged datasets: one staged file per chunk and split, merged afterwards."""
    n_chunks = _num_chunks(num_jets, len(spec.classes), workers)
    tasks = []
    if staging is None:
        files = files_per_class or default_files_per_class(num_jets)
        split_jets = _split_counts(num_jets, fractions)
        for class_index, cls in enumerate(spec.classes):
            outputs: list[list[tuple[Path, int]]] = [[] for _ in range(n_chunks)]
            for split_name, n in zip(spec.splits, split_jets, strict=True):
                n_files = min(files, n)
                for k in range(n_files):
                    path = root / split_name / f"{cls.name}_{k:03d}.root"
                    outputs[k % n_chunks].append((path, n // n_files + (k < n % n_files)))
            for chunk, chunk_outputs in enumerate(outputs):
                if chunk_outputs:
                    tasks.append(_Task(spec.name, class_index, chunk, seed, sqrt_s, tuple(chunk_outputs)))
        return tasks
    chunk_sizes = [num_jets // n_chunks + (k < num_jets % n_chunks) for k in range(n_chunks)]
    for class_index, cls in enumerate(spec.classes):
        for chunk, chunk_jets in enumerate(chunk_sizes):
            outputs = []
            for split_name, n in zip(spec.splits, _split_counts(chunk_jets, fractions), strict=True):
                if n > 0:
                    outputs.append((staging / f"{cls.name}_{chunk:03d}_{split_name}.root", n))
            tasks.append(_Task(spec.name, class_index, chunk, seed, sqrt_s, tuple(outputs)))
    return tasks


def _remove_stale_chunks(spec: DatasetSpec, folders: list[Path], planned: set[Path]) -> None:
    """Delete chunk files of an earlier run that this run will not overwrite (it may make fewer chunks), so that
    the folder never mixes two samples."""
    for folder in folders:
        for cls in spec.classes:
            for path in folder.glob(f"{cls.name}_[0-9][0-9][0-9].root"):
                if path not in planned:
                    path.unlink()


def remove_unfinished(temporaries: list[Path], folders: list[Path], staging: Path | None) -> None:
    """After an interrupted or failed run: no temporary file may survive, and no staged part of a merged
    dataset."""
    for path in temporaries:
        path.unlink(missing_ok=True)
    for folder in folders:
        for leftover in folder.glob(f"*{TMP_SUFFIX}"):
            leftover.unlink(missing_ok=True)
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)


def _merged_name(spec: DatasetSpec, split_name: str) -> str:
    return f"{split_name}_file_0.root" if spec.name == "QuarkGluon" else f"{split_name}_file.root"


def generate_dataset(
    dataset: str,
    outdir: Path,
    num_jets: int,
    seed: int = 1,
    workers: int | None = None,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    sqrt_s: float = 14000.0,
    files_per_class: int | None = None,
    detector: str | None = None,
) -> Path:
    """Generate `num_jets` jets per class of `dataset` ("JetClass", "TopLandscape" or "QuarkGluon") under
    `outdir` and return the data folder to record in env.sh. `detector` (detector.DETECTORS) defaults to the
    original sample's: "cms" for JetClass, "atlas" for TopLandscape, "none" (generator level) for QuarkGluon.

    JetClass: outdir/JetClass/Pythia/{train,val,test}/{Prefix}_{NNN}.root, ``files_per_class`` files per class
    and split (default :func:`default_files_per_class`), so that weaver's loader workers each get their own.
    TopLandscape: outdir/TopLandscape/{train,val,test}_file.root, top and QCD shuffled together, `label` 1 = top.
    QuarkGluon: outdir/QuarkGluon/{train,test}_file_0.root (the validation fraction goes to train: the train
    script splits it off), `label` 1 = quark. A fixed seed (and worker count) reproduces the same jets.
    """
    _check_arguments(dataset, num_jets, split, workers, sqrt_s, detector)
    spec = DATASETS[dataset]
    if dataset == "JetClass":
        root = Path(outdir) / "JetClass" / "Pythia"
        folders = [root / s for s in spec.splits]
    else:
        root = Path(outdir) / dataset
        folders = [root]
    for folder in folders:
        _check_writable(folder)
    _require_generators()

    workers = workers or os.cpu_count() or 1
    fractions = list(split) if len(spec.splits) == 3 else [split[0] + split[1], split[2]]
    staging = None if dataset == "JetClass" else root / ".parts"
    if files_per_class is not None and staging is not None:
        raise ValueError(f"files_per_class applies to JetClass-style datasets; {dataset} is one file per split")
    if files_per_class is not None and (
        isinstance(files_per_class, bool) or not isinstance(files_per_class, int) or files_per_class <= 0
    ):
        raise ValueError(f"files_per_class must be a positive integer, got {files_per_class!r}")
    tasks = [
        replace(task, detector=detector)
        for task in _plan(spec, root, staging, num_jets, seed, workers, fractions, sqrt_s, files_per_class)
    ]
    temporaries = [temp_path(path) for task in tasks for path, _ in task.outputs]
    if staging is None:
        _remove_stale_chunks(spec, folders, {path for task in tasks for path, _ in task.outputs})
    progress = _Progress([cls.name for cls in spec.classes], sum(task.num_jets for task in tasks))
    try:
        if staging is not None:
            staging.mkdir(exist_ok=True)
        results = _run_tasks(tasks, min(workers, len(tasks)), progress)
        if staging is not None:
            rng = np.random.default_rng(np.random.SeedSequence([seed, 7919]))
            for split_name in spec.splits:
                suffix = f"_{split_name}.root"
                parts = [path for task in tasks for path, _ in task.outputs if path.name.endswith(suffix)]
                if parts:
                    merge_shuffled(parts, root / _merged_name(spec, split_name), RECORDS, rng)
            shutil.rmtree(staging)
    except BaseException:
        remove_unfinished(temporaries, folders, staging)
        raise
    finally:
        progress.close()
    peak_mb = max(result["peak_mb"] for result in results)
    print(
        f"{dataset}: {sum(r['jets'] for r in results)} jets written under {root}; "
        f"peak memory per worker {peak_mb:.0f} MB",
        file=sys.stderr,
    )
    return root


def benchmark(
    num_jets: int = 200, seed: int = 1, dataset: str = "JetClass", detector: str | None = None
) -> dict[str, float]:
    """Jets per second per core for every class of `dataset`, one process: jets over the CPU time this process
    spent making them (Pythia's initialisation excluded), so other load on the machine does not count against it."""
    _require_generators()
    rates = {}
    for class_index, cls in enumerate(DATASETS[dataset].classes):
        task = _Task(dataset, class_index, 0, seed, 14000.0, (), detector)
        batches = _jet_batches(task, _make_pythia(task, task.seeds()[0]))
        start = time.process_time()
        made = 0
        while made < num_jets:  # whole batches, every jet they give counted
            made += len(next(batches))
        rates[cls.name] = made / (time.process_time() - start)
    return rates

"""Jets from measured particles: anti-kT clustering (`AntiKt`), the selection and truth matching of one class of
a jet dataset (`JetSelection`), and the branches written per jet (`jet_columns`).

FastJet is imported on use, so that this module loads without it.
"""

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import awkward as ak
import numpy as np

from jetattn.datasets.detector import measure_events
from jetattn.datasets.events import LEPTONS, EventBatch, ParticleTable, Truth, delta_r, pt_eta_phi, rapidity, wrap_phi
from jetattn.datasets.processes import DatasetSpec, JetClassSpec

MAX_PARTICLES = 128  # constituents stored per jet, the leading ones in pT, as in JetClass
RECORDS = ("part", "subjet", "aux_genpart", "aux_hadron")  # the jagged records of a jet file
TRUTH_FIELDS = ("pt", "eta", "phi", "mass", "pid")


@contextlib.contextmanager
def quiet_stdout(active: bool):
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


class AntiKt:
    """anti-kT jets of radius `radius` above `min_pt` from the measured objects of a batch of events, event by
    event in one call of FastJet's vectorised interface. `name` (the class) goes into the error messages."""

    def __init__(self, radius: float, min_pt: float, name: str):
        import fastjet

        self.definition = fastjet.JetDefinition(fastjet.antikt_algorithm, radius)
        self.min_pt = min_pt
        self.name = name
        self._first_clustering = True

    def cluster(self, counts: np.ndarray, measured: dict[str, np.ndarray]):
        """Per event (`counts` objects each), the jet four-momenta (n_jets, 4) and, per jet, the positions of its
        constituents in the `measured` arrays."""
        import fastjet

        bad = ~np.isfinite(np.stack([measured[k] for k in ("px", "py", "pz", "energy")])).all(axis=0)
        if bad.any():  # FastJet segfaults on NaN momenta: say which particle instead
            raise ValueError(
                f"detector model returned a non-finite four-momentum for {self.name} particle(s) "
                f"with PDG id {sorted(set(measured['pid'][bad].tolist()))}"
            )
        momenta = ak.unflatten(
            ak.zip({"px": measured["px"], "py": measured["py"], "pz": measured["pz"], "E": measured["energy"]}), counts
        )
        with quiet_stdout(self._first_clustering):  # FastJet prints its banner on first use
            sequence = fastjet.ClusterSequence(momenta, self.definition)
            jets = sequence.inclusive_jets(self.min_pt)
            constituents = sequence.constituent_index(self.min_pt)
        self._first_clustering = False
        starts = np.concatenate([[0], np.cumsum(counts)])
        jets_p4 = [
            np.stack([ak.to_numpy(jet[c]) for c in ("px", "py", "pz", "E")], axis=-1).reshape(-1, 4) for jet in jets
        ]
        jets_constituents = [
            [starts[event] + ak.to_numpy(c) for c in constituents[event]] for event in range(len(counts))
        ]
        return jets_p4, jets_constituents


# ---------------------------------------------------------------------------------------------------------------
# Branches


@dataclass
class Jet:
    columns: dict[str, float]  # one value per jet
    particles: dict[str, np.ndarray]  # constituents, pT-ordered, at most MAX_PARTICLES
    subjets: dict[str, np.ndarray]  # exclusive-kT subjets of all constituents (observables.subjet_columns)
    genparts: dict[str, np.ndarray]  # the matched truth object: resonance and decay products, or parton
    hadrons: dict[str, np.ndarray]  # weakly decaying b and c hadrons within the jet radius


def massless_along_rapidity(p4: np.ndarray) -> np.ndarray:
    """Four-momenta (n, 4: px, py, pz, E) rebuilt with mass 0 from their pT, rapidity and phi, the rapidity taken
    as the pseudorapidity: how the public QuarkGluon files were made from the EnergyFlow arrays (pt, y, phi, pid;
    jet-universe/particle_transformer, utils/convert_qg_datasets.py: from_ptetaphim(pt, y, phi, 0))."""
    import vector

    given = vector.array({"px": p4[:, 0], "py": p4[:, 1], "pz": p4[:, 2], "E": p4[:, 3]})
    rebuilt = vector.array({"pt": given.pt, "eta": given.rapidity, "phi": given.phi, "mass": np.zeros(len(p4))})
    return np.stack([rebuilt.px, rebuilt.py, rebuilt.pz, rebuilt.E], axis=1)


def particle_columns(measured: dict[str, np.ndarray], jet_eta: float, jet_phi: float) -> dict[str, np.ndarray]:
    """The `part_*` branches of one jet's constituents (`measured`: the detector's objects, pT-ordered)."""
    p4 = np.stack([measured[c] for c in ("px", "py", "pz", "energy")], axis=1)
    _, eta, phi = pt_eta_phi(p4)
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
        "dphi": wrap_phi(phi - jet_phi),
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


def truth_columns(events: EventBatch, indices: list[int] | np.ndarray, ctau: np.ndarray | None = None):
    """TRUTH_FIELDS (and `ctau`, the proper decay length in mm, where given) of the truth particles `indices`."""
    indices = np.asarray(indices, dtype=np.int64)
    pt, eta, phi = pt_eta_phi(events.p4[indices])
    columns = {"pt": pt, "eta": eta, "phi": phi, "mass": events.mass[indices]}
    if ctau is not None:
        columns["ctau"] = ctau
    columns = {name: value.astype(np.float32) for name, value in columns.items()}
    columns["pid"] = events.pid[indices].astype(np.int32)
    return columns


def jagged(rows: list[dict[str, np.ndarray]], empty_fields: tuple[str, ...] = ()) -> ak.Array:
    """One jagged record from per-entry columns of equal length ({} for an entry without objects); where no entry
    has any (QCD jets have no truth objects), the record keeps the branches `empty_fields`, empty."""
    names = next((row.keys() for row in rows if row), None)
    if names is None:
        names = empty_fields
        rows = [{n: np.zeros(0, np.int32 if n == "pid" else np.float32) for n in names} for _ in rows]
    counts = np.array([len(next(iter(row.values()))) if row else 0 for row in rows])
    fields = {}
    for name in names:
        dtype = next(row[name].dtype for row in rows if row)
        flat = np.concatenate([row[name] if row else np.zeros(0, dtype) for row in rows])
        fields[name] = ak.unflatten(flat, counts)
    return ak.zip(fields)


def jet_columns(dataset: DatasetSpec, cls: JetClassSpec, jets: list[Jet]) -> dict:
    """The branches of a block of jets of class `cls`, as the writer takes them."""
    columns: dict = {
        "part": jagged([jet.particles for jet in jets]),
        "subjet": jagged([jet.subjets for jet in jets]),
    }
    for name in jets[0].columns:
        dtype = np.int32 if name == "nparticles" else np.float32  # as in the JetClass files
        columns[f"jet_{name}"] = np.array([jet.columns[name] for jet in jets], dtype=dtype)
    n = len(jets)
    if dataset.labels:
        for label in dataset.labels:
            columns[label] = np.full(n, label == cls.label)
    else:
        columns["label"] = np.full(n, cls.label_value, dtype=np.int32)
    columns["aux_genpart"] = jagged([jet.genparts for jet in jets], TRUTH_FIELDS)
    columns["aux_hadron"] = jagged([jet.hadrons for jet in jets], (*TRUTH_FIELDS, "ctau"))
    return columns


# ---------------------------------------------------------------------------------------------------------------
# Selection and truth matching


class JetSelection:
    """The selected, truth-matched jets of one class of a jet dataset, batch by batch of events."""

    def __init__(
        self,
        dataset: DatasetSpec,
        cls: JetClassSpec,
        particles: ParticleTable,
        rng: np.random.Generator,
        detector: str = "simple",
    ):
        self.dataset = dataset
        self.cls = cls
        self.particles = particles
        self.rng = rng
        self.detector = detector
        # FastJet hands over only the jets above 0.9 of the selection's lower pT: fewer to convert, none lost
        self.anti_kt = AntiKt(dataset.radius, 0.9 * dataset.pt_range[0], cls.name)

    def _symmetrise_charge(self, events: EventBatch) -> None:
        """Charge-conjugate a random half of the events. Pythia can only fix which W sign decays leptonically
        (W+ here), so without this every lepton in the semileptonic classes would be positive."""
        flip = self.rng.random(events.num_events) < 0.5
        flip_particle = np.repeat(flip, np.diff(events.offsets))
        events.pid[flip_particle] = self.particles.conjugate(events.pid[flip_particle])

    def select(self, events: EventBatch) -> Iterator[tuple[int, Jet]]:
        """(position of the event in the batch, jet) for each selected jet."""
        if self.cls.n_leptons:
            self._symmetrise_charge(events)
        counts, measured = measure_events(events, self.particles, self.rng, self.detector)
        jets_p4, jets_constituents = self.anti_kt.cluster(counts, measured)
        for event in range(events.num_events):
            if len(jets_p4[event]) == 0:
                continue
            truth = Truth(events, event)
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
                yield event, jet

    def _targets(self, truth: Truth) -> list:
        cls = self.cls
        if cls.match == "resonance":
            targets = []
            for i in truth.resonances(cls.resonance):
                products = truth.decay_products(i)
                leptons = sum(abs(truth.events.pid[d]) in LEPTONS for d in products)
                if leptons == cls.n_leptons:
                    targets.append([i, *products])
            return targets
        if cls.match == "parton":
            return [[i] for i in truth.hard_partons(cls.partons)]
        return []

    def _match(self, events: EventBatch, jet: Jet, targets: list) -> list[int] | None:
        """The truth object whose every member lies within the jet radius (an empty list for QCD jets)."""
        if self.cls.match == "leading":
            return []
        jet_eta, jet_phi = jet.columns["eta"], jet.columns["phi"]
        for target in targets:
            _, eta, phi = pt_eta_phi(events.p4[target])
            if np.all(delta_r(eta, phi, jet_eta, jet_phi) < self.dataset.radius):
                return target
        return None

    def _build(self, jet_p4: np.ndarray, measured: dict[str, np.ndarray], constituents: np.ndarray) -> Jet | None:
        """Selection on the jet (the E-scheme sum of its measured constituents), then its branches."""
        from jetattn.datasets.observables import subjet_columns, substructure  # needs FastJet

        jet_pt, jet_eta, jet_phi = pt_eta_phi(jet_p4)
        low, high = self.dataset.pt_range
        position = abs(rapidity(jet_p4)) if self.dataset.use_rapidity else abs(jet_eta)
        if not (low <= jet_pt < high and position < self.dataset.abs_eta_max):
            return None
        p4 = np.stack([measured[c][constituents] for c in ("px", "py", "pz", "energy")], axis=1)
        order = np.argsort(-np.hypot(p4[:, 0], p4[:, 1]))[:MAX_PARTICLES]
        objects = {name: value[constituents[order]] for name, value in measured.items()}
        if self.dataset.massless_constituents:  # selected as generated, stored as the public files have them
            p4 = massless_along_rapidity(p4)
            objects.update(px=p4[order, 0], py=p4[order, 1], pz=p4[order, 2], energy=p4[order, 3])
            jet_p4 = p4.sum(axis=0)
            jet_pt, jet_eta, jet_phi = pt_eta_phi(jet_p4)
        particles = particle_columns(objects, float(jet_eta), float(jet_phi))
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
        return Jet(columns, particles, subjets, {}, {})

    def _add_truth(self, events: EventBatch, jet: Jet, matched: list[int], hadrons) -> None:
        jet.genparts = truth_columns(events, matched)
        indices, ctau = hadrons
        if len(indices):
            _, eta, phi = pt_eta_phi(events.p4[indices])
            inside = delta_r(eta, phi, jet.columns["eta"], jet.columns["phi"]) < self.dataset.radius
            indices, ctau = indices[inside], ctau[inside]
        jet.hadrons = truth_columns(events, indices, ctau)

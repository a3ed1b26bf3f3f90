"""Events from Pythia 8 in numpy: setting Pythia up, the event record of a batch of events (`EventBatch`), the
truth objects of one event (`Truth`) and the four-vector helpers the later stages share.

Pythia is imported on use, so that this module loads without it; `require_generators` says how to install it.
"""

import math
from dataclasses import dataclass

import awkward as ak
import numpy as np

EVENTS_PER_BATCH = 40  # events Pythia hands over per `nextBatch` call
LEPTONS = (11, 13, 15)
_RESONANCES = (6, 23, 24, 25)
_VISIBLE_PARTONS = (1, 2, 3, 4, 5, 21)
# weakly decaying heavy-flavour hadrons: their flight distance is what displaced tracks come from
_B_HADRONS = np.array([511, 521, 531, 541, 5122, 5132, 5232, 5332])
_C_HADRONS = np.array([411, 421, 431, 4122, 4132, 4232, 4332])
_INSTALL_HINT = "event generation needs Pythia 8 and FastJet: pip install -e .[generate]"


def require_generators() -> None:
    """Raise ImportError with the `pip install` line unless Pythia 8 and FastJet import."""
    try:
        import fastjet  # noqa: F401
        import pythia8mc  # noqa: F401
    except ImportError as err:
        raise ImportError(f"{_INSTALL_HINT} ({err})") from err


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


# ---------------------------------------------------------------------------------------------------------------
# Event record in numpy


@dataclass
class EventBatch:
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
    def from_awkward(cls, batch) -> "EventBatch":
        """From the awkward record `Pythia.nextBatch` returns."""
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


class ParticleTable:
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


# ---------------------------------------------------------------------------------------------------------------
# Four-vectors: (..., 4) arrays px, py, pz, E


def pt_eta_phi(p4: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pt = np.hypot(p4[..., 0], p4[..., 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(p4[..., 2] / pt)
    return pt, eta, np.arctan2(p4[..., 1], p4[..., 0])


def rapidity(p4: np.ndarray) -> float:
    return 0.5 * math.log((p4[3] + p4[2]) / (p4[3] - p4[2]))


def wrap_phi(dphi: np.ndarray) -> np.ndarray:
    return (dphi + np.pi) % (2 * np.pi) - np.pi


def delta_r(eta1, phi1, eta2, phi2) -> np.ndarray:
    return np.hypot(eta1 - eta2, wrap_phi(phi1 - phi2))


# ---------------------------------------------------------------------------------------------------------------
# Truth: resonances and their decay products, hard partons, heavy-flavour hadrons (all indices global)


class Truth:
    """Truth objects of one event of a batch: index arithmetic on the numpy event record."""

    def __init__(self, events: EventBatch, event: int):
        self.events = events
        self.start = events.offsets[event]
        self.stop = events.offsets[event + 1]

    def _global(self, local: int) -> int:
        return self.start + local

    def bottom_copy(self, i: int) -> int:
        """The last copy of particle i (Pythia books recoils as 1 -> 1 copies), the one that decays."""
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
            elif pid in _VISIBLE_PARTONS or pid in LEPTONS:
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
        """Outgoing partons of the hard process (status 23) with |pid| in pids."""
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

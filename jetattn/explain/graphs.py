"""Subjets of a jet (exclusive kT) and the η–φ attention graph of one jet."""

from __future__ import annotations

import numpy as np

# exclusive-kT subjets per class: the hard partons the decay leaves (QCD: the jet itself)
SUBJETS = {
    "QCD": 1,
    "Hbb": 2,
    "Hcc": 2,
    "Hgg": 2,
    "H4q": 4,
    "Hqql": 3,
    "Zqq": 2,
    "Wqq": 2,
    "Tbqq": 3,
    "Tbl": 2,
    "Top": 3,
}


def subjet_of_particles(p4: np.ndarray, num_subjets: int, radius: float = 0.8) -> np.ndarray:
    """``p4: (n, 4)`` (px, py, pz, E) of a jet's particles  ->  ``(n,)`` index of the exclusive-kT subjet each
    belongs to, subjets ordered by decreasing pT; fewer subjets when the jet has fewer particles.

    A soft particle farther than ``radius`` from the rest can be merged with the beam before the last ``n``
    merges, leaving it in no exclusive subjet: it goes to the subjet nearest in (y, φ)."""
    import fastjet

    n = len(p4)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    pseudojets = []
    for i, (px, py, pz, e) in enumerate(p4.astype(np.float64)):
        particle = fastjet.PseudoJet(px, py, pz, e)
        particle.set_user_index(i)
        pseudojets.append(particle)
    sequence = fastjet.ClusterSequence(pseudojets, fastjet.JetDefinition(fastjet.kt_algorithm, radius))
    subjets = sorted(sequence.exclusive_jets(min(num_subjets, n)), key=lambda j: -j.pt())
    owner = np.full(n, -1, dtype=np.int64)
    for index, subjet in enumerate(subjets):
        for particle in subjet.constituents():
            owner[particle.user_index()] = index
    for i in np.nonzero(owner < 0)[0]:
        owner[i] = int(np.argmin([pseudojets[i].squared_distance(subjet) for subjet in subjets]))
    return owner


def attention_edges(weights: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """``weights (n, n)`` (query, key)  ->  ``(query, key, weight)`` for every pair of distinct particles whose
    weight reaches ``threshold``, and each particle's strongest other key, strongest first."""
    others = np.where(np.eye(len(weights), dtype=bool), -1.0, weights)
    chosen = others >= threshold
    if len(weights) > 1:
        chosen[np.arange(len(weights)), others.argmax(1)] = True
    queries, keys = np.nonzero(chosen)
    order = np.argsort(-weights[queries, keys], kind="stable")
    return [(int(queries[i]), int(keys[i]), float(weights[queries[i], keys[i]])) for i in order]


def particle_types(particles: dict[str, list[np.ndarray]], jet: int, names: tuple[str, ...]) -> list[str]:
    """The type of each particle of ``jet`` from the flags ``names`` present (``ChargedHadron``, ...), or
    ``particle`` for every one where the files hold no flags."""
    present = [name for name in names if name in particles]
    n = len(particles["part_px"][jet])
    types = ["particle"] * n
    for name in present:
        for i in np.nonzero(particles[name][jet] > 0)[0]:
            types[i] = name.removeprefix("part_is")
    return types

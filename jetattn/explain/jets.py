"""The jets the tool explains: the model's inputs from weaver's own loader, and the particle branches the plots
need (four-momenta, η–φ, particle types) read with uproot from the same files, checked to be in the same order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from jetattn.deps import ToolError

KINEMATICS = ("part_px", "part_py", "part_pz", "part_energy", "part_deta", "part_dphi")
PARTICLE_TYPES = ("part_isChargedHadron", "part_isNeutralHadron", "part_isPhoton", "part_isElectron", "part_isMuon")
LEPTONS = ("part_isElectron", "part_isMuon")


def short_name(label: str) -> str:
    """``label_Tbl`` -> ``Tbl``, ``jet_isTop`` -> ``Top``: the class as the plots name it."""
    return label.removeprefix("label_").removeprefix("jet_is")


def class_names(data_config: Path) -> list[str]:
    """The classes of the data config (its ``labels``), as the plots name them, by class index."""
    from weaver.utils.data.config import DataConfig

    if not Path(data_config).is_file():
        raise ToolError(f"{data_config}: no such data config")
    config = DataConfig.load(str(data_config), load_observers=False, load_reweight_info=False)
    return [short_name(label) for label in config.label_value]


def background_classes(names: list[str], background: list[str] | None = None) -> np.ndarray:
    """``(classes,)`` True for the classes the cross-attention maps call background: those ``background`` names
    (``label_QCD`` or ``QCD``); by default those whose name holds QCD, and where none does, every class but the
    first (DiHiggs: ``signal``, ``background``)."""
    if background is None:
        qcd = np.array(["QCD" in name for name in names])
        return qcd if qcd.any() else np.arange(len(names)) > 0
    unknown = [name for name in background if short_name(name) not in names]
    if unknown:
        raise ToolError(f"--background {unknown[0]}: not a class of the data config ({', '.join(names)})")
    return np.isin(names, [short_name(name) for name in background])


@dataclass
class Jets:
    """``inputs``: ``{input name: (jets, C, P)}`` as weaver prepares them; ``labels``: class index per jet;
    ``classes``: the data config's label names; ``particles``: ``{branch: [array (n_j,) per jet]}`` holding
    the first ``n_j`` particles of each jet, the ones the model sees (weaver cuts jets to the input length)."""

    inputs: dict[str, torch.Tensor]
    labels: np.ndarray
    classes: list[str]
    particles: dict[str, list[np.ndarray]]
    stream: str  # the input group prefix holding these particles (``pf``)

    def __len__(self) -> int:
        return len(self.labels)

    def pt(self, jet: int) -> np.ndarray:
        return np.hypot(self.particles["part_px"][jet], self.particles["part_py"][jet])

    def has(self, *branches: str) -> bool:
        return all(name in self.particles for name in branches)


def _resolve(name: str, present: set[str], funcs: dict) -> tuple[set[str], set[str]] | None:
    """How to get ``name``: the file branches to read and the data config's ``new_variables`` to evaluate
    (itself and what it uses that the file lacks, recursively); None if neither the file nor the config has it."""
    from weaver.utils.data.eval_utils import _get_data_var_names

    if name in present:
        return {name}, set()
    if name not in funcs:
        return None
    sources, derived = set(), {name}
    for dependency in _get_data_var_names(funcs[name]):
        found = _resolve(dependency, present, funcs)
        if found is None:
            return None
        sources |= found[0]
        derived |= found[1]
    return sources, derived


def read_branches(files: list[Path], config, names: tuple[str, ...], num_jets: int) -> dict:
    """The branches ``names`` of the first ``num_jets`` entries of ``files`` (in order), as awkward arrays: read
    from the file, or computed by the data config's ``new_variables`` where the file lacks them (the DiHiggs
    ``part_*``, both jets' constituents as one sequence); the kinematic ones must be there one way or the other."""
    import awkward as ak
    import uproot
    from weaver.utils.data.preprocess import _build_new_variables

    funcs = dict(config.var_funcs)
    parts: dict[str, list] = {}
    left = num_jets
    for path in files:
        if left <= 0:
            break
        with uproot.open(path) as f:
            trees = [key.split(";")[0] for key, cls in f.classnames().items() if cls == "TTree"]
            name = config.treename or (trees[0] if len(trees) == 1 else None)
            if name is None:
                raise ToolError(f"{path}: {len(trees)} trees and no treename in the data config")
            tree = f[name]
            plans = {b: _resolve(b, set(tree.keys()), funcs) for b in names}
            available = [b for b in names if plans[b] is not None]
            lacking = [b for b in KINEMATICS if b not in available]
            if lacking:
                raise ToolError(
                    f"{path}: lacks the branch {lacking[0]} the plots need (nor does the data config compute it)"
                )
            table = tree.arrays(sorted(set().union(*(plans[b][0] for b in available))), entry_stop=left)
            derived = set().union(*(plans[b][1] for b in available))
            _build_new_variables(table, {k: expr for k, expr in funcs.items() if k in derived})  # in config order
            for b in available:
                parts.setdefault(b, []).append(table[b])
            left -= len(table)
    return {b: ak.concatenate(chunks) for b, chunks in parts.items() if len(chunks) == len(parts["part_px"])}


def load(data_config: Path, files: list[Path], num_jets: int) -> Jets:
    """The first ``num_jets`` jets of ``files``: weaver's inputs and labels, and the particle branches."""
    import awkward as ak
    from weaver.utils.data.config import DataConfig

    from jetattn.weaver import load_jets

    config = DataConfig.load(str(data_config), load_observers=False, load_reweight_info=False)
    inputs, labels = load_jets(data_config, files, num_jets)
    if not len(labels):
        raise ToolError(f"no jets read from {', '.join(map(str, files))}")
    branches = read_branches(files, config, KINEMATICS + PARTICLE_TYPES, len(labels))
    stream, group, index, branch = comparable_input(config, branches)
    mask = inputs.get(f"{stream}_mask")
    if mask is None:
        raise ToolError(f"the data config has no input group {stream}_mask for the particles of {group}")
    counts = mask[:, 0].gt(0).sum(dim=1).numpy()
    particles = {
        b: [ak.to_numpy(jet[:n]).astype(np.float32) for jet, n in zip(v, counts, strict=True)]
        for b, v in branches.items()
    }
    # weaver and uproot must give the same jets in the same order: compare an unstandardised input
    seen = inputs[group][:, index].numpy()
    for jet, n in enumerate(counts):
        if n != min(len(branches[branch][jet]), mask.size(-1)) or not np.allclose(
            seen[jet, :n], particles[branch][jet], rtol=1e-5, atol=1e-5
        ):
            raise ToolError(
                f"jet {jet}: weaver's loader and the files read directly disagree on {branch} "
                "(not the same jets in the same order); give the files in the order weaver reads them"
            )
    return Jets(inputs, labels.numpy(), list(config.label_value), particles, stream)


def comparable_input(config, branches: dict) -> tuple[str, str, int, str]:
    """An input the loader passes unstandardised straight from a particle branch: ``(stream, group, index,
    branch)``, e.g. ``('pf', 'pf_vectors', 0, 'part_px')``."""
    for group, names in config.input_dicts.items():
        for index, name in enumerate(names):
            if name in branches and config.preprocess_params[name]["center"] is None:
                return group.split("_")[0], group, index, name
    raise ToolError(
        "the data config reads no particle branch unstandardised (e.g. part_px): cannot match its "
        "jets to the files' particles"
    )

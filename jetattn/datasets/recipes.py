"""The jet datasets (JetClass, TopLandscape, QuarkGluon; `processes.DATASETS`) as recipes for `generate.generate`:
the Pythia settings of each class, the jet selection, the branches and the official layout. DiHiggs' recipe is
`dihiggs.DiHiggs`."""

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from jetattn.datasets.detector import DETECTORS
from jetattn.datasets.events import ParticleTable
from jetattn.datasets.jets import RECORDS, Jet, JetSelection, jet_columns
from jetattn.datasets.processes import DATASETS, DatasetSpec, pythia_settings
from jetattn.datasets.writer import MERGE_BLOCK_JETS


@dataclass(frozen=True)
class JetDataset:
    """`spec`'s classes at `sqrt_s` (GeV), measured with `detector` (detector.DETECTORS)."""

    spec: DatasetSpec
    detector: str
    sqrt_s: float = 14000.0

    unit: ClassVar[str] = "jet"
    min_entries: ClassVar[int] = 1
    records: ClassVar[tuple[str, ...]] = RECORDS
    merge_block: ClassVar[int] = MERGE_BLOCK_JETS
    shuffle_entropy: ClassVar[tuple[int, ...]] = (7919,)
    report_entries: ClassVar[int] = 20  # progress messages to the parent every this many jets
    flush_entries: ClassVar[int] = 1000  # jets held in memory before they are appended to the file

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(cls.name for cls in self.spec.classes)

    @property
    def seed_stream(self) -> int:
        return list(DATASETS).index(self.spec.name)  # 0, 1, 2: each dataset's random streams its own

    @property
    def splits(self) -> tuple[str, ...]:
        return self.spec.splits

    @property
    def merged(self) -> bool:
        return self.spec.merged_file is not None

    def folder(self, outdir: Path) -> Path:
        return outdir / self.spec.name / self.spec.subfolder

    def merged_name(self, split: str) -> str:
        return self.spec.merged_file.format(split=split)

    def entries_per_class(self, number: int) -> list[int]:
        return [number] * len(self.spec.classes)

    def check(self) -> None:
        """Nothing beyond what `generate` checks."""

    def pythia_settings(self, class_index: int, seed: int) -> list[str]:
        return pythia_settings(self.spec.classes[class_index], self.sqrt_s, seed, self.spec.settings)

    def selection(self, class_index: int, particles: ParticleTable, rng: np.random.Generator) -> JetSelection:
        return JetSelection(self.spec, self.spec.classes[class_index], particles, rng, self.detector)

    def columns(self, class_index: int, jets: list[Jet]) -> dict:
        return jet_columns(self.spec, self.spec.classes[class_index], jets)

    def finish(self, root: Path, results: list[dict], merge) -> list[str]:
        merge()
        return []


def jet_dataset(name: str, detector: str | None = None, sqrt_s: float = 14000.0) -> JetDataset:
    """The recipe of `name` (processes.DATASETS); `detector` defaults to the original sample's."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    if detector is not None and detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}: choose one of {', '.join(DETECTORS)}")
    spec = DATASETS[name]
    return JetDataset(spec, detector or spec.detector, sqrt_s)

"""Loader-benchmark inputs from the 1k-jet generated training files of each class. A larger file is copies of
the same 1k jets, shuffled and written in blocks of 20000 jets as the generator's merge_shuffled writes them
(so its baskets are the generator's). Loader speed does not depend on which jets they are.

    ./get_datasets.py JetClass --generate --num-jets 1250 --workers 1 -d /tmp/gen -e /tmp/gen/env.sh
    python docs/loader_bench/make_layouts.py /tmp/gen/JetClass/Pythia/train /tmp/loader_layouts
"""

import shutil
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from jetattn.bench_loader import JETCLASS_CLASSES
from jetattn.datasets.jets import RECORDS
from jetattn.datasets.writer import TreeWriter, read_columns

src, out = Path(sys.argv[1]), Path(sys.argv[2])
rng = np.random.default_rng(0)
for name in ("g1k", "g1k_x8", "g10k", "g100k", "g10k_b1k", "p10k", "p10k_rg1k"):
    (out / name).mkdir(parents=True, exist_ok=True)
for cls in JETCLASS_CLASSES:
    f = src / f"{cls}_000.root"
    shutil.copy(f, out / "g1k" / f.name)
    for i in range(8):  # the split layout: 8 files per class
        shutil.copy(f, out / "g1k_x8" / f"{cls}_{i:03d}.root")
    jets = read_columns(f, 0, None, RECORDS)
    n = len(next(iter(jets.values())))
    for name, copies, block in (("g10k", 10, 20000), ("g100k", 100, 20000), ("g10k_b1k", 10, 1000)):
        with TreeWriter(out / name / f.name) as writer:
            for _start in range(0, copies * n, block):
                index = rng.integers(0, n, block if copies * n >= block else copies * n)
                writer.extend({k: v[index] for k, v in jets.items()})
    arrays = uproot.open(out / "g10k" / f.name)["tree"].arrays()
    for name, rg in (("p10k", None), ("p10k_rg1k", 1000)):
        ak.to_parquet(arrays, out / name / f"{cls}_000.parquet", row_group_size=rg)
    print(cls, flush=True)

"""`make demo`'s script on a tiny sample: generate, train, test the last epoch, print the metrics."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import uproot

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_demo_trains_and_tests_the_last_epoch(tmp_path):
    pytest.importorskip("pythia8mc", reason="the demo generates its jets: pip install -e .[generate]")
    env = {**os.environ, "PYTHON": sys.executable, "DEMO_DIR": str(tmp_path), "DEMO_NUM_JETS": "200"}
    env.update(DEMO_EPOCHS="2", GPUS="")
    started = time.time()
    proc = subprocess.run(
        ["bash", str(REPO / "demo.sh")], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    run = tmp_path / "ParT"
    assert "[3/3] test-set performance" in proc.stdout and "AUC" in proc.stdout
    # trained without weaver's test step, then the test jets through the last epoch's model
    assert {p.name for p in run.glob("net_epoch-*_state.pt")} == {"net_epoch-0_state.pt", "net_epoch-1_state.pt"}
    assert "Loading model" in (log := (run / "predict.log").read_text()) and "net_epoch-1_state.pt" in log
    assert "'mirror': ['part_dphi']" in log  # the option reached weaver through the train script
    test_jets = uproot.open(tmp_path / "datasets/TopLandscape/test_file.root")["tree"].num_entries
    assert uproot.open(run / "pred.root")["Events"].num_entries == test_jets == 40  # 10% of 400
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["accuracy"] <= 1 and (run / "rejection.png").stat().st_size > 0
    # the demo runs in the repository: no {auto} run folder of weaver's made there
    assert not [p for p in (REPO / "training").rglob("*") if p.stat().st_mtime >= started]


def test_demo_says_when_the_sample_is_too_small(tmp_path):
    """A sample with fewer validation jets than one batch: one line, before any training."""
    pytest.importorskip("pythia8mc", reason="the demo generates its jets: pip install -e .[generate]")
    env = {**os.environ, "PYTHON": sys.executable, "DEMO_DIR": str(tmp_path), "DEMO_NUM_JETS": "100"}
    proc = subprocess.run(
        ["bash", str(REPO / "demo.sh")], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path}/datasets/TopLandscape holds fewer than 32 training or validation jets; raise DEMO_NUM_JETS"
    )
    assert not (tmp_path / "ParT").exists()


def test_demo_names_a_sample_file_it_cannot_read(tmp_path):
    """A damaged file in the sample the demo reuses: one line naming it, before any training."""
    sample = tmp_path / "datasets" / "TopLandscape"
    sample.mkdir(parents=True)
    for split in ("train", "val", "test"):
        (sample / f"{split}_file.root").write_bytes(b"not a ROOT file")
    env = {**os.environ, "PYTHON": sys.executable, "DEMO_DIR": str(tmp_path)}
    proc = subprocess.run(
        ["bash", str(REPO / "demo.sh")], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {sample}/train_file.root: cannot read its jets (")
    assert lines[0].endswith(f"delete {sample} to generate the sample again")
    assert "[2/3]" not in proc.stdout and not (tmp_path / "ParT").exists()

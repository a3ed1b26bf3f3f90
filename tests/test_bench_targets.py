"""The bench checks its rows against the targets written in docs/targets.yaml, not against numbers in code."""

import json

import yaml
from weaver_run import REPO

from jetattn.bench import TARGETS, attention_targets

ROW_FIELDS = {"model", "precision", "compiled", "variant", "k", "version", "n_particles"}
ROW_KEYS = {"infer_jets_per_s", "train_jets_per_s", "peak_mem_mb", "peak_tensor_mb"}


def test_every_target_names_fields_the_rows_have():
    targets = yaml.safe_load(TARGETS.read_text())["targets"]
    assert len({t["text"] for t in targets}) == len(targets)
    for target in targets:
        assert target["ratio"] > 0 and isinstance(target["issue"], int)
        for side in (target["ours"], target["theirs"]):
            if "value" in side:
                continue
            assert side["key"] in ROW_KEYS, target["text"]
            assert set(side) - {"key", "rows"} <= ROW_FIELDS, target["text"]


def row(model, infer, **fields):
    base = dict(model=model, precision="fp32", compiled=False, variant="padded", k=None, version=1, n_particles=128)
    return {**base, **fields, "infer_jets_per_s": infer, "train_jets_per_s": None}


def test_ratios_are_checked_against_the_file(tmp_path):
    rows = [row("weaver-ParT", 100.0), row("ParT", 160.0), row("ParT", 250.0, precision="int8")]
    lines = attention_targets(rows, [])
    assert "ours fp32 eager inference / weaver fp32 eager: 1.60x (target 1.5x: met)" in lines
    assert "ours int8 inference / weaver fp32 eager: 2.50x (target 3.0x: NOT met)" in lines
    assert not any(line.startswith("ours training") for line in lines)  # no training figures: left out
    stricter = tmp_path / "targets.yaml"
    stricter.write_text(TARGETS.read_text().replace("ratio: 1.5\n", "ratio: 1.7\n", 1))
    assert "ours fp32 eager inference / weaver fp32 eager: 1.60x (target 1.7x: NOT met)" in attention_targets(
        rows, [], stricter
    )


def test_the_committed_cpu_rows_give_their_verdicts():
    rows = json.loads((REPO / "docs/bench_attention_cpu.json").read_text())
    rows = [{"version": 1, **r} for r in rows]  # written before the bench had versions: all version 1
    lines = attention_targets(rows, [])
    assert lines and all(line.endswith(("met)", "NOT met)")) for line in lines)

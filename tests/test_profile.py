"""python -m jetattn.profile on a tiny ParT: every layer in the table, FLOPs and bytes, the bound verdict, the trace."""

import json

import pytest
from weaver_run import REPO, SMALL_OPTIONS, TOP_YAML

from jetattn import profile

OPTIONS = {**SMALL_OPTIONS["ParticleTransformer"], "num_layers": 2}
ARGS = [
    "--network",
    str(REPO / "networks/example_ParticleTransformer.py"),
    "--data-config",
    str(TOP_YAML),
    *(arg for name, value in OPTIONS.items() for arg in ("--network-option", name, repr(value))),
    "--batch-size",
    "8",
    "--steps",
    "1",
    "--warmup",
    "1",
    "--device",
    "cpu",
]
MATMUL_LAYERS = ["embed", "pair_embed", "blocks.0", "blocks.1", "cls_blocks.0", "fc"]


def run(tmp_path, capsys, *extra):
    assert profile.main([*ARGS, "--json", str(tmp_path / "p.json"), *extra]) == 0
    return json.loads((tmp_path / "p.json").read_text()), capsys.readouterr().out


def test_version_3_5_lists_every_layer(tmp_path, capsys):
    """weaver-core's version 3.5 (RMSNorm, SwiGLU, QK-norm, output gate): the same layers, each with its work."""
    result, out = run(tmp_path, capsys, "--network-option", "version", "3.5")
    layers = {row["name"]: row for row in result["layers"]}
    for name in MATMUL_LAYERS:
        assert layers[name]["flops"] > 0 and layers[name]["seconds"] >= 0, name
    assert layers["blocks.0"]["flops"] == layers["blocks.1"]["flops"]  # same shapes, same work
    assert "blocks.0" in out and "cls_blocks.0" in out


def test_table_lists_every_layer_and_the_trace_is_chrome_json(tmp_path, capsys):
    result, out = run(tmp_path, capsys, "--trace", str(tmp_path / "trace.json"))
    layers = {row["name"]: row for row in result["layers"]}
    assert set(MATMUL_LAYERS) <= set(layers)
    assert "measured on this CPU" in out and result["peak_flops"] > 0 and result["peak_bandwidth"] > 0
    for name in MATMUL_LAYERS:
        assert f"\n{name} " in out
        assert layers[name]["flops"] > 0 and layers[name]["bytes"] > 0 and layers[name]["intensity"] > 0, name
    assert all(layers[f"blocks.{i}"]["seconds"] > 0 for i in (0, 1))
    assert layers["blocks.0"]["flops"] == layers["blocks.1"]["flops"]  # same shapes, same work
    assert 0 < sum(row["seconds"] for row in result["layers"]) <= result["step_seconds"]
    for row in result["layers"]:  # the verdict follows from the numbers
        assert row["bound"] == ("compute-bound" if row["intensity"] >= result["ridge_point"] else "memory-bound")
    events = json.loads((tmp_path / "trace.json").read_text())["traceEvents"]
    assert {"layer:blocks.0", "layer:cls_blocks.0", "step"} <= {event.get("name") for event in events}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


@pytest.mark.parametrize(
    ("peak_flops", "peak_bandwidth", "bound"),
    [
        ("1", "1e12", "compute-bound"),  # ridge point 1e-12 FLOP/byte: any arithmetic at all outweighs memory
        ("1e18", "1", "memory-bound"),  # ridge point 1e18 FLOP/byte: nothing reaches it
    ],
)
def test_bound_follows_the_ridge_point(tmp_path, capsys, peak_flops, peak_bandwidth, bound):
    result, out = run(tmp_path, capsys, "--peak-flops", peak_flops, "--peak-bandwidth", peak_bandwidth)
    assert "peaks (given)" in out
    assert result["ridge_point"] == float(peak_flops) / float(peak_bandwidth)
    assert all(row["bound"] == bound for row in result["layers"] if row["name"] in MATMUL_LAYERS)


def test_help():
    with pytest.raises(SystemExit) as exit_info:
        profile.main(["--help"])
    assert exit_info.value.code == 0

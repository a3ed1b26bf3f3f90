"""Bad input: a file missing a branch the YAML names, a truncated ROOT file, jets with zero particles,
NaN or inf in a feature. The first two get one clear line naming the file and branch (jetattn.preflight,
run before weaver); the last two must not turn into NaN outputs, in any network."""

import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch
from weaver.utils.data.config import DataConfig
from weaver_run import (
    JETCLASS_YAML,
    NETWORKS,
    REPO,
    SMALL_OPTIONS,
    TOP_YAML,
    base_name,
    load_network,
    read_jets,
    real_batch,
    write_jets,
)

from jetattn.preflight import main as preflight
from jetattn.preflight import needed_branches

pytestmark = pytest.mark.requiresdata


def one_error_line(capsys) -> str:
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_good_files_pass(real_data: Path, capsys):
    top, qg = real_data / "TopLandscape_sample_1000.root", real_data / "QuarkGluon_sample_1000.root"
    assert preflight(["-c", str(TOP_YAML), "--data-train", f"top:{top}", "--data-test", str(top), str(qg)]) == 0
    assert capsys.readouterr().out.startswith("ok: 2 files")


def test_missing_branch_is_named_with_file_and_yaml(real_data: Path, tmp_path: Path):
    """Through the command line, as the train scripts call it."""
    columns = read_jets(real_data / "TopLandscape_sample_1000.root")
    del columns["part_energy"]  # read by part_e_log, part_logerel and the pf_vectors input
    broken = write_jets(tmp_path / "no_energy.root", columns)
    cmd = [sys.executable, "-m", "jetattn.preflight", "--data-config", str(TOP_YAML), "--data-train", f"top:{broken}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == f"error: {broken}: branch 'part_energy' (needed by top_kin.yaml) is missing"


def test_observers_are_needed_only_for_testing(real_data: Path, capsys):
    """The real H->bb sample lacks JetClass_kin.yaml's observers (jet_sdmass, jet_tau1..4): fine for training."""
    hbb = real_data / "JetClass_Hbb_sample_1000.root"
    assert preflight(["-c", str(JETCLASS_YAML), "--data-train", str(hbb)]) == 0
    capsys.readouterr()
    assert preflight(["-c", str(JETCLASS_YAML), "--data-test", str(hbb)]) == 1
    line = one_error_line(capsys)
    assert f"{hbb}: branch 'jet_sdmass' (needed by JetClass_kin.yaml) is missing" in line and "jet_tau4" in line


def test_needed_branches_follow_new_variables():
    """Raw branches only: new variables are replaced by the branches their expressions read, recursively."""
    train, test = needed_branches(str(REPO / "data" / "JetClass" / "JetClass_full.yaml"))
    assert {"part_px", "part_energy", "jet_pt", "jet_energy", "part_d0val", "part_dzval", "label_Tbl"} <= train
    assert not {"part_mask", "part_pt", "part_pt_log", "part_d0", "part_deltaR"} & (train | test)
    assert test - train == {"jet_eta", "jet_phi", "jet_nparticles", "jet_sdmass"} | {f"jet_tau{i}" for i in range(1, 5)}


def test_parquet_missing_column(real_data: Path, tmp_path: Path, capsys):
    columns = read_jets(real_data / "TopLandscape_sample_1000.root")
    good, bad = tmp_path / "good.parquet", tmp_path / "bad.parquet"
    ak.to_parquet(ak.Array(columns), good)
    ak.to_parquet(ak.Array({k: v for k, v in columns.items() if k != "jet_pt"}), bad)
    assert preflight(["-c", str(TOP_YAML), "--data-train", str(good)]) == 0
    capsys.readouterr()
    assert preflight(["-c", str(TOP_YAML), "--data-train", str(good), str(bad)]) == 1
    assert one_error_line(capsys) == f"error: {bad}: branch 'jet_pt' (needed by top_kin.yaml) is missing"


@pytest.mark.parametrize("kept", [0.5, 0.999])
def test_truncated_root_file(real_data: Path, tmp_path: Path, capsys, kept: float):
    """Cut in half, or only the last kilobyte lost (uproot still opens it; weaver would drop it with a log line)."""
    data = (real_data / "TopLandscape_sample_1000.root").read_bytes()
    cut = tmp_path / "cut.root"
    cut.write_bytes(data[: int(len(data) * kept)])
    assert preflight(["-c", str(TOP_YAML), "--data-val", str(cut)]) == 1
    assert one_error_line(capsys).startswith(f"error: {cut}: truncated ROOT file")


def test_not_a_root_file_and_no_match(real_data: Path, tmp_path: Path, capsys):
    header_only = tmp_path / "header_only.root"
    header_only.write_bytes((real_data / "TopLandscape_sample_1000.root").read_bytes()[:50])
    assert preflight(["-c", str(TOP_YAML), "--data-train", str(header_only)]) == 1
    assert one_error_line(capsys) == f"error: {header_only}: not a readable ROOT file (truncated?)"
    assert preflight(["-c", str(TOP_YAML), "--data-test", f"x:{tmp_path}/none_*.root"]) == 1
    assert one_error_line(capsys) == f"error: --data-test x:{tmp_path}/none_*.root: matches no file"


def test_an_rntuple_is_named_with_the_way_to_write_a_ttree(real_data: Path, tmp_path: Path, capsys):
    """uproot 5.7 writes ``file["tree"] = {...}`` as an RNTuple, which the TTree check alone called 'found none'."""
    import uproot

    columns = read_jets(real_data / "TopLandscape_sample_1000.root")
    rntuple = tmp_path / "rntuple.root"
    with uproot.recreate(rntuple) as f:
        f["tree"] = {name: values[:50] for name, values in columns.items()}
    if uproot.open(rntuple).classnames() != {"tree;1": "ROOT::RNTuple"}:
        pytest.fail(f"this uproot ({uproot.__version__}) wrote {uproot.open(rntuple).classnames()}: no RNTuple")
    assert preflight(["-c", str(TOP_YAML), "--data-train", str(rntuple)]) == 1
    assert one_error_line(capsys) == (
        f"error: {rntuple}: holds the RNTuple tree and no TTree, which weaver reads; "
        "write the tree with uproot's file.mktree(...) and .extend(...)"
    )


@pytest.fixture(scope="module")
def broken_jets(real_data: Path, tmp_path_factory) -> dict[str, torch.Tensor]:
    """32 real top/QCD jets through weaver's input pipeline: jets 0-3 without particles, NaN and inf in
    features that are standardised (energy) and in ones passed on raw (px, the points' delta-eta)."""
    columns = {k: v[:32] for k, v in read_jets(real_data / "TopLandscape_sample_1000.root").items()}
    broken = {  # branch: [(jet, particle, value)]
        "part_energy": [(5, 0, np.nan)],
        "part_px": [(6, 1, np.inf)],
        "part_deta": [(7, 0, -np.inf), (8, 2, np.nan)],
    }
    for name in [k for k in columns if k.startswith("part_")]:
        particles = ak.to_list(columns[name])
        particles[:4] = [[], [], [], []]
        for jet, particle, value in broken.get(name, []):
            particles[jet][particle] = value
        columns[name] = ak.values_astype(ak.Array(particles), np.float32)
    path = write_jets(tmp_path_factory.mktemp("broken") / "broken.root", columns)
    batch = real_batch(TOP_YAML, [path], 32)
    assert (batch["pf_mask"][:4] == 0).all() and (batch["pf_mask"][4:].sum(dim=-1) > 0).all()
    assert not torch.isfinite(batch["pf_vectors"]).all()  # weaver passes raw inf on to the network
    return batch


@pytest.mark.parametrize("network", NETWORKS, ids=lambda p: p.stem)
def test_empty_jets_and_nonfinite_features_give_finite_outputs(network: Path, broken_jets):
    data_config = DataConfig.load(str(TOP_YAML), load_observers=False)
    torch.manual_seed(0)
    model, info = load_network(network).get_model(data_config, **SMALL_OPTIONS.get(base_name(network), {}))
    inputs = [broken_jets[name] for name in info["input_names"]]

    model.train()  # training: the loss and every gradient stay finite
    loss = torch.nn.functional.cross_entropy(model(*inputs), torch.arange(32) % 2)
    loss.backward()
    assert torch.isfinite(loss), f"training loss {loss.item()}"
    bad_grads = [name for name, p in model.named_parameters() if p.grad is not None and not p.grad.isfinite().all()]
    assert not bad_grads, f"non-finite gradients: {bad_grads}"

    model.eval()  # evaluation: this batch, a batch of only empty jets, and one of jets shorter than k
    batches = {"mixed": inputs, "empty": [x[:4] for x in inputs], "short": [x[4:8, :, :3] for x in inputs]}
    with torch.no_grad():
        for kind, batch in batches.items():
            bad_jets = (~torch.isfinite(model(*batch)).all(dim=1)).nonzero().flatten().tolist()
            assert not bad_jets, f"{kind} batch: non-finite outputs for jets {bad_jets}"


def test_tools_make_their_output_folders_or_say_in_one_line_that_they_cannot(tmp_path, capsys):
    """Every tool that writes a file creates its folder before the work, or stops in one line naming the option."""
    from jetattn import metrics, profile, quantize, topk_scan
    from jetattn.explain.__main__ import main as explain

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    network = ["--network", str(REPO / "networks/example_ParticleTransformer.py"), "--data-config", str(TOP_YAML)]
    runs = {
        "--json": lambda out: metrics.main([str(tmp_path / "none.root"), "--task", "DiHiggs", "--json", out]),
        "-o": lambda out: quantize.main([str(tmp_path / "none.pt"), *network, "-o", out]),
        "--trace": lambda out: profile.main([*network, "--trace", out, "--steps", "0"]),
        "--out": lambda out: topk_scan.main(
            [
                str(tmp_path / "none.pt"),
                "--data-config",
                str(TOP_YAML),
                "--files",
                str(tmp_path / "none.root"),
                "--out",
                out,
            ]
        ),
        "explain --out": lambda out: explain(
            [str(tmp_path / "none.pt"), *network, "--files", str(tmp_path / "x.root"), "--out", out]
        ),
    }
    for option, run in runs.items():
        assert run(str(blocker / "sub" / "out.x")) == 1, option
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{blocker}" in err[0] and "cannot create the folder" in err[0], (option, err)
        assert err[0].startswith(f"error: {option.split()[-1]} "), (option, err)
    # a folder that does not exist yet is made (the tool then fails on its missing input, after that)
    assert metrics.main([str(tmp_path / "none.root"), "--task", "DiHiggs", "--json", str(tmp_path / "new/x.json")]) == 1
    assert (tmp_path / "new").is_dir() and "no such prediction file" in capsys.readouterr().err

"""`python -m jetattn.bench loader`: weaver's own training loader, built from a train script's options."""

import json

import pytest

from jetattn import bench
from jetattn.bench_loader import file_groups, time_loader, weaver_args, worker_problem


def test_worker_problem_is_weavers_condition(tmp_path, capsys):
    for name in ("A_0.root", "A_1.root", "B_0.root"):
        (tmp_path / name).touch()
    groups = file_groups([f"A:{tmp_path}/A_*.root", f"B:{tmp_path}/B_*.root"])
    assert groups == {"A": [str(tmp_path / "A_0.root"), str(tmp_path / "A_1.root")], "B": [str(tmp_path / "B_0.root")]}
    assert worker_problem(groups, 1) is None
    problem = worker_problem(groups, 2)
    assert "'B' has 1 file" in problem and "--num-workers 1" in problem
    # weaver lowers the workers to the number of files first: one file and four workers is one worker
    assert worker_problem({"_": [str(tmp_path / "A_0.root")]}, 4) is None
    with pytest.raises(SystemExit):
        bench.main(["loader", "--files", f"C:{tmp_path}/C_*.root", "--model-steps", "0"])
    assert f"no file matches C:{tmp_path}/C_*.root" in capsys.readouterr().err


@pytest.mark.requiresdata
def test_loader_bench_reports_a_rate_per_setting(real_data, repo, tmp_path):
    top = real_data / "TopLandscape_sample_1000.root"
    out = tmp_path / "loader.json"
    bench.main(
        [
            "loader",
            "--data-config",
            str(repo / "data/TopLandscape/top_kin.yaml"),
            "--files",
            str(top),
            "--num-workers",
            "0",
            "2",
            "--fetch-step",
            "0.25",
            "--batch-size",
            "100",
            "--batches",
            "4",
            "--warmup",
            "1",
            "--profile-fetch",
            "--model-steps",
            "0",
            "--json",
            str(out),
        ]
    )
    rows = json.loads(out.read_text())["rows"]
    assert [(row["num_workers"], row["fetch_step"]) for row in rows] == [(0, 0.25), (2, 0.25)]
    assert all(row["jets_per_s"] > 0 for row in rows)
    # weaver lowers two workers to its one file; the fetch reads a quarter of the file
    assert [row["loader_workers"] for row in rows] == [0, 1]
    assert rows[0]["fetches_per_pass"] == 4 and rows[0]["jets_per_fetch"] == 250


@pytest.mark.requiresdata
def test_options_reach_weavers_dataset(real_data, repo):
    top = str(real_data / "TopLandscape_sample_1000.root")
    args = weaver_args(
        str(repo / "data/TopLandscape/top_kin.yaml"),
        [f"top:{top}"],
        num_workers=0,
        fetch_step=0.5,
        batch_size=64,
        steps=3,
        in_memory=True,
    )
    from weaver.train import train_load

    loader = train_load(args)[0]
    dataset = loader.dataset
    assert dataset._init_file_dict == {"top": [top]}
    assert (dataset._fetch_step, dataset._in_memory, dataset._infinity_mode) == (0.5, True, True)
    assert dataset._init_load_range_and_fraction[0] == (0, 1)  # --data-val given: each file read whole
    assert (loader.batch_size, loader.num_workers, loader.drop_last) == (64, 0, True)


@pytest.mark.requiresdata
def test_a_setting_weaver_crashes_on_is_a_row_that_says_so(real_data, repo, tmp_path, capsys):
    top = real_data / "TopLandscape_sample_1000.root"
    files = [f"A:{top}", f"B:{top}"]
    config = str(repo / "data/TopLandscape/top_kin.yaml")
    out = tmp_path / "loader.json"
    bench.main(
        [
            "loader",
            "--data-config",
            config,
            "--files",
            *files,
            "--num-workers",
            "2",
            "--model-steps",
            "0",
            "--json",
            str(out),
        ]
    )
    assert "weaver would crash" in capsys.readouterr().out
    assert "group 'A' has 1 file(s)" in json.loads(out.read_text())["rows"][0]["error"]
    # and weaver does crash there
    with pytest.raises(AssertionError):
        time_loader(weaver_args(config, files, 2, 1.0, 100, 2), batches=1, warmup=1)

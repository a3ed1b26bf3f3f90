"""The loader options the train scripts fit to the data (jetattn.loader_settings): what weaver would crash on or
repeat jets with is refused or changed, the public recipe's options stay on the official layout, the user's win."""

import argparse
from pathlib import Path

import numpy as np
import pytest
import uproot

from jetattn import loader_settings
from jetattn.loader_settings import LoaderError, fit
from jetattn.weaver_options import run_modes, weaver_parser

CLASSES = ("HToBB", "HToCC", "ZJetsToNuNu")
RECIPE = [
    "--num-workers",
    "2",
    "--fetch-step",
    "0.01",
    "--samples-per-epoch",
    str(10000 * 1024),
    "--samples-per-epoch-val",
    str(10000 * 128),
    "--batch-size",
    "512",
    "--data-config",
    str(Path(__file__).parents[1] / "data/JetClass/JetClass_full.yaml"),
]


def write_files(folder, files_per_class: int, jets_per_file: int, split: str = "train") -> list[str]:
    """JetClass-style files (a TTree ``tree`` with one branch), as ``name:glob`` group arguments."""
    (folder / split).mkdir(parents=True, exist_ok=True)
    for cls in CLASSES:
        for k in range(files_per_class):
            with uproot.recreate(folder / split / f"{cls}_{k:03d}.root") as f:
                f.mktree("tree", {"jet_pt": np.float32})
                f["tree"].extend({"jet_pt": np.arange(jets_per_file, dtype=np.float32)})
    return [f"{cls}:{folder}/{split}/{cls}_*.root" for cls in CLASSES]


def command(folder, files_per_class: int, jets_per_file: int, val_jets_per_file: int | None = None) -> list[str]:
    train = write_files(folder, files_per_class, jets_per_file)
    write_files(folder, files_per_class, val_jets_per_file or max(jets_per_file // 8, 1), "val")
    return ["--data-train", *train, "--data-val", f"{folder}/val/*.root", *RECIPE]


def options(fitted) -> dict[str, str | None]:
    """``{option: value}`` of the fitted options (flags map to None)."""
    out, args = {}, list(fitted.options)
    while args:
        name = args.pop(0)
        out[name] = args.pop(0) if args and not args[0].startswith("--") else None
    return out


def test_parser_agrees_with_weavers_own():
    """Every option we read (jetattn.weaver_options) has weaver's name, short form, destination, type and default."""
    from weaver.train import parser as weavers

    theirs = {action.dest: action for action in weavers._actions}
    for action in weaver_parser()._actions:
        assert action.dest in theirs, action.dest
        assert set(action.option_strings) <= set(theirs[action.dest].option_strings), action.dest
        assert action.default == theirs[action.dest].default, action.dest
        assert action.nargs == theirs[action.dest].nargs, action.dest
        if action.type is run_modes:  # weaver's is a functools.partial, which compares by identity
            assert run_modes("train,test") == theirs[action.dest].type("train,test"), action.dest
        else:
            assert action.type == theirs[action.dest].type, action.dest
        if isinstance(theirs[action.dest], argparse.BooleanOptionalAction):
            assert isinstance(action, argparse.BooleanOptionalAction), action.dest


def test_abbreviations_mean_what_they_mean_to_weaver():
    """Both parsers take abbreviated options: each prefix of one of ours that our parser resolves must not be
    another of weaver's options, nor resolve to another in weaver's parser."""
    from weaver.train import parser as weavers

    ours = [s for action in weaver_parser()._actions for s in action.option_strings if s.startswith("--")]
    theirs = [s for action in weavers._actions for s in action.option_strings if s.startswith("--")]
    assert weavers.allow_abbrev and weaver_parser().allow_abbrev
    for option in ours:
        for end in range(3, len(option)):
            prefix = option[:end]
            if prefix in ours or [s for s in ours if s.startswith(prefix)] != [option]:
                continue  # ours reads it as itself, or refuses it as ambiguous (so does weaver: ours are its)
            assert prefix not in theirs, f"weaver's {prefix} would read as our {option}"
            matches = [s for s in theirs if s.startswith(prefix)]
            assert len(matches) != 1 or matches == [option], (prefix, option, matches)
    args = ["--data-te", "a.root", "--no-pred", "--gpu", "", "--model-pre", "/runs/x/net"]
    opts, _ = weaver_parser().parse_known_args(args)
    weaver_opts, _ = weavers.parse_known_args(args)
    for dest in ("data_test", "predict", "gpus", "model_prefix"):
        assert getattr(opts, dest) == getattr(weaver_opts, dest), dest


def test_the_official_layout_keeps_the_recipe(tmp_path, monkeypatch):
    """100 files of a million jets per class (as the official JetClass): nothing to change."""
    monkeypatch.setattr(loader_settings, "count_entries", lambda path, treename=None: 1_000_000)
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        for cls in CLASSES:
            for k in range(100 if split == "train" else 5):
                (tmp_path / split / f"{cls}_{k:03d}.root").touch()
    args = [
        "--data-train",
        *(f"{c}:{tmp_path}/train/{c}_*.root" for c in CLASSES),
        "--data-val",
        f"{tmp_path}/val/*.root",
        *RECIPE,
    ]
    assert fit(args, []).options == []
    assert fit(args, [], processes=4).options == []


def test_one_file_per_class_and_few_jets(tmp_path):
    """What `--generate` used to write: one small file per class. Two workers would crash weaver, the recipe's
    fetch step would read the same jets again, and its epochs would cycle over them."""
    args = command(tmp_path, files_per_class=1, jets_per_file=48, val_jets_per_file=6)
    got = options(fit(args, []))
    assert got["--num-workers"] == "1"
    assert "--in-memory" in got and got["--fetch-step"] == "1"
    assert got["--batch-size"] == str(3 * 48)  # one worker holds every training jet
    assert got["--batch-size-val"] == "18" and got["--samples-per-epoch-val"] == "18"
    assert got["--samples-per-epoch"] == str(3 * 48)


def test_workers_and_batches_fit_each_workers_share(tmp_path):
    args = command(tmp_path, files_per_class=4, jets_per_file=100, val_jets_per_file=10)
    got = options(fit(args, []))
    # 2 workers with 2 files per class each: 600 training jets, one batch of 512 per worker and epoch
    assert "--num-workers" not in got and "--batch-size" not in got
    assert got["--samples-per-epoch"] == "1024"
    assert got["--batch-size-val"] == "60" and got["--samples-per-epoch-val"] == "120"  # every jet once
    # two processes: a worker would hold 300 jets, fewer than a batch; one worker per process holds 600
    got = options(fit(args, [], processes=2))
    assert got["--num-workers"] == "1" and "--batch-size" not in got and got["--samples-per-epoch"] == "512"


def test_settings_that_would_crash_weaver_or_repeat_jets_stop_in_one_line(tmp_path):
    args = command(tmp_path, files_per_class=2, jets_per_file=1000, val_jets_per_file=50)
    with pytest.raises(LoaderError, match=r"--num-workers 4: .* 'HToBB' has 2 file\(s\) .* use --num-workers 2"):
        fit(args, ["--num-workers", "4"])
    with pytest.raises(LoaderError, match=r"fewer than the 4 DDP processes .* --files-per-class 8"):
        fit(args, [], processes=4)
    with pytest.raises(LoaderError, match=r"--fetch-step 0.0001: a file holds 1000 training jets.*repeat"):
        fit(args, ["--no-in-memory", "--fetch-step", "0.0001"])
    with pytest.raises(LoaderError, match=r"--samples-per-epoch-val 100000: .* at most"):
        fit(args, ["--samples-per-epoch-val", "100000"])
    with pytest.raises(LoaderError, match=r"--batch-size 8192: a loader worker holds 3000 training jets"):
        fit(args, ["--batch-size", "8192"])
    no_val_files = [*args[: args.index("--data-val")], *args[args.index("--data-val") + 2 :]]
    with pytest.raises(LoaderError, match=r"at most \d+, or take more of the training files with --train-val-split$"):
        fit([*no_val_files, "--train-val-split", "0.9"], ["--samples-per-epoch-val", "1000"])  # QuarkGluon's way
    for message in ("--num-workers 4", "--batch-size 8192"):  # one line each
        with pytest.raises(LoaderError) as err:
            fit(args, message.split())
        assert "\n" not in str(err.value)


def test_the_users_options_win(tmp_path):
    args = command(tmp_path, files_per_class=2, jets_per_file=1000, val_jets_per_file=200)
    got = options(fit(args, ["--num-workers", "1", "--no-in-memory", "--batch-size", "64"]))
    assert not {"--num-workers", "--in-memory", "--batch-size"} & set(got)
    assert float(got["--fetch-step"]) == 1.0  # streamed: as many jets per fetch as there are (2000 per worker)


def test_streamed_data_reads_many_jets_per_fetch(tmp_path, monkeypatch):
    """Too large for memory: the fetch step is raised so that a fetch reads ~JETS_PER_FETCH jets per worker."""
    monkeypatch.setattr(loader_settings, "IN_MEMORY_MAX_BYTES", 0)
    monkeypatch.setattr(loader_settings, "count_entries", lambda path, treename=None: 100_000)
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        for cls in CLASSES:
            for k in range(8):
                (tmp_path / split / f"{cls}_{k:03d}.root").touch()
    args = [
        "--data-train",
        *(f"{c}:{tmp_path}/train/{c}_*.root" for c in CLASSES),
        "--data-val",
        f"{tmp_path}/val/*.root",
        *RECIPE,
    ]
    monkeypatch.setattr(loader_settings, "bytes_per_jet", lambda config: 12_000)
    got = options(fit(args, []))
    per_worker = 3 * 4 * 100_000  # 3 classes, 4 files each per worker
    assert float(got["--fetch-step"]) == pytest.approx(loader_settings.JETS_PER_FETCH / per_worker, rel=1e-2)
    assert "--in-memory" not in got

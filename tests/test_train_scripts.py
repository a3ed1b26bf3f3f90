"""train_{JetClass,TopLandscape,QuarkGluon}.sh: the weaver command they build (read back from DRY_RUN=1), the
CPU / DataParallel / DDP launch, dataset folders, fine-tuning checkpoints and their one-line errors.

Everything runs bash only: the CUDA check is forced with JETATTN_ASSUME_CUDA, and where a script goes past
DRY_RUN a fake `weaver` and a fake `python` on PATH record what they were called with.
"""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from stand_in import python_script

REPO = Path(__file__).resolve().parents[1]

# model -> network file, batch size, learning rate (the table the scripts must implement)
MODELS = {
    "ParT": ("example_ParticleTransformer.py", 512, 1e-3),
    "ParT-FineTune": ("example_ParticleTransformer_finetune.py", 512, 1e-4),
    "ParT-topk": ("example_ParT_topk.py", 512, 1e-3),
    "LinParT": ("example_LinParT.py", 512, 1e-3),
    "PN": ("example_ParticleNet.py", 512, 1e-2),
    "PN-FineTune": ("example_ParticleNet_finetune.py", 512, 1e-3),
    "PFN": ("example_PFN.py", 4096, 2e-2),
    "PCNN": ("example_PCNN.py", 4096, 2e-2),
}
DATASETS = {
    "JetClass": {
        "models": ["ParT", "ParT-topk", "LinParT", "PN", "PFN", "PCNN"],
        "features": {f: f"data/JetClass/JetClass_{f}.yaml" for f in ("kin", "kinpid", "full")},
        "epochs": 50,
        "samples": 10000 * 1024,
        "samples_val": 10000 * 128,
    },
    "TopLandscape": {
        "models": list(MODELS),
        "features": {"kin": "data/TopLandscape/top_kin.yaml"},
        "epochs": 20,
        "samples": 2400 * 512,
        "samples_val": 800 * 512,
    },
    "QuarkGluon": {
        "models": list(MODELS),
        "features": {f: f"data/QuarkGluon/qg_{f}.yaml" for f in ("kin", "kinpid", "kinpidplus")},
        "epochs": 20,
        "samples": 1_600_000,
        "samples_val": 200_000,
    },
}
CASES = [(d, m, f) for d, spec in DATASETS.items() for m in spec["models"] for f in spec["features"]]
# our efficient-attention ParTs, which the public recipe does not have; they train as ParT does
ADDITIONS = {"ParT-topk", "LinParT"}
PART_FAMILY = {"ParT", "ParT-FineTune", *ADDITIONS}  # mixed precision; weight decay outside JetClass
SETTINGS = (
    "GPUS",
    "DDP_NGPUS",
    "NNODES",
    "NODE_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "PRETRAINED",
    "DRY_RUN",
    "PYTHON",
    "JETATTN_ASSUME_CUDA",
    "DATADIR_JetClass",
    "DATADIR_TopLandscape",
    "DATADIR_QuarkGluon",
    "DATADIR_DiHiggs",
)
SENTINEL = ["--num-epochs", "3", "--tensorboard", "it's mine"]  # extra args: must come last, quoting intact


def run(dataset, *args, script_dir=REPO, cwd=REPO, **env):
    base = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    base.setdefault("JETATTN_ASSUME_CUDA", "0")
    base["PYTHON"] = sys.executable  # the environment with jetattn, as a user's activated one
    return subprocess.run(
        ["bash", str(script_dir / f"train_{dataset}.sh"), *args],
        cwd=cwd,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def dry(dataset, *args, **env):
    result = run(dataset, *args, DRY_RUN="1", **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1, result.stdout  # one pasteable line
    return shlex.split(result.stdout), result.stderr


def split_launcher(argv):
    """(launcher tokens before weaver, weaver options) of a printed command."""
    i = next(i for i, a in enumerate(argv) if os.path.basename(a) == "weaver")
    return argv[:i], argv[i + 1 :]


def occurrences(options, name):
    """The values after each occurrence of option `name`, in order."""
    found = []
    for i, token in enumerate(options):
        if token == name:
            values = []
            for value in options[i + 1 :]:
                if value.startswith("--"):
                    break
                values.append(value)
            found.append(values)
    return found


def last(options, name):
    found = occurrences(options, name)
    assert found, f"{name} missing from {options}"
    return found[-1]


MODES = {  # name -> (extra args, env)
    "cpu": ([], {}),
    "dataparallel": (["--gpus", "0,1"], {"JETATTN_ASSUME_CUDA": "1"}),
    "ddp": ([], {"DDP_NGPUS": "2", "JETATTN_ASSUME_CUDA": "1"}),
}


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("dataset, model, features", CASES)
def test_dry_run_command(dataset, model, features, mode):
    mode_args, env = MODES[mode]
    argv, stderr = dry(dataset, model, features, *mode_args, *SENTINEL, **env)
    launcher, options = split_launcher(argv)
    spec = DATASETS[dataset]
    network, batch, lr = MODELS[model]

    assert last(options, "--network-config") == [f"networks/{network}"]
    assert last(options, "--data-config") == [spec["features"][features]]
    for path in (f"networks/{network}", spec["features"][features]):
        assert (REPO / path).is_file(), path
    assert last(options, "--batch-size") == [str(batch)]
    assert float(last(options, "--start-lr")[0]) == lr
    assert last(options, "--optimizer") == ["ranger"]
    assert last(options, "--samples-per-epoch-val") == [str(spec["samples_val"])]
    model_prefix = last(options, "--model-prefix")[0]
    assert model_prefix.startswith(f"training/{dataset}/{model}/{features}/") and "{auto}" in model_prefix
    assert last(options, "--predict-output") == ["pred.root"]
    assert occurrences(options, "--num-epochs")[0] == [str(spec["epochs"])]
    # the caller's arguments come last, so weaver's argparse keeps them
    assert options[-len(SENTINEL) :] == SENTINEL and last(options, "--num-epochs") == ["3"]

    n_processes = 2 if mode == "ddp" else 1
    assert last(options, "--samples-per-epoch") == [str(spec["samples"] // n_processes)]
    if mode == "ddp":
        assert launcher == ["torchrun", "--standalone", "--nnodes=1", "--nproc_per_node=2"]
        assert options[:2] == ["--backend", "nccl"] and last(options, "--gpus") == ["0"]
    else:
        assert launcher == [] and "--backend" not in options
        assert last(options, "--gpus") == {"cpu": [""], "dataparallel": ["0,1"]}[mode]
        assert len(occurrences(options, "--gpus")) == 1  # the caller's --gpus is not doubled
    assert ("no CUDA device found" in stderr) == (mode == "cpu")

    # mixed precision for the ParT family, on GPUs only; weight decay for the ParT family outside JetClass
    assert ("--use-amp" in options) == (model in PART_FAMILY and mode != "cpu")
    decay = ["weight_decay", "0.01"] in occurrences(options, "--optimizer-option")
    assert decay == (model in PART_FAMILY and dataset != "JetClass")

    if model.endswith("FineTune"):
        stem = "ParT" if model.startswith("ParT") else "ParticleNet"
        head = "fc" if model.startswith("ParT") else "fc_out"
        assert last(options, "--load-model-weights") == [f"models/{stem}_{'kin' if features == 'kin' else 'kinpid'}.pt"]
        assert ["lr_mult", f'("{head}.*",50)'] in occurrences(options, "--optimizer-option")
        assert last(options, "--lr-scheduler") == ["none"]
    else:
        assert "--load-model-weights" not in options and "--lr-scheduler" not in options


# The public recipe, written out: the weaver options of a single-GPU run of jet-universe/particle_transformer's
# train_JetClass.sh (591997c9), train_TopLandscape.sh (149b3c58, which added LGATr, a model we do not offer) and
# train_QuarkGluon.sh (9a8bc740), file paths, --model-prefix, --log and --tensorboard aside.
RECIPE_COMMON = {"--optimizer": ["ranger"], "--gpus": ["0"], "--predict-output": ["pred.root"]}
RECIPE_DATASETS = {
    "JetClass": {
        "--num-workers": ["2"],
        "--fetch-step": ["0.01"],
        "--num-epochs": ["50"],
        "--samples-per-epoch": ["10240000"],
        "--samples-per-epoch-val": ["1280000"],
    },
    "TopLandscape": {
        "--num-workers": ["1"],
        "--fetch-step": ["1"],
        "--in-memory": [],
        "--num-epochs": ["20"],
        "--samples-per-epoch": ["1228800"],
        "--samples-per-epoch-val": ["409600"],
    },
    "QuarkGluon": {
        "--num-workers": ["1"],
        "--fetch-step": ["1"],
        "--in-memory": [],
        "--train-val-split": ["0.8889"],
        "--num-epochs": ["20"],
        "--samples-per-epoch": ["1600000"],
        "--samples-per-epoch-val": ["200000"],
    },
}
# (dataset, model) -> batch size, start lr, --use-amp, --optimizer-option pairs, --lr-scheduler (None: weaver's default)
RECIPE_MODELS = {
    ("JetClass", "ParT"): (512, 1e-3, True, {}, None),
    ("JetClass", "PN"): (512, 1e-2, False, {}, None),
    ("JetClass", "PFN"): (4096, 2e-2, False, {}, None),
    ("JetClass", "PCNN"): (4096, 2e-2, False, {}, None),
    ("TopLandscape", "ParT"): (512, 1e-3, True, {"weight_decay": "0.01"}, None),
    ("TopLandscape", "ParT-FineTune"): (512, 1e-4, True, {"weight_decay": "0.01", "lr_mult": '("fc.*",50)'}, "none"),
    ("TopLandscape", "PN"): (512, 1e-2, False, {}, None),
    ("TopLandscape", "PN-FineTune"): (512, 1e-3, False, {"lr_mult": '("fc_out.*",50)'}, "none"),
    ("TopLandscape", "PFN"): (4096, 2e-2, False, {}, None),
    ("TopLandscape", "PCNN"): (4096, 2e-2, False, {}, None),
    ("QuarkGluon", "ParT"): (512, 1e-3, True, {"weight_decay": "0.01"}, None),
    ("QuarkGluon", "ParT-FineTune"): (512, 1e-4, True, {"weight_decay": "0.01", "lr_mult": '("fc.*",50)'}, "none"),
    ("QuarkGluon", "PN"): (512, 1e-2, False, {}, None),
    ("QuarkGluon", "PN-FineTune"): (512, 1e-3, False, {"lr_mult": '("fc_out.*",50)'}, "none"),
    ("QuarkGluon", "PFN"): (4096, 2e-2, False, {}, None),
    ("QuarkGluon", "PCNN"): (4096, 2e-2, False, {}, None),
}
RECIPE_CHECKPOINTS = {  # (dataset, model, features) -> --load-model-weights
    ("TopLandscape", "ParT-FineTune", "kin"): "models/ParT_kin.pt",
    ("TopLandscape", "PN-FineTune", "kin"): "models/ParticleNet_kin.pt",
    ("QuarkGluon", "ParT-FineTune", "kin"): "models/ParT_kin.pt",
    ("QuarkGluon", "ParT-FineTune", "kinpid"): "models/ParT_kinpid.pt",
    ("QuarkGluon", "ParT-FineTune", "kinpidplus"): "models/ParT_kinpid.pt",
    ("QuarkGluon", "PN-FineTune", "kin"): "models/ParticleNet_kin.pt",
    ("QuarkGluon", "PN-FineTune", "kinpid"): "models/ParticleNet_kinpid.pt",
    ("QuarkGluon", "PN-FineTune", "kinpidplus"): "models/ParticleNet_kinpid.pt",
}
RECIPE_JETCLASS_GROUPS = [
    "HToBB",
    "HToCC",
    "HToGG",
    "HToWW2Q1L",
    "HToWW4Q",
    "TTBar",
    "TTBarLep",
    "WToQQ",
    "ZToQQ",
    "ZJetsToNuNu",
]
# options whose values are paths (checked elsewhere); --log-file is the recipe's --log (an abbreviation of it)
PATH_OPTIONS = {
    "--data-train",
    "--data-val",
    "--data-test",
    "--data-config",
    "--network-config",
    "--model-prefix",
    "--log-file",
    "--load-model-weights",
}


def test_models_beyond_the_recipe_are_our_additions_only():
    offered = {(dataset, model) for dataset, model, _ in CASES}
    assert {model for _, model in offered - set(RECIPE_MODELS)} == ADDITIONS
    assert set(RECIPE_MODELS) <= offered
    for dataset, model in offered - set(RECIPE_MODELS):  # each trains as the recipe's ParT on that dataset
        assert RECIPE_MODELS[dataset, "ParT"][:2] == MODELS[model][1:]


@pytest.mark.parametrize("dataset, model, features", [c for c in CASES if c[1] not in ADDITIONS])
def test_options_match_the_public_recipe(dataset, model, features):
    _, options = split_launcher(dry(dataset, model, features, GPUS="0")[0])
    batch, lr, amp, optimizer_options, scheduler = RECIPE_MODELS[dataset, model]
    expected = {**RECIPE_COMMON, **RECIPE_DATASETS[dataset], "--batch-size": [str(batch)], "--start-lr": [lr]}
    if amp:
        expected["--use-amp"] = []
    if scheduler:
        expected["--lr-scheduler"] = [scheduler]
    # weaver keeps the last value of an option, but collects every --optimizer-option
    names = {t for t in options if t.startswith("--")} - PATH_OPTIONS - {"--optimizer-option"}
    got = {name: last(options, name) for name in names}
    got["--start-lr"] = [float(got["--start-lr"][0])]
    assert got == expected
    assert dict(occurrences(options, "--optimizer-option")) == optimizer_options
    checkpoint = RECIPE_CHECKPOINTS.get((dataset, model, features))
    assert occurrences(options, "--load-model-weights") == ([[checkpoint]] if checkpoint else [])
    assert ("--data-val" in options) == (dataset != "QuarkGluon")  # QuarkGluon validates on --train-val-split


def test_dataset_options():
    _, jetclass = split_launcher(dry("JetClass", "PN", "kin")[0])
    train = last(jetclass, "--data-train")
    assert [t.split(":")[0] for t in train] == RECIPE_JETCLASS_GROUPS
    assert all(t.endswith(f"/train_100M/{t.split(':')[0]}_*.root") for t in train)
    assert last(jetclass, "--data-val")[0].endswith("/val_5M/*.root")
    assert [t.split(":")[0] for t in last(jetclass, "--data-test")] == [t.split(":")[0] for t in train]
    assert last(jetclass, "--num-workers") == ["2"] and last(jetclass, "--fetch-step") == ["0.01"]

    _, top = split_launcher(dry("TopLandscape", "PN")[0])
    assert last(top, "--data-train")[0].endswith("/train_file.parquet")
    assert last(top, "--data-val")[0].endswith("/val_file.parquet")
    assert last(top, "--data-test")[0].endswith("/test_file.parquet")
    assert "--in-memory" in top and last(top, "--fetch-step") == ["1"] and last(top, "--num-workers") == ["1"]

    _, qg = split_launcher(dry("QuarkGluon", "PN")[0])
    assert last(qg, "--data-config") == ["data/QuarkGluon/qg_kinpid.yaml"]  # the default feature set
    assert last(qg, "--data-train")[0].endswith("/train_file_*.parquet") and "--data-val" not in qg
    assert last(qg, "--train-val-split") == ["0.8889"]


def test_gpu_choice_from_environment_and_detection(tmp_path):
    for gpus, expected in (("0,1", ["0,1"]), ("", [""])):
        _, options = split_launcher(dry("TopLandscape", "ParT", GPUS=gpus, JETATTN_ASSUME_CUDA="1")[0])
        assert occurrences(options, "--gpus") == [expected]
        assert ("--use-amp" in options) == bool(gpus)
    _, options = split_launcher(dry("TopLandscape", "ParT", "--gpus", "", JETATTN_ASSUME_CUDA="1")[0])
    assert "--use-amp" not in options  # the caller asked for the CPU
    # without the override the scripts ask $PYTHON whether torch sees CUDA (exit status 0: yes)
    env = {k: v for k, v in os.environ.items() if k != "JETATTN_ASSUME_CUDA"}
    for cuda, expected in ((0, "0"), (1, "")):
        fake_python = tmp_path / f"python{cuda}"
        fake_python.write_text(python_script(f"exit {cuda}\n"))
        fake_python.chmod(0o755)
        result = subprocess.run(
            ["bash", str(REPO / "train_JetClass.sh"), "PFN", "kin"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            env={**env, "DRY_RUN": "1", "PYTHON": str(fake_python)},
        )
        assert last(split_launcher(shlex.split(result.stdout))[1], "--gpus") == [expected]
        assert ("training on the CPU" in result.stderr) == (expected == "")


def test_ddp_errors_and_several_nodes(tmp_path):
    # a real run (data there, weaver on PATH) stops before weaver when DDP finds no GPU
    jetclass = tmp_path / "jc"
    touch(*(jetclass / split / "HToBB_0.root" for split in ("train", "val", "test")))
    result = run(
        "JetClass",
        "ParT",
        "full",
        DDP_NGPUS="2",
        JETATTN_ASSUME_CUDA="0",
        DATADIR_JetClass=str(jetclass),
        PATH=f"{fake_tools(tmp_path)}:{os.environ['PATH']}",
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "DDP_NGPUS=2" in result.stderr and "CUDA" in result.stderr
    assert not (tmp_path / "weaver.log").exists()

    result = run("JetClass", "ParT", DRY_RUN="1", DDP_NGPUS="two")
    assert result.returncode == 2 and "DDP_NGPUS" in result.stderr

    nodes = {"NNODES": "2", "DDP_NGPUS": "4", "NODE_RANK": "1", "JETATTN_ASSUME_CUDA": "1"}
    result = run("JetClass", "ParT", DRY_RUN="1", **nodes)
    assert result.returncode == 2 and "MASTER_ADDR" in result.stderr

    argv, _ = dry("JetClass", "ParT", MASTER_ADDR="node0.cluster", **nodes)
    launcher, options = split_launcher(argv)
    assert launcher == [
        "torchrun",
        "--nnodes=2",
        "--node_rank=1",
        "--nproc_per_node=4",
        "--master_addr=node0.cluster",
        "--master_port=29500",
    ]
    assert last(options, "--samples-per-epoch") == [str(10000 * 1024 // 8)]


# Dry runs prepared on a login node (no CUDA: JETATTN_ASSUME_CUDA=0) for GPUs elsewhere: case -> (dataset, args,
# env, launcher, --gpus). Fine-tuning checkpoints are not needed either: they live where the command runs.
LOGIN_NODE = {
    "ddp": (
        "JetClass",
        ["PN", "kin"],
        {"DDP_NGPUS": "2"},
        ["torchrun", "--standalone", "--nnodes=1", "--nproc_per_node=2"],
        "0",
    ),
    "ddp-nodes": (
        "JetClass",
        ["ParT"],
        {"DDP_NGPUS": "4", "NNODES": "2", "MASTER_ADDR": "node0"},
        ["torchrun", "--nnodes=2", "--node_rank=0", "--nproc_per_node=4", "--master_addr=node0", "--master_port=29500"],
        "0",
    ),
    "dataparallel": ("JetClass", ["ParT", "full", "--gpus", "0,1"], {}, [], "0,1"),
    "gpus-env": ("QuarkGluon", ["ParT"], {"GPUS": "0,1"}, [], "0,1"),
    "finetune-ddp": (
        "TopLandscape",
        ["ParT-FineTune"],
        {"DDP_NGPUS": "2", "PRETRAINED": "/absent/ParT_kin.pt"},
        ["torchrun", "--standalone", "--nnodes=1", "--nproc_per_node=2"],
        "0",
    ),
}


@pytest.mark.parametrize("case", sorted(LOGIN_NODE))
def test_dry_run_without_cuda_prints_the_gpu_command(case):
    dataset, args, env, expected_launcher, expected_gpus = LOGIN_NODE[case]
    argv, stderr = dry(dataset, *args, JETATTN_ASSUME_CUDA="0", **env)
    launcher, options = split_launcher(argv)
    assert launcher == expected_launcher
    assert last(options, "--gpus") == [expected_gpus]
    assert ("--use-amp" in options) == args[0].startswith("ParT")  # on GPUs: mixed precision stays
    if "PRETRAINED" in env:
        assert last(options, "--load-model-weights") == [env["PRETRAINED"]]
    assert ("needs CUDA GPUs where the command runs" in stderr) == ("DDP_NGPUS" in env)
    assert "training on the CPU" not in stderr


def test_pretrained_override_and_missing_checkpoint(tmp_path):
    _, options = split_launcher(dry("QuarkGluon", "PN-FineTune", "kinpidplus", PRETRAINED="/ckpt/my pn.pt")[0])
    assert last(options, "--load-model-weights") == ["/ckpt/my pn.pt"]

    result = run("TopLandscape", "ParT-FineTune", PRETRAINED=str(tmp_path / "absent.pt"))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "absent.pt" in result.stderr and "PRETRAINED" in result.stderr

    # no models/ yet: the error names the command that downloads the official checkpoint
    result = run("QuarkGluon", "PN-FineTune", "kinpidplus", script_dir=copy_scripts(tmp_path / "repo"))
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "models/ParticleNet_kinpid.pt" in result.stderr
    assert "./get_datasets.py models --parts ParticleNet kinpid" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["Transformer"], "ParT, ParT-topk, LinParT, PN, PFN, PCNN"),
        (["ParT-FineTune"], "ParT, ParT-topk, LinParT, PN, PFN, PCNN"),  # no fine-tuning on JetClass itself
        (["ParT", "everything"], "kin, kinpid, full"),
        ([], "usage"),
    ],
)
def test_bad_model_or_features(args, message):
    result = run("JetClass", *args, DRY_RUN="1")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert run("TopLandscape", "ParT", "kinpid", DRY_RUN="1").returncode == 2


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_missing_dataset_is_one_line(dataset, tmp_path):
    result = run(dataset, "PN", **{f"DATADIR_{dataset}": str(tmp_path / "nothing")})
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "get_datasets.py" in result.stderr and dataset in result.stderr and str(tmp_path) in result.stderr


def copy_scripts(tmp_path, env_sh=None):
    """The three scripts and their shared file in a fresh folder, with an env.sh of our own (or none)."""
    (tmp_path / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "train_common.sh", tmp_path / "scripts")
    for dataset in DATASETS:
        shutil.copy(REPO / f"train_{dataset}.sh", tmp_path)
    if env_sh is not None:
        (tmp_path / "env.sh").write_text(env_sh)
    return tmp_path


def test_datadir_from_caller_env_sh_or_default(tmp_path):
    # an env.sh that sets the folders without ${...:-} still loses to the caller's variable
    env_sh = "export DATADIR_TopLandscape=/env/top\nexport DATADIR_QuarkGluon=/env/qg\n"
    scripts = copy_scripts(tmp_path / "repo", env_sh)
    argv = shlex.split(run("TopLandscape", "PN", script_dir=scripts, DRY_RUN="1").stdout)
    assert last(split_launcher(argv)[1], "--data-train") == ["/env/top/train_file.parquet"]
    argv = shlex.split(run("TopLandscape", "PN", script_dir=scripts, DRY_RUN="1", DATADIR_TopLandscape="/mine").stdout)
    assert last(split_launcher(argv)[1], "--data-train") == ["/mine/train_file.parquet"]
    # run from another folder, the repository paths become absolute
    assert last(split_launcher(argv)[1], "--data-config") == [f"{scripts}/data/TopLandscape/top_kin.yaml"]

    bare = copy_scripts(tmp_path / "bare")
    argv = shlex.split(run("JetClass", "PN", script_dir=bare, DRY_RUN="1").stdout)
    assert last(split_launcher(argv)[1], "--data-val") == [f"{bare}/datasets/JetClass/Pythia/val_5M/*.root"]


def touch(*paths):
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def test_generated_layouts_are_found(tmp_path):
    jetclass, top, qg = tmp_path / "jc", tmp_path / "top", tmp_path / "qg"
    touch(
        jetclass / "train" / "HToBB_0.root",
        jetclass / "val" / "HToBB_0.root",
        jetclass / "test" / "HToBB_0.root",
        *(top / f"{s}_file.root" for s in ("train", "val", "test")),
        qg / "train_file_0.root",
        qg / "test_file_0.root",
    )
    _, options = split_launcher(dry("JetClass", "PN", DATADIR_JetClass=str(jetclass))[0])
    assert last(options, "--data-train")[0] == f"HToBB:{jetclass}/train/HToBB_*.root"
    assert last(options, "--data-val") == [f"{jetclass}/val/*.root"]
    _, options = split_launcher(dry("TopLandscape", "PN", DATADIR_TopLandscape=str(top))[0])
    assert last(options, "--data-test") == [f"{top}/test_file.root"]
    _, options = split_launcher(dry("QuarkGluon", "PN", DATADIR_QuarkGluon=str(qg))[0])
    assert last(options, "--data-train") == [f"{qg}/train_file_*.root"]


def fake_tools(tmp_path):
    """A `weaver` and a `python` that write their arguments (one per line) to files under tmp_path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("weaver", "python"):
        log = tmp_path / f"{name}.log"
        body = f'printf "%s\\n" "$@" >> {log}\necho ---- >> {log}\n'
        (bin_dir / name).write_text(python_script(body) if name == "python" else f"#!/bin/bash\n{body}")
        (bin_dir / name).chmod(0o755)
    return bin_dir


def preflight_calls(log: Path) -> list[list[str]]:
    """The fake python's calls that ran the preflight, as argument lists."""
    calls = [call.splitlines() for call in log.read_text().split("----\n") if call]
    return [call for call in calls if call[:2] == ["-m", "jetattn.preflight"]]


def fake_top_landscape(tmp_path) -> tuple[Path, Path, dict]:
    """Empty TopLandscape files, and the environment that runs the scripts with fake_tools' weaver and python."""
    top = tmp_path / "top"
    touch(*(top / f"{s}_file.parquet" for s in ("train", "val", "test")))
    bin_dir = fake_tools(tmp_path)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PYTHON": str(bin_dir / "python"),
        "DATADIR_TopLandscape": str(top),
    }
    return top, bin_dir, env


def test_launch_runs_preflight_then_weaver(tmp_path):
    top, bin_dir, env = fake_top_landscape(tmp_path)
    printed = shlex.split(run("TopLandscape", "PN", *SENTINEL, DRY_RUN="1", **env).stdout)
    result = run("TopLandscape", "PN", *SENTINEL, **env)
    assert result.returncode == 0, result.stderr

    # the preflight gets the whole weaver command, the user's arguments last, and checks what weaver will read
    preflight = preflight_calls(tmp_path / "python.log")[-1]
    assert preflight[2:9] == ["--command", "--processes", "1", "--user-args", str(len(SENTINEL)), "--", "--data-train"]
    assert preflight[8:] == printed[1:]  # the fake preflight fitted nothing: the command runs as the script has it
    weaver_args = (tmp_path / "weaver.log").read_text().split("----\n")[0].splitlines()
    assert [str(bin_dir / "weaver"), *weaver_args] == printed  # what DRY_RUN prints is what runs
    assert "checkpoints and log: training/TopLandscape/PN/kin/<run>/" in result.stderr

    # testing another sample only: the dataset's files are not needed, and the preflight checks the caller's
    (tmp_path / "python.log").unlink()
    shutil.rmtree(top)
    result = run("TopLandscape", "PN", "--predict", "--data-test", "/elsewhere/*.root", **env)
    assert result.returncode == 0, result.stderr
    preflight = preflight_calls(tmp_path / "python.log")[-1]
    assert preflight[-3:] == ["--predict", "--data-test", "/elsewhere/*.root"] and "--user-args" in preflight

    # QuarkGluon validates on a slice of the training files: no --data-val anywhere
    qg = tmp_path / "qg"
    touch(qg / "train_file_0.root", qg / "test_file_0.root")
    (tmp_path / "python.log").unlink()
    result = run("QuarkGluon", "PN", "kin", **{**env, "DATADIR_QuarkGluon": str(qg)})
    assert result.returncode == 0, result.stderr
    preflight = preflight_calls(tmp_path / "python.log")[-1]
    assert preflight[preflight.index("--data-train") + 1] == f"{qg}/train_file_*.root"
    assert "--data-val" not in preflight and "data/QuarkGluon/qg_kin.yaml" in preflight


def test_the_run_line_names_where_weaver_will_write(tmp_path):
    """The caller's --model-prefix, --log-file, --predict-output and --run-mode win over the script's, in the line
    too (it named training/<dataset>/... whatever the caller gave)."""
    _, _, env = fake_top_landscape(tmp_path)

    def line(*args):
        result = run("TopLandscape", "PN", *args, **env)
        assert result.returncode == 0, result.stderr
        return [x for x in result.stderr.splitlines() if x.startswith("checkpoints")]

    own = ["--model-prefix", "/runs/a/net", "--log-file", "/runs/a/train.log"]
    assert line(*own) == [
        "checkpoints: /runs/a/net_*.pt, log: /runs/a/train.log, predictions: /runs/a/predict_output/pred*.root"
    ]
    assert line(*own, "--predict-output", "/out/p.root") == [
        "checkpoints: /runs/a/net_*.pt, log: /runs/a/train.log, predictions: /out/p*.root"
    ]
    # the caller's --model-prefix alone: the log goes beside it, not to a folder weaver names and prints nowhere
    assert line("-m", "/runs/b/net", "--run-mode", "train,val") == [
        "checkpoints: /runs/b/net_*.pt, log: /runs/b/train.log"
    ]
    assert line("--run-mode", "train,val")[0].startswith("checkpoints and log: training/TopLandscape/PN/kin/<run>/ (")
    assert "predictions" not in line("--run-mode", "train,val")[0]
    assert line("--predict", "--model-prefix", "/runs/a/net_best_epoch_state.pt") == []  # nothing trained
    printed = shlex.split(
        run("TopLandscape", "PN", "--predict", "-m", "/runs/a/net_epoch-3_state.pt", DRY_RUN="1", **env).stdout
    )
    assert last(printed, "--log-file") == ["/runs/a/predict.log"]
    # argparse's --option=value form, and a short option with its value attached, too
    assert line("--model-prefix=/runs/c/net", "--log-file=/runs/c/log.txt") == [
        "checkpoints: /runs/c/net_*.pt, log: /runs/c/log.txt, predictions: /runs/c/predict_output/pred*.root"
    ]
    assert line("-m/runs/d/net") == [
        "checkpoints: /runs/d/net_*.pt, log: /runs/d/train.log, predictions: /runs/d/predict_output/pred*.root"
    ]


def test_the_callers_options_are_read_as_weaver_reads_them(tmp_path):
    """jetattn.weaver_cli reads the caller's options with weaver's names, in every form argparse takes: a bash
    reading missed `--data-test=FILES` (and stopped for want of the dataset) and `-mPREFIX`."""
    top, _, env = fake_top_landscape(tmp_path)
    shutil.rmtree(top)  # no dataset here: only the caller's own test files
    result = run("TopLandscape", "PN", "--predict", "--data-test=/elsewhere/*.root", **env)
    assert result.returncode == 0, result.stderr
    assert preflight_calls(tmp_path / "python.log")[-1][-2:] == ["--predict", "--data-test=/elsewhere/*.root"]
    # --no-predict after --predict: weaver trains, so the dataset's training files are needed
    result = run("TopLandscape", "PN", "--predict", "--no-predict", **env)
    assert result.returncode == 1 and "error: no TopLandscape data under" in result.stderr
    # an option weaver would refuse stops the script before anything runs, in one line
    for log in ("python.log", "weaver.log"):
        (tmp_path / log).unlink(missing_ok=True)
    result = run("TopLandscape", "PN", "--batch-size", "256", "--gpus", **env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: weaver option: argument --gpus: expected one argument"]
    assert not (tmp_path / "python.log").exists() and not (tmp_path / "weaver.log").exists()
    # a python without jetattn: one line naming it
    result = run("TopLandscape", "PN", **{**env, "PYTHON": shutil.which("false")})
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1
    assert "cannot import jetattn" in result.stderr and "PYTHON" in result.stderr


def test_the_callers_files_survive_the_shell(tmp_path):
    """The assignments jetattn.weaver_cli prints for the scripts' `eval` keep paths with spaces, quotes and $."""
    odd = ["/data/a b/it's.root", "/data/$HOME/*.root"]
    script = (
        f'eval "$({sys.executable} -m jetattn.weaver_cli shell -- "$@")"; '
        'printf "%s\\n" "$USER_TEST_GIVEN" "[$USER_TRAIN_GIVEN]" "[$USER_GPUS]" "$USER_PREFIX"'
    )
    for prefix in [*odd, "/runs/x y/net"]:
        args = ["-t", *odd, "--gpus", "", "--model-prefix", prefix, "--num-epochs", "3"]
        result = subprocess.run(["bash", "-c", script, "bash", *args], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["1", "[]", "[]", prefix]


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_help_prints_the_header(dataset):
    result = run(dataset, "--help")
    assert result.returncode == 0 and f"./train_{dataset}.sh MODEL" in result.stdout
    assert "DDP_NGPUS" in result.stdout and not result.stdout.startswith("#")


# ---------------------------------------------------------------------------------------------------------------
# Multi-scale models (MST, Concat): their multi-scale YAMLs on the jet datasets, and train_DiHiggs.sh

MULTISCALE = {"MST": "example_MultiScaleTransformer.py", "Concat": "example_ConcatTransformer.py"}
MULTISCALE_YAMLS = {
    ("JetClass", "kin"): "data/JetClass/JetClass_kin_multiscale.yaml",
    ("JetClass", "full"): "data/JetClass/JetClass_full_multiscale.yaml",
    ("TopLandscape", "kin"): "data/TopLandscape/top_kin_multiscale.yaml",
}


@pytest.mark.parametrize("model", sorted(MULTISCALE))
@pytest.mark.parametrize("dataset, features", sorted(MULTISCALE_YAMLS))
def test_multiscale_models_on_jets_read_the_multiscale_yaml(dataset, features, model):
    _, options = split_launcher(dry(dataset, model, features, *SENTINEL)[0])
    assert last(options, "--network-config") == [f"networks/{MULTISCALE[model]}"]
    assert last(options, "--data-config") == [MULTISCALE_YAMLS[dataset, features]]
    assert last(options, "--batch-size") == ["256"] and float(last(options, "--start-lr")[0]) == 1e-3
    assert "--use-amp" not in options and options[-len(SENTINEL) :] == SENTINEL


def test_multiscale_models_need_their_yaml():
    result = run("JetClass", "MST", "kinpid", DRY_RUN="1")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "kin, full" in result.stderr
    result = run("QuarkGluon", "Concat", DRY_RUN="1")
    assert result.returncode == 2 and "unknown MODEL 'Concat'" in result.stderr


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("model", sorted(MULTISCALE))
def test_dihiggs_dry_run_command(model, mode):
    mode_args, env = MODES[mode]
    argv, stderr = dry("DiHiggs", model, *mode_args, *SENTINEL, **env)
    launcher, options = split_launcher(argv)
    assert last(options, "--network-config") == [f"networks/{MULTISCALE[model]}"]
    assert last(options, "--data-config") == ["data/DiHiggs/dihiggs.yaml"]
    assert (REPO / "data/DiHiggs/dihiggs.yaml").is_file()
    assert last(options, "--batch-size") == ["256"] and last(options, "--optimizer") == ["ranger"]
    for split in ("train", "val", "test"):
        assert last(options, f"--data-{split}")[0].endswith(f"/datasets/DiHiggs/{split}_file.root")
    assert "--samples-per-epoch" not in options and last(options, "--fetch-step") == ["1"]
    model_prefix = last(options, "--model-prefix")[0]
    assert model_prefix == f"training/DiHiggs/{model}/{{auto}}/net"
    assert options[-len(SENTINEL) :] == SENTINEL and last(options, "--num-epochs") == ["3"]
    if mode == "ddp":
        assert launcher == ["torchrun", "--standalone", "--nnodes=1", "--nproc_per_node=2"]
        assert last(options, "--gpus") == ["0"]
    else:
        assert launcher == [] and last(options, "--gpus") == {"cpu": [""], "dataparallel": ["0,1"]}[mode]
    assert ("no CUDA device found" in stderr) == (mode == "cpu")


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_part_version_option_reaches_weaver_and_builds_that_version(dataset):
    """``-o version 3.5`` goes to weaver as given, and the network file it names builds weaver's version 3.5."""
    from weaver.utils.data.config import DataConfig
    from weaver.utils.import_tools import import_module

    from jetattn.weaver import parse_options

    argv, _ = dry(dataset, "ParT", "-o", "version", "3.5", "-o", "block_params", "{'drop_path_rate': 0.2}")
    _, options = split_launcher(argv)
    assert options[-6:] == ["-o", "version", "3.5", "-o", "block_params", "{'drop_path_rate': 0.2}"]
    network = REPO / last(options, "--network-config")[0]
    yaml = REPO / last(options, "--data-config")[0]

    chosen = parse_options([options[-5:-3], options[-2:]])
    model, _ = import_module(str(network), "_network").get_model(
        DataConfig.load(str(yaml), load_observers=False), **chosen
    )
    block = model.mod.blocks[0]
    assert block.fc1_g is not None and block.attn.gate_proj is not None  # SwiGLU, output gate
    assert block.config.norm == "rms" and block.config.qk_norm and block.config.drop_path == 0.2


def test_dihiggs_config_option_is_quoted_for_weaver():
    _, options = split_launcher(
        dry(
            "DiHiggs",
            "MST",
            "-o",
            "config",
            "model_2",
            "--network-option",
            "config",
            "model_1",
            "-o",
            "config",
            "objects",
            "-o",
            "dim",
            "16",
        )[0]
    )
    assert options[-12:] == [
        "-o",
        "config",
        "'model_2'",
        "--network-option",
        "config",
        "'model_1'",
        "-o",
        "config",
        "'objects'",
        "-o",
        "dim",
        "16",
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["MST", "kin"], "takes no FEATURES argument"),
        (["PN"], "MST, Concat, ParT"),
        ([], "usage: ./train_DiHiggs.sh MODEL [weaver options...]"),
    ],
)
def test_dihiggs_bad_arguments(args, message):
    result = run("DiHiggs", *args, DRY_RUN="1")
    assert result.returncode == 2 and result.stdout == "" and result.stderr.count("\n") == 1
    assert message in result.stderr


def test_dihiggs_data_folder_and_missing_data(tmp_path):
    events = tmp_path / "events"
    touch(*(events / f"{s}_file.root" for s in ("train", "val", "test")))
    _, options = split_launcher(dry("DiHiggs", "Concat", DATADIR_DiHiggs=str(events))[0])
    assert last(options, "--data-test") == [f"{events}/test_file.root"]
    scripts = copy_scripts(tmp_path / "repo", f"export DATADIR_DiHiggs={events}\n")
    shutil.copy(REPO / "train_DiHiggs.sh", scripts)
    argv = shlex.split(run("DiHiggs", "MST", script_dir=scripts, DRY_RUN="1").stdout)
    assert last(split_launcher(argv)[1], "--data-train") == [f"{events}/train_file.root"]

    result = run("DiHiggs", "MST", DATADIR_DiHiggs=str(tmp_path / "nothing"))
    assert result.returncode == 1 and result.stdout == "" and result.stderr.count("\n") == 1
    assert "./get_datasets.py DiHiggs --generate --num-events N" in result.stderr and str(tmp_path) in result.stderr
    help_text = run("DiHiggs", "--help").stdout
    assert "./train_DiHiggs.sh MODEL" in help_text and "DATADIR_DiHiggs" in help_text

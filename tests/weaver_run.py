"""Helpers for tests that run weaver's CLI on the real samples and compare what it wrote."""

from __future__ import annotations

import ast
import importlib.util
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import awkward as ak
import numpy as np
import torch
import uproot

from jetattn.weaver import load_jets

REPO = Path(__file__).resolve().parents[1]
WEAVER = Path(sys.executable).with_name("weaver")  # the CLI of the environment running the tests
NETWORKS = sorted((REPO / "networks").glob("example_*.py"))
TOP_YAML = REPO / "data" / "TopLandscape" / "top_kin.yaml"
RECIPES = REPO / "tests" / "recipes"  # reference network files built as the public recipe builds each model
JETCLASS_YAML = REPO / "data" / "JetClass" / "JetClass_kin.yaml"

# ParT trained here floors the pair separation so its ONNX export agrees with PyTorch on Delphes jets
SMALL_PART = {
    "pair_min_delta": 1e-5,
    "embed_dims": (16, 16),
    "pair_embed_dims": (8, 8),
    "num_heads": 2,
    "num_layers": 1,
    "num_cls_layers": 1,
    "fc_params": (),
}
SMALL_MULTISCALE = {
    "config": "model_1",
    "dim": 16,
    "stream_params": {"pf": {"num_heads": 2, "num_layers": 1}},
    "fc_params": [(16, 0.1)],
}
# Small versions of each network (fast on two CPU cores), by network file name without ``example_``/``_finetune``.
SMALL_OPTIONS = {
    "ParticleNet": {"conv_params": [(4, (16, 16)), (4, (16, 16))], "fc_params": [(16, 0.1)], "knn_exclude_self": True},
    "PFN": {"phi_sizes": (16, 16), "f_sizes": (16,)},
    "PCNN": {"conv_params": [(8,), (16,), (16,)], "fc_params": [(16, 0.1)]},
    "ParticleTransformer": SMALL_PART,
    "ParT_topk": {**SMALL_PART, "topk": 8},
    "LinParT": {**SMALL_PART, "proj_dim": 8},
    # on the single-stream YAMLs (TopLandscape, ...), the constituent stream alone
    "MultiScaleTransformer": {**SMALL_MULTISCALE, "cross_heads": 2},
    "ConcatTransformer": SMALL_MULTISCALE,
}

# A training run as short as weaver allows: two steps and one validation step, on the CPU (weaver's `--gpus ""`).
# Later arguments override these.
SHORT_TRAINING = [
    "--num-epochs",
    "1",
    "--batch-size",
    "32",
    "--samples-per-epoch",
    "64",
    "--samples-per-epoch-val",
    "32",
    "--fetch-step",
    "1",
    "--optimizer",
    "adam",
    "--start-lr",
    "1e-3",
]


def base_name(network: Path) -> str:
    return network.stem.removeprefix("example_").removesuffix("_finetune")


def option_args(options: dict) -> list[str]:
    """``--network-option NAME VALUE`` pairs; weaver reads each value with ``ast.literal_eval``."""
    return [arg for name, value in options.items() for arg in ("--network-option", name, repr(value))]


def weaver(*args: object, timeout: int = 300, pythonpath: Path | None = None) -> str:
    """Run weaver's CLI on the CPU with ``args`` (as strings); return its log, or fail the test with its tail.

    ``pythonpath``: a folder the network file imports from (weaver loads the file itself, not its folder).
    """
    cmd = [str(WEAVER), "--gpus", "", "--num-workers", "0", *map(str, args)]
    env = None
    if pythonpath is not None:
        paths = (str(pythonpath), os.environ.get("PYTHONPATH"))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"weaver failed ({proc.returncode}):\n{' '.join(cmd)}\n...\n{log[-4000:]}"
    return log


def short_training(network: Path, options: dict, sample: Path, out: Path, fraction: float, *extra: object) -> str:
    """A few weaver training steps on ``sample`` (TopLandscape YAML) with ``network`` and ``options``, then its
    predictions to ``out/pred.root``, in one weaver call; returns weaver's log."""
    return weaver(
        "--data-config",
        TOP_YAML,
        "--network-config",
        network,
        *option_args(options),
        "--data-train",
        sample,
        "--data-test",
        sample,
        "--model-prefix",
        out / "net",
        "--predict-output",
        out / "pred.root",
        "--data-fraction",
        fraction,
        *SHORT_TRAINING,
        *extra,
    )


def load_keys_report(log: str) -> tuple[list[str], list[str]]:
    """The Missing and Unexpected keys weaver logs after ``--load-model-weights``."""
    missing = re.search(r"Missing: (\[.*?\])", log)
    unexpected = re.search(r"Unexpected: (\[.*?\])", log)
    assert missing and unexpected, "weaver did not report the loaded weights"
    return ast.literal_eval(missing.group(1)), ast.literal_eval(unexpected.group(1))


def load_network(path: Path) -> ModuleType:
    """Import a network file by path, as weaver does."""
    spec = importlib.util.spec_from_file_location(f"_net_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def official_checkpoint(path: Path, **cfg) -> Path:
    """A trained-looking weaver ParT saved as the official ``ParT_*.pt`` files are: nn.MultiheadAttention keys
    (``in_proj_weight``) under ``mod.``; BatchNorm statistics randomised so that they matter."""
    from weaver.nn.model.ParticleTransformer import ParticleTransformer as WeaverParT

    torch.manual_seed(11)
    model = WeaverParT(**cfg)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    torch.save(official_layout({"mod." + k: v for k, v in model.state_dict().items()}), path)
    return path


def official_layout(state: dict) -> dict:
    """weaver-core >= 0.5 packs attention as ``in_proj.weight``; the official ParT files (nn.MultiheadAttention)
    as ``in_proj_weight``."""
    return {k.replace("attn.in_proj.", "attn.in_proj_"): v for k, v in state.items()}


def read_predictions(path: Path, classes: list[str]) -> np.ndarray:
    """Scores ``(jets, classes)`` from weaver's prediction ROOT file."""
    with uproot.open(path) as f:
        tree = f["Events"]
        return np.stack([tree[f"score_{name}"].array(library="np") for name in classes], axis=1)


def real_batch(data_config: Path, files: list[Path], n_jets: int) -> dict[str, torch.Tensor]:
    """The first ``n_jets`` jets as weaver's test loader prepares them: ``{input name: (n_jets, C, P)}``."""
    return load_jets(data_config, files, n_jets)[0]


def read_jets(path: Path) -> dict:
    """Every branch of a real sample's ``tree`` but the counter ``n_part``, as arrays."""
    with uproot.open(path) as f:
        arrays = f["tree"].arrays(library="ak")
    return {name: arrays[name] for name in arrays.fields if name != "n_part"}


def write_jets(dst: Path, columns: dict) -> Path:
    """A TTree ``tree`` like the real samples': the ``part_*`` columns jagged, sharing the counter ``n_part``."""
    particles = {name.removeprefix("part_"): v for name, v in columns.items() if name.startswith("part_")}
    branches = {"part": ak.zip(particles)} if particles else {}
    branches.update({name: np.asarray(v) for name, v in columns.items() if not name.startswith("part_")})
    types = {name: v.type if isinstance(v, ak.Array) else v.dtype for name, v in branches.items()}
    with uproot.recreate(dst) as out:
        out.mktree("tree", types, counter_name=lambda counted: "n_" + counted)
        out["tree"].extend(branches)
    return dst


def with_zero_branches(src: Path, dst: Path, names: list[str]) -> Path:
    """A copy of ``src`` with float branches ``names`` added, all zero (observers a sample lacks)."""
    columns = read_jets(src)
    n = len(next(iter(columns.values())))
    columns.update({name: np.zeros(n, dtype=np.float32) for name in names})
    return write_jets(dst, columns)


def reference(name: str) -> ModuleType:
    """The reference network file ``tests/recipes/recipe_<name>.py``, imported as weaver imports it."""
    sys.path.insert(0, str(RECIPES))
    try:
        return load_network(RECIPES / f"recipe_{name}.py")
    finally:
        sys.path.remove(str(RECIPES))


def perturbed(model: torch.nn.Module, seed: int, num_classes: int) -> torch.nn.Module:
    """Every weight moved off its initial value and BatchNorm statistics of a trained model, so that LayerNorm
    gains, head scales and running statistics all matter; the class logits are spread as a trained model's are,
    so that the scores differ from jet to jet."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1 + 0.2 * torch.randn(p.shape, generator=g)).add_(0.02 * torch.randn(p.shape, generator=g))
        for m in model.modules():
            if isinstance(m, torch.nn.Linear) and m.out_features == num_classes:
                m.weight.mul_(5)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.5, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
    return model.eval()


def onnx_session(model: torch.nn.Module, trace: tuple, info: dict):
    """``model`` exported as weaver exports it (``model_info``'s names and dynamic axes, opset 17, the
    TorchScript-based exporter), traced on ``trace``, in an onnxruntime session whose inputs are checked to be
    every input weaver's ONNX runner feeds, by name."""
    import onnxruntime

    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        trace,
        buffer,
        input_names=info["input_names"],
        output_names=info["output_names"],
        dynamic_axes=info["dynamic_axes"],
        opset_version=17,
        dynamo=False,
    )
    session = onnxruntime.InferenceSession(buffer.getvalue())
    assert [i.name for i in session.get_inputs()] == list(info["input_names"])
    return session

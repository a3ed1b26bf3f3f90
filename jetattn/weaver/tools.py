"""What the tools need from weaver: a network built from a network file and its data config as weaver builds
it, checkpoints read and loaded as weaver loads them, and jets read as weaver's test loader reads them."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import torch
from torch import nn

from jetattn.deps import ToolError


def parse_options(pairs: list[list[str]] | None) -> dict:
    """``--network-option NAME VALUE`` pairs; values read as Python literals as weaver reads them, else strings."""
    options = {}
    for name, value in pairs or []:
        try:
            options[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[name] = value
    return options


def build_network(
    network: Path, data_config: Path, options: dict, for_inference: bool = True
) -> tuple[nn.Module, dict]:
    """``get_model(data_config, for_inference=..., **options)`` of a weaver network file, in eval mode."""
    from weaver.utils.data.config import DataConfig
    from weaver.utils.import_tools import import_module

    for path, what in ((network, "network file"), (data_config, "data config")):
        if not Path(path).is_file():
            raise ToolError(f"{path}: no such {what}")
    module = import_module(str(network), "_network")
    if not callable(getattr(module, "get_model", None)):
        raise ToolError(f"{network}: not a weaver network file (no get_model(data_config, **options))")
    config = DataConfig.load(str(data_config), load_observers=False, load_reweight_info=False)
    model, info = module.get_model(config, **{**options, "for_inference": for_inference})
    return model.eval(), info


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state_dict of a weaver checkpoint, read as weaver reads ``--model-prefix`` and ``--load-model-weights``.

    ``FILE:PREFIX`` (weaver's syntax) keeps the keys under ``PREFIX.``, with the prefix removed. Only tensors are
    unpickled (``weights_only``): nothing in the file runs.
    """
    text = str(path)
    file, _, prefix = text.rpartition(":") if ":" in text and not Path(text).is_file() else (text, "", "")
    file_path = Path(file)
    if not file_path.is_file():
        raise ToolError(f"{file_path}: no such checkpoint")
    try:
        state = torch.load(file_path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises pickle, zip and runtime errors alike for damaged files
        raise ToolError(f"{file_path}: not a readable PyTorch checkpoint ({type(err).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("format"), str):  # e.g. jetattn.quantize's int8 files
        raise ToolError(f"{file_path}: a {state['format']} file, not a float checkpoint; give the float checkpoint")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ToolError(f"{file_path}: holds a {type(state).__name__} that is not a state_dict")
    if prefix:
        state = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
        if not state:
            raise ToolError(f"{file_path}: no keys under the prefix {prefix!r}")
    return state


def load_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Load a weaver checkpoint into ``model`` as ``weaver --predict`` does: strictly, through the model's own
    ``load_state_dict``, so the layout conversions of its modules apply (``in_proj_weight`` and ``in_proj.weight``
    of weaver's attention become our ``q_proj``/``kv_proj``). A key missing or left over, or a shape that differs,
    is refused in one line naming the first such key; the model's weights are then left as they were.
    """
    state = read_checkpoint(path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        # strict=False only to collect the keys: any mismatch is refused below, as strict=True would
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # same keys, other shapes: torch lists every one, keep the first
        model.load_state_dict(before)
        first = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line), str(err))
        raise ToolError(f"{path}: does not load strictly into the network ({first})") from None
    if missing or unexpected:
        model.load_state_dict(before)
        raise ToolError(
            f"{path}: does not load strictly into the network ({len(missing)} missing keys, first {missing[:3]}; "
            f"{len(unexpected)} unexpected, first {unexpected[:3]})"
        )


def add_network_arguments(parser: argparse.ArgumentParser, default_network: Path | None = None) -> None:
    """``--network``, ``--data-config`` and ``--network-option``, as weaver takes them (see :func:`build_network`);
    ``--network`` is required unless a default is given."""
    if default_network is None:
        parser.add_argument("--network", type=Path, required=True, help="weaver network file (networks/X.py)")
    else:
        parser.add_argument(
            "--network", type=Path, default=default_network, help=f"weaver network file (default: {default_network})"
        )
    parser.add_argument("--data-config", type=Path, required=True, help="weaver data config (YAML)")
    parser.add_argument(
        "--network-option",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="as weaver's: passed to get_model (values read as Python literals)",
    )


def load_jets(data_config: str | Path, files: list, num_jets: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The first ``num_jets`` jets of ``files`` as weaver's test loader prepares them (no shuffling, the YAML's
    standardisation and padding): ``{input name: (jets, C, P)}`` and the class index of each jet (``_label_``).
    Fewer jets come back when the files hold fewer."""
    from torch.utils.data import DataLoader
    from weaver.utils.dataset import SimpleIterDataset

    dataset = SimpleIterDataset(
        {"_": [str(f) for f in files]},
        str(data_config),
        for_training=False,
        load_range_and_fraction=((0, 1), 1, 1),
        fetch_by_files=True,
        fetch_step=1,
        async_load=False,
    )
    inputs, labels, _ = next(iter(DataLoader(dataset, batch_size=num_jets)))
    return inputs, labels["_label_"]

"""What every ``networks/*.py`` file needs, so that each stays a dozen lines.

weaver imports a network file by its path and calls ``get_model(data_config, **options)`` and
``get_loss(data_config, **options)``; ``data_config`` is weaver's ``DataConfig``.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jetattn.deps import ToolError
from jetattn.nn.blocks import classifier_head
from jetattn.nn.inputs import keep_in_graph, particle_mask
from jetattn.nn.part import ParticleTransformer


def model_info(data_config: Any, output_names: tuple[str, ...] = ("softmax",)) -> dict:
    """The ``model_info`` weaver wants: input names and shapes (batch of 1) and the ONNX dynamic axes.

    Axis 0 of every input and output is the batch ``N``; axis 2 of each input is its sequence length,
    named after the input group (``pf_features`` -> ``n_pf``), so ONNX models take any number of particles.
    """
    names = list(data_config.input_names)
    shapes = {k: ((1,) + tuple(s[1:])) for k, s in data_config.input_shapes.items()}
    dynamic_axes = {k: {0: "N", 2: "n_" + k.split("_")[0]} for k in names}
    dynamic_axes.update({k: {0: "N"} for k in output_names})
    return {
        "input_names": names,
        "input_shapes": shapes,
        "output_names": list(output_names),
        "dynamic_axes": dynamic_axes,
    }


# Tools that build a model from a weaver network file and its data config, as weaver does.


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


def add_network_arguments(parser: argparse.ArgumentParser) -> None:
    """``--network``, ``--data-config`` and ``--network-option``, as weaver takes them (see :func:`build_network`)."""
    parser.add_argument("--network", type=Path, required=True, help="weaver network file (networks/X.py)")
    parser.add_argument("--data-config", type=Path, required=True, help="weaver data config (YAML)")
    parser.add_argument(
        "--network-option",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="as weaver's: passed to get_model (values read as Python literals)",
    )


def cross_entropy_loss(data_config: Any = None, **kwargs) -> torch.nn.Module:
    """The classification loss every network file returns from ``get_loss``."""
    return torch.nn.CrossEntropyLoss()


def num_classes(data_config: Any) -> int:
    return len(data_config.label_value)


# weaver's input groups of ParT, in the order of the public recipe's YAMLs
PART_INPUTS = ("pf_points", "pf_features", "pf_vectors", "pf_mask")


class ParTForWeaver(torch.nn.Module):
    """ParT behind weaver's input order ``(points, features, lorentz_vectors, mask)``; with other
    ``input_names`` (a data config holding more groups) it reads ``pf_features``, ``pf_vectors`` and ``pf_mask``
    by name.

    The model sits under ``mod``, as in the public ParT repository, so the official ``ParT_*.pt`` files and
    checkpoints trained with weaver's own ParT load unchanged. With ``head_classes`` set, ``mod`` ends at the
    class-token embedding and a fresh ``fc`` Linear classifies (fine-tuning: only ``fc.*`` is new).
    """

    def __init__(
        self, head_classes: int | None = None, input_names: tuple[str, ...] = PART_INPUTS, **part_options
    ) -> None:
        super().__init__()
        missing = [name for name in PART_INPUTS[1:] if name not in input_names]
        if missing:
            raise ValueError(
                f"ParT reads the input groups {', '.join(missing)}, which the data config lacks "
                f"(it has {', '.join(input_names)})"
            )
        self.input_names = tuple(input_names)
        self.for_inference = part_options.get("for_inference", False)
        if head_classes is None:
            self.mod = ParticleTransformer(**part_options)
            self.fc = None
        else:
            # the public fine-tuning recipe's layout: fc = Sequential(hidden layers..., Linear)
            fc_params = part_options.get("fc_params") or ()
            self.mod = ParticleTransformer(**{**part_options, "num_classes": None, "fc_params": None})
            self.fc = classifier_head(self.mod.norm.normalized_shape[0], head_classes, fc_params)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"mod.cls_token"}

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.input_names == PART_INPUTS:
            points, features, lorentz_vectors, mask = inputs
            # ParT reads no points; the no-op keeps `pf_points` an input of the ONNX graph, as weaver feeds it
            mask = particle_mask(mask, points)
        else:  # a data config with other groups too (the multi-scale ones): read the pf_* groups by name
            by_name = dict(zip(self.input_names, inputs, strict=True))
            features, lorentz_vectors = by_name["pf_features"], by_name["pf_vectors"]
            unused = [x for name, x in by_name.items() if name not in PART_INPUTS[1:]]
            mask = keep_in_graph(particle_mask(by_name["pf_mask"]), unused)
        output = self.mod(features, v=lorentz_vectors, mask=mask)
        if self.fc is None:
            return output
        output = self.fc(output)
        return torch.softmax(output, dim=1) if self.for_inference else output


# ParT as the public Particle Transformer repository's network files build it (networks/example_ParticleTransformer.py
# and its fine-tuning twin), which trained the official ParT_*.pt files; `--network-option` overrides any of them.
# Where our class's default differs, the recipe's value is the one here: use_pre_activation_pair=False keeps the
# GELU after the last pair-embedding layer (weaver's class defaults to True, which silently changes the function).
PART_RECIPE = dict(
    pair_input_dim=4,
    use_pre_activation_pair=False,
    embed_dims=[128, 512, 128],
    pair_embed_dims=[64, 64, 64],
    num_heads=8,
    num_layers=8,
    num_cls_layers=2,
    block_params=None,
    cls_block_params={"dropout": 0, "attn_dropout": 0, "activation_dropout": 0},
    fc_params=[],
    activation="gelu",
    trim=True,
    for_inference=False,
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

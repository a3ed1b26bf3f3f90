"""What every ``networks/*.py`` file needs, so that each stays a dozen lines.

weaver imports a network file by its path and calls ``get_model(data_config, **options)`` and
``get_loss(data_config, **options)``; ``data_config`` is weaver's ``DataConfig``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from jetattn.nn.blocks import classifier_head
from jetattn.nn.inputs import particle_mask
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


def cross_entropy_loss(data_config: Any = None, **kwargs) -> torch.nn.Module:
    """The classification loss every network file returns from ``get_loss``."""
    return torch.nn.CrossEntropyLoss()


def num_classes(data_config: Any) -> int:
    return len(data_config.label_value)


class ParTForWeaver(torch.nn.Module):
    """ParT behind weaver's input order ``(points, features, lorentz_vectors, mask)``.

    The model sits under ``mod``, as in the public ParT repository, so the official ``ParT_*.pt`` files and
    checkpoints trained with weaver's own ParT load unchanged. With ``head_classes`` set, ``mod`` ends at the
    class-token embedding and a fresh ``fc`` Linear classifies (fine-tuning: only ``fc.*`` is new).
    """

    def __init__(self, head_classes: int | None = None, **part_options) -> None:
        super().__init__()
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

    def forward(self, points, features, lorentz_vectors, mask):
        # ParT reads no points; the no-op keeps `pf_points` an input of the ONNX graph, as weaver feeds it
        output = self.mod(features, v=lorentz_vectors, mask=particle_mask(mask, points))
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

"""What every ``networks/*.py`` file needs, so that each stays a dozen lines.

weaver imports a network file by its path and calls ``get_model(data_config, **options)`` and
``get_loss(data_config, **options)``; ``data_config`` is weaver's ``DataConfig``.
"""

from __future__ import annotations

from typing import Any

import torch


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

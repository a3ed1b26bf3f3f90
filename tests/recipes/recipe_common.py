"""What the reference network files share: weaver's model_info and loss, as the public recipe's files return."""

import torch


def model_info(data_config):
    names = list(data_config.input_names)
    return {
        "input_names": names,
        "input_shapes": {k: ((1,) + tuple(s[1:])) for k, s in data_config.input_shapes.items()},
        "output_names": ["softmax"],
        "dynamic_axes": {**{k: {0: "N", 2: "n_" + k.split("_")[0]} for k in names}, "softmax": {0: "N"}},
    }


def get_loss(data_config, **kwargs):
    return torch.nn.CrossEntropyLoss()

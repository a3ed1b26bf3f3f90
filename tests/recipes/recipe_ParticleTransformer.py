"""Reference: weaver-core's ParticleTransformer under ``mod``, configured as the public recipe's ParT file."""

import torch
from recipe_common import get_loss, model_info  # noqa: F401 (weaver reads get_loss from here)
from weaver.nn.model.ParticleTransformer import ParticleTransformer


def recipe(data_config):
    return dict(
        input_dim=len(data_config.input_dicts["pf_features"]),
        num_classes=len(data_config.label_value),
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


class Wrapper(torch.nn.Module):
    def __init__(self, **cfg):
        super().__init__()
        self.mod = ParticleTransformer(**cfg)

    def forward(self, points, features, lorentz_vectors, mask):
        return self.mod(features, v=lorentz_vectors, mask=mask)


def get_model(data_config, **kwargs):
    cfg = {**recipe(data_config), **kwargs}
    return Wrapper(**cfg), model_info(data_config)

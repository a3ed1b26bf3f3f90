"""Reference: weaver-core's ParticleNet under ``mod``, configured as the public recipe's ParticleNet file."""

import torch
from recipe_common import get_loss, model_info  # noqa: F401
from weaver.nn.model.ParticleNet import ParticleNet


def recipe(data_config, **kwargs):
    return dict(
        input_dims=len(data_config.input_dicts["pf_features"]),
        num_classes=len(data_config.label_value),
        conv_params=kwargs.get("conv_params", [(16, (64, 64, 64)), (16, (128, 128, 128)), (16, (256, 256, 256))]),
        fc_params=kwargs.get("fc_params", [(256, 0.1)]),
        use_fusion=kwargs.get("use_fusion", False),
        use_fts_bn=kwargs.get("use_fts_bn", True),
        use_counts=kwargs.get("use_counts", True),
        for_inference=kwargs.get("for_inference", False),
    )


class Wrapper(torch.nn.Module):
    def __init__(self, **cfg):
        super().__init__()
        self.mod = ParticleNet(**cfg)

    def forward(self, points, features, lorentz_vectors, mask):
        return self.mod(points, features, mask)


def get_model(data_config, **kwargs):
    return Wrapper(**recipe(data_config, **kwargs)), model_info(data_config)

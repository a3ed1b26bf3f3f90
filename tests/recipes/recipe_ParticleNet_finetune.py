"""Reference: the public recipe's ParticleNet fine-tuning wrapper (last Linear dropped, a new ``fc_out``)."""

import torch
from recipe_common import get_loss, model_info  # noqa: F401
from recipe_ParticleNet import recipe
from weaver.nn.model.ParticleNet import ParticleNet


class FineTuneWrapper(torch.nn.Module):
    def __init__(self, **cfg):
        super().__init__()
        self.for_inference = cfg["for_inference"]
        self.fc_out = torch.nn.Linear(cfg["fc_params"][-1][0], cfg["num_classes"])
        self.mod = ParticleNet(**{**cfg, "for_inference": False})
        self.mod.fc = self.mod.fc[:-1]

    def forward(self, points, features, lorentz_vectors, mask):
        logits = self.fc_out(self.mod(points, features, mask))
        return torch.softmax(logits, dim=1) if self.for_inference else logits


def get_model(data_config, **kwargs):
    return FineTuneWrapper(**recipe(data_config, **kwargs)), model_info(data_config)

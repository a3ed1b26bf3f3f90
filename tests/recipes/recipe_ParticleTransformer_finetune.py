"""Reference: the public recipe's ParT fine-tuning wrapper (a new head ``fc`` after the class token)."""

import torch
from recipe_common import get_loss, model_info  # noqa: F401
from recipe_ParticleTransformer import recipe
from weaver.nn.model.ParticleTransformer import ParticleTransformer


class FineTuneWrapper(torch.nn.Module):
    def __init__(self, **cfg):
        super().__init__()
        width = cfg["embed_dims"][-1]
        head = []
        for hidden, drop in cfg.pop("fc_params"):
            head.append(torch.nn.Sequential(torch.nn.Linear(width, hidden), torch.nn.ReLU(), torch.nn.Dropout(drop)))
            width = hidden
        head.append(torch.nn.Linear(width, cfg.pop("num_classes")))
        self.fc = torch.nn.Sequential(*head)
        self.for_inference = cfg["for_inference"]
        self.mod = ParticleTransformer(**{**cfg, "num_classes": None, "fc_params": None})

    def forward(self, points, features, lorentz_vectors, mask):
        logits = self.fc(self.mod(features, v=lorentz_vectors, mask=mask))
        return torch.softmax(logits, dim=1) if self.for_inference else logits


def get_model(data_config, **kwargs):
    return FineTuneWrapper(**{**recipe(data_config), **kwargs}), model_info(data_config)

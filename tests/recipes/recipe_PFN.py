"""Reference: the public recipe's PFN (Phi: 1x1 convolutions, no BatchNorm; F: Linear + ReLU; sum in between)."""

from recipe_common import get_loss, model_info  # noqa: F401
from torch import nn


class PFN(nn.Module):
    def __init__(self, input_dims, num_classes, Phi_sizes, F_sizes):  # noqa: N803 (the recipe's names)
        super().__init__()
        self.input_bn = nn.Identity()
        widths = [input_dims, *Phi_sizes]
        layers = zip(widths, widths[1:], strict=False)
        self.phi = nn.Sequential(*(nn.Sequential(nn.Conv1d(a, b, 1), nn.Identity(), nn.ReLU()) for a, b in layers))
        widths = [Phi_sizes[-1], *F_sizes]
        dense = [nn.Sequential(nn.Linear(a, b), nn.ReLU()) for a, b in zip(widths, widths[1:], strict=False)]
        self.fc = nn.Sequential(*dense, nn.Linear(F_sizes[-1], num_classes))

    def forward(self, points, features, lorentz_vectors, mask):
        latent = self.phi(self.input_bn(features)) * mask.bool().float()
        return self.fc(latent.sum(-1))


def get_model(data_config, **kwargs):
    model = PFN(
        len(data_config.input_dicts["pf_features"]),
        len(data_config.label_value),
        Phi_sizes=(128, 128, 128),
        F_sizes=(128, 128, 128),
    )
    return model, model_info(data_config)

"""Reference: the public recipe's P-CNN (DeepAK8's 1D ResNet), its stages downsampling by 2 after the first."""

import torch.nn.functional as F
from recipe_common import get_loss, model_info  # noqa: F401
from torch import nn


class Unit(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv1d(cin, cout, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm1d(cout)
        self.conv2 = nn.Conv1d(cout, cout, 3, padding=1)
        self.bn2 = nn.BatchNorm1d(cout)
        if cin != cout or stride != 1:
            self.conv_sc = nn.Conv1d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x):
        y = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return (self.conv_sc(x) if hasattr(self, "conv_sc") else x) + y


class PCNN(nn.Module):
    def __init__(self, input_dims, num_classes, conv_params, fc_params):
        super().__init__()
        stem = conv_params[0][0]
        self.fts_conv = nn.Sequential(
            nn.BatchNorm1d(input_dims), nn.Conv1d(input_dims, stem, 3, padding=1), nn.BatchNorm1d(stem), nn.ReLU()
        )
        self.resnet_units = nn.ModuleDict()
        for i, stage in enumerate(conv_params[1:]):
            cins = [conv_params[i][-1], *stage[:-1]]
            pairs = enumerate(zip(cins, stage, strict=True))
            units = [Unit(a, b, 2 if (j == 0 and i > 0) else 1) for j, (a, b) in pairs]
            self.resnet_units[f"resnet_unit_{i}"] = nn.Sequential(*units)
        widths = [conv_params[-1][-1]] + [w for w, _ in fc_params]
        dense = [
            nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Dropout(d))
            for a, b, (_, d) in zip(widths, widths[1:], fc_params, strict=False)
        ]
        self.fc = nn.Sequential(*dense, nn.Linear(widths[-1], num_classes))

    def forward(self, points, features, lorentz_vectors, mask):
        x = self.fts_conv(features * mask)
        for stage in self.resnet_units.values():
            x = stage(x)
        return self.fc(x.mean(-1))


def get_model(data_config, **kwargs):
    model = PCNN(
        len(data_config.input_dicts["pf_features"]),
        len(data_config.label_value),
        conv_params=[(32,), (64, 64), (64, 64), (128, 128)],
        fc_params=[(512, 0.2)],
    )
    return model, model_info(data_config)

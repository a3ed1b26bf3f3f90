"""Particle Flow Network (Deep Sets): per-particle network, sum over particles, jet-level network."""

from jetattn.nn.baselines import ParticleFlowNetwork
from jetattn.weaver import cross_entropy_loss, model_info, num_classes


def get_model(data_config, **kwargs):
    input_dims = data_config.input_shapes["pf_features"][1]
    model = ParticleFlowNetwork(input_dims, num_classes(data_config), **kwargs)
    return model, model_info(data_config)


def get_loss(data_config, **kwargs):
    return cross_entropy_loss(data_config)

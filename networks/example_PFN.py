"""Particle Flow Network (Deep Sets): per-particle network, sum over particles, jet-level network."""

from jetattn.nn.baselines import ParticleFlowNetwork
from jetattn.weaver import cross_entropy_loss, model_info, num_classes

# the public ParT repository's PFN recipe (networks/example_PFN.py): no BatchNorm
RECIPE = dict(phi_sizes=(128, 128, 128), f_sizes=(128, 128, 128), use_bn=False)


def get_model(data_config, **kwargs):
    input_dims = data_config.input_shapes["pf_features"][1]
    model = ParticleFlowNetwork(input_dims, num_classes(data_config), **{**RECIPE, **kwargs})
    return model, model_info(data_config)


def get_loss(data_config, **kwargs):
    return cross_entropy_loss(data_config)

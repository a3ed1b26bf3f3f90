"""P-CNN (CMS DeepAK8): a 1D ResNet over the pT-ordered particles."""

from jetattn.nn.baselines import ParticleCNN
from jetattn.weaver import cross_entropy_loss, model_info, num_classes

# the public ParT repository's P-CNN recipe (networks/example_PCNN.py)
RECIPE = dict(conv_params=[(32,), (64, 64), (64, 64), (128, 128)], fc_params=[(512, 0.2)])


def get_model(data_config, **kwargs):
    input_dims = data_config.input_shapes["pf_features"][1]
    model = ParticleCNN(input_dims, num_classes(data_config), **{**RECIPE, **kwargs})
    return model, model_info(data_config)


def get_loss(data_config, **kwargs):
    return cross_entropy_loss(data_config)

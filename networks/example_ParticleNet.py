"""ParticleNet (weaver-core's), laid out like the official JetClass checkpoints: load ParticleNet_kin.pt as is."""

from jetattn.nn.baselines import PARTICLENET_RECIPE, ParticleNetWrapper
from jetattn.weaver import cross_entropy_loss, model_info, num_classes


def get_model(data_config, **kwargs):
    options = {**PARTICLENET_RECIPE, **kwargs}
    input_dims = data_config.input_shapes["pf_features"][1]
    model = ParticleNetWrapper(input_dims, num_classes(data_config), **options)
    return model, model_info(data_config)


def get_loss(data_config, **kwargs):
    return cross_entropy_loss(data_config)

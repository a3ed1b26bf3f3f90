"""ParticleNet fine-tuning: the JetClass backbone (`--load-model-weights ParticleNet_kin.pt`), a fresh head `fc_out`."""

from jetattn.nn.baselines import PARTICLENET_RECIPE, ParticleNetWrapper
from jetattn.weaver import cross_entropy_loss, model_info, num_classes


def get_model(data_config, **kwargs):
    options = {**PARTICLENET_RECIPE, **kwargs}
    input_dims = data_config.input_shapes["pf_features"][1]
    model = ParticleNetWrapper(input_dims, num_classes(data_config), fresh_head=True, **options)
    return model, model_info(data_config)


def get_loss(data_config, **kwargs):
    return cross_entropy_loss(data_config)

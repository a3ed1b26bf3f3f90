"""ParticleNet fine-tuning: the JetClass backbone (`--load-model-weights ParticleNet_kin.pt`), a fresh head `fc_out`."""

from jetattn.weaver import recipes

RECIPE = "ParticleNet_finetune"  # jetattn.weaver.recipes.RECIPES: the model and the public recipe's settings


def get_model(data_config, **options):
    return recipes.get_model(RECIPE, data_config, **options)


def get_loss(data_config, **options):
    return recipes.get_loss(data_config, **options)

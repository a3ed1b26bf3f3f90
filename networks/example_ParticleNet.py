"""ParticleNet (weaver-core's), laid out like the official JetClass checkpoints: load ParticleNet_kin.pt as is."""

from jetattn.weaver import recipes

RECIPE = "ParticleNet"  # jetattn.weaver.recipes.RECIPES: the model and the public recipe's settings


def get_model(data_config, **options):
    return recipes.get_model(RECIPE, data_config, **options)


def get_loss(data_config, **options):
    return recipes.get_loss(data_config, **options)

"""P-CNN (CMS DeepAK8): a 1D ResNet over the pT-ordered particles."""

from jetattn.weaver import recipes

RECIPE = "PCNN"  # jetattn.weaver.recipes.RECIPES: the model and the public recipe's settings


def get_model(data_config, **options):
    return recipes.get_model(RECIPE, data_config, **options)


def get_loss(data_config, **options):
    return recipes.get_loss(data_config, **options)

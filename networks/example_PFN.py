"""Particle Flow Network (Deep Sets): per-particle network, sum over particles, jet-level network."""

from jetattn.weaver import recipes

RECIPE = "PFN"  # jetattn.weaver.recipes.RECIPES: the model and the public recipe's settings


def get_model(data_config, **options):
    return recipes.get_model(RECIPE, data_config, **options)


def get_loss(data_config, **options):
    return recipes.get_loss(data_config, **options)

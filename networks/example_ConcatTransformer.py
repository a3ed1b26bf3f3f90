"""Baseline of the multi-scale transformer without cross-attention: the same streams (``-o config``, default
model_3, and input groups as ``example_MultiScaleTransformer.py``), each averaged, concatenated, classified."""

from jetattn.weaver import recipes

RECIPE = "ConcatTransformer"  # jetattn.weaver.recipes.RECIPES: the model and the public recipe's settings


def get_model(data_config, **options):
    return recipes.get_model(RECIPE, data_config, **options)


def get_loss(data_config, **options):
    return recipes.get_loss(data_config, **options)

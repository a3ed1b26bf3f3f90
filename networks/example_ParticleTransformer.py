"""ParT for weaver: ``weaver --network-config networks/example_ParticleTransformer.py ...``; it reads the
``pf_features``, ``pf_vectors`` and ``pf_mask`` groups, also from data configs with more (the multi-scale ones)."""

from jetattn.weaver import recipes

RECIPE = "ParT"  # jetattn.weaver.recipes.RECIPES: the model and the public recipe's settings


def get_model(data_config, **options):
    return recipes.get_model(RECIPE, data_config, **options)


def get_loss(data_config, **options):
    return recipes.get_loss(data_config, **options)

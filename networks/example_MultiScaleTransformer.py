"""Multi-scale cross-attention transformer for weaver: ``-o config model_1|model_2|model_3|objects`` (default
model_3).

Input groups by configuration (each ``<stream>_features`` (N, C, P) with its ``<stream>_mask`` (N, 1, P)):
model_1 ``pf``; model_2 ``jet1``, ``jet2`` (each jet's constituents) and ``obj`` (reconstructed objects);
model_3 ``pf`` and ``obj``; ``objects`` ``obj`` alone (no constituents).
``-o pair_bias True`` also reads ``pf_vectors`` (or ``jet1_vectors``, ...).
"""

from jetattn.weaver import recipes

RECIPE = "MultiScaleTransformer"  # jetattn.weaver.recipes.RECIPES: the model and the public recipe's settings


def get_model(data_config, **options):
    return recipes.get_model(RECIPE, data_config, **options)


def get_loss(data_config, **options):
    return recipes.get_loss(data_config, **options)

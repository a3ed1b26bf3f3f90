"""ParT with top-k attention: each particle attends to its ``topk`` (default 30) highest-scoring particles only.

No new parameters, so a densely trained ParT checkpoint evaluates under top-k with ``--predict --model-prefix``;
``--network-option topk K`` changes k (k at least the number of particles is dense ParT).
"""

from jetattn.weaver import recipes

RECIPE = "ParT_topk"  # jetattn.weaver.recipes.RECIPES: the model and the public recipe's settings


def get_model(data_config, **options):
    return recipes.get_model(RECIPE, data_config, **options)


def get_loss(data_config, **options):
    return recipes.get_loss(data_config, **options)

"""ParT fine-tuning: the backbone loads from a JetClass checkpoint (``--load-model-weights models/ParT_kin.pt``),
the classifier ``fc`` is new (train it faster with ``--optimizer-option lr_mult ("fc.*",50)``)."""

from jetattn.weaver import recipes

RECIPE = "ParT_finetune"  # jetattn.weaver.recipes.RECIPES: the model and the public recipe's settings


def get_model(data_config, **options):
    return recipes.get_model(RECIPE, data_config, **options)


def get_loss(data_config, **options):
    return recipes.get_loss(data_config, **options)

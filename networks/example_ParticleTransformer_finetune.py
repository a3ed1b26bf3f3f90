"""ParT fine-tuning: the backbone loads from a JetClass checkpoint (``--load-model-weights models/ParT_kin.pt``),
the classifier ``fc`` is new (train it faster with ``--optimizer-option lr_mult ("fc.*",50)``)."""

from jetattn.weaver import PART_RECIPE, ParTForWeaver, cross_entropy_loss, model_info, num_classes


def get_model(data_config, **kwargs):
    options = {**PART_RECIPE, "input_dim": len(data_config.input_dicts["pf_features"]), **kwargs}
    model = ParTForWeaver(head_classes=num_classes(data_config), **options)
    return model, model_info(data_config)


def get_loss(data_config, **kwargs):
    return cross_entropy_loss(data_config, **kwargs)

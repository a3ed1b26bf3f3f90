"""ParT for weaver: ``weaver --network-config networks/example_ParticleTransformer.py ...``; it reads the
``pf_features``, ``pf_vectors`` and ``pf_mask`` groups, also from data configs with more (the multi-scale ones)."""

from jetattn.weaver import PART_RECIPE, ParTForWeaver, cross_entropy_loss, model_info, num_classes


def get_model(data_config, **kwargs):
    options = {**PART_RECIPE, "input_dim": len(data_config.input_dicts["pf_features"]), **kwargs}
    model = ParTForWeaver(num_classes=num_classes(data_config), input_names=tuple(data_config.input_names), **options)
    return model, model_info(data_config)


def get_loss(data_config, **kwargs):
    return cross_entropy_loss(data_config, **kwargs)

"""ParT with top-k attention: each particle attends to its ``topk`` (default 30) highest-scoring particles only.

No new parameters, so a densely trained ParT checkpoint evaluates under top-k with ``--predict --model-prefix``;
``--network-option topk K`` changes k (k at least the number of particles is dense ParT).
"""

from jetattn.weaver import PART_RECIPE, ParTForWeaver, cross_entropy_loss, model_info, num_classes


def get_model(data_config, **kwargs):
    options = {**PART_RECIPE, "attention": "topk", "topk": 30, "input_dim": len(data_config.input_dicts["pf_features"])}
    model = ParTForWeaver(num_classes=num_classes(data_config), **{**options, **kwargs})
    return model, model_info(data_config)


def get_loss(data_config, **kwargs):
    return cross_entropy_loss(data_config, **kwargs)

"""Baseline of the multi-scale transformer without cross-attention: the same streams (``-o config``, default
model_3, and input groups as ``example_MultiScaleTransformer.py``), each averaged, concatenated, classified."""

from jetattn.nn.multiscale import ConcatTransformer, from_data_config
from jetattn.weaver import cross_entropy_loss, model_info


def get_model(data_config, **kwargs):
    model = from_data_config(ConcatTransformer, data_config, **kwargs)
    return model, model_info(data_config)


def get_loss(data_config, **kwargs):
    return cross_entropy_loss(data_config, **kwargs)

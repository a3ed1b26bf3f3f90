"""The one table of recipes: each network file's model, with the settings the public recipe trained it with.

A network file names its recipe (``networks/example_ParticleTransformer.py``: ``ParT``) and weaver's options
override any setting (``--network-option NAME VALUE``). The bench and the tests read the same table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from jetattn.nn.baselines import ParticleCNN, ParticleFlowNetwork, ParticleNetWrapper
from jetattn.nn.multiscale import ConcatTransformer, MultiScaleTransformer
from jetattn.weaver.adapters import (
    ParTForWeaver,
    RunSettings,
    answer_probabilities,
    average_mirror_images,
    mirror_signs,
    model_info,
    read_inputs_by_name,
    stream_model,
)

# ParT as the public Particle Transformer repository's network files build it (networks/example_ParticleTransformer.py
# and its fine-tuning twin), which trained the official ParT_*.pt files. Where weaver's class default differs, the
# recipe's value is the one here: use_pre_activation_pair=False keeps the GELU after the last pair-embedding layer
# (weaver's class defaults to True, which silently changes the function).
PART_RECIPE = dict(
    pair_input_dim=4,
    use_pre_activation_pair=False,
    embed_dims=[128, 512, 128],
    pair_embed_dims=[64, 64, 64],
    num_heads=8,
    num_layers=8,
    num_cls_layers=2,
    block_params=None,
    cls_block_params={"dropout": 0, "attn_dropout": 0, "activation_dropout": 0},
    fc_params=[],
    activation="gelu",
    trim=True,
)
# LinParT: Linformer attention over proj_dim mixtures of at most max_len particles; linear_pairs shares one
# projection that also projects the pair features (nothing grows as N²), and then the projected pair embedding is
# recomputed in the backward pass unless checkpoint_pairs is given.
LINPART_RECIPE = {**PART_RECIPE, "attention": "linformer", "proj_dim": 32, "max_len": 128, "linear_pairs": True}
# The ParticleNet of the official JetClass checkpoints (ParticleNet_kin.pt and friends).
PARTICLENET_RECIPE = {
    "conv_params": [(16, (64, 64, 64)), (16, (128, 128, 128)), (16, (256, 256, 256))],
    "fc_params": [(256, 0.1)],
    "use_fusion": False,
    "use_fts_bn": True,
    "use_counts": True,
}
# the public ParT repository's PFN (no BatchNorm) and P-CNN recipes (networks/example_PFN.py, example_PCNN.py)
PFN_RECIPE = dict(phi_sizes=(128, 128, 128), f_sizes=(128, 128, 128), use_bn=False)
PCNN_RECIPE = dict(conv_params=[(32,), (64, 64), (64, 64), (128, 128)], fc_params=[(512, 0.2)])

PART_READS = ("pf_features", "pf_vectors", "pf_mask")
ALL_PF = ("pf_points", "pf_features", "pf_vectors", "pf_mask")


def num_classes(data_config: Any) -> int:
    return len(data_config.label_value)


def input_dim(data_config: Any) -> int:
    """Features per particle: the ``pf_features`` group's variables."""
    return len(data_config.input_dicts["pf_features"])


def _part(data_config: Any, settings: RunSettings, **options) -> nn.Module:
    options = {"input_dim": input_dim(data_config), "num_classes": num_classes(data_config), **options}
    return ParTForWeaver(**options, **vars(settings))


def _part_finetune(data_config: Any, settings: RunSettings, **options) -> nn.Module:
    options = {"input_dim": input_dim(data_config), **options}
    return ParTForWeaver(head_classes=num_classes(data_config), **options, **vars(settings))


def _linpart(data_config: Any, settings: RunSettings, **options) -> nn.Module:
    options.setdefault("checkpoint_pairs", options["linear_pairs"])
    return _part(data_config, settings, **options)


def _particlenet(data_config: Any, settings: RunSettings, **options) -> nn.Module:
    return ParticleNetWrapper(
        input_dim(data_config), num_classes(data_config), onnx_gather=settings.for_inference, **options
    )


def _baseline(model_class: type[nn.Module]) -> Callable[..., nn.Module]:
    def build(data_config: Any, settings: RunSettings, **options) -> nn.Module:
        return model_class(input_dim(data_config), num_classes(data_config), **options)

    return build


def _streams(model_class: type[nn.Module]) -> Callable[..., nn.Module]:
    def build(data_config: Any, settings: RunSettings, **options) -> nn.Module:
        return stream_model(model_class, data_config, settings, **options)

    return build


@dataclass(frozen=True)
class Recipe:
    """How a network file's model is built for weaver.

    Attributes:
        build: ``(data_config, run settings, **options) -> model`` (logits out).
        defaults: the public recipe's settings; weaver's options override them.
        reads: the ``pf_*`` groups it reads from a data config holding others (None: it reads by name itself).
    """

    build: Callable[..., nn.Module]
    defaults: dict = field(default_factory=dict)
    reads: tuple[str, ...] | None = ALL_PF


RECIPES: dict[str, Recipe] = {
    "ParT": Recipe(_part, PART_RECIPE, PART_READS),
    "ParT_finetune": Recipe(_part_finetune, PART_RECIPE, PART_READS),
    "ParT_topk": Recipe(_part, {**PART_RECIPE, "attention": "topk", "topk": 30}, PART_READS),
    "LinParT": Recipe(_linpart, LINPART_RECIPE, PART_READS),
    "ParticleNet": Recipe(_particlenet, PARTICLENET_RECIPE),
    "ParticleNet_finetune": Recipe(_particlenet, {**PARTICLENET_RECIPE, "fresh_head": True}),
    "PFN": Recipe(_baseline(ParticleFlowNetwork), PFN_RECIPE),
    "PCNN": Recipe(_baseline(ParticleCNN), PCNN_RECIPE),
    "MultiScaleTransformer": Recipe(_streams(MultiScaleTransformer), reads=None),
    "ConcatTransformer": Recipe(_streams(ConcatTransformer), reads=None),
}


def get_model(recipe: str, data_config: Any, **options) -> tuple[nn.Module, dict]:
    """What a network file's ``get_model`` returns: the recipe's model built from weaver's ``data_config`` and
    ``options`` (``--network-option`` values and weaver's run settings), and its ``model_info``."""
    chosen = RECIPES[recipe]
    settings, options = RunSettings.take(options)
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    model = chosen.build(data_config, settings, **{**chosen.defaults, **options})
    if chosen.reads is not None:
        read_inputs_by_name(model, tuple(data_config.input_names), chosen.reads)
    if settings.mirror:
        if chosen.reads is None:
            raise ValueError(f"mirror: {recipe} takes its input groups by name; -o mirror is for the pf_* models")
        average_mirror_images(model, mirror_signs(data_config, settings.mirror))
    if settings.for_inference:
        answer_probabilities(model)
    return model, model_info(data_config)


def get_loss(data_config: Any = None, **options) -> nn.Module:
    """The classification loss every network file returns from ``get_loss``."""
    return torch.nn.CrossEntropyLoss()

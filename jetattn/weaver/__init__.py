"""The weaver boundary: everything that knows weaver runs our models.

- :mod:`~jetattn.weaver.adapters`: weaver's run settings (``for_inference``, ``use_amp``, ``compile_model``) turned
  into what they mean for our models, ``model_info``, inputs read by name, ParT under weaver's key layout;
- :mod:`~jetattn.weaver.recipes`: the one table of recipes the network files, the bench and the tests read;
- :mod:`~jetattn.weaver.tools`: a network built from a network file, checkpoints and jets, as weaver does, for
  the tools.
"""

from jetattn.weaver.adapters import (
    PF_INPUTS,
    ParTForWeaver,
    RunSettings,
    answer_probabilities,
    model_info,
    part_options,
    read_inputs_by_name,
    weaver_part,
)
from jetattn.weaver.recipes import (
    LINPART_RECIPE,
    PART_RECIPE,
    PARTICLENET_RECIPE,
    RECIPES,
    get_loss,
    get_model,
    num_classes,
)
from jetattn.weaver.tools import (
    add_network_arguments,
    build_network,
    load_checkpoint,
    load_jets,
    parse_options,
    read_checkpoint,
)

__all__ = [
    "LINPART_RECIPE",
    "PARTICLENET_RECIPE",
    "PART_RECIPE",
    "PF_INPUTS",
    "RECIPES",
    "ParTForWeaver",
    "RunSettings",
    "add_network_arguments",
    "answer_probabilities",
    "build_network",
    "get_loss",
    "get_model",
    "load_checkpoint",
    "load_jets",
    "model_info",
    "num_classes",
    "parse_options",
    "part_options",
    "read_checkpoint",
    "read_inputs_by_name",
    "weaver_part",
]

"""LinParT: ParT whose particle attention is Linformer's, over ``proj_dim`` (default 32) learned mixtures of the
particles, with one projection ``E`` of at most ``max_len`` (default 128, the padded length) particles.

By default (``linear_pairs``) ``E`` is shared by every block and also projects the pair features before they
are embedded, so that neither the attention nor the pair bias grows as N²; ``--network-option linear_pairs
False`` gives each block its own ``E`` over the full N × N bias (as costly as dense ParT's). In training the
projected pair embedding is recomputed in the backward pass rather than kept (``checkpoint_pairs``; False keeps
it: more memory, a little faster).
``--network-option share_kv_proj True`` shares ``E`` between keys and values."""

from jetattn.weaver import recipes

RECIPE = "LinParT"  # jetattn.weaver.recipes.RECIPES: the model and the public recipe's settings


def get_model(data_config, **options):
    return recipes.get_model(RECIPE, data_config, **options)


def get_loss(data_config, **options):
    return recipes.get_loss(data_config, **options)

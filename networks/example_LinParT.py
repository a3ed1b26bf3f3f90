"""LinParT: ParT whose particle attention is Linformer's, over ``proj_dim`` (default 32) learned mixtures of the
particles, with one projection ``E`` of at most ``max_len`` (default 128, the padded length) particles.

By default (``linear_pairs``) ``E`` is shared by every block and also projects the pair features before they
are embedded, so that neither the attention nor the pair bias grows as N²; ``--network-option linear_pairs
False`` gives each block its own ``E`` over the full N × N bias (as costly as dense ParT's). In training the
projected pair embedding is recomputed in the backward pass rather than kept (``checkpoint_pairs``; False keeps
it: more memory, a little faster).
``--network-option share_kv_proj True`` shares ``E`` between keys and values."""

from jetattn.weaver import PART_RECIPE, ParTForWeaver, cross_entropy_loss, model_info, num_classes


def get_model(data_config, **kwargs):
    options = {
        **PART_RECIPE,
        "attention": "linformer",
        "proj_dim": 32,
        "max_len": 128,
        "linear_pairs": True,
        "input_dim": len(data_config.input_dicts["pf_features"]),
        **kwargs,
    }
    options.setdefault("checkpoint_pairs", options["linear_pairs"])
    model = ParTForWeaver(num_classes=num_classes(data_config), **options)
    return model, model_info(data_config)


def get_loss(data_config, **kwargs):
    return cross_entropy_loss(data_config, **kwargs)

"""jetattn's models as weaver runs them.

weaver calls a network file's ``get_model(data_config, **options)`` with the user's ``--network-option`` values
and three run settings of its own: ``for_inference`` (``--export-onnx``), ``use_amp`` and ``compile_model``
(``--compile``). The models in :mod:`jetattn.nn` take architecture arguments only; this module turns weaver's
settings into what they mean for a model:

- ``for_inference``: probabilities out (:func:`answer_probabilities`) and a graph of fixed shapes (no trimming,
  buckets or packing; every pair embedded);
- ``compile_model``: trimmed lengths rounded up to multiples of 32, so the compiled model sees few shapes;
- ``use_amp``: nothing (weaver's trainer applies it);
- ``compile`` (ours, ``-o compile 1`` or a backend name): compile the attention blocks here;
- ``seed`` (ours, ``-o seed N``): seed torch before the model is built (weaver-core 0.5.3 has no seed option);
- ``mirror`` (ours, ``-o mirror "['part_dphi']"``): the jet's mirror image is an exact symmetry of the inputs
  (:func:`average_mirror_images`).

It also reads the input groups a model needs by name from any data config (:func:`read_inputs_by_name`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from jetattn.nn.blocks import classifier_head
from jetattn.nn.inputs import keep_in_graph, particle_mask
from jetattn.nn.multiscale import StreamModel, required_inputs, stream_names
from jetattn.nn.part import ParticleTransformer

# weaver's input groups of the jet models, in the order of the public recipe's YAMLs: what their forward takes
PF_INPUTS = ("pf_points", "pf_features", "pf_vectors", "pf_mask")


@dataclass(frozen=True)
class RunSettings:
    """weaver's run settings, taken out of a network file's options before the model is built.

    Attributes:
        for_inference: weaver's ``--export-onnx`` (and the tools): class probabilities out, fixed shapes.
        compile_model: weaver's ``--compile``.
        compile: ``-o compile 1`` (or a torch.compile backend name): compile the attention blocks here.
        seed: ``-o seed N``: torch's seed, set when the network file builds the model: the initial weights, and
            the seeds of weaver's loader workers (drawn from torch after the model is built), follow from it.
            A rerun is not bit for bit the same: two runs with one seed differed from their first batch on.
        mirror: ``-o mirror "['part_dphi']"`` (one name or a list, read by :func:`_names`): variables whose sign
            flips in the jet's mirror image (:func:`average_mirror_images`).
    """

    for_inference: bool = False
    compile_model: bool = False
    compile: bool | str = False
    seed: int | None = None
    mirror: tuple[str, ...] = ()

    @classmethod
    def take(cls, options: dict) -> tuple[RunSettings, dict]:
        """``(settings, the other options)``; ``use_amp`` is dropped: weaver's trainer applies it itself."""
        options = dict(options)
        options.pop("use_amp", None)
        settings = cls(
            for_inference=bool(options.pop("for_inference", False)),
            compile_model=bool(options.pop("compile_model", False)),
            compile=options.pop("compile", False),
            seed=options.pop("seed", None),
            mirror=_names(options.pop("mirror", ())),
        )
        return settings, options

    @property
    def backend(self) -> str | None:
        """The torch.compile backend for ``compile``, or None."""
        if not self.compile:
            return None
        return "inductor" if self.compile in (True, 1) else str(self.compile)

    @property
    def length_multiple(self) -> int:
        """Trimmed lengths are rounded up to this: few shapes for a compiled model."""
        return 32 if (self.compile_model or self.compile) else 1


def _names(value: Any) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value or ())
    if not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"mirror: expected variable names, e.g. -o mirror \"['part_dphi']\", not {value!r}")
    return names


def model_info(data_config: Any, output_names: tuple[str, ...] = ("softmax",)) -> dict:
    """The ``model_info`` weaver wants: input names and shapes (batch of 1) and the ONNX dynamic axes.

    Axis 0 of every input and output is the batch ``N``; axis 2 of each input is its sequence length,
    named after the input group (``pf_features`` -> ``n_pf``), so ONNX models take any number of particles.
    """
    names = list(data_config.input_names)
    shapes = {k: ((1,) + tuple(s[1:])) for k, s in data_config.input_shapes.items()}
    dynamic_axes = {k: {0: "N", 2: "n_" + k.split("_")[0]} for k in names}
    dynamic_axes.update({k: {0: "N"} for k in output_names})
    return {
        "input_names": names,
        "input_shapes": shapes,
        "output_names": list(output_names),
        "dynamic_axes": dynamic_axes,
    }


def _softmax_output(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    return torch.softmax(output, dim=1)


def answer_probabilities(model: nn.Module) -> nn.Module:
    """weaver's ``for_inference`` output: the model answers class probabilities instead of logits.

    A forward hook, so the model's class and state_dict stay what they are (checkpoints load either way) and an
    ONNX export traces the softmax with the rest.
    """
    model.register_forward_hook(_softmax_output)
    return model


# Variables that change sign with part_dphi when a jet is reflected in φ about its axis: the signed transverse impact
# parameter d0 = (x py - y px) / pT (Delphes' convention, JetClass's branch part_d0val) and the tanh of it that the
# `full` data configs read. Mirroring Δφ alone would turn a displaced track's d0 against the side of the jet it lies
# on (docs/results.md, "Each jet and its mirror image").
REFLECTED_WITH_DPHI = ("part_d0", "part_d0val")


def mirror_signs(data_config: Any, names: tuple[str, ...]) -> tuple[torch.Tensor | None, ...]:
    """Per group of :data:`PF_INPUTS`, the (1, C, 1) signs that turn a jet into its mirror image: -1 for the
    variables ``names``, 1 for the others; None for a group the mirror leaves alone (``pf_vectors``, whose
    pair features are invariant under it, ``pf_mask``, and groups without those variables).

    One line names a variable no group holds, one the data config standardises so that the sign does not
    carry through (a centre other than 0, or clipping bounds that are not symmetric), or one of
    :data:`REFLECTED_WITH_DPHI` that the data config reads but ``names`` leaves out beside ``part_dphi``.
    """
    groups = {g: data_config.input_dicts.get(g, []) for g in PF_INPUTS if g not in ("pf_vectors", "pf_mask")}
    held = {v for variables in groups.values() for v in variables}
    if "part_dphi" in names:
        for partner in REFLECTED_WITH_DPHI:
            if partner in held and partner not in names:
                wanted = ", ".join(repr(n) for n in (*names, partner))
                raise ValueError(
                    f"mirror: {partner!r}, the signed transverse impact parameter, changes sign with 'part_dphi' "
                    f'in the mirror image and the data config reads it; mirror both: -o mirror "[{wanted}]"'
                )
    for name in names:
        if name not in held:
            raise ValueError(
                f"mirror: no input group of the data config holds {name!r} "
                f"(pf_features has {', '.join(groups.get('pf_features', []))})"
            )
        params = data_config.preprocess_params[name]
        centre, low, high = params.get("center"), params.get("min"), params.get("max")
        if centre not in (None, 0) or (centre is not None and low != -high):
            raise ValueError(
                f"mirror: the data config standardises {name!r} with centre {centre} and bounds [{low}, {high}], "
                "so its sign does not carry through; give it centre null (or 0 and symmetric bounds)"
            )
    signs = []
    for group in PF_INPUTS:
        variables = groups.get(group, [])
        if not any(v in names for v in variables):
            signs.append(None)
            continue
        signs.append(torch.tensor([-1.0 if v in names else 1.0 for v in variables]).view(1, -1, 1))
    return tuple(signs)


def average_mirror_images(model: nn.Module, signs: tuple[torch.Tensor | None, ...]) -> nn.Module:
    """``-o mirror NAMES``: the model's logits averaged over the jet and its mirror image.

    The image flips the sign of the variables ``NAMES`` (:func:`mirror_signs`); e.g. ``part_dphi`` is the jet
    reflected in φ about its axis, which changes no energy, transverse momentum or pair feature. The average makes
    the answer exactly invariant under that symmetry. In training a random half of each batch is mirrored
    instead, so a step costs no more. Hooks, so the state_dict and checkpoints stay as they are; the model must
    take :data:`PF_INPUTS` positionally.
    """

    def mirrored(inputs: tuple, flip: torch.Tensor | None = None) -> tuple:
        """``inputs`` with the jets ``flip`` ((N, 1, 1) bool; None: every jet) turned into their images."""
        images = []
        for x, s in zip(inputs, signs, strict=True):
            if s is not None:
                s = s.to(x)
                x = x * (s if flip is None else torch.where(flip, s, 1.0))
            images.append(x)
        return tuple(images)

    def augment(module: nn.Module, inputs: tuple) -> tuple | None:
        if not module.training:
            return None
        flip = torch.rand(inputs[0].size(0), 1, 1, device=inputs[0].device) < 0.5  # one draw per jet
        return mirrored(inputs, flip)

    def average(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if module.training:
            return output
        image = module.forward(*mirrored(inputs))
        return (output + image) / 2

    model.register_forward_pre_hook(augment)
    model.register_forward_hook(average)
    return model


def read_inputs_by_name(model: nn.Module, input_names: tuple[str, ...], reads: tuple[str, ...]) -> nn.Module:
    """Let ``model``, whose forward takes :data:`PF_INPUTS` positionally and reads the groups ``reads``, run on a
    data config whose groups are ``input_names``.

    With exactly :data:`PF_INPUTS` nothing changes. Otherwise each group is picked by name (a group the model does
    not read and the data config lacks gets the mask in its place), and the data config's other groups stay in
    the ONNX graph through the mask, as weaver's ONNX runner feeds every input it has. One line names the groups
    the data config lacks.
    """
    input_names = tuple(input_names)
    missing = [name for name in reads if name not in input_names]
    if missing:
        raise ValueError(
            f"{type(model).__name__} reads the input groups {', '.join(missing)}, which the data config lacks "
            f"(it has {', '.join(input_names)})"
        )
    if input_names == PF_INPUTS:
        return model

    def pick(module: nn.Module, inputs: tuple) -> tuple:
        by_name = dict(zip(input_names, inputs, strict=True))
        unused = [x for name, x in by_name.items() if name not in PF_INPUTS]
        mask = keep_in_graph(by_name["pf_mask"], unused)
        return tuple(mask if name == "pf_mask" else by_name.get(name, mask) for name in PF_INPUTS)

    model.register_forward_pre_hook(pick)
    return model


def part_options(options: dict, settings: RunSettings) -> dict:
    """weaver-core 0.5.3's ``ParticleTransformer`` options -> our :class:`ParticleTransformer`'s.

    weaver's options that jetattn does not implement are refused in one line each (docs/compatibility.md);
    ``pair_embed_sparse_eval`` (how weaver computes the pair embedding; outputs do not depend on it) and the
    ``for_inference`` weaver passes into ``block_params`` (its choice of RMSNorm code) are dropped.
    """
    options = dict(options)
    pair_input_type = options.pop("pair_input_type", "pp")
    if pair_input_type != "pp":
        raise ValueError(
            f"pair_input_type={pair_input_type!r}: jetattn's ParT has the hadron-collider pair features only ('pp')"
        )
    pair_extra_dim = options.pop("pair_extra_dim", 0)
    if pair_extra_dim:
        raise ValueError(
            f"pair_extra_dim={pair_extra_dim}: extra pair features from the data (weaver's uu inputs) "
            "are not supported by jetattn's ParT"
        )
    if options.pop("for_segmentation", False):
        raise ValueError("for_segmentation: per-particle outputs are out of scope for jetattn's ParT (jet tagging)")
    options.pop("pair_embed_sparse_eval", None)
    if options.get("pair_input_dim") is None:
        options["pair_input_dim"] = 4  # weaver's None: the pp features
    for key in ("block_params", "cls_block_params"):
        if options.get(key):
            options[key] = {k: v for k, v in options[key].items() if k != "for_inference"}
    if settings.for_inference:  # an exported graph has fixed shapes and control flow: same weights and outputs
        options.update(trim=False, dense_pairs=True, buckets=1, packed=False)
    options.setdefault("length_multiple", settings.length_multiple)
    return options


def build_part(settings: RunSettings, options: dict) -> ParticleTransformer:
    """Our ParT from weaver's options and run settings (logits out)."""
    model = ParticleTransformer(**part_options(options, settings))
    if settings.backend:
        model.compile_blocks(settings.backend)
    return model


def weaver_part(**options) -> ParticleTransformer:
    """weaver-core 0.5.3's ``ParticleTransformer(**options)``, built as ours: the same options (run settings
    included, so ``for_inference`` answers probabilities) and the same state_dict, which loads strictly and gives
    the same outputs."""
    settings, options = RunSettings.take(options)
    model = build_part(settings, options)
    return answer_probabilities(model) if settings.for_inference and model.fc is not None else model


class ParTForWeaver(nn.Module):
    """ParT under ``mod``, as in the public ParT repository, so the official ``ParT_*.pt`` files and checkpoints
    trained with weaver's own ParT load unchanged. With ``head_classes`` set, ``mod`` ends at the class-token
    embedding and a fresh ``fc`` (the public fine-tuning recipe's ``Sequential`` of hidden layers and a Linear)
    classifies: only ``fc.*`` is new.

    Inputs: weaver's ``(points, features, lorentz_vectors, mask)``; ParT reads no points, which stay an input of
    the ONNX graph. ``options``: :func:`weaver_part`'s; logits out (``get_model`` adds the softmax for inference).
    """

    def __init__(self, head_classes: int | None = None, **options) -> None:
        super().__init__()
        settings, options = RunSettings.take(options)
        if head_classes is None:
            self.mod = build_part(settings, options)
            self.fc = None
        else:
            fc_params = options.get("fc_params") or ()
            self.mod = build_part(settings, {**options, "num_classes": None, "fc_params": None})
            self.fc = classifier_head(self.mod.norm.normalized_shape[0], head_classes, fc_params)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"mod.cls_token"}

    def forward(self, points, features, lorentz_vectors, mask) -> torch.Tensor:
        output = self.mod(features, v=lorentz_vectors, mask=particle_mask(mask, points))
        return output if self.fc is None else self.fc(output)


def check_stream_inputs(data_config: Any, config: str, pair_bias: bool) -> None:
    """One line naming the input group a multi-scale configuration reads and the data config lacks."""
    stream_names(config)  # an unknown configuration fails here, by name
    for name in required_inputs(config, pair_bias):
        if name not in data_config.input_names:
            raise ValueError(
                f"network config {config} reads the input group '{name}', which the data config lacks "
                f"(it has {', '.join(data_config.input_names)})"
            )


def stream_model(model_class: type[StreamModel], data_config: Any, settings: RunSettings, **options) -> StreamModel:
    """A multi-scale model for weaver: stream widths from ``data_config.input_dicts``, the forward's input order
    from ``data_config.input_names``."""
    config = options.setdefault("config", "model_3")
    check_stream_inputs(data_config, config, options.get("pair_bias", False))
    input_dims = {name: len(data_config.input_dicts[f"{name}_features"]) for name in stream_names(config)}
    if settings.for_inference:
        options["dense_pairs"] = True
    return model_class(input_dims, len(data_config.label_value), input_names=tuple(data_config.input_names), **options)

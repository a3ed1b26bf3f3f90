"""The multi-scale transformer and its concatenation baseline: shapes, key masking in self- and cross-attention,
stacked cross layers, attention maps, gradients, ONNX through the network files, int8, kernels."""

import warnings
from types import SimpleNamespace

import pytest
import torch
from weaver_run import REPO, load_network, onnx_session

from jetattn.nn.attention import Attention, record_attention
from jetattn.nn.blocks import CrossBlock
from jetattn.nn.multiscale import ConcatTransformer, MultiScaleTransformer, required_inputs, stream_names
from jetattn.quantize import count_int8_linears, count_linears, quantize_int8
from jetattn.weaver import answer_probabilities, model_info

warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated")  # torch 2.13 on quantize_dynamic

CONFIGS = ["model_1", "model_2", "model_3", "objects"]
CHANNELS = {"pf": 3, "jet1": 3, "jet2": 3, "obj": 5}  # (pT, η, φ) per constituent; 5 per object
LENGTHS = {"pf": 12, "jet1": 10, "jet2": 8, "obj": 5}


def tiny_options(config: str) -> dict:
    layers = {name: {"num_heads": 2, "num_layers": 2} for name in stream_names(config)}
    return dict(config=config, dim=16, stream_params=layers, fc_params=((16, 0.1),), pair_embed_dims=(8,))


def events(config, batch=4, lengths=LENGTHS, seed=0, pair_bias=False, empty=()):
    """Random inputs in ``required_inputs`` order; event i of each stream has fewer real entries as i grows,
    and the (stream, event) pairs in ``empty`` none. Padded slots hold noise."""
    g = torch.Generator().manual_seed(seed)
    inputs = []
    for name in required_inputs(config, pair_bias):
        stream, kind = name.split("_")
        length = lengths[stream]
        if kind == "features":
            inputs.append(torch.randn(batch, CHANNELS[stream], length, generator=g))
        elif kind == "vectors":
            p3 = torch.randn(batch, 3, length, generator=g) * 20
            inputs.append(torch.cat((p3, p3.norm(dim=1, keepdim=True) + 1), dim=1))  # massive, physical
        else:
            real = torch.arange(length) < torch.tensor([max(length - 2 * i, 1) for i in range(batch)])[:, None]
            for s, event in empty:
                if s == stream:
                    real[event] = False
            inputs.append(real[:, None].float())
    return inputs


def repadded(config, inputs, extra=3, fill=1e3, pair_bias=False):
    """The same events with every padded slot refilled with ``fill`` times noise and ``extra`` more padded slots."""
    by_name = dict(zip(required_inputs(config, pair_bias), inputs, strict=True))
    out = []
    for name, x in by_name.items():
        stream = name.split("_")[0]
        mask = by_name[f"{stream}_mask"]
        if name.endswith("_mask"):
            out.append(torch.cat((x, x.new_zeros(x.size(0), 1, extra)), dim=-1))
        else:
            x = torch.where(mask.bool(), x, fill * torch.randn_like(x))
            out.append(torch.cat((x, fill * torch.randn(x.size(0), x.size(1), extra)), dim=-1))
    return out


def evaluated(model_class, config, pair_bias=False, **options):
    """A tiny model whose BatchNorms hold statistics other than the identity, in evaluation."""
    options = {**tiny_options(config), "pair_bias": pair_bias, **options}
    if model_class is MultiScaleTransformer:
        options["cross_heads"] = 2
    torch.manual_seed(0)
    model = model_class(CHANNELS, 3, **options)
    model.train()
    with torch.no_grad():
        for seed in range(3):
            model(*events(config, 16, seed=seed + 10, pair_bias=pair_bias))
    return model.eval()


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("model_class", [MultiScaleTransformer, ConcatTransformer])
def test_each_configuration_reads_its_streams_and_classifies(model_class, config):
    model = evaluated(model_class, config)
    assert list(model.streams) == list(stream_names(config))
    with torch.no_grad():
        assert model(*events(config, batch=4)).shape == (4, 3)
        probabilities = answer_probabilities(model)(*events(config, batch=2))
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(2))
    n_cross = sum(isinstance(m, CrossBlock) for m in model.modules())
    assert n_cross == (2 if model_class is MultiScaleTransformer and config in ("model_2", "model_3") else 0)


def test_concat_baseline_has_no_cross_attention():
    model = evaluated(ConcatTransformer, "model_2")
    attention = [name for name, m in model.named_modules() if isinstance(m, Attention)]
    assert attention and all(name.startswith("streams.") for name in attention)  # self-attention only
    assert not any(isinstance(m, CrossBlock) for m in model.modules())
    assert model.fc[0][0].in_features == 3 * 16  # three pooled streams, concatenated


@pytest.mark.parametrize(
    ("model_class", "config", "readout", "pair_bias"),
    [
        (MultiScaleTransformer, "model_1", "cls", False),
        (MultiScaleTransformer, "model_2", "cls", True),
        (MultiScaleTransformer, "model_3", "cls", False),
        (MultiScaleTransformer, "model_3", "mean", True),
        (ConcatTransformer, "model_2", None, False),
    ],
)
def test_padding_values_and_extra_padding_do_not_change_outputs(model_class, config, readout, pair_bias):
    """Padded entries are masked as keys in every stream's self-attention and in the cross-attention; events
    with an empty stream (no constituents in a jet, no objects) stay finite and ignore their padding too."""
    options = {} if readout is None else {"readout": readout}
    model = evaluated(model_class, config, pair_bias, **options)
    streams = stream_names(config)
    empty = [(streams[0], 1), (streams[-1], 2)] + ([("jet1", 3), ("jet2", 3)] if config == "model_2" else [])
    inputs = events(config, pair_bias=pair_bias, empty=empty)
    with torch.no_grad():
        reference = model(*inputs)
        for fill in (0.0, 1e3):
            got = model(*repadded(config, inputs, fill=fill, pair_bias=pair_bias))
            torch.testing.assert_close(got, reference, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(reference).all()
    # the real entries do matter, in every stream
    for i, name in enumerate(required_inputs(config, pair_bias)):
        if name.endswith("_features"):
            changed = list(inputs)
            changed[i] = inputs[i] + 3 * torch.randn_like(inputs[i])
            with torch.no_grad():
                assert (model(*changed) - reference).abs().max() > 1e-4, name


@pytest.mark.parametrize("config", ["model_2", "model_3"])
def test_each_cross_layer_takes_the_previous_layers_output(config):
    model = evaluated(MultiScaleTransformer, config)
    calls = []
    hooks = [
        block.register_forward_hook(lambda _m, args, out: calls.append((args[0], args[1], out)))
        for block in model.cross_blocks
    ]
    objects = []
    hooks.append(model.streams["obj"].register_forward_hook(lambda _m, _a, out: objects.append(out[0])))
    inputs = events(config)
    with torch.no_grad():
        full = model(*inputs)
    for hook in hooks:
        hook.remove()
    assert len(calls) == 2
    (query_0, context_0, out_0), (query_1, context_1, _) = calls
    assert torch.equal(query_0, objects[0])  # the first layer's queries: the object stream
    assert torch.equal(query_1, out_0)  # the second layer's: the first layer's output
    assert torch.equal(context_1, context_0)  # the keys/values stay the constituents
    n_keys = sum(LENGTHS[s] for s in stream_names(config)[:-1])
    assert context_0.shape == (4, n_keys, 16)
    model.cross_blocks = model.cross_blocks[:1]  # without the last layer the output changes
    with torch.no_grad():
        assert not torch.allclose(model(*inputs), full, atol=1e-4)


@pytest.mark.parametrize("config", CONFIGS)
def test_record_attention_maps_self_and_cross_attention(config):
    model = evaluated(MultiScaleTransformer, config)
    inputs = events(config)
    by_name = dict(zip(required_inputs(config), inputs, strict=True))
    with torch.no_grad():
        plain = model(*inputs)
        with record_attention(model) as maps:
            recorded = model(*inputs)
    assert torch.equal(recorded, plain)
    for stream in stream_names(config):
        real = by_name[f"{stream}_mask"][:, 0].bool()  # B, L
        for layer in range(2):
            (weights,) = maps[f"streams.{stream}.blocks.{layer}.attn"]
            assert weights.shape == (4, 2, LENGTHS[stream], LENGTHS[stream])
            torch.testing.assert_close(weights.sum(-1), torch.ones(4, 2, LENGTHS[stream]))
            assert (weights.masked_select(~real[:, None, None, :]) == 0).all()
    if config in ("model_1", "objects"):  # one stream, no cross-attention
        assert not any(name.startswith("cross_blocks") for name in maps)
        return
    constituents = stream_names(config)[:-1]
    real_keys = torch.cat([by_name[f"{s}_mask"][:, 0].bool() for s in constituents], dim=1)
    for layer in range(2):
        (weights,) = maps[f"cross_blocks.{layer}.attn"]
        assert weights.shape == (4, 2, LENGTHS["obj"], real_keys.size(1))  # B, H, objects, constituents
        torch.testing.assert_close(weights.sum(-1), torch.ones(4, 2, LENGTHS["obj"]))
        assert (weights.masked_select(~real_keys[:, None, None, :]) == 0).all()


@pytest.mark.parametrize(
    ("model_class", "config"), [(MultiScaleTransformer, "model_2"), (ConcatTransformer, "model_3")]
)
def test_gradients_reach_every_stream(model_class, config):
    model = evaluated(model_class, config, pair_bias=True).train()
    loss = torch.nn.functional.cross_entropy(model(*events(config, pair_bias=True)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    for name in stream_names(config):
        stream = model.streams[name]
        assert stream.embed.embed[1].weight.grad.abs().sum() > 0, name
        assert stream.blocks[0].attn.q_proj.weight.grad.abs().sum() > 0, name
        if stream.pair_embed is not None:
            assert stream.pair_embed.embed[1].weight.grad.abs().sum() > 0, name


def fake_data_config(config, pair_bias=False, extra=()):
    """What weaver's DataConfig offers get_model: input names, their variables and shapes, the labels."""
    names = list(required_inputs(config, pair_bias)) + list(extra)
    channels = {"features": None, "mask": 1, "vectors": 4, "points": 2}
    dicts, shapes = {}, {}
    for name in names:
        stream, kind = name.split("_")
        width = channels[kind] or CHANNELS[stream]
        dicts[name] = [f"{stream}_var{i}" for i in range(width)]
        shapes[name] = (-1, width, LENGTHS[stream])
    return SimpleNamespace(input_names=names, input_dicts=dicts, input_shapes=shapes, label_value=["a", "b", "c"])


def test_network_file_names_the_missing_input_group():
    network = load_network(REPO / "networks/example_MultiScaleTransformer.py")
    with pytest.raises(ValueError, match="network config model_2 reads the input group 'jet1_features'"):
        network.get_model(fake_data_config("model_3"), config="model_2")
    with pytest.raises(ValueError, match="unknown multi-scale configuration 'model_4'"):
        network.get_model(fake_data_config("model_3"), config="model_4")


def test_model_info_names_a_dynamic_length_per_input_group():
    info = model_info(fake_data_config("model_2"))
    assert info["dynamic_axes"]["jet1_features"] == {0: "N", 2: "n_jet1"}
    assert info["dynamic_axes"]["jet2_mask"] == {0: "N", 2: "n_jet2"}
    assert info["dynamic_axes"]["obj_features"] == {0: "N", 2: "n_obj"}
    assert info["input_shapes"]["obj_features"] == (1, 5, 5)


@pytest.mark.parametrize(
    ("network", "config", "pair_bias"),
    [
        ("MultiScaleTransformer", "model_1", False),
        ("MultiScaleTransformer", "model_2", False),
        ("MultiScaleTransformer", "model_3", True),
        ("ConcatTransformer", "model_3", False),
    ],
)
def test_onnx_export_matches_pytorch_on_other_batch_sizes_and_lengths(network, config, pair_bias):
    pytest.importorskip("onnxruntime")
    extra = ["pf_points"] if "pf" in stream_names(config) else []  # read by no stream: must stay an input
    data_config = fake_data_config(config, pair_bias, extra)
    options = {**tiny_options(config), "pair_bias": pair_bias, "for_inference": True}
    if network == "MultiScaleTransformer":
        options["cross_heads"] = 2
    torch.manual_seed(0)
    model, info = load_network(REPO / f"networks/example_{network}.py").get_model(data_config, **options)
    model.eval()

    def batch(size, lengths, seed):
        names = required_inputs(config, pair_bias)
        inputs = dict(zip(names, events(config, size, lengths, seed, pair_bias), strict=True))
        inputs.update({name: torch.randn(size, 2, lengths["pf"]) for name in extra})
        return [inputs[name] for name in info["input_names"]]

    session = onnx_session(model, tuple(batch(2, LENGTHS, 0)), info)
    other = batch(5, {"pf": 17, "jet1": 6, "jet2": 13, "obj": 3}, 1)
    got = session.run(None, {name: x.numpy() for name, x in zip(info["input_names"], other, strict=True)})[0]
    with torch.no_grad():
        expected = model(*other).numpy()
    assert got.shape == (5, 3)
    assert abs(got - expected).max() <= 1e-5


@pytest.mark.parametrize("model_class", [MultiScaleTransformer, ConcatTransformer])
def test_int8_converts_every_linear_and_runs(model_class):
    model = evaluated(model_class, "model_2")
    inputs = events("model_2")
    int8 = quantize_int8(model)
    assert count_int8_linears(int8) == count_linears(model) and count_linears(int8) == 0
    with torch.no_grad():
        got, expected = int8(*inputs), model(*inputs)
    assert torch.isfinite(got).all() and (got - expected).abs().max() < 0.1


def test_the_attention_kernel_reaches_self_and_cross_attention():
    """With ``attention='topk'`` every stream and cross layer uses it (the class attention stays dense); k at
    least the number of keys is dense attention, so the output equals the sdpa model's."""
    dense = evaluated(MultiScaleTransformer, "model_2")
    sparse = evaluated(MultiScaleTransformer, "model_2", attention="topk", topk=64)
    sparse.load_state_dict(dense.state_dict())
    kernels = {name: m.kernel for name, m in sparse.named_modules() if isinstance(m, Attention)}
    assert all(kernel == "topk" for name, kernel in kernels.items() if not name.startswith("cls_blocks"))
    assert kernels["cls_blocks.0.attn"] == "sdpa"
    inputs = events("model_2")
    with torch.no_grad():
        torch.testing.assert_close(sparse(*inputs), dense(*inputs), atol=1e-5, rtol=1e-5)
        sparse.cross_blocks[0].attn.topk = 1
        assert not torch.allclose(sparse(*inputs), dense(*inputs), atol=1e-4)

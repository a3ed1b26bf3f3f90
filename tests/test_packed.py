"""Packed ParT (``packed=1``): the padded model's function on real particles and real pairs only, and a compiled
packed model that compiles a handful of graphs and none after warm-up."""

import numpy as np
import pytest
import torch
from test_padding_free import SMALL, jets_of_every_length, trained_looking

from jetattn.measure import jetclass_like_batch
from jetattn.nn.packed import assign_rows, pack_batch
from jetattn.nn.part import ParticleTransformer
from jetattn.weaver import weaver_part

NO_DROPOUT = dict(block_params={"dropout": 0, "attn_dropout": 0, "activation_dropout": 0})


def test_rows_hold_whole_jets_and_every_real_pair_once():
    _, _, mask = jets_of_every_length()
    mask = mask.bool()
    packed = pack_batch(mask)
    lengths = mask.sum(dim=(1, 2))
    assert packed.token_slot.numel() == lengths.sum()
    assert packed.num_pairs == (lengths * (lengths + 1) // 2).sum() < 64 * 128 * 128 / 4  # Σ n(n+1)/2, not B·L²
    assert packed.token_slot.unique().numel() == packed.token_slot.numel()  # no two particles in one slot
    assert packed.rows % 8 == 0 and packed.rows * packed.row_len >= lengths.sum()
    # each token sits in the row of its jet, and a pair never crosses jets
    row_of_token = packed.token_slot // packed.row_len
    for jet in range(64):
        assert row_of_token[packed.token_jet == jet].unique().numel() <= 1
    assert torch.equal(packed.token_jet[packed.pair_a], packed.token_jet[packed.pair_b])
    slots = torch.cat([packed.pair_slot, packed.pair_slot_mirror]).unique()
    assert slots.numel() == 2 * packed.num_pairs - lengths.sum()  # (a, b) and (b, a); the diagonal once


def test_row_assignment_fills_rows_and_never_overflows():
    lengths = np.random.default_rng(0).gamma(4.0, 45 / 4.0, 512).round().clip(1, 128).astype(np.int64)
    row, start, rows = assign_rows(lengths, 128)
    used = np.zeros(rows, dtype=np.int64)
    np.add.at(used, row, lengths)
    assert (start + lengths <= 128).all() and (used <= 128).all()
    assert rows <= 1.1 * np.ceil(lengths.sum() / 128)  # within 10% of the fewest rows possible


def test_packed_eval_equals_the_padded_model_and_loads_its_checkpoint():
    padded = trained_looking()
    packed = ParticleTransformer(**SMALL, packed=True).eval()
    packed.load_state_dict(padded.state_dict(), strict=True)
    x, v, mask = jets_of_every_length()
    order = torch.randperm(128, generator=torch.Generator().manual_seed(0))  # real particles anywhere in the mask
    for inputs in ((x, v, mask), (x[..., order], v[..., order], mask[..., order])):
        with torch.no_grad():
            got, expected = packed(*inputs), padded(*inputs)
        assert torch.isfinite(got[0]).all()  # the empty jet (its padded output depends on the padding)
        torch.testing.assert_close(got[1:], expected[1:], atol=1e-5, rtol=0)


def test_packed_training_step_equals_the_padded_one():
    """Same loss and gradients: the input BatchNorm normalises the padded batch in both, and the pair embedding's
    BatchNorm sees the same real pairs a >= b (dropout off, trimming at the longest jet, to compare one step)."""
    models = [trained_looking(**NO_DROPOUT), trained_looking(packed=True, **NO_DROPOUT)]
    x, v, mask = jetclass_like_batch(64, length=128, input_dim=17, seed=5)
    labels = torch.arange(64) % 5
    losses, grads, stats = [], [], []
    for model in models:
        model.train()
        model.trimmer.quantile_range = (1.0, 1.0)
        torch.manual_seed(1)  # the trimmer's particle shuffle
        loss = torch.nn.functional.cross_entropy(model(x, v, mask), labels)
        loss.backward()
        losses.append(loss.detach())
        grads.append({name: p.grad for name, p in model.named_parameters() if p.grad is not None})
        stats.append({k: t for k, t in model.state_dict().items() if "running" in k})
    torch.testing.assert_close(losses[1], losses[0], atol=1e-6, rtol=1e-6)
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == len(list(models[0].parameters()))
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-5, rtol=1e-4, msg=name)
    for name, value in stats[0].items():  # the running statistics moved alike
        torch.testing.assert_close(stats[1][name], value, atol=1e-5, rtol=1e-5, msg=name)


def pair_norm_batches(model, x, v, mask) -> dict:
    """The entries the pair embedding's first BatchNorm normalises over in one training step: count, mean, var."""
    seen = {}

    def record(module, args):
        entries = args[0].transpose(0, 1).flatten(1) if args[0].dim() == 3 else args[0].T  # 4, entries
        seen.update(count=entries.size(1), mean=entries.mean(1), var=entries.var(1))

    handle = model.pair_embed.embed[0].register_forward_pre_hook(record)
    torch.manual_seed(1)
    model.train()(x, v, mask)
    handle.remove()
    return seen


def test_pair_norm_sees_the_real_pairs_as_weavers_eager_training_and_all_pairs_under_its_compile():
    """weaver's eager training, our padded and our packed ParT normalise the pair features over the real pairs
    a >= b of each jet, Σ n(n+1)/2: the same batch statistics. weaver's ``compile_model`` (``--compile``) trains
    its pair embedding densely: all B·L(L+1)/2 pairs at the trimmed length rounded up to 32, padding included."""
    from weaver.nn.model.ParticleTransformer import ParticleTransformer as WeaverParT

    x, v, mask = jetclass_like_batch(32, length=128, input_dim=17, seed=4)
    lengths = mask.sum(dim=(1, 2)).long()
    real_pairs = int((lengths * (lengths + 1) // 2).sum())
    seen = {}
    for name, compile_model in (("weaver", False), ("weaver --compile", True)):
        model = WeaverParT(**SMALL, compile_model=compile_model)
        model.trimmer.target, model.trimmer.warmup_steps = (1.0, 1.0), 0
        seen[name] = pair_norm_batches(model, x, v, mask)
    for name, options in (("padded", {}), ("packed", {"packed": True})):
        model = trained_looking(**options)
        model.trimmer.quantile_range = (1.0, 1.0)
        seen[name] = pair_norm_batches(model, x, v, mask)
    for name in ("padded", "packed"):
        assert seen[name]["count"] == seen["weaver"]["count"] == real_pairs
        torch.testing.assert_close(seen[name]["mean"], seen["weaver"]["mean"], atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(seen[name]["var"], seen["weaver"]["var"], atol=1e-4, rtol=1e-5)
    longest = -(-int(lengths.max()) // 32) * 32
    assert seen["weaver --compile"]["count"] == 32 * longest * (longest + 1) // 2 > 2 * real_pairs


@pytest.mark.parametrize("option", [dict(attention="topk"), dict(buckets=4)])
def test_packed_refuses_what_it_cannot_run(option):
    with pytest.raises(ValueError, match="packed=1"):
        ParticleTransformer(**SMALL, packed=True, **option)


def test_an_export_runs_the_padded_model():
    model = weaver_part(**SMALL, packed=True, for_inference=True)
    x, v, mask = jets_of_every_length(8)
    assert not model.packed
    with torch.no_grad():
        probabilities = model(x, v, mask)
    assert probabilities.shape == (8, 5)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(8))


@pytest.mark.slow
def test_compiled_packed_model_has_no_graph_break_and_no_recompile_after_warm_up():
    """``compile`` compiles the packed model after packing: one graph per (rows, R) shape, whatever the token and
    pair counts of the batch (inductor, in training as weaver runs it: a 1×1 convolution's backward, for one, would
    fix the pair count)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = trained_looking(packed=True, compile=True).train()
    model.trimmer.quantile_range = (1.0, 1.0)
    shapes, graphs = [], []
    for seed in (1, 2, 3):  # batches of 24 rows of 128
        torch.manual_seed(seed)  # jetclass_like_batch draws the multiplicities from the global generator
        x, v, mask = jetclass_like_batch(64, length=128, input_dim=17, seed=seed)
        mask[0] = 1  # one full jet: rows of 128
        packed = pack_batch(mask.bool())
        shapes.append((packed.rows, packed.row_len, packed.num_pairs))
        model(x, v, mask).sum().backward()
        graphs.append(counters["stats"]["unique_graphs"])
    assert len({s[:2] for s in shapes}) == 1 and len({s[2] for s in shapes}) == 3  # same rows, other pair counts
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert graphs == [graphs[0]] * 3 and graphs[0] >= 1  # nothing compiled after the first batch


@pytest.mark.slow
def test_compiled_packed_model_recomputes_the_pairs_with_the_same_gradients_and_statistics():
    """``checkpoint_pairs`` under ``-o compile``: the compiler recomputes the checkpointed pair embedding itself
    and runs its BatchNorm's running-statistics update once, so gradients and statistics are the uncheckpointed
    model's."""
    from torch._dynamo.utils import counters

    x, v, mask = jetclass_like_batch(32, length=128, input_dim=17, seed=1)
    results = []
    for checkpoint_pairs in (False, True):
        torch._dynamo.reset()
        counters.clear()
        model = trained_looking(packed=True, compile="aot_eager", checkpoint_pairs=checkpoint_pairs, **NO_DROPOUT)
        model.train().trimmer.quantile_range = (1.0, 1.0)
        torch.manual_seed(1)
        model(x, v, mask).square().sum().backward()
        assert not counters["graph_break"], dict(counters["graph_break"])
        results.append((model.state_dict(), {name: p.grad for name, p in model.named_parameters()}))
    (state, grads), (state_recomputed, grads_recomputed) = results
    for name, value in state.items():
        torch.testing.assert_close(state_recomputed[name], value, atol=0, rtol=0, msg=name)
    for name, grad in grads.items():
        torch.testing.assert_close(grads_recomputed[name], grad, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.slow
@pytest.mark.requiresdata
def test_packed_compiled_part_trains_and_predicts_under_weaver(real_data, tmp_path):
    from weaver_run import REPO, SMALL_OPTIONS, read_predictions, short_training

    options = {**SMALL_OPTIONS["ParticleTransformer"], "packed": 1, "compile": "aot_eager"}
    top = real_data / "TopLandscape_sample_1000.root"
    short_training(REPO / "networks/example_ParticleTransformer.py", options, top, tmp_path, 0.2)
    scores = read_predictions(tmp_path / "pred.root", ["jet_isTop", "jet_isQCD"])
    assert scores.shape == (200, 2) and abs(scores.sum(axis=1) - 1).max() < 1e-5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_packed_on_cuda_equals_padded_and_compiles_once():
    """On CUDA: eval outputs and a training step's gradients as the padded model's (fp32), and the inductor-compiled
    packed model trains in bf16 with no graph break and nothing compiled after the first batch."""
    from torch._dynamo.utils import counters

    device = torch.device("cuda")
    padded, packed = trained_looking(**NO_DROPOUT).to(device), trained_looking(packed=True, **NO_DROPOUT).to(device)
    torch.manual_seed(1)
    x, v, mask = (t.to(device) for t in jetclass_like_batch(64, length=128, input_dim=17, seed=1))
    with torch.no_grad():
        torch.testing.assert_close(packed(x, v, mask), padded(x, v, mask), atol=1e-5, rtol=0)
    grads = []
    for model in (padded, packed):
        model.train()
        model.trimmer.quantile_range = (1.0, 1.0)
        torch.manual_seed(1)
        torch.nn.functional.cross_entropy(model(x, v, mask), torch.arange(64, device=device) % 5).backward()
        grads.append({name: p.grad for name, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-5, rtol=1e-4, msg=name)

    torch._dynamo.reset()
    counters.clear()
    compiled = trained_looking(packed=True, compile=True).to(device).train()
    compiled.trimmer.quantile_range = (1.0, 1.0)
    graphs = []
    for seed in (1, 2, 3):  # batches of 24 rows of 128 (see the CPU test above)
        torch.manual_seed(seed)
        x, v, mask = (t.to(device) for t in jetclass_like_batch(64, length=128, input_dim=17, seed=seed))
        mask[0] = 1
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = compiled(x, v, mask).float().logsumexp(dim=1).mean()
        loss.backward()
        assert torch.isfinite(loss)
        graphs.append(counters["stats"]["unique_graphs"])
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert graphs == [graphs[0]] * 3

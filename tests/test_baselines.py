"""PFN, P-CNN and the ParticleNet wrapper: masking, symmetries, sizes, checkpoint layout, kNN."""

import pytest
import torch

from jetattn.nn.baselines import (
    ParticleCNN,
    ParticleFlowNetwork,
    ParticleNetWrapper,
    knn_without_self,
)
from jetattn.weaver import PARTICLENET_RECIPE, answer_probabilities

SMALL = {
    "PFN": lambda: ParticleFlowNetwork(7, 3, phi_sizes=(16, 16), f_sizes=(16,)),
    "PCNN": lambda: ParticleCNN(7, 3, conv_params=[(8,), (16,), (16,)], fc_params=[(16, 0.1)]),
    "ParticleNet": lambda: ParticleNetWrapper(7, 3, conv_params=[(4, (16, 16)), (4, (16, 16))], fc_params=[(16, 0.1)]),
}


def jets(n_jets: int = 4, n_particles: int = 20, seed: int = 0) -> list[torch.Tensor]:
    """Random (points, features, lorentz_vectors, mask), every slot a real particle."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n_jets, c, n_particles, generator=g) for c in (2, 7, 4)] + [torch.ones(n_jets, 1, n_particles)]


def evaluated(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = SMALL[name]()
    model.train()
    with torch.no_grad():  # a few batches so BatchNorm holds statistics other than the identity
        for seed in range(3):
            model(*jets(16, 24, seed))
    return model.eval()


def padded(real: list[torch.Tensor], extra: int, fill: float) -> list[torch.Tensor]:
    """``real`` jets followed by ``extra`` padding slots holding ``fill`` times noise (0: zeros)."""
    slots = [torch.cat((x, fill * torch.randn(x.shape[:2] + (extra,))), dim=-1) for x in real[:3]]
    return slots + [torch.cat((real[3], torch.zeros(real[3].shape[:2] + (extra,))), dim=-1)]


@pytest.mark.parametrize("name", ["PFN", "ParticleNet"])
def test_padding_does_not_change_the_output(name):
    """Slots flagged as padding change nothing, whatever they hold (weaver's `wrap` padding repeats particles)."""
    model = evaluated(name)
    real = jets(4, 20)
    with torch.no_grad():
        torch.testing.assert_close(model(*padded(real, 12, 100.0)), model(*real), atol=1e-5, rtol=1e-5)


def test_pcnn_reads_padding_as_zeros():
    """The recipe's P-CNN sees padding as zero particles: what padded slots hold does not matter, how many
    there are does (its average runs over every slot, as the public recipe's does)."""
    model = evaluated("PCNN")
    real = jets(4, 20)
    with torch.no_grad():
        zeros = model(*padded(real, 12, 0.0))
        torch.testing.assert_close(model(*padded(real, 12, 100.0)), zeros, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(model(*real), zeros, atol=1e-4)


@pytest.mark.parametrize("name", ["PFN", "ParticleNet"])
def test_particle_order_does_not_matter(name):
    model = evaluated(name)
    inputs = jets(4, 20)
    order = torch.randperm(20)
    with torch.no_grad():
        torch.testing.assert_close(model(*(x[..., order] for x in inputs)), model(*inputs), atol=1e-5, rtol=1e-5)


def test_pcnn_reads_particles_in_order():
    """P-CNN convolves along the pT ordering, so reversing it must change the output (unlike PFN)."""
    model = evaluated("PCNN")
    inputs = jets(4, 20)
    with torch.no_grad():
        assert not torch.allclose(model(*(x.flip(-1) for x in inputs)), model(*inputs), atol=1e-4)


@pytest.mark.parametrize(
    ("model", "published"),
    [
        (lambda: ParticleFlowNetwork(17, 10), 86_100),
        (lambda: ParticleCNN(17, 10), 354_000),
    ],
)
def test_published_sizes(model, published):
    """Parameters for JetClass's 17 features and 10 classes (ParT paper, arXiv:2202.03772, Table 3: PFN 86.1k,
    P-CNN 354k)."""
    assert abs(sum(p.numel() for p in model().parameters()) - published) < published * 0.002


@pytest.mark.parametrize("name", SMALL)
def test_for_inference_outputs_probabilities(name):
    """weaver's for_inference, applied at the weaver boundary: probabilities out, the state_dict unchanged."""
    model = SMALL[name]()
    model.eval()
    keys = list(model.state_dict())
    with torch.no_grad():
        logits = model(*jets())
        probs = answer_probabilities(model)(*jets())
    assert probs.shape == (4, 3) and (probs >= 0).all()
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(4))
    torch.testing.assert_close(probs, torch.softmax(logits, dim=1))
    assert list(model.state_dict()) == keys


def test_finetune_head_layout():
    """Fine-tuning drops ParticleNet's last Linear (mod.fc.1) for a fresh top-level fc_out; the rest keeps its keys."""
    base = ParticleNetWrapper(7, 10, **PARTICLENET_RECIPE).state_dict().keys()
    tuned = ParticleNetWrapper(7, 2, fresh_head=True, **PARTICLENET_RECIPE).state_dict().keys()
    assert set(base) - set(tuned) == {"mod.fc.1.weight", "mod.fc.1.bias"}
    assert set(tuned) - set(base) == {"fc_out.weight", "fc_out.bias"}
    assert all(key.startswith("mod.") for key in base)


def test_knn_follows_weaver_unless_asked():
    """By default the neighbours are weaver's (what the official checkpoints were trained with); with
    ``knn_exclude_self`` they come from :func:`knn_without_self`."""
    from weaver.nn.model.ParticleNet import EdgeConvBlock

    options = dict(conv_params=[(4, (16, 16))], fc_params=[(16, 0.1)])
    assert all(type(c) is EdgeConvBlock for c in ParticleNetWrapper(7, 3, **options).mod.edge_convs)
    tuned = ParticleNetWrapper(7, 3, knn_exclude_self=True, **options).mod.edge_convs
    assert all(type(c) is not EdgeConvBlock and isinstance(c, EdgeConvBlock) for c in tuned)


def test_knn_never_picks_the_particle_itself():
    """Particles at the same place (a Delphes tower's photon and neutral hadron) are each other's nearest."""
    points = torch.tensor([[[0.0, 0.5, 0.5, 0.1, 0.9, 0.5], [0.0, 0.2, 0.2, 0.0, 0.9, 0.2]]])  # 1, 2, 6
    neighbours = knn_without_self(points, k=2)[0]  # 6, 2
    for i in range(6):
        assert i not in neighbours[i].tolist()
    assert neighbours[1].tolist() == [2, 5] and neighbours[2].tolist() == [1, 5]  # triplet at (0.5, 0.2): by index


def test_knn_ranks_near_equal_distances_as_exact_arithmetic_does():
    """Feature-space points far from the origin: float32 sums of |a|^2 - 2 a.b + |b|^2 lose the small differences
    between near-equal distances (and sum in another order in onnxruntime); the neighbours are those of the
    exact distances."""
    generator = torch.Generator().manual_seed(5)
    points = 300.0 + torch.rand(4, 64, 40, generator=generator)  # N, D, P: like a late EdgeConv's features
    neighbours = knn_without_self(points, k=16)
    exact = ((points.double().unsqueeze(-1) - points.double().unsqueeze(-2)) ** 2).sum(dim=1)  # N, P, P
    exact.diagonal(dim1=1, dim2=2).fill_(-1.0)
    assert torch.equal(neighbours, exact.sort(dim=-1, stable=True)[1][:, :, 1:17])

"""The first stage of the explain tool: load the checkpoint and the jets, record the attention of every batch and
its Grad-CAM, and reduce them to the numbers the figures show (:class:`Collected`)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from jetattn.deps import ToolError
from jetattn.explain import graphs, jets
from jetattn.explain.gradcam import EtaPhiMap, gradcam, particle_blocks
from jetattn.explain.summary import AttentionSummary, fraction_table

LEPTON_CLASSES = ("Tbl", "Hqql")  # the JetClass classes whose decay holds a lepton

# Network options that change how a network runs, not what it computes: set off where given, so that each
# attention layer is one call over the whole batch (records line up with jets), run eagerly. The network files
# that take them default to these values, and those that do not are never given them.
ONE_CALL_PER_LAYER = {"buckets": 1, "packed": False}
# Dropped where given: compile (recorded eagerly), and mirror, which averages two calls, on the jet and on its
# mirror image: explain records the jet as given.
DROPPED = ("compile", "mirror")


@dataclass
class ExplainConfig:
    """The settings of one run (``python -m jetattn.explain --help`` gives each one's meaning)."""

    checkpoint: Path
    network: Path
    data_config: Path
    files: list[Path]
    out: Path
    network_options: dict = field(default_factory=dict)  # the training's, as weaver reads them
    num_jets: int = 2000
    batch_size: int = 64
    max_particles: int = 30
    cross_particles: int = 20
    graph_classes: tuple[str, ...] = ("label_Tbl", "label_Tbqq", "label_H4q")
    background: tuple[str, ...] | None = None  # None: the classes named QCD, else all but the first
    object_names: tuple[str, ...] | None = None
    edge_threshold: float = 0.1
    kt_radius: float = 0.8
    gradcam_layer: str | None = None  # None: the last particle block
    compare_untrained: bool = True
    seed: int = 0
    device: str = "cpu"
    command: str = ""  # the command line, recorded in explain.json

    def __post_init__(self) -> None:
        if self.num_jets < 1 or self.batch_size < 1:
            raise ToolError("--num-jets and --batch-size must be positive")


@dataclass
class Collected:
    """Every number the figures and explain.json show, by class short name (``Hbb``) and module name."""

    jets_per_class: dict[str, int]
    layers: list[str]  # the particle self-attention modules, in order
    scores: dict[str, dict]  # model (trained, untrained) -> distribution of the attention scores
    mean_maps: dict[str, dict[str, np.ndarray]]  # class -> layer -> (H, P, P), particles by pT
    cross_maps: dict[str, dict[str, np.ndarray]]  # layer -> signal/background -> (objects, constituents)
    graphs: dict[str, dict]  # class -> an example jet's η–φ attention graph
    fractions: dict[str, dict[str, dict]]  # between_subjets/to_leptons -> model -> class -> histogram
    gradcam_layer: str | None
    gradcam_edges: np.ndarray  # (bins + 1,) in Δη and Δφ
    gradcam_maps: dict[str, np.ndarray]  # class -> (bins, bins)
    notes: list[str]  # what was left out, and why


@dataclass
class Plan:
    """What to record, decided from the model and the jets before the first batch."""

    names: list[str]  # class short names, by class index
    present: list[int]  # the class indices with jets
    layers: list[str]
    gradcam_layer: str | None
    objects: str | None  # the input stream of a multi-scale model's objects
    examples: dict[int, str]  # jet index -> the class whose η–φ graph it gives
    background: np.ndarray  # (classes,) bool
    has_leptons: bool


def skip(notes: list[str], message: str) -> None:
    """A figure left out: said in explain.json and on stderr."""
    notes.append(message)
    print(f"skipped: {message}", file=sys.stderr)


def recording_options(options: dict) -> dict:
    """The network options with those of :data:`ONE_CALL_PER_LAYER` that are given set off, and :data:`DROPPED`
    dropped."""
    kept = {name: value for name, value in options.items() if name not in DROPPED}
    return {**kept, **{name: value for name, value in ONE_CALL_PER_LAYER.items() if name in kept}}


def build_models(config: ExplainConfig) -> tuple[nn.Module, nn.Module | None, list[str]]:
    """The checkpoint's network, the same network untrained (seeded) for the comparison, and the input names."""
    from jetattn.weaver import build_network, load_checkpoint

    options = recording_options(config.network_options)

    def build() -> tuple[nn.Module, dict]:
        torch.manual_seed(config.seed)
        return build_network(config.network, config.data_config, options, for_inference=False)

    model, info = build()
    load_checkpoint(model, config.checkpoint)
    untrained = build()[0].to(config.device).eval() if config.compare_untrained else None
    return model.to(config.device).eval(), untrained, info["input_names"]


def plan_recording(
    config: ExplainConfig, model: nn.Module, sample: jets.Jets, names: list[str], background: np.ndarray, notes: list
) -> Plan:
    """The layers to record and Grad-CAM, the example jets, and a note for each figure the jets cannot give."""
    present = sorted(set(sample.labels.tolist()))
    print(f"{len(sample)} jets of {', '.join(names[c] for c in present)} from {len(config.files)} file(s)")
    absent = [names[c] for c in range(len(names)) if c not in present]
    if absent:
        skip(notes, f"classes without jets in the files: {', '.join(absent)}")
    objects = getattr(getattr(model, "mod", model), "objects", None)
    blocks = particle_blocks(model, sample.stream)
    if not blocks and objects is None:
        raise ToolError(f"{config.network}: no particle attention blocks (blocks.<i>) to explain")
    if not blocks:
        skip(
            notes,
            f"particle attention, graphs and Grad-CAM: no stream of the model holds the particle sequence "
            f"'{sample.stream}' of the data config; cross-attention only",
        )
    without_subjets = sorted({names[c] for c in present} - set(graphs.SUBJETS))
    if without_subjets:
        skip(notes, f"no subjet count for class(es) {', '.join(without_subjets)}: left out of the subjet fractions")
    has_leptons = sample.has(*jets.LEPTONS)
    if not has_leptons:
        skip(notes, "lepton attention: the files lack part_isElectron/part_isMuon")
    elif not any(names[c] in LEPTON_CLASSES for c in present):
        skip(notes, f"lepton attention: no {' or '.join(LEPTON_CLASSES)} jets")
    examples = {}
    for name in (jets.short_name(c) for c in config.graph_classes):
        jet = np.nonzero(sample.labels == (names.index(name) if name in names else -1))[0]
        if len(jet):
            examples[int(jet[0])] = name
        else:
            skip(notes, f"attention graph of {name}: no such jets")
    return Plan(
        names=names,
        present=present,
        layers=[f"{block}.attn" for block in blocks],
        gradcam_layer=config.gradcam_layer or (blocks[-1] if blocks else None),
        objects=objects,
        examples=examples,
        background=background,
        has_leptons=has_leptons,
    )


@dataclass
class Batch:
    """The jets of one forward pass, and what the summaries need of their particles."""

    jets: range  # indices into the sample
    inputs: list[torch.Tensor]  # in the model's input order, on the device
    labels: np.ndarray
    pts: list[np.ndarray]  # per jet, (n,)
    subjets: list[np.ndarray | None]  # per jet, (n,) exclusive-kT subjet index; None: no count for its class
    leptons: list[np.ndarray | None]  # per jet, (n,) bool; None: no lepton flags, or not a lepton class

    @property
    def rows(self) -> slice:
        return slice(self.jets.start, self.jets.stop)


def make_batch(sample: jets.Jets, plan: Plan, config: ExplainConfig, input_names: list[str], start: int) -> Batch:
    """The jets from ``start`` on, at most ``config.batch_size``, with their subjets and lepton flags."""
    indices = range(start, min(start + config.batch_size, len(sample)))
    batch = Batch(
        jets=indices,
        inputs=[sample.inputs[name][start : indices.stop].to(config.device) for name in input_names],
        labels=sample.labels[start : indices.stop],
        pts=[sample.pt(j) for j in indices],
        subjets=[],
        leptons=[],
    )
    for j in indices:
        name = plan.names[sample.labels[j]]
        count = graphs.SUBJETS.get(name)
        p4 = np.stack([sample.particles[b][j] for b in ("part_px", "part_py", "part_pz", "part_energy")], 1)
        batch.subjets.append(None if count is None else graphs.subjet_of_particles(p4, count, config.kt_radius))
        lepton = plan.has_leptons and name in LEPTON_CLASSES
        batch.leptons.append(sum(sample.particles[b][j] > 0 for b in jets.LEPTONS) > 0 if lepton else None)
    return batch


def record_batch(
    network: nn.Module, summary: AttentionSummary, batch: Batch, sample: jets.Jets, plan: Plan, config: ExplainConfig
) -> dict:
    """Run ``network`` on the batch, add what it attended to to ``summary``; returns the records."""
    from jetattn.nn.attention import record_attention

    with torch.no_grad(), record_attention(network, details=True) as records:
        network(*batch.inputs)
    split = [layer for layer in plan.layers if len(records[layer]) != 1]
    if split:
        raise ToolError(
            f"{split[0]}: {len(records[split[0]])} attention calls in one forward; explain reads one per layer over "
            "the whole batch (a network option splits the batch: set it off)"
        )
    summary.add_batch(records, batch.labels, batch.pts, batch.subjets, batch.leptons)
    if plan.objects is not None:
        object_padding = sample.inputs[f"{plan.objects}_mask"][batch.rows, 0].le(0).to(config.device)
        orders = [np.argsort(-pt, kind="stable") for pt in batch.pts]
        summary.add_cross(records, batch.labels, ~plan.background, object_padding, orders, config.cross_particles)
    return records


def graph_entries(record, batch: Batch, sample: jets.Jets, plan: Plan, threshold: float, notes: list) -> dict:
    """The η–φ graphs of the example jets in this batch, from the last particle layer, mean over heads."""
    entries = {}
    if record.projected:
        if any(j in batch.jets for j in plan.examples):
            skip(notes, "attention graphs: the attention is over linformer projections, not particles")
        return entries
    per_jet = record.per_jet()
    for j, name in plan.examples.items():
        if j not in batch.jets:
            continue
        weights = per_jet[j - batch.jets.start].double().mean(0).cpu().numpy()
        owner = batch.subjets[j - batch.jets.start]
        if owner is None:
            owner = np.zeros(len(weights), dtype=np.int64)
        entries[name] = {
            "title": f"{name}, jet {j}",
            "jet": j,
            "deta": sample.particles["part_deta"][j].tolist(),
            "dphi": sample.particles["part_dphi"][j].tolist(),
            "pt": sample.pt(j).tolist(),
            "types": graphs.particle_types(sample.particles, j, jets.PARTICLE_TYPES),
            "subjet": owner.tolist(),
            "edges": graphs.attention_edges(weights, threshold)[:300],
            "edge_threshold": threshold,
        }
    return entries


def add_gradcam(cams: EtaPhiMap, model: nn.Module, batch: Batch, sample: jets.Jets, plan: Plan, device: str) -> None:
    """Each jet's Grad-CAM for its own class, histogrammed in (Δη, Δφ) into ``cams``."""
    padding = sample.inputs[f"{sample.stream}_mask"][batch.rows, 0].le(0).to(device)
    labels = torch.from_numpy(batch.labels)
    cam = gradcam(model, batch.inputs, plan.gradcam_layer, labels, padding).cpu().numpy()
    for row, j in enumerate(batch.jets):
        deta, dphi = sample.particles["part_deta"][j], sample.particles["part_dphi"][j]
        cams.add(plan.names[batch.labels[row]], deta, dphi, cam[row, : len(batch.pts[row])])


def collect(config: ExplainConfig) -> Collected:
    """Load the checkpoint and the jets; record the attention of every batch, trained and untrained, and the
    trained network's Grad-CAM."""
    from tqdm import tqdm

    lacking = [str(f) for f in config.files if not f.is_file()]
    if lacking:
        raise ToolError(f"{lacking[0]}: no such file ({len(lacking)} of --files missing)")
    names = jets.class_names(config.data_config)
    background = jets.background_classes(names, config.background)
    model, untrained, input_names = build_models(config)
    sample = jets.load(config.data_config, config.files, config.num_jets)
    notes: list[str] = []
    plan = plan_recording(config, model, sample, names, background, notes)
    networks = {"trained": model} if untrained is None else {"trained": model, "untrained": untrained}
    summaries = {key: AttentionSummary(plan.layers, names, config.max_particles, graphs.SUBJETS) for key in networks}
    cams = EtaPhiMap(names)
    examples = {}
    for start in tqdm(range(0, len(sample), config.batch_size), desc="explain", unit="batch"):
        batch = make_batch(sample, plan, config, input_names, start)
        for key, network in networks.items():
            records = record_batch(network, summaries[key], batch, sample, plan, config)
            if key == "trained" and plan.layers:
                record = records[plan.layers[-1]][0]
                examples.update(graph_entries(record, batch, sample, plan, config.edge_threshold, notes))
        if plan.gradcam_layer is not None:
            add_gradcam(cams, model, batch, sample, plan, config.device)
    return summarise(plan, summaries, cams, examples, sample, notes)


def summarise(
    plan: Plan, summaries: dict[str, AttentionSummary], cams: EtaPhiMap, examples: dict, sample: jets.Jets, notes: list
) -> Collected:
    """The means and histograms of the recorded batches."""
    means = summaries["trained"].maps.means()
    mean_maps = {}
    for name in (plan.names[c] for c in plan.present):
        by_layer = {layer: means[(name, layer)] for layer in plan.layers if (name, layer) in means}
        if by_layer:
            mean_maps[name] = by_layer
    cross_means = summaries["trained"].cross.means()
    cross_maps = {
        layer: {
            group: np.nanmean(cross_means[(group, layer)], axis=0)
            for group in ("signal", "background")
            if (group, layer) in cross_means
        }
        for layer in sorted({layer for _, layer in cross_means})
    }
    if plan.objects is None:
        skip(notes, "cross-attention maps: the network has no cross-attention (not a multi-scale model with objects)")
    fractions = {}
    for kind in ("between_subjets", "to_leptons"):
        tables = {key: fraction_table(getattr(summary, kind)) for key, summary in summaries.items()}
        if tables["trained"]:
            fractions[kind] = tables
        elif kind == "between_subjets":
            skip(notes, "subjet attention: no jet of a class with a subjet count (or attention over projections)")
    return Collected(
        jets_per_class={plan.names[c]: int((sample.labels == c).sum()) for c in plan.present},
        layers=plan.layers,
        scores={key: summary.score_summary() for key, summary in summaries.items()},
        mean_maps=mean_maps,
        cross_maps=cross_maps,
        graphs=examples,
        fractions=fractions,
        gradcam_layer=plan.gradcam_layer,
        gradcam_edges=cams.edges,
        gradcam_maps=cams.means(),
        notes=notes,
    )

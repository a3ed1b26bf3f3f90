"""Which Pythia process makes each jet class, which jets count as that class, and how the official files are laid
out (docs/generator.md: why). `jetattn.datasets.recipes` turns a DatasetSpec into a recipe for the generator."""

from dataclasses import dataclass, field

# Pythia settings shared by every class: 14 TeV pp with MPI, ISR, FSR and hadronisation left at their default (on);
# particles with c*tau > 10 mm stay stable, as a detector would see them.
COMMON_SETTINGS = (
    "ParticleDecays:limitTau0 = on",
    "ParticleDecays:tau0Max = 10",
    "Print:quiet = on",
    "Next:numberCount = 0",
    "Next:numberShowEvent = 0",
    "Next:numberShowInfo = 0",
    "Next:numberShowProcess = 0",
)

_W_HADRONIC = ("24:onMode = off", "24:onIfAny = 1 2 3 4 5")
# one W -> e/mu nu and the other W -> q q': W+ leptonic, W- hadronic (the sign is fixed; see docs/generator.md)
_W_SEMILEPTONIC = ("24:onMode = off", "24:onPosIfAny = 11 13", "24:onNegIfAny = 1 2 3 4 5")
_Z_INVISIBLE = ("23:onMode = off", "23:onIfAny = 12 14 16")
_Z_HADRONIC = ("23:onMode = off", "23:onIfAny = 1 2 3 4 5")
# Higgs recoiling against Z -> nu nu, as in the JetClass recipe
_HZ = ("HiggsSM:ffbar2HZ = on", "25:onMode = off", *_Z_INVISIBLE)
_TTBAR = ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on")
_QCD = ("HardQCD:all = on",)


@dataclass(frozen=True)
class JetClassSpec:
    """One class of jets: how Pythia makes it and which jets are kept.

    match: "resonance" keeps a jet when a resonance with |pid| in `resonance` and all its visible decay products
    (quarks, gluons, charged leptons) lie within the jet radius; "leading" keeps the two leading jets of the event;
    "parton" keeps a jet matched (within the jet radius) to an outgoing hard parton with |pid| in `partons`.
    """

    name: str  # file prefix (JetClass) or class name
    label: str  # label branch set to 1 (JetClass) or the value of `label` (TopLandscape, QuarkGluon) via label_value
    settings: tuple[str, ...]
    pt_hat: tuple[float, float]
    match: str = "resonance"
    resonance: tuple[int, ...] = ()
    n_leptons: int = 0  # charged leptons required among the decay products
    partons: tuple[int, ...] = ()
    label_value: int = 0


@dataclass(frozen=True)
class DatasetSpec:
    """Jet definition, selection and classes of one dataset."""

    name: str
    radius: float
    pt_range: tuple[float, float]
    abs_eta_max: float
    use_rapidity: bool  # QuarkGluon cuts on |y|, the others on |eta|
    classes: tuple[JetClassSpec, ...]
    splits: tuple[str, ...] = ("train", "val", "test")
    labels: tuple[str, ...] = field(default=())  # one-hot label branches (JetClass); empty: a single `label`
    # the original sample's generation, as far as its paper says (docs/generator.md gives the sources):
    settings: tuple[str, ...] = ()  # Pythia settings of every class, read after COMMON_SETTINGS
    detector: str = "simple"  # jetattn.datasets.detector.DETECTORS
    leading_jets: int | None = None  # keep only this many leading jets of each event (None: every matched jet)
    # the stored constituents rebuilt massless from (pT, y, phi), the rapidity standing for eta, and the jet's
    # branches from their sum, as the public files were made from the EnergyFlow arrays (QuarkGluon)
    massless_constituents: bool = False
    # the official layout: one file per split, all classes shuffled together, named so under {name}/; None: a folder
    # per split of per-class files {class}_{NNN}.root under {name}/{subfolder}
    merged_file: str | None = "{split}_file.root"
    subfolder: str = ""


# the JetClass file prefixes, one weaver file group each, in the public recipe's order (train_JetClass.sh lists them
# so; weaver shuffles the training files starting from this order)
JETCLASS_FILE_GROUPS = (
    "HToBB",
    "HToCC",
    "HToGG",
    "HToWW2Q1L",
    "HToWW4Q",
    "TTBar",
    "TTBarLep",
    "WToQQ",
    "ZToQQ",
    "ZJetsToNuNu",
)
JETCLASS_LABELS = (
    "label_QCD",
    "label_Hbb",
    "label_Hcc",
    "label_Hgg",
    "label_H4q",
    "label_Hqql",
    "label_Zqq",
    "label_Wqq",
    "label_Tbqq",
    "label_Tbl",
)

# Pythia's default decays, as the papers ran it: K0S, Lambda and the other hyperons decay (COMMON_SETTINGS keeps
# them stable, as the detector models before particle flow expected)
_DEFAULT_DECAYS = ("ParticleDecays:limitTau0 = off",)

_JC_PTHAT = (500.0, 1000.0)
# the neutrino of a leptonic W leaves the jet: a harder process keeps the jet in the window twice as often
_JC_PTHAT_LEPTONIC = (600.0, 1200.0)
_HIGGS = (25,)

JETCLASS = DatasetSpec(
    name="JetClass",
    radius=0.8,
    pt_range=(500.0, 1000.0),
    abs_eta_max=2.0,
    use_rapidity=False,
    labels=JETCLASS_LABELS,
    merged_file=None,
    subfolder="Pythia",
    detector="cms",  # K0S, Lambda stay stable (COMMON_SETTINGS), as CMS's Pythia settings and the card expect
    classes=(
        JetClassSpec("ZJetsToNuNu", "label_QCD", _QCD, _JC_PTHAT, match="leading"),
        JetClassSpec("HToBB", "label_Hbb", (*_HZ, "25:onIfMatch = 5 -5"), _JC_PTHAT, resonance=_HIGGS),
        JetClassSpec("HToCC", "label_Hcc", (*_HZ, "25:onIfMatch = 4 -4"), _JC_PTHAT, resonance=_HIGGS),
        JetClassSpec("HToGG", "label_Hgg", (*_HZ, "25:onIfMatch = 21 21"), _JC_PTHAT, resonance=_HIGGS),
        JetClassSpec(
            "HToWW4Q", "label_H4q", (*_HZ, "25:onIfMatch = 24 -24", *_W_HADRONIC), _JC_PTHAT, resonance=_HIGGS
        ),
        JetClassSpec(
            "HToWW2Q1L",
            "label_Hqql",
            (*_HZ, "25:onIfMatch = 24 -24", *_W_SEMILEPTONIC),
            _JC_PTHAT_LEPTONIC,
            resonance=_HIGGS,
            n_leptons=1,
        ),
        JetClassSpec(
            "ZToQQ",
            "label_Zqq",
            (
                "WeakBosonAndParton:qqbar2gmZg = on",
                "WeakBosonAndParton:qg2gmZq = on",
                "WeakZ0:gmZmode = 2",
                *_Z_HADRONIC,
            ),
            _JC_PTHAT,
            resonance=(23,),
        ),
        JetClassSpec(
            "WToQQ",
            "label_Wqq",
            ("WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on", *_W_HADRONIC),
            _JC_PTHAT,
            resonance=(24,),
        ),
        JetClassSpec("TTBar", "label_Tbqq", (*_TTBAR, *_W_HADRONIC), _JC_PTHAT, resonance=(6,)),
        JetClassSpec(
            "TTBarLep", "label_Tbl", (*_TTBAR, *_W_SEMILEPTONIC), _JC_PTHAT_LEPTONIC, resonance=(6,), n_leptons=1
        ),
    ),
)

_TL_PTHAT = (500.0, 700.0)
TOPLANDSCAPE = DatasetSpec(
    name="TopLandscape",
    radius=0.8,
    pt_range=(550.0, 650.0),
    abs_eta_max=2.0,
    use_rapidity=False,
    # MPI stays on (Pythia's default) although the record says "No MPI/pile-up included": the real jets carry the
    # soft particles and mass of an underlying event, and only with MPI do ours match them (docs/generator.md).
    # The top mass is the 171 GeV of every Pythia 8 the 2019 sample could have used: Pythia 8.308 raised the default
    # to 173 GeV (its UpdateHistory), which puts our top jets' mass 2 GeV above the real ones
    settings=(*_DEFAULT_DECAYS, "6:m0 = 171.0"),
    detector="atlas",
    leading_jets=1,
    classes=(
        JetClassSpec("QCD", "label", _QCD, _TL_PTHAT, match="leading", label_value=0),
        JetClassSpec("Top", "label", (*_TTBAR, *_W_HADRONIC), _TL_PTHAT, resonance=(6,), label_value=1),
    ),
)

# Z(-> nu nu) + jet as in the Pythia quark/gluon dataset; each process fills one class, so both stay balanced.
_QG_PTHAT = (450.0, 650.0)
_ZJ = ("WeakZ0:gmZmode = 2", *_Z_INVISIBLE)
QUARKGLUON = DatasetSpec(
    name="QuarkGluon",
    radius=0.4,
    pt_range=(500.0, 550.0),
    abs_eta_max=1.7,
    use_rapidity=True,
    splits=("train", "test"),
    merged_file="{split}_file_0.root",
    settings=_DEFAULT_DECAYS,
    detector="none",
    massless_constituents=True,
    classes=(
        JetClassSpec(
            "Gluon",
            "label",
            ("WeakBosonAndParton:qqbar2gmZg = on", *_ZJ),
            _QG_PTHAT,
            match="parton",
            partons=(21,),
            label_value=0,
        ),
        JetClassSpec(
            "Quark",
            "label",
            ("WeakBosonAndParton:qg2gmZq = on", *_ZJ),
            _QG_PTHAT,
            match="parton",
            partons=(1, 2, 3),
            label_value=1,
        ),
    ),
)

DATASETS = {spec.name: spec for spec in (JETCLASS, TOPLANDSCAPE, QUARKGLUON)}


def pythia_settings(cls: JetClassSpec, sqrt_s: float, seed: int, dataset_settings: tuple[str, ...] = ()) -> list[str]:
    """All `readString` lines for one class (of a dataset with `dataset_settings`) and one random seed."""
    return [
        f"Beams:eCM = {sqrt_s}",
        *COMMON_SETTINGS,
        *dataset_settings,
        *cls.settings,
        f"PhaseSpace:pTHatMin = {cls.pt_hat[0]}",
        f"PhaseSpace:pTHatMax = {cls.pt_hat[1]}",
        "Random:setSeed = on",
        f"Random:seed = {seed}",
    ]

"""Datasets for jet tagging: download of the public JetClass/TopLandscape/QuarkGluon archives and event generation;
also the download of the official pre-trained checkpoints (`jetattn.datasets.checkpoints`).

Submodules are imported on use (`jetattn.datasets.download`, `jetattn.datasets.generate`), so that downloading
never needs Pythia or FastJet.
"""

"""Interpretability of the attention models: ``python -m jetattn.explain`` (see its ``--help``)."""

"""jetattn: attention-based jet tagging networks for weaver-core."""

__version__ = "0.1.0"

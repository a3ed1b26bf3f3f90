"""What every figure of jetattn shares: matplotlib off-screen in the mplhep CMS style, and files written under a
temporary name, then renamed (an interrupted run leaves no half-written picture)."""

from __future__ import annotations

from pathlib import Path

from jetattn.io import atomic_path


def pyplot():
    """``matplotlib.pyplot``, with the Agg backend and the CMS style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.CMS)
    return plt


def save(fig, out: Path, stem: str, suffixes: tuple[str, ...] = (".png", ".pdf")) -> list[str]:
    """``out/<stem><suffix>`` for each suffix, then the figure is closed; returns the file names."""
    names = []
    for suffix in suffixes:
        with atomic_path(Path(out) / f"{stem}{suffix}") as tmp:
            fig.savefig(tmp, bbox_inches="tight", format=suffix[1:])
        names.append(f"{stem}{suffix}")
    pyplot().close(fig)
    return names

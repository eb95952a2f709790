"""Figures written by the steps (previews, loss curves, overlays): headless, atomic PNGs."""

from __future__ import annotations

from pathlib import Path

from . import io


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (no display on cluster nodes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: Path, *, dpi: int = 80) -> None:
    """Lay out, write atomically as PNG, and close."""
    figure.tight_layout()
    with io.atomic_store(path) as temporary:
        figure.savefig(temporary, format="png", dpi=dpi)
    pyplot().close(figure)

"""The files a training run writes: ``model.pt``, ``metrics.csv`` and ``loss.png`` (or, when it
fails, its metrics so far and no model)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from torch import nn

from . import io
from .inference import save_model
from .methods.architectures import Architecture
from .plots import pyplot, save_figure

log = logging.getLogger(__name__)


def write_loss_plot(path: Path, metrics: pd.DataFrame, title: str) -> None:
    figure, axis = pyplot().subplots(figsize=(6, 4))
    axis.plot(metrics["iteration"], metrics["loss"], label="training loss (weighted)")
    if "val_loss" in metrics and metrics["val_loss"].notna().any():
        validated = metrics.dropna(subset=["val_loss"])
        axis.plot(validated["iteration"], validated["val_loss"], "o-", label="validation loss")
        axis.plot(validated["iteration"], validated["val_pixel_error"], "s--", label="validation pixel error")
    axis.set_xlabel("iteration")
    axis.set_yscale("log")
    axis.set_title(title)
    axis.legend()
    save_figure(figure, path, dpi=90)


def write_failed_run(out_dir: Path, metrics: pd.DataFrame) -> None:
    """After divergence: ``metrics.csv`` (with the skipped steps) for the post-mortem, and no
    ``model.pt``, not even one of an earlier run, which would look like this run's result."""
    with io.atomic_store(out_dir / "metrics.csv") as temporary:
        metrics.to_csv(temporary, index=False)
    stale = out_dir / "model.pt"
    if stale.exists():
        stale.unlink()
        log.warning("removed %s of an earlier run: it does not belong to these settings", stale)


def write_outputs(out_dir: Path, architecture: Architecture, network: nn.Module, *, metrics: pd.DataFrame,
                  **recorded) -> None:
    """``model.pt`` (architecture + weights, all prediction needs, and the ``recorded`` facts of its
    training: settings, iterations, sample size, normalisation, the model it started from),
    ``metrics.csv`` and ``loss.png``."""
    with io.atomic_store(out_dir / "metrics.csv") as temporary:
        metrics.to_csv(temporary, index=False)
    write_loss_plot(out_dir / "loss.png", metrics, out_dir.name)
    save_model(out_dir / "model.pt", architecture, network, **recorded)

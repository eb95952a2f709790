"""The report: metrics across models and datasets, loss curves, overlays.

Reads the workflow's standard outputs under ``results/`` and writes
``results/report/``: ``metrics.md`` and ``metrics.html`` (one row per model and
dataset), ``loss_curves.png`` (every model), ``overlays.png`` (image, ground
truth and segmentation of a few slices per model and dataset).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from skimage.segmentation import find_boundaries

from .. import cli, io
from ..methods.metrics import reported_columns
from ..plots import pyplot, save_figure

log = logging.getLogger(__name__)
TABLE_COLUMNS = ["model", "dataset", *reported_columns(), "v_rand", "v_info"]


def metrics_table(evaluations: list[Path]) -> pd.DataFrame:
    """The dataset rows (``slice == "all"``) of every evaluation CSV."""
    rows = [pd.read_csv(path, dtype={"slice": str}) for path in evaluations]
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=TABLE_COLUMNS + ["slice"])
    return table[table["slice"] == "all"][TABLE_COLUMNS].reset_index(drop=True)


def markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n"
    lines = ["| " + " | ".join(f"{value:.4f}" if isinstance(value, float) else str(value) for value in row) + " |"
             for row in table.itertuples(index=False)]
    return header + "\n".join(lines) + "\n"


def plot_loss_curves(path: Path, metrics: dict[str, Path]) -> None:
    figure, axes = pyplot().subplots(1, 2, figsize=(11, 4))
    for model, csv in metrics.items():
        frame = pd.read_csv(csv)
        axes[0].plot(frame["iteration"], frame["loss"], label=f"{model}")
        if "val_pixel_error" in frame:
            validated = frame.dropna(subset=["val_pixel_error"])
            axes[1].plot(validated["iteration"], validated["val_pixel_error"], "o-", label=model)
    axes[0].set(xlabel="iteration", ylabel="training loss (weighted)", yscale="log", title="training loss")
    axes[1].set(xlabel="iteration", ylabel="pixel error", title="validation pixel error")
    for axis in axes:
        if metrics:
            axis.legend()
        else:
            axis.text(0.5, 0.5, "no model trained in this run", ha="center", va="center", transform=axis.transAxes)
    save_figure(figure, path, dpi=90)


def plot_overlays(path: Path, pairs: list[tuple[str, str]], results: Path, slices_per_pair: int = 2) -> None:
    """Image with ground-truth borders (green) and segmentation borders (magenta)."""
    panels = []
    for model, dataset in pairs:
        store = io.open_store(results / dataset / "data.zarr")
        raw, truth = io.open_raw(store), io.open_labels(store, "objects")
        objects = io.open_store(results / "segmentation" / model / f"{dataset}.zarr")["objects"]
        for z in range(min(slices_per_pair, raw.shape[0])):
            panels.append((f"{model} / {dataset} / slice {z}", raw[z], None if truth is None else truth[z], objects[z]))
    figure, axes = pyplot().subplots(1, max(1, len(panels)), figsize=(5 * max(1, len(panels)), 5), squeeze=False)
    for axis, (title, image, truth, objects) in zip(axes[0], panels):
        rgb = np.repeat(((image - image.min()) / max(1e-9, np.ptp(image)))[..., None], 3, axis=2)
        if truth is not None:
            rgb[find_boundaries(truth, mode="inner")] = (0.1, 0.9, 0.1)
        rgb[find_boundaries(objects, mode="inner")] = (0.9, 0.1, 0.9)
        axis.imshow(rgb)
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    save_figure(figure, path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m unetflow.steps.report", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--models", nargs="*", default=[])
    parser.add_argument("--trained", nargs="*", default=[], help="models trained in this run (loss curves)")
    parser.add_argument("--predicted", nargs="*", default=[], help="datasets predicted (overlays)")
    parser.add_argument("--evaluated", nargs="*", default=[], help="datasets evaluated (table)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    evaluations = [args.results / "evaluation" / model / f"{dataset}.csv" for model in args.models for dataset in args.evaluated]
    table = metrics_table(evaluations)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with io.atomic_store(args.out_dir / "metrics.md") as temporary:
        temporary.write_text(markdown(table))
    with io.atomic_store(args.out_dir / "metrics.html") as temporary:
        temporary.write_text(table.to_html(index=False, float_format=lambda value: f"{value:.4f}"))
    plot_loss_curves(args.out_dir / "loss_curves.png",
                     {model: args.results / "models" / model / "metrics.csv" for model in args.trained})
    plot_overlays(args.out_dir / "overlays.png", [(m, d) for m in args.models for d in args.predicted], args.results)
    log.info("report written to %s:\n%s", args.out_dir, markdown(table))


if __name__ == "__main__":
    cli.run(main)

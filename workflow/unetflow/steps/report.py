"""The report: metrics across models and datasets, the data split, tuning, loss curves, overlays.

Reads the workflow's standard outputs under ``results/`` and writes
``results/report/``: ``metrics.md`` and ``metrics.html`` (one row per model and
dataset, the whole-volume object scores of 3-D evaluations where there are any, the
slices each dataset holds and what each is used for, the segmentation settings each
model used), ``tuning.png`` (each model's sweep of segmentation
settings), ``loss_curves.png`` (every model), ``overlays.png`` (image, ground
truth and segmentation of a few slices per model and dataset).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from skimage.segmentation import find_boundaries

from .. import cli, io
from ..methods.metrics import DATASET_ROW, OBJECTIVES, VOLUME_ROW, reported_columns
from ..methods.segmenters import SETTING_KEYS
from ..plots import pyplot, save_figure

log = logging.getLogger(__name__)
TABLE_COLUMNS = ["model", "dataset", "threshold", "pixel_error_at_0.5", *reported_columns(), "isbi_pixel_error",
                 "v_rand", "v_info", "objects_v_rand", "objects_v_info"]
VOLUME_COLUMNS = ["model", "dataset", "threshold", *reported_columns(objects_only=True)]
SETTING_COLUMNS = list(SETTING_KEYS)
METHOD_SCORES = ["adapted_rand_error", "objects_v_rand", "vi_split", "vi_merge", "average_precision", "f1", "pixel_error"]
METHODS_SECTION = "Segmentation methods side by side (each one's best settings, scored on the tuning data)"
SWEEP_KEYS = [key for key in SETTING_COLUMNS if key != "threshold"]  # one curve over the thresholds each
FOLDS_SECTION = ("Cross-validation: each fold's model on the slices it held out, and mean ± SD over the folds "
                 "(optimistic: these slices also tuned the ensemble's segmentation settings and, with "
                 "train.keep: best, chose each fold's checkpoint)")
FOLD_SCORES = ["adapted_rand_error", "objects_v_rand", "v_rand", "v_info", "pixel_error_at_0.5", "average_precision"]
VOLUME_SECTION = "Scores of the whole volume (3-D: objects scored through z as one segmentation)"


def evaluation_rows(evaluations: list[Path], row: str, columns: list[str]) -> pd.DataFrame:
    """The rows ``slice == row`` of every evaluation CSV, in ``columns``."""
    rows = [pd.read_csv(path, dtype={"slice": str}) for path in evaluations]
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns + ["slice"])
    return table[table["slice"] == row][columns].reset_index(drop=True)


def metrics_table(evaluations: list[Path]) -> pd.DataFrame:
    """The dataset rows (``slice == "all"``) of every evaluation CSV."""
    return evaluation_rows(evaluations, DATASET_ROW, TABLE_COLUMNS)


def volume_table(evaluations: list[Path]) -> pd.DataFrame:
    """The whole-volume rows (``slice == "volume"``, written by ``evaluate --dims 3``) of every
    evaluation CSV; empty where every evaluation was per slice only."""
    return evaluation_rows(evaluations, VOLUME_ROW, VOLUME_COLUMNS)


def folds_table(results: Path, folds: dict[str, list[list[str]]]) -> pd.DataFrame:
    """Per model with folds: each fold's scores on its held-out slices (the mean of its held-out
    datasets' rows) and a row of mean ± SD over the folds."""
    rows = []
    for ensemble, pairs in folds.items():
        scored = metrics_table([results / "evaluation" / model / f"{dataset}.csv" for model, dataset in pairs])
        fold_rows = [{"model": ensemble, "fold": model, "held out": ", ".join(group["dataset"]),
                      **group[FOLD_SCORES].mean().to_dict()} for model, group in scored.groupby("model", sort=False)]
        scores = pd.DataFrame(fold_rows)[FOLD_SCORES]
        summary = {column: f"{scores[column].mean():.4f} ± {scores[column].std(ddof=1):.4f}" for column in FOLD_SCORES}
        rows += [*fold_rows, {"model": ensemble, "fold": f"mean ± SD over {len(fold_rows)} folds", "held out": "",
                              **summary}]
    return pd.DataFrame(rows, columns=["model", "fold", "held out", *FOLD_SCORES])


def split_table(split: list[dict]) -> pd.DataFrame:
    """Each dataset's stack, slices and use (train, validate + tune, report, predict)."""
    return pd.DataFrame(split, columns=["dataset", "use", "images", "slices"])


def settings_table(results: Path, models: list[str], predicted: list[str], tuned: bool) -> pd.DataFrame:
    """The segmentation settings each model's segmentations used (as their stores record them)
    and where they come from."""
    rows = []
    for model in models:
        source = "fixed: the segment section"
        if tuned:
            choice = json.loads((results / "tuning" / model / "segment.json").read_text())
            scored_on = (f"{choice['volumes']} held-out volumes ({choice['slices']} slices) scored whole"
                         if choice.get("dims") == 3 else f"{choice['slices']} held-out slices")
            source = (f"tuned: lowest {OBJECTIVES[choice['metric']].shown} ({choice['score']:.4f}) of {choice['candidates']} "
                      f"candidates on {scored_on}")
        for dataset in predicted:
            used = io.open_objects(results / "segmentation" / model / f"{dataset}.zarr").attrs["unetflow"]
            rows.append({"model": model, "dataset": dataset, **used, "chosen by": source})
    return pd.DataFrame(rows, columns=["model", "dataset", *SETTING_COLUMNS, "chosen by"])


def methods_table(sweeps: dict[str, Path]) -> pd.DataFrame:
    """Per model and segmentation method, its best candidate of the tuning sweep (lowest score, as
    the tune rule ranks them) with its scores on the tuning data: the methods side by side
    on the same predictions."""
    rows = []
    for model, csv in sweeps.items():
        sweep = pd.read_csv(csv)
        for method, candidates in sweep.groupby("method", sort=False):
            best = candidates.loc[candidates["score"].idxmin()]
            settings = ", ".join(f"{key} {best[key]}" for key in SETTING_COLUMNS[1:] if pd.notna(best.get(key)))
            rows.append({"model": model, "method": method, "its best settings": settings,
                         **{column: best.get(column, np.nan) for column in METHOD_SCORES}, "chosen": bool(best["chosen"])})
    return pd.DataFrame(rows, columns=["model", "method", "its best settings", *METHOD_SCORES, "chosen"])


def models_table(origins: dict[str, str], metrics: dict[str, Path]) -> pd.DataFrame:
    """Each model's origin and, for those trained here, the iterate kept (``train.keep``) beside the
    lowest validation loss of the run and its iteration."""
    rows = []
    for model, origin in sorted(origins.items()):
        row = {"model": model, "origin": origin}
        if model in metrics:
            run = pd.read_csv(metrics[model])
            kept = run[run["kept"]].iloc[-1] if "kept" in run and run["kept"].any() else run.iloc[-1]
            validated = run.dropna(subset=["val_loss"]) if "val_loss" in run else run.iloc[:0]
            row |= {"kept iteration": int(kept["iteration"]), "its validation loss": kept.get("val_loss", np.nan)}
            if len(validated):
                best = validated.loc[validated["val_loss"].idxmin()]
                row |= {"lowest validation loss": best["val_loss"], "at iteration": int(best["iteration"])}
        rows.append(row)
    return pd.DataFrame(rows, columns=["model", "origin", "kept iteration", "its validation loss",
                                       "lowest validation loss", "at iteration"])


def markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n"
    lines = ["| " + " | ".join(f"{value:.4f}" if isinstance(value, float) else str(value) for value in row) + " |"
             for row in table.itertuples(index=False)]
    return header + "\n".join(lines) + "\n"


def plot_tuning(path: Path, sweeps: dict[str, Path]) -> None:
    """Each model's sweep: the tuning score against the threshold, one line per other setting."""
    columns = max(1, len(sweeps))
    figure, axes = pyplot().subplots(1, columns, figsize=(9 * columns, 4.5), squeeze=False)
    for axis, (model, csv) in zip(axes[0], sweeps.items()):
        sweep = pd.read_csv(csv)
        for key, group in sweep.groupby(SWEEP_KEYS, sort=False, dropna=False):
            label = " ".join(str(value) for value in key if pd.notna(value) and value != "")
            axis.plot(group["threshold"], group["score"], "o-", markersize=3, linewidth=1, label=label)
        chosen = sweep[sweep["chosen"]].iloc[0]
        axis.plot(chosen["threshold"], chosen["score"], "k*", markersize=14, label="chosen")
        axis.set(xlabel="threshold", ylabel="tuning score (lower is better)", yscale="log",
                 title=f"{model}: segmentation settings on held-out slices")
        axis.legend(title=" ".join(SWEEP_KEYS), fontsize=6, title_fontsize=7, ncol=2, loc="upper left",
                    bbox_to_anchor=(1.01, 1.0))
    if not sweeps:
        axes[0][0].text(0.5, 0.5, "fixed segmentation settings: nothing tuned", ha="center", va="center",
                        transform=axes[0][0].transAxes)
        axes[0][0].axis("off")
    save_figure(figure, path, dpi=90)


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
        objects = io.open_objects(results / "segmentation" / model / f"{dataset}.zarr")
        for z in range(min(slices_per_pair, objects.shape[0])):
            panels.append((f"{model} / {dataset} / slice {z}", io.raw_plane(raw, z), None if truth is None else truth[z],
                           objects[z]))
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
    parser.add_argument("--split", default="[]", help="JSON list of {dataset, use, images, slices}")
    parser.add_argument("--origins", default="{}", help="JSON: each model's origin (trained here, fine-tuned from "
                        "a file, applied from a file)")
    parser.add_argument("--folds", default="{}", help="JSON: per model with folds, [fold model, held-out dataset] "
                        "pairs (cross-validation scores)")
    parser.add_argument("--tuned", action="store_true", help="segmentation settings tuned (results/tuning/<model>/)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    evaluations = [args.results / "evaluation" / model / f"{dataset}.csv" for model in args.models for dataset in args.evaluated]
    table, volumes = metrics_table(evaluations), volume_table(evaluations)
    sections = {"Scores": table, **({VOLUME_SECTION: volumes} if len(volumes) else {}),
                "Data: which slices each number comes from": split_table(json.loads(args.split)),
                "Models": models_table(json.loads(args.origins),
                                       {model: args.results / "models" / model / "metrics.csv" for model in args.trained}),
                "Segmentation settings": settings_table(args.results, args.models, args.predicted, args.tuned)}
    folds = json.loads(args.folds)
    if folds:
        sections[FOLDS_SECTION] = folds_table(args.results, folds)
    if args.tuned:
        sections[METHODS_SECTION] = methods_table({model: args.results / "tuning" / model / "sweep.csv"
                                                   for model in args.models})
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with io.atomic_store(args.out_dir / "metrics.md") as temporary:
        temporary.write_text("\n".join(f"## {title}\n\n{markdown(part)}" for title, part in sections.items()))
    with io.atomic_store(args.out_dir / "metrics.html") as temporary:
        temporary.write_text("\n".join(f"<h2>{title}</h2>\n" + part.to_html(index=False, float_format=lambda v: f"{v:.4f}")
                                       for title, part in sections.items()))
    plot_tuning(args.out_dir / "tuning.png",
                {model: args.results / "tuning" / model / "sweep.csv" for model in args.models} if args.tuned else {})
    plot_loss_curves(args.out_dir / "loss_curves.png",
                     {model: args.results / "models" / model / "metrics.csv" for model in args.trained})
    plot_overlays(args.out_dir / "overlays.png", [(m, d) for m in args.models for d in args.predicted], args.results)
    log.info("report written to %s:\n%s%s", args.out_dir, markdown(table),
             f"whole volumes:\n{markdown(volumes)}" if len(volumes) else "")


if __name__ == "__main__":
    cli.run(main)

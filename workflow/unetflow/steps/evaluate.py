"""Evaluation of predictions and segmentations against ground truth, per slice and per dataset.

Per slice: every metric of :mod:`unetflow.methods.metrics`, the pixel metrics on the
foreground probability thresholded at the segmentation's threshold (``threshold``, the
tuned one with ``segment.settings: tuned``: ``pixel_error_at_threshold``, foreground
IoU and Dice), the object metrics on the segment rule's objects against the
ground-truth objects (adapted Rand error, variation of information); the pixel error
at 0.5 (``pixel_error_at_0.5``); and the ISBI 2012 challenge's scores, see
:mod:`unetflow.isbi_scores`: its pixel error (``isbi_pixel_error``, 1 - the best
F-score over thresholds), V_Rand and V_Info (thinned) of the probabilities (``v_rand``,
``v_info``: a property of the network, the same for every segmentation method) and of the
segmentation (``objects_v_rand``, ``objects_v_info``: its objects' borders scored as the
challenge scored a submitted segmentation). The dataset row averages the slices; the
challenge's scores of the probabilities there take the threshold that is best for the whole
dataset, as the challenge did.

With ``--dims 3`` a last row, ``slice == "volume"``, scores the whole volume as one
segmentation by the object metrics (adapted Rand error with its precision and recall,
VI split and merge; the same functions and definitions as per slice, background of the
ground truth ignored), so an object split or merged across z counts, which no slice
row sees; its pixel and ISBI columns are empty (those are per slice, and the ``all`` row
averages them).

Data larger than a block is read block by block (:mod:`unetflow.evaluation`): the same
scores, but for V_Rand and V_Info, which are left out with a note.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .. import cli, io, settings
from ..errors import InputError
from ..evaluation import Sources, score, volume_row
from ..isbi_scores import THRESHOLDS, best_pixel_error, best_scores
from ..methods.metrics import DATASET_ROW, VOLUME_ROW
from ..parallel import dask_config

log = logging.getLogger(__name__)


def evaluate(data: Path, predictions: Path, segmentation: Path, *, dims: int = 2,
             blocks: dict | None = None) -> pd.DataFrame:
    """One row per slice and an ``all`` row with the dataset's scores; pixel scores
    threshold the foreground probability at the segmentation's threshold. With ``dims`` 3
    a final ``volume`` row holds the object scores of the whole volume.

    A slice whose ground truth holds no object gets pixel scores only, and a ``note``
    saying so: object scores compare objects and are undefined there.
    """
    store = io.open_store(data)
    classes, truth = io.open_labels(store, "classes"), io.open_labels(store, "objects")
    if classes is None:
        raise InputError(f"{data}: has no labels, so it cannot be evaluated; remove it from the evaluation")
    objects = io.open_objects(segmentation)
    sources = Sources(classes, truth, io.open_probabilities(predictions), objects,
                      segmentation_threshold(objects, segmentation))
    scored = score(sources, dims=dims, blocks=settings.section("blocks", blocks or {}))
    table = pd.DataFrame(scored.rows)
    with_objects = int(table["adapted_rand_error"].notna().sum())
    overall = {"slice": DATASET_ROW, **table.drop(columns=["slice", "note"]).mean().to_dict(),
               **dataset_isbi_scores(scored.isbi, scored.blockwise), **best_pixel_error(scored.isbi_counts)}
    overall["note"] = f"{with_objects} of {len(table)} slices have objects" if with_objects < len(table) else ""
    summary = [overall, volume_row(scored.volume, sources.threshold)] if dims == 3 else [overall]
    return pd.concat([table, pd.DataFrame(summary)], ignore_index=True)


def segmentation_threshold(objects, path: Path) -> float:
    """The foreground threshold the segment step used (recorded in its store)."""
    try:
        return float(objects.attrs["unetflow"]["threshold"])
    except (KeyError, TypeError):
        raise InputError(f"{path}: records no segmentation threshold (written by an older unetflow?); rerun "
                         "the segment rule for it") from None


def dataset_isbi_scores(per_slice: list[np.ndarray], blockwise: bool) -> dict[str, float]:
    """V_Rand and V_Info at the dataset's best threshold, NaN when no slice has objects (or the
    slices were scored block by block)."""
    if not per_slice or blockwise:
        return dict.fromkeys(("v_rand", "v_rand_threshold", "v_info", "v_info_threshold"), np.nan)
    return best_scores(per_slice, THRESHOLDS)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m unetflow.steps.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="data.zarr with labels")
    parser.add_argument("--predictions", type=Path, required=True)
    parser.add_argument("--segmentation", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="output CSV")
    parser.add_argument("--model", default="")
    parser.add_argument("--dataset", default="")
    cli.add_dims_option(parser, help="3: also score the whole volume as one segmentation (the volume row)")
    cli.add_blocks_option(parser)
    cli.add_dask_options(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with dask_config(args.scheduler, args.workers):
        table = evaluate(args.data, args.predictions, args.segmentation, dims=args.dims,
                         blocks=json.loads(args.blocks))
    table.insert(0, "dataset", args.dataset)
    table.insert(0, "model", args.model)
    with io.atomic_store(args.out) as temporary:
        table.to_csv(temporary, index=False)
    overall = table[table["slice"] == DATASET_ROW].iloc[0]
    log.info("%s: pixel error %.4f at threshold %.2f (%.4f at 0.5, ISBI %.4f), adapted Rand error %.4f, V_Rand %.4f "
             "(of the probabilities; %.4f of the objects), V_Info %.4f (%.4f)", args.out,
             overall["pixel_error_at_threshold"], overall["threshold"], overall["pixel_error_at_0.5"],
             overall["isbi_pixel_error"], overall["adapted_rand_error"], overall["v_rand"], overall["objects_v_rand"],
             overall["v_info"], overall["objects_v_info"])
    if args.dims == 3:
        volume = table[table["slice"] == VOLUME_ROW].iloc[0]
        log.info("%s: the whole volume: adapted Rand error %.4f, VI split %.4f, merge %.4f", args.out,
                 volume["adapted_rand_error"], volume["vi_split"], volume["vi_merge"])


if __name__ == "__main__":
    cli.run(main)

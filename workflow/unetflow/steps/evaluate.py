"""Evaluation of predictions and segmentations against ground truth, per slice and per dataset.

Per slice: every metric of :mod:`unetflow.methods.metrics`, the pixel metrics on the
foreground probability thresholded at the segmentation's threshold (``threshold``, the
tuned one with ``segment.settings: tuned``: ``pixel_error_at_threshold``, foreground
IoU and Dice), the object metrics on the segment rule's objects against the
ground-truth objects (adapted Rand error, variation of information); the pixel error
at 0.5 (``pixel_error_at_0.5``); and the ISBI 2012 challenge's scores, see
:mod:`unetflow.isbi_scores`: its pixel error (``isbi_pixel_error``, 1 - the best
F-score over thresholds), V_Rand and V_Info (thinned). The dataset row averages the
slices; the challenge's scores there take the threshold that is best for the whole
dataset, as the challenge did.

With ``--dims 3`` a last row, ``slice == "volume"``, scores the whole volume as one
segmentation by the object metrics (adapted Rand error with its precision and recall,
VI split and merge; the same functions and definitions as per slice, background of the
ground truth ignored), so an object split or merged across z counts, which no slice
row sees; its pixel and ISBI columns are empty (those are per slice, and the ``all`` row
averages them).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .. import cli, io
from ..errors import InputError
from ..isbi_scores import THRESHOLDS, best_pixel_error, best_scores, interior_counts, slice_scores
from ..methods.metrics import DATASET_ROW, VOLUME_ROW, object_columns, object_scores, pixel_error, pixel_scores
from ..progress import progress

log = logging.getLogger(__name__)
ISBI_SCORES = ("v_rand", "v_info")
NO_OBJECTS = "no ground-truth objects: object scores not defined, left out of the dataset row"
VOLUME_NOTE = "3-D: the object scores of the whole volume, scored as one segmentation"


def evaluate(data: Path, predictions: Path, segmentation: Path, *, dims: int = 2) -> pd.DataFrame:
    """One row per slice and an ``all`` row with the dataset's scores; pixel scores
    threshold the foreground probability at the segmentation's threshold. With ``dims`` 3
    a final ``volume`` row holds the object scores of the whole volume (:func:`volume_row`).

    A slice whose ground truth holds no object gets pixel scores only, and a ``note``
    saying so: object scores compare objects and are undefined there.
    """
    store = io.open_store(data)
    classes, truth = io.open_labels(store, "classes"), io.open_labels(store, "objects")
    if classes is None:
        raise InputError(f"{data}: has no labels, so it cannot be evaluated; remove it from the evaluation")
    probabilities = io.open_probabilities(predictions)
    objects = io.open_objects(segmentation)
    threshold = segmentation_threshold(objects, segmentation)
    rows, isbi, counts = [], [], []
    for z in progress(range(classes.shape[0]), desc="evaluated slices"):
        foreground = io.foreground_probability(probabilities, z)
        counts.append(interior_counts(foreground, classes[z]))
        row = {"slice": str(z), "threshold": threshold, **pixel_scores(foreground >= threshold, classes[z] > 0),
               "pixel_error_at_0.5": pixel_error(foreground >= 0.5, classes[z] > 0),
               **best_pixel_error(counts[-1]), "note": ""}
        true_objects = truth[z]
        if true_objects.any():
            per_threshold = slice_scores(foreground, true_objects)
            isbi.append(per_threshold)
            row.update(object_scores(true_objects, objects[z]), v_rand=float(per_threshold[:, 0].max()),
                       v_info=float(per_threshold[:, 1].max()))
        else:
            log.warning("slice %d of %s: %s", z, data, NO_OBJECTS)
            row.update(dict.fromkeys((*object_columns(), *ISBI_SCORES), np.nan), note=NO_OBJECTS)
        rows.append(row)
    table = pd.DataFrame(rows)
    overall = {"slice": DATASET_ROW, **table.drop(columns=["slice", "note"]).mean().to_dict(),
               **dataset_isbi_scores(isbi), **best_pixel_error(np.sum(counts, axis=0))}
    overall["note"] = f"{len(isbi)} of {len(rows)} slices have objects" if len(isbi) < len(rows) else ""
    summary = [overall, volume_row(truth[:], objects[:], threshold)] if dims == 3 else [overall]
    return pd.concat([table, pd.DataFrame(summary)], ignore_index=True)


def volume_row(truth: np.ndarray, objects: np.ndarray, threshold: float) -> dict:
    """The ``volume`` row: every object metric of the (z, y, x) ``objects`` against the (z, y, x)
    ground-truth ``truth`` as one segmentation, or NaN with a note where the truth holds no object."""
    if not truth.any():
        return {"slice": VOLUME_ROW, "threshold": threshold, **dict.fromkeys(object_columns(), np.nan),
                "note": NO_OBJECTS}
    return {"slice": VOLUME_ROW, "threshold": threshold, **object_scores(truth, objects), "note": VOLUME_NOTE}


def segmentation_threshold(objects, path: Path) -> float:
    """The foreground threshold the segment step used (recorded in its store)."""
    try:
        return float(objects.attrs["unetflow"]["threshold"])
    except (KeyError, TypeError):
        raise InputError(f"{path}: records no segmentation threshold (written by an older unetflow?); rerun "
                         "the segment rule for it") from None


def dataset_isbi_scores(per_slice: list[np.ndarray]) -> dict[str, float]:
    """V_Rand and V_Info at the dataset's best threshold, NaN when no slice has objects."""
    if not per_slice:
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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    table = evaluate(args.data, args.predictions, args.segmentation, dims=args.dims)
    table.insert(0, "dataset", args.dataset)
    table.insert(0, "model", args.model)
    with io.atomic_store(args.out) as temporary:
        table.to_csv(temporary, index=False)
    overall = table[table["slice"] == DATASET_ROW].iloc[0]
    log.info("%s: pixel error %.4f at threshold %.2f (%.4f at 0.5, ISBI %.4f), adapted Rand error %.4f, V_Rand %.4f, "
             "V_Info %.4f", args.out, overall["pixel_error_at_threshold"], overall["threshold"],
             overall["pixel_error_at_0.5"], overall["isbi_pixel_error"], overall["adapted_rand_error"],
             overall["v_rand"], overall["v_info"])
    if args.dims == 3:
        volume = table[table["slice"] == VOLUME_ROW].iloc[0]
        log.info("%s: the whole volume: adapted Rand error %.4f, VI split %.4f, merge %.4f", args.out,
                 volume["adapted_rand_error"], volume["vi_split"], volume["vi_merge"])


if __name__ == "__main__":
    cli.run(main)

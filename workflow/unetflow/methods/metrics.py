"""Scores of a segmentation against ground truth, one column or a few each; every one
registered here is computed per slice by the evaluate step and shown in the report.

Pixel metrics (``@pixel_metric("name")``) compare the thresholded foreground with the true
foreground: ``(predicted, truth) -> float`` on boolean arrays. Object metrics
(``@object_metric("name", columns=..., reported=...)``) compare the segmented objects
with the ground-truth objects, background (0) of the ground truth ignored:
``(truth, objects) -> {column: value}``; they are undefined on a slice without objects.
The ISBI 2012 challenge's V_Rand and V_Info (:mod:`unetflow.isbi_scores`) are computed
beside these, from the probabilities.

Every metric takes arrays of any shape and counts their elements, so the same function
scores one slice (y, x) or a whole volume (z, y, x): with ``--dims 3`` the evaluate step
also scores the volume as one segmentation by the object metrics, where an object split
or merged across z counts, which per-slice scores cannot see (a slice only sees an
object's cross-section).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from skimage.metrics import adapted_rand_error, variation_of_information

from .registry import Registry

# the evaluation table's summary rows (column ``slice``): the dataset's scores, and with dims 3
# the whole volume scored as one segmentation
DATASET_ROW, VOLUME_ROW = "all", "volume"


@dataclass(frozen=True)
class Metric:
    function: Callable
    on_objects: bool
    columns: tuple[str, ...]
    reported: tuple[str, ...]


METRICS: Registry[Metric] = Registry("metric", "methods/metrics.py")


def pixel_metric(name: str) -> Callable[[Callable], Callable]:
    def add(function: Callable) -> Callable:
        METRICS.register(name)(Metric(function, on_objects=False, columns=(name,), reported=(name,)))
        return function

    return add


def object_metric(name: str, *, columns: tuple[str, ...], reported: tuple[str, ...]) -> Callable[[Callable], Callable]:
    def add(function: Callable) -> Callable:
        METRICS.register(name)(Metric(function, on_objects=True, columns=columns, reported=reported))
        return function

    return add


def pixel_scores(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Every pixel metric of a boolean prediction against the boolean truth."""
    return {metric.columns[0]: float(metric.function(predicted, truth))
            for metric in METRICS.entries.values() if not metric.on_objects}


def object_scores(truth: np.ndarray, objects: np.ndarray) -> dict[str, float]:
    """Every object metric of segmented ``objects`` against ground-truth objects ``truth``."""
    scores: dict[str, float] = {}
    for metric in METRICS.entries.values():
        if metric.on_objects:
            scores.update({column: float(value) for column, value in metric.function(truth, objects).items()})
    return scores


def object_columns() -> tuple[str, ...]:
    return tuple(column for metric in METRICS.entries.values() if metric.on_objects for column in metric.columns)


def reported_columns(*, objects_only: bool = False) -> list[str]:
    """The columns of the report's table, in registration order (of the object metrics only: the
    columns of its table of whole-volume scores)."""
    return [column for metric in METRICS.entries.values() if metric.on_objects or not objects_only
            for column in metric.reported]


@pixel_metric("pixel_error_at_threshold")
def pixel_error(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of pixels whose class differs from the ground truth (ISBI 2012's pixel error)."""
    return float(np.mean(np.asarray(predicted) != np.asarray(truth)))


@pixel_metric("foreground_iou")
def foreground_iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of the foreground (class > 0); 1.0 when both are empty."""
    predicted, truth = np.asarray(predicted) > 0, np.asarray(truth) > 0
    union = np.count_nonzero(predicted | truth)
    return 1.0 if union == 0 else float(np.count_nonzero(predicted & truth) / union)


@pixel_metric("foreground_dice")
def foreground_dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient of the foreground (class > 0); 1.0 when both are empty."""
    predicted, truth = np.asarray(predicted) > 0, np.asarray(truth) > 0
    total = np.count_nonzero(predicted) + np.count_nonzero(truth)
    return 1.0 if total == 0 else float(2 * np.count_nonzero(predicted & truth) / total)


@object_metric("adapted_rand", columns=("adapted_rand_error", "adapted_rand_precision", "adapted_rand_recall"),
               reported=("adapted_rand_error",))
def adapted_rand(truth: np.ndarray, objects: np.ndarray) -> dict[str, float]:
    """Adapted Rand error with its precision and recall (``skimage.metrics.adapted_rand_error``),
    over the ground truth's objects (its background, 0, ignored) of a slice or a volume.

    Notes
    -----
    With :math:`n_{ij}` the elements in true object :math:`i` and segmented object
    :math:`j`, :math:`a_i = \\sum_j n_{ij}`, :math:`b_j = \\sum_i n_{ij}` and :math:`n` the
    elements scored: precision :math:`P = (\\sum n_{ij}^2 - n) / (\\sum a_i^2 - n)`, recall
    :math:`R = (\\sum n_{ij}^2 - n) / (\\sum b_j^2 - n)`, error :math:`1 - 2PR / (P + R)`
    (skimage's naming of precision and recall).

    References
    ----------
    I. Arganda-Carreras et al., "Crowdsourcing the creation of image segmentation algorithms
    for connectomics", Front. Neuroanat. 9:142, 2015.
    """
    error, precision, recall = adapted_rand_error(truth, objects, ignore_labels=(0,))
    return {"adapted_rand_error": error, "adapted_rand_precision": precision, "adapted_rand_recall": recall}


@object_metric("variation_of_information", columns=("vi_split", "vi_merge"), reported=("vi_split", "vi_merge"))
def variation_of_information_parts(truth: np.ndarray, objects: np.ndarray) -> dict[str, float]:
    """Variation of information split into over- (split) and under-segmentation (merge), in bits,
    over the ground truth's objects (its background ignored) of a slice or a volume.

    Notes
    -----
    ``vi_split`` is :math:`H(\\text{objects} \\mid \\text{truth})` and ``vi_merge``
    :math:`H(\\text{truth} \\mid \\text{objects})`, conditional entropies of the joint
    distribution of the labels (Meila 2007); an object cut in two equal halves adds 1 bit
    of split.

    References
    ----------
    M. Meila, "Comparing clusterings - an information based distance", J. Multivariate
    Anal. 98(5), 2007.
    """
    split, merge = variation_of_information(truth, objects, ignore_labels=(0,))
    # skimage returns (H(objects | truth), H(truth | objects))
    return {"vi_split": split, "vi_merge": merge}

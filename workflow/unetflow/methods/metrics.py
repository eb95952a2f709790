"""Scores of a segmentation against ground truth, one column or a few each; every one
registered here is computed per slice by the evaluate step and shown in the report.

Pixel metrics (``@pixel_metric("name")``) compare the thresholded foreground with the true
foreground from their pixel counts: ``(counts: Confusion) -> float``. Object metrics
(``@object_metric("name", columns=..., reported=...)``) compare the segmented objects with
the ground-truth objects from their contingency table (the EM scores over the true objects,
their background ignored; the detection scores over each object's whole extent):
``(table: Contingency) -> {column: value}``; they are undefined on a slice without objects. Both are sums over pixels (:mod:`unetflow.scoring`), so every
metric scores one slice (y, x), a whole volume (z, y, x) or an image larger than memory,
block by block, with the same result: with ``--dims 3`` the evaluate step also scores the
volume as one segmentation by the object metrics, where an object split or merged across
z counts, which per-slice scores cannot see (a slice only sees an object's
cross-section). The ISBI 2012 challenge's V_Rand and V_Info (:mod:`unetflow.isbi_scores`)
are computed beside these, from the probabilities.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from skimage.metrics import adapted_rand_error, variation_of_information

from ..scoring import Confusion, Contingency
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


def pixel_scores(counts: Confusion) -> dict[str, float]:
    """Every pixel metric from the pixel counts of a boolean prediction against the truth."""
    return {metric.columns[0]: float(metric.function(counts))
            for metric in METRICS.entries.values() if not metric.on_objects}


def object_scores(truth: np.ndarray, objects: np.ndarray, known: np.ndarray | None = None) -> dict[str, float]:
    """Every object metric of segmented ``objects`` against ground-truth objects ``truth`` (of
    the pixels where ``known`` holds, if given)."""
    return table_scores(Contingency.of(truth, objects, known))


def table_scores(table: Contingency) -> dict[str, float]:
    """Every object metric from a contingency table (e.g. added up block by block)."""
    scores: dict[str, float] = {}
    for metric in METRICS.entries.values():
        if metric.on_objects:
            scores.update({column: float(value) for column, value in metric.function(table).items()})
    return scores


@dataclass(frozen=True)
class Objective:
    """What the tune rule minimises for a ``tune.metric``: its name as shown, and its value from
    a candidate's mean scores."""

    shown: str
    of: Callable[[dict[str, float]], float]


OBJECTIVES: dict[str, Objective] = {
    "adapted_rand_error": Objective("adapted_rand_error", lambda scores: scores["adapted_rand_error"]),
    "variation_of_information": Objective("vi_split + vi_merge", lambda scores: scores["vi_split"] + scores["vi_merge"]),
    "average_precision": Objective("1 - average_precision", lambda scores: 1.0 - scores["average_precision"]),
    "f1": Objective("1 - f1", lambda scores: 1.0 - scores["f1"]),
    "v_rand": Objective("1 - objects_v_rand", lambda scores: 1.0 - scores["objects_v_rand"]),
    "v_info": Objective("1 - objects_v_info", lambda scores: 1.0 - scores["objects_v_info"]),
}


def object_columns() -> tuple[str, ...]:
    return tuple(column for metric in METRICS.entries.values() if metric.on_objects for column in metric.columns)


def reported_columns(*, objects_only: bool = False) -> list[str]:
    """The columns of the report's table, in registration order (of the object metrics only: the
    columns of its table of whole-volume scores)."""
    return [column for metric in METRICS.entries.values() if metric.on_objects or not objects_only
            for column in metric.reported]


def pixel_error(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of pixels whose class differs from the ground truth (ISBI 2012's pixel error), of
    class images of any number of classes (training's validation, tuning)."""
    return float(np.mean(np.asarray(predicted) != np.asarray(truth)))


def foreground_iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of the foreground (class > 0) of two class images; 1.0 when both are empty."""
    return foreground_iou_of(Confusion.of(np.asarray(predicted) > 0, np.asarray(truth) > 0))


@pixel_metric("pixel_error_at_threshold")
def pixel_error_of(counts: Confusion) -> float:
    """Fraction of pixels whose foreground/background differs from the ground truth."""
    return (counts.false_positive + counts.false_negative) / counts.total if counts.total else 0.0


@pixel_metric("foreground_iou")
def foreground_iou_of(counts: Confusion) -> float:
    """Intersection over union of the foreground; 1.0 when both are empty."""
    union = counts.true_positive + counts.false_positive + counts.false_negative
    return 1.0 if union == 0 else counts.true_positive / union


@pixel_metric("foreground_dice")
def foreground_dice_of(counts: Confusion) -> float:
    """Dice coefficient of the foreground; 1.0 when both are empty."""
    total = 2 * counts.true_positive + counts.false_positive + counts.false_negative
    return 1.0 if total == 0 else 2 * counts.true_positive / total


@object_metric("adapted_rand", columns=("adapted_rand_error", "adapted_rand_precision", "adapted_rand_recall"),
               reported=("adapted_rand_error",))
def adapted_rand(table: Contingency) -> dict[str, float]:
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
    error, precision, recall = adapted_rand_error(table=table.table())
    return {"adapted_rand_error": error, "adapted_rand_precision": precision, "adapted_rand_recall": recall}


@object_metric("variation_of_information", columns=("vi_split", "vi_merge"), reported=("vi_split", "vi_merge"))
def variation_of_information_parts(table: Contingency) -> dict[str, float]:
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
    # skimage checks the shapes of its images even when given the table (skimage 0.25): two stand-ins
    split, merge = variation_of_information(np.zeros(1), np.zeros(1), table=table.table(normalize=True))
    # skimage returns (H(objects | truth), H(truth | objects))
    return {"vi_split": split, "vi_merge": merge}


MATCH_IOU = 0.5  # a segmented object detects a true object when their intersection over union exceeds this


@object_metric("detection", columns=("average_precision", "f1"), reported=("average_precision", "f1"))
def detection(table: Contingency) -> dict[str, float]:
    """Average precision and F1 of the objects at IoU 0.5, as StarDist and Cellpose report them.

    Notes
    -----
    A true object and a segmented object match when their intersection over union exceeds
    0.5, measured over each object's whole extent (a segmented object's voxels on the true
    background count, so a segmentation that floods the background matches nothing); above
    0.5 a match is one to one, so no assignment problem arises. With :math:`TP` matches,
    :math:`FP` segmented and :math:`FN` true objects unmatched:
    average precision :math:`TP / (TP + FP + FN)` (Schmidt et al. 2018's AP at one IoU
    threshold) and F1 :math:`2 TP / (2 TP + FP + FN)`.

    References
    ----------
    U. Schmidt, M. Weigert, C. Broaddus, G. Myers, "Cell detection with star-convex
    polygons", MICCAI 2018.
    """
    rows, columns, counts = table.pairs()
    true_sizes = np.bincount(rows, weights=counts)
    found_sizes = np.bincount(columns, weights=counts)
    true_count = np.count_nonzero(true_sizes[1:])
    found_count = np.count_nonzero(found_sizes[1:])
    both = (rows > 0) & (columns > 0)
    shared = counts[both]
    iou = shared / (true_sizes[rows[both]] + found_sizes[columns[both]] - shared)
    matched = int(np.count_nonzero(iou > MATCH_IOU))
    if true_count + found_count == 0:
        return {"average_precision": 1.0, "f1": 1.0}
    return {"average_precision": matched / (true_count + found_count - matched),
            "f1": 2 * matched / (true_count + found_count)}

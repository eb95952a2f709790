"""Scores of predictions and segmentations against ground truth: a row per slice, and the
whole volume as one segmentation, in memory bounded by a block.

A slice no larger than a block (``blocks.plane_edge``) in a stack, or a volume no larger
than one block (``blocks.edge``), is read slice by slice and scored whole, with every
score including the ISBI challenge's V_Rand and V_Info of thinned borders
(:mod:`unetflow.isbi_scores`), of the probabilities (``v_rand``, ``v_info``) and of the
segmentation (``objects_v_rand``, ``objects_v_info``). A larger image is read block by
block, each block's counts (:mod:`unetflow.scoring`) added to those of its slices and of
the volume: every pixel and object score and the challenge's pixel error are then the same
as of the whole slice or volume, while the V_Rand and V_Info scores, whose thinning needs a
whole slice, are left out with a note.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

import dask
import numpy as np
import zarr

from . import io
from .blocks import BlockGrid, aligned_block_shape
from .isbi_scores import THRESHOLDS, best_pixel_error, interior_counts, segmentation_v_scores, slice_scores
from .methods.metrics import VOLUME_ROW, object_columns, pixel_error_of, pixel_scores, table_scores
from .parallel import TaskProgress
from .progress import progress
from .scoring import Confusion, Contingency

log = logging.getLogger(__name__)
ISBI_SCORES = ("v_rand", "v_info")
OBJECT_ISBI_SCORES = ("objects_v_rand", "objects_v_info")  # the same of the segmentation's borders
UNSCORED = dict.fromkeys((*ISBI_SCORES, *OBJECT_ISBI_SCORES), np.nan)
NO_OBJECTS = "no ground-truth objects: object scores not defined, left out of the dataset row"
VOLUME_NOTE = "3-D: the object scores of the whole volume, scored as one segmentation"
BLOCKWISE_NOTE = ("scored block by block (larger than a block): V_Rand and V_Info of thinned borders need whole "
                  "slices and are left out")


@dataclass
class SliceCounts:
    """What a slice's row is computed from, added up over its blocks."""

    at_threshold: Confusion = field(default_factory=Confusion)
    at_half: Confusion = field(default_factory=Confusion)
    isbi: np.ndarray = field(default_factory=lambda: np.zeros((len(THRESHOLDS), 3), np.int64))
    objects: Contingency = field(default_factory=Contingency)

    def add(self, foreground: np.ndarray, classes: np.ndarray, truth: np.ndarray, segmented: np.ndarray,
            threshold: float) -> None:
        """Add a region's counts; pixels of unknown class (sparse annotations) count in no pixel
        score, and in no object score as they belong to no true object."""
        known = io.known(classes)
        partly_known = not known.all()
        self.objects.add(truth, segmented, known if partly_known else None)
        if partly_known:
            foreground, classes = foreground[known], classes[known]
        self.at_threshold += Confusion.of(foreground >= threshold, classes > 0)
        self.at_half += Confusion.of(foreground >= 0.5, classes > 0)
        self.isbi += interior_counts(foreground, classes)

    def merge(self, other: SliceCounts) -> None:
        self.at_threshold += other.at_threshold
        self.at_half += other.at_half
        self.isbi += other.isbi
        self.objects += other.objects


@dataclass(frozen=True)
class Sources:
    """The arrays a dataset is scored from: (z, y, x) labels, (c, z, y, x) probabilities."""

    classes: zarr.Array
    truth: zarr.Array
    probabilities: zarr.Array
    objects: zarr.Array
    threshold: float

    def read(self, region: tuple[slice, slice, slice]):
        return (io.foreground_region(self.probabilities, region), self.classes[region], self.truth[region],
                self.objects[region])


def row_of(z: int, counts: SliceCounts, threshold: float, isbi: dict | None, note: str) -> dict:
    """The row of slice ``z`` (``isbi``: its challenge scores, of :func:`isbi_of`, if scored)."""
    row = {"slice": str(z), "threshold": threshold, **pixel_scores(counts.at_threshold),
           "pixel_error_at_0.5": pixel_error_of(counts.at_half), **best_pixel_error(counts.isbi), "note": note}
    if counts.objects.voxels == 0:
        return {**row, **dict.fromkeys(object_columns(), np.nan), **UNSCORED, "note": NO_OBJECTS}
    return {**row, **table_scores(counts.objects), **(isbi or UNSCORED)}


def isbi_of(per_threshold: np.ndarray, truth: np.ndarray, segmented: np.ndarray) -> dict:
    """A slice's V_Rand and V_Info of the probabilities (the best of ``per_threshold``) and of the
    segmentation."""
    objects_rand, objects_info = segmentation_v_scores(segmented, truth)
    return {"v_rand": float(per_threshold[:, 0].max()), "v_info": float(per_threshold[:, 1].max()),
            "objects_v_rand": objects_rand, "objects_v_info": objects_info}


def whole_slices(sources: Sources) -> tuple[list[dict], dict[int, SliceCounts], list[np.ndarray]]:
    """Rows of every slice, each read and scored whole (its V_Rand and V_Info too), the slices'
    counts, and the V_Rand/V_Info arrays of the slices with objects."""
    rows, per_slice, isbi = [], {}, []
    for z in progress(range(sources.classes.shape[0]), desc="evaluated slices"):
        foreground, classes, truth, segmented = (values[0] for values in sources.read((slice(z, z + 1),)))
        per_slice[z] = SliceCounts()
        per_slice[z].add(foreground, classes, truth, segmented, sources.threshold)
        scores = None
        if truth.any():
            isbi.append(slice_scores(foreground, truth))
            scores = isbi_of(isbi[-1], truth, segmented)
        else:
            log.warning("slice %d: %s", z, NO_OBJECTS)
        rows.append(row_of(z, per_slice[z], sources.threshold, scores, ""))
    return rows, per_slice, isbi


def block_counts(sources: Sources, region: tuple[slice, slice, slice]) -> dict[int, SliceCounts]:
    """Per slice of a block, its counts."""
    foreground, classes, truth, segmented = sources.read(region)
    counts = {}
    for offset, z in enumerate(range(region[0].start, region[0].stop)):
        counts[z] = SliceCounts()
        counts[z].add(foreground[offset], classes[offset], truth[offset], segmented[offset], sources.threshold)
    return counts


def blockwise_slices(sources: Sources, grid: BlockGrid) -> tuple[list[dict], dict[int, SliceCounts]]:
    """Rows of every slice from the counts of its blocks (Dask over blocks), and those counts."""
    tasks = [dask.delayed(block_counts, pure=False)(sources, block.core, dask_key_name=f"score-block-{block.number}")
             for block in grid]
    per_slice: dict[int, SliceCounts] = defaultdict(SliceCounts)
    with TaskProgress(total=len(tasks), desc="scored blocks", unit="blocks", prefix="score-block"):
        for start in range(0, len(tasks), BATCH):  # bounded: a batch of blocks' counts at a time
            for counts in dask.compute(*tasks[start:start + BATCH]):
                for z, slice_counts in counts.items():
                    per_slice[z].merge(slice_counts)
    rows = [row_of(z, per_slice[z], sources.threshold, None, BLOCKWISE_NOTE) for z in range(grid.shape[0])]
    return rows, per_slice


BATCH = 64


def score_grid(shape: tuple[int, int, int], chunks: tuple[int, int, int], *, dims: int, blocks: dict) -> BlockGrid:
    """The blocks a dataset is scored in: 3-D blocks of a volume, or blocks one slice deep."""
    edge = (blocks["edge"],) * 3 if dims == 3 else (1, blocks["plane_edge"], blocks["plane_edge"])
    return BlockGrid(shape, aligned_block_shape(shape, chunks, edge), (0, 0, 0))


@dataclass(frozen=True)
class Scored:
    """A dataset's slice rows, what its summary rows are computed from, and how it was read."""

    rows: list[dict]
    isbi: list[np.ndarray]  # V_Rand and V_Info per threshold of each slice scored whole with objects
    isbi_counts: np.ndarray  # the challenge's pixel counts per threshold, pooled over the slices
    volume: Contingency  # the whole volume's objects as one segmentation
    blockwise: bool


def score(sources: Sources, *, dims: int, blocks: dict) -> Scored:
    """Score every slice of a dataset, whole or block by block (see the module's notes)."""
    grid = score_grid(sources.classes.shape, sources.objects.chunks, dims=dims, blocks=blocks)
    blockwise = not (dims == 2 and grid.block_shape[1:] == grid.shape[1:] or dims == 3 and grid.single)
    if blockwise:
        log.info("scoring in %d blocks of %s voxels", len(grid), "x".join(map(str, grid.block_shape)))
        (rows, per_slice), isbi = blockwise_slices(sources, grid), []
    else:
        rows, per_slice, isbi = whole_slices(sources)
    volume = Contingency()
    for counts in per_slice.values():
        volume += counts.objects
    return Scored(rows, isbi, np.sum([counts.isbi for counts in per_slice.values()], axis=0), volume, blockwise)


def volume_row(table: Contingency, threshold: float) -> dict:
    """The ``volume`` row: every object metric of the volume as one segmentation, or NaN with a note
    where the truth holds no object."""
    if table.voxels == 0:
        return {"slice": VOLUME_ROW, "threshold": threshold, **dict.fromkeys(object_columns(), np.nan),
                "note": NO_OBJECTS}
    return {"slice": VOLUME_ROW, "threshold": threshold, **table_scores(table), "note": VOLUME_NOTE}


def segmentation_scores(sources: Sources, grid: BlockGrid) -> dict[str, float]:
    """Every object metric of a volume's segmentation as one, and the pixel error at its threshold
    (``pixel_error``), from the counts of ``grid``'s blocks (the tune step's scores of a candidate)."""
    table, confusion = Contingency(), Confusion()
    for block in grid:
        foreground, classes, truth, segmented = sources.read(block.core)
        known = io.known(classes)
        table.add(truth, segmented, known)
        confusion += Confusion.of(foreground[known] >= sources.threshold, classes[known] > 0)
    return {**table_scores(table), "pixel_error": pixel_error_of(confusion)}


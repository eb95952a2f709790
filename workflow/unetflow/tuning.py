"""Tuning: the segmentation settings that score best on held-out labelled slices.

Every candidate of the ``tune`` grid (the combinations of each grid entry's values;
keys an entry leaves out take the ``segment`` section's defaults) segments every slice of the tuning datasets
(``validate_on``: never trained on, never reported) and is scored against their
ground-truth objects by ``tune.metric``, averaged over the slices. The lowest score
wins; candidates within ``tune.tolerance`` of it count as tied, and the tie goes to the
lowest pixel error at the candidate's threshold (the watershed's objects hardly depend
on its threshold, the pixel error does), then to the first in grid order. Writes the choice as JSON
(read by the segment step when ``segment.settings: tuned``) and the whole sweep as CSV
(plotted by the report).

With ``--dims 3`` every candidate segments each tuning dataset as one volume (as the
segment step does with ``--dims 3``, distances in x voxels of the predictions' voxel
size) and is scored on the whole volume, so an object split or merged across z counts;
the scores are averaged over the datasets whose ground truth holds objects. A volume of
one block (``blocks``) is read into memory once and shared by its candidates' tasks; each
running task needs the watershed's working memory as well (about 140 bytes a voxel), so
``--workers`` candidates at once need that many times it. A larger volume is segmented
block by block, as the segment step does, one candidate after another, and scored from
its blocks' counts: memory is that of ``--workers`` blocks, whatever the volume.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import dask
import numpy as np
import pandas as pd
import zarr

from . import blockwise, io, ngff, settings
from .affinities import Predicted
from .blocks import BlockGrid
from .config_checks import SEEDED_METHODS, check_tune_metric, check_watershed
from .errors import InputError
from .evaluation import OBJECT_ISBI_SCORES, Sources, segmentation_scores
from .isbi_scores import segmentation_v_scores
from .methods.metrics import OBJECTIVES, object_scores, pixel_error
from .methods.segmenters import SETTING_KEYS, AffinitySource, block_settings, segment, settings_of
from .parallel import TaskProgress, dask_config

log = logging.getLogger(__name__)
T = TypeVar("T")

def candidates(grid: list[dict[str, list]], fixed: dict) -> list[dict]:
    """The settings to try, in grid order: each combination of a grid entry's values on top of
    ``fixed`` (the segment section's defaults). Candidates that differ only in keys their method does not
    take segment alike and are kept once."""
    chosen, seen = [], set()
    for number, entry in enumerate(grid):
        keys = list(entry)
        for values in itertools.product(*(entry[key] for key in keys)):
            candidate = {key: fixed[key] for key in SETTING_KEYS} | dict(zip(keys, values))
            if candidate["method"] in SEEDED_METHODS:
                check_watershed(candidate, where=f"tune.grid[{number}]")
            identity = json.dumps([candidate["method"], settings_of(candidate["method"], candidate)], sort_keys=True)
            if identity not in seen:
                seen.add(identity)
                chosen.append(candidate)
    return chosen


def score_trials(foreground: np.ndarray, classes: np.ndarray, truth: np.ndarray, trials: list[dict], *,
                 sampling: tuple[float, ...] | None = None,
                 predicted: Predicted | AffinitySource | None = None) -> list[dict[str, float]]:
    """Object scores (and the pixel error at its threshold) of every candidate on one slice or one
    volume (``sampling`` and the ``predicted`` affinities as :func:`unetflow.methods.segmenters.segment`
    takes them)."""
    known = io.known(classes)  # sparse annotations: scored on known pixels only
    counted = None if known.all() else known
    known_foreground, true_foreground = foreground[known], classes[known] > 0
    rows = []
    for candidate in trials:
        objects = segment(foreground, candidate["method"], candidate, sampling=sampling, predicted=predicted)
        row = {**object_scores(truth, objects, counted),
               "pixel_error": pixel_error(known_foreground >= candidate["threshold"], true_foreground)}
        if objects.ndim == 2:  # the ISBI challenge's scores of a segmentation are scores of 2-D slices
            row |= dict(zip(OBJECT_ISBI_SCORES, segmentation_v_scores(objects, truth)))
        rows.append(row)
    return rows


def labelled_objects(store_path: Path) -> zarr.Array:
    """The ground-truth objects of a tuning dataset; refused when it has no labels."""
    truth = io.open_labels(io.open_store(store_path), "objects")
    if truth is None:
        raise InputError(f"{store_path}: has no labels, so it cannot tune the segmentation; name only "
                         "labelled datasets in validate_on")
    return truth


def check_pairs(data: list[Path], predictions: list[Path]) -> None:
    """One predictions store per data store, at least one."""
    if len(data) != len(predictions) or not data:
        raise InputError("tune: give one predictions store per data store, and at least one of each")


def no_objects(data: list[Path]) -> InputError:
    """The error of tuning data without a ground-truth object."""
    return InputError(f"tune: no slice of {', '.join(map(str, data))} has ground-truth objects, so no "
                      "segmentation can be scored; label objects in the validate_on datasets, or set "
                      "segment.settings: fixed")


def tuning_slices(data: list[Path], predictions: list[Path]) -> list[tuple[str, int]]:
    """(dataset store, slice) of every tuning slice that holds ground-truth objects."""
    check_pairs(data, predictions)
    found = []
    for store_path in data:
        truth = labelled_objects(store_path)
        found += [(str(store_path), z) for z in range(truth.shape[0]) if truth[z].any()]
    if not found:
        raise no_objects(data)
    return found


def slice_scores(data: list[Path], predictions: list[Path], trials: list[dict]) -> tuple[list, int]:
    """Every candidate's scores on every tuning slice ([slice][candidate]) and the slices' count."""
    predictions_of = dict(zip(map(str, data), predictions))

    def one_slice(store_path: str, z: int) -> list[dict[str, float]]:
        store = io.open_store(store_path)
        probabilities = io.open_probabilities(predictions_of[store_path])
        predicted = functools.cache(lambda: io.affinity_plane(probabilities, z))  # read once, if a candidate asks
        return score_trials(io.foreground_probability(probabilities, z), io.open_labels(store, "classes")[z],
                            io.open_labels(store, "objects")[z], trials, predicted=predicted)

    slices = tuning_slices(data, predictions)
    tasks = [dask.delayed(one_slice, pure=False)(path, z, dask_key_name=f"tune-slice-{number}")
             for number, (path, z) in enumerate(slices)]
    with TaskProgress(total=len(tasks), desc="tuning slices", unit="slices", prefix="tune-slice"):
        return list(dask.compute(*tasks)), len(slices)


def read_volume(store_path: Path, prediction_path: Path) -> tuple:
    """Foreground probability, classes, objects, relative sampling and a reader of the predicted
    affinities (None if the model predicts none; read the first time a candidate asks, once) of
    one tuning dataset."""
    truth = labelled_objects(store_path)  # refused when the dataset has no labels
    sampling = ngff.voxel_size_of(io.open_store(prediction_path)).in_x_pixels()
    probabilities = io.open_probabilities(prediction_path)
    whole = (slice(0, probabilities.shape[1]),)
    return (io.foreground_volume(probabilities), io.open_labels(io.open_store(store_path), "classes")[:], truth[:],
            sampling, read_once(lambda: io.affinity_region(probabilities, whole)))


def read_once(read: Callable[[], T]) -> Callable[[], T]:
    """``read``, called the first time the result is asked for and never again, from however many
    threads (the candidates of a volume are tasks in parallel; its affinities take 4 bytes a voxel
    per offset)."""
    lock, read = threading.Lock(), functools.cache(read)

    def value() -> T:
        with lock:
            return read()

    return value


def volume_grid_of(prediction_path: Path, blocks: dict):
    """The blocks a tuning volume is segmented in (as the segment step's)."""
    probabilities = io.open_probabilities(prediction_path)
    sampling = ngff.voxel_size_of(io.open_store(prediction_path)).in_x_pixels()
    return blockwise.volume_grid(probabilities.shape[1:], probabilities.chunks[1:], edge=blocks["edge"],
                                 halo=blocks["halo"], sampling=sampling), sampling


def volume_scores(data: list[Path], predictions: list[Path], trials: list[dict], *, blocks: dict,
                  workspace: Path) -> tuple[list, int]:
    """Every candidate's scores on every tuning volume whose ground truth holds objects
    ([volume][candidate]) and the count of those volumes' slices. A volume of one block is read
    once, then one task per candidate; a larger one is segmented block by block and scored from
    its blocks' counts, one candidate after another (each in parallel over blocks)."""
    check_pairs(data, predictions)
    per_volume, slices = [], 0
    for number, (store_path, prediction_path) in enumerate(zip(data, predictions)):
        truth = labelled_objects(store_path)
        grid, sampling = volume_grid_of(prediction_path, blocks)
        if grid.single:
            volume = read_volume(store_path, prediction_path)
            if not volume[2].any():
                continue
            scores = candidates_on_volume(volume, trials, number)
        else:
            if not any(truth[block.core].any() for block in BlockGrid(truth.shape, truth.chunks, (0, 0, 0))):
                continue
            scores = [candidate_in_blocks(store_path, prediction_path, candidate, grid, sampling,
                                          workspace / f"volume-{number}") for candidate in trials]
        per_volume.append(scores)
        slices += truth.shape[0]
    if not per_volume:
        raise no_objects(data)
    return per_volume, slices


def candidates_on_volume(volume: tuple, trials: list[dict], number: int) -> list[dict[str, float]]:
    """Every candidate's scores on one volume held in memory, one Dask task per candidate."""
    def one_candidate(candidate: dict) -> dict[str, float]:
        foreground, classes, truth, sampling, predicted = volume
        return score_trials(foreground, classes, truth, [candidate], sampling=sampling, predicted=predicted)[0]

    tasks = [dask.delayed(one_candidate, pure=False)(candidate, dask_key_name=f"tune-volume-{number}-{index}")
             for index, candidate in enumerate(trials)]
    with TaskProgress(total=len(trials), desc="tuning candidates on a volume", unit="segmentations",
                      prefix="tune-volume"):
        return list(dask.compute(*tasks))


def candidate_in_blocks(store_path: Path, prediction_path: Path, candidate: dict, grid, sampling: tuple,
                        workspace: Path) -> dict[str, float]:
    """One candidate's scores on a volume larger than a block: segmented block by block as the
    segment step does, into a temporary store, and scored from its blocks' counts."""
    settings = dict(candidate)
    method = settings.pop("method")
    how = block_settings(method, settings)
    probabilities = io.open_probabilities(prediction_path)
    store = io.open_store(store_path)
    objects = zarr.create_array(str(workspace / "objects.zarr"), shape=grid.shape, chunks=grid.block_shape,
                                dtype=np.uint32, fill_value=0, overwrite=True)
    try:
        blockwise.segment_image(lambda region: io.foreground_region(probabilities, region),
                                lambda window, cut, region: segment(window, method, how.options, sampling=sampling,
                                                                    cut_faces=cut,
                                                                    predicted=lambda: io.affinity_region(probabilities, region)),
                                grid,
                                workspace / "fragments", objects, rule=how.rule, min_size=how.min_size,
                                vote_threshold=how.vote_threshold)
        sources = Sources(io.open_labels(store, "classes"), io.open_labels(store, "objects"), probabilities, objects,
                          candidate["threshold"])
        return segmentation_scores(sources, BlockGrid(grid.shape, grid.block_shape, (0, 0, 0)))
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def sweep(data: list[Path], predictions: list[Path], trials: list[dict], *, metric: str, dims: int = 2,
          scheduler: str = "threads", workers: int = 1, blocks: dict | None = None,
          workspace: Path | None = None) -> pd.DataFrame:
    """One row per candidate: its settings, the mean of each score over the tuning slices (``dims``
    2) or volumes (``dims`` 3), and ``score`` (the metric to minimise). ``attrs`` hold the
    count of ``slices`` scored, and of ``volumes`` in 3-D. ``workspace``: where volumes larger than
    a block (``blocks``) are segmented while they are scored."""
    check_tune_metric(metric, dims)
    with dask_config(scheduler, workers):
        if dims == 3:
            workspace = workspace or Path(tempfile.mkdtemp(prefix="unetflow-tune-"))
            try:
                per_unit, slices = volume_scores(data, predictions, trials, workspace=workspace,
                                                 blocks=settings.section("blocks", blocks or {}))
            finally:
                shutil.rmtree(workspace, ignore_errors=True)
        else:
            per_unit, slices = slice_scores(data, predictions, trials)
    rows = []
    for index, candidate in enumerate(trials):
        scores = pd.DataFrame([unit_rows[index] for unit_rows in per_unit]).mean().to_dict()
        # the keys the method does not take stay empty: they did not change its objects
        taken = {"method": candidate["method"], **settings_of(candidate["method"], candidate)}
        rows.append({**taken, **scores, "score": OBJECTIVES[metric].of(scores)})
    table = pd.DataFrame(rows, columns=[*SETTING_KEYS, *rows[0].keys() - set(SETTING_KEYS)])
    table.attrs["slices"] = slices
    if dims == 3:
        table.attrs["volumes"] = len(per_unit)
    return table


def choose(table: pd.DataFrame, tolerance: float) -> int:
    """Row of the lowest score; of the rows within ``tolerance`` of it, the one of the lowest
    pixel error, the first of equal ones."""
    tied = table[table["score"] <= table["score"].min() + tolerance]
    return int(tied.index[np.argmin(tied["pixel_error"].to_numpy())])

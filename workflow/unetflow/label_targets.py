"""Labels to training targets: the kinds of label images, their checks, and the objects
(instance labels) and classes (the training target) made from them. Labels come in three
kinds:

``binary``
    two values (e.g. ISBI 2012: 255 = cell interior, 0 = membrane); the larger
    is foreground, objects are its 4-connected components (6-connected in 3-D).
``instance``
    one integer per object, 0 = background; kept as they are. The training
    target is the foreground minus a one-pixel border between touching
    objects, so that the network learns to separate them.
``classes``
    class indices ``0 .. num_classes - 1``; objects are the 4-connected
    components of the non-zero classes.

Affinity targets (:func:`affinity_targets`) are made from a training sample's class tile,
after its augmentation, so they follow its deformation.

Sparse annotations (:mod:`unetflow.annotations`): pixels equal to ``--ignore-label``, and
every pixel of a slice outside ``--labelled-slices``, are unknown: class ``io.IGNORE``, no
object.

``auto`` picks ``binary`` for at most two distinct values, else ``instance``
for two classes and ``classes`` for more. With ``num_classes`` above 2, ``auto``
reads labels as class indices, so a binary mask of 0/255 is refused with the fix
(``label_kind: binary``, which gives classes 0 and 1 whatever ``num_classes``).
"""

from __future__ import annotations

import numpy as np
from skimage.measure import label as connected_components

from . import io
from .affinities import shifted
from .annotations import Annotation
from .errors import InputError
from .progress import progress
from .readers import SliceStack


LABEL_KINDS = ("auto", "binary", "instance", "classes")


def label_values(labels: np.ndarray, where: str) -> np.ndarray:
    """The distinct values of a label slice, after checking they are non-negative integers."""
    if labels.dtype == np.bool_:
        labels = labels.astype(np.uint8)
    if np.issubdtype(labels.dtype, np.floating):
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise InputError(
                f"{where}: labels hold fractional (or NaN) values; labels must be integers, one value "
                "per class or object: save them as an integer type (uint8/uint16) without interpolation"
            )
    elif not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"{where}: labels have data type {labels.dtype}; save them as integers")
    values = np.unique(labels)
    if values.size and values[0] < 0:
        raise InputError(
            f"{where}: labels hold negative values (minimum {values[0]}); use 0 for background and "
            "positive integers for objects or classes"
        )
    return values.astype(np.int64)


def infer_label_kind(values: np.ndarray, num_classes: int) -> str:
    """The label kind ``auto`` resolves to for the distinct values of a whole stack."""
    if values.size <= 2:
        return "binary"
    return "instance" if num_classes == 2 else "classes"


def touching_borders(objects: np.ndarray) -> np.ndarray:
    """Pixels (voxels) of an object that face-touch another object with a smaller label.

    Marking only one side of each contact gives a border one pixel wide that
    still separates the objects under 4-connectivity (6-connectivity in a volume).
    """
    border = np.zeros(objects.shape, dtype=bool)
    for axis in range(objects.ndim):
        for step in (1, -1):
            neighbour = np.roll(objects, step, axis=axis)
            edge = [slice(None)] * objects.ndim
            edge[axis] = slice(0, 1) if step == 1 else slice(-1, None)
            neighbour[tuple(edge)] = 0  # no wrap-around
            border |= (neighbour > 0) & (neighbour < objects)
    return border


def targets_from_labels(
    labels: np.ndarray, kind: str, foreground_value: int, unknown: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Instance objects (uint32) and training classes (uint8) of one label slice, or of a whole
    label volume (objects connected, and touching objects separated, through z too); ``unknown``
    pixels get no object and class ``io.IGNORE``."""
    if unknown is not None:
        labels = np.where(unknown, 0, labels)
    objects, classes = known_targets(labels, kind, foreground_value)
    if unknown is not None:
        objects[unknown], classes[unknown] = 0, io.IGNORE
    return objects, classes


def known_targets(labels: np.ndarray, kind: str, foreground_value: int) -> tuple[np.ndarray, np.ndarray]:
    if kind == "binary":
        classes = (labels == foreground_value).astype(np.uint8)
        objects = connected_components(classes, connectivity=1).astype(np.uint32)
    elif kind == "instance":
        objects = labels.astype(np.uint32)
        classes = ((objects > 0) & ~touching_borders(objects)).astype(np.uint8)
    else:
        classes = labels.astype(np.uint8)
        objects = connected_components(classes > 0, connectivity=1).astype(np.uint32)
    return objects, classes


def affinity_targets(classes: np.ndarray, offsets: tuple[tuple[int, ...], ...]) -> tuple[np.ndarray, np.ndarray]:
    """Affinity targets of a batch of class tiles and where they are known.

    A tile's objects are the face-connected components of its foreground classes, so two cells
    parted by a membrane (or by the one-pixel border of touching instances) are two objects;
    the targets are their exact affinities (as :func:`unetflow.affinities.affinities_from_labels`
    gives them).
    An edge is unknown where either end is unknown (``io.IGNORE``), where its far end lies
    outside the tile, and between two components that both reach the tile's edge: they may
    be one object joined outside the tile. A component that does not reach the edge is a
    whole object, so every edge from it is known.

    Parameters
    ----------
    classes
        (N, *tile) class tiles (uint8, ``io.IGNORE`` where unknown), one per sample.
    offsets
        One offset per affinity channel, each with one entry per axis of a tile.

    Returns
    -------
    targets : np.ndarray
        float32 (N, len(offsets), *tile): 1 where both ends lie in one object, else 0.
    valid : np.ndarray
        bool, the same shape: where the target is known.
    """
    targets = np.empty((len(classes), len(offsets), *classes.shape[1:]), np.float32)
    valid = np.empty(targets.shape, bool)
    for index, tile in enumerate(classes):
        targets[index], valid[index] = tile_affinity_targets(tile, offsets)
    return targets, valid


def tile_affinity_targets(tile: np.ndarray, offsets: tuple[tuple[int, ...], ...]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`affinity_targets` of one class tile: (len(offsets), *tile) targets and validity."""
    known = io.known(tile)
    objects = connected_components((tile > 0) & known, connectivity=1).astype(np.int32)
    unknown, outside = int(objects.max()) + 1, int(objects.max()) + 2
    objects[~known] = unknown
    reaches_edge = np.zeros(outside + 1, bool)  # per label: does it touch the tile's edge
    for axis in range(tile.ndim):
        reaches_edge[np.take(objects, [0, -1], axis=axis)] = True
    reaches_edge[[0, unknown, outside]] = False
    open_object, is_object = reaches_edge[objects], (objects > 0) & known
    targets = np.empty((len(offsets), *tile.shape), np.float32)
    valid = np.empty(targets.shape, bool)
    for channel, offset in enumerate(offsets):
        partner = shifted(objects, offset, outside)
        same = objects == partner
        targets[channel] = same & is_object
        valid[channel] = known & (partner < unknown) & ~(open_object & reaches_edge[partner] & ~same)
    return targets, valid


def scan_labels(stack: SliceStack, kind: str, num_classes: int,
                annotation: Annotation = Annotation()) -> tuple[str, int]:
    """Validate every annotated label slice; return the resolved kind and the foreground value
    (the ignore label is no value of either)."""
    values: set[int] = set()
    for index in progress(range(stack.shape[0]), desc="checking labels"):
        if not annotation.slice_known(index):
            continue
        slice_values = annotation.known_values(label_values(stack.read(index), stack.name_of(index)))
        if kind in ("auto", "binary") and len(values) <= 2:
            values.update(slice_values.tolist())
        checks_classes = kind == "classes" or (kind == "auto" and num_classes > 2)
        if checks_classes and slice_values.size and slice_values[-1] >= num_classes:
            raise not_classes_error(stack.name_of(index), slice_values, kind, num_classes)
    if kind == "auto":
        kind = infer_label_kind(np.array(sorted(values)), num_classes)
    annotation.check(kind, num_classes, str(stack.path))
    if kind == "binary" and len(values) > 2:
        raise InputError(
            f"{stack.path}: label_kind is binary but the labels hold more than two values "
            f"({sorted(values)[:5]}...); set label_kind to instance or classes in the config"
        )
    return kind, max(max(values, default=1), 1)  # an all-zero stack has no foreground


def not_classes_error(where: str, values: np.ndarray, kind: str, num_classes: int) -> InputError:
    """The labels hold a value that is no class index: say what they may be instead."""
    classes = f"0..{num_classes - 1}"
    guesses = ""
    if kind == "auto" and values.size <= 2:
        guesses = ("; if they are a binary mask (the larger value the foreground, class 1), set the "
                   "dataset's label_kind: binary")
    elif kind == "auto":
        guesses = "; if they are object (instance) labels, set the dataset's label_kind: instance"
    return InputError(
        f"{where}: labels hold the value {values[-1]}, which is not one of the classes {classes} of num_classes "
        f"{num_classes}: save them as class indices {classes}{guesses}"
    )

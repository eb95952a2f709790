"""Segmentation methods (``segment.method``): foreground probability to objects, of one
slice (y, x) or of a whole volume (z, y, x).

``components``
    threshold the foreground probability, face-connected components (4-connected
    in a slice, 6-connected in a volume).
``watershed`` (default for membrane data)
    seeded watershed of the membrane (background) probability that fills the
    boundaries: every pixel joins the cell whose seed it reaches first over
    the probability landscape. Seeds are the h-maxima of the distance
    transform of the thresholded interior (``seeds: distance``) or of the
    foreground probability (``seeds: probability``). It separates cells whose
    membrane the network left open by a pixel or two, which connected
    components merge; on ISBI 2012 slices this lowered the adapted Rand error
    of one and the same probability map from 0.30 to 0.09. With ``mask: 0`` it
    floods every pixel, so the cells tile the image (membrane EM, where the
    background is the thin membrane between cells); with ``mask`` above 0 the
    flooding stops where the foreground probability falls below it, so sparse
    objects (nuclei, light microscopy) keep their background: unmasked, the
    background there would be given to the nearest objects, which adapted Rand
    error cannot see (it leaves the true background out) and the detection
    scores (average precision, F1) can.
``agglomeration``
    the watershed's fragments (low ``h``: over-segmented, but every cell split
    from its neighbours) merged by their mean boundary probability across the
    shared face, lowest first, while it is below ``merge``
    (:mod:`unetflow.agglomeration`): a faint membrane stretch no longer decides
    alone, the whole face between two fragments does.
``mutex_watershed``
    the mutex watershed (Wolf et al. 2020, the ``mwatershed`` package) on the affinities the
    network predicted (a model with ``affinities``), or else on affinities estimated from the
    foreground probability (:mod:`unetflow.affinities`): face
    neighbours attract by their affinity, pixels 3, 9 and 27 px apart (along the axes and
    the in-plane diagonals) repel where a membrane crosses the line between them, stronger
    edges first, and two clusters held apart by a repulsive edge never merge. No seeds and
    no threshold: a cell split by a faint membrane stays split as long as its pixels repel
    across it. Clusters under ``min_size`` and membrane pixels left alone are then given
    to their neighbours by a watershed of the membrane probability (stopping at ``mask``).

Each is ``method(foreground, **settings) -> uint32 labels``, called with the keys of the
config's ``segment`` section that it names, and with ``sampling`` (the voxel size relative
to x) when it takes that keyword. Add one with ``@segmenter("name")``; ``stitch`` says how
its objects join across the faces of blocks when an image is segmented block by block
(:mod:`unetflow.blockwise`): ``overlap`` (default) by majority overlap, ``components``
exactly as connected components (its ``min_size`` then applies to whole objects).

Volumes (``--dims 3``) are segmented as one 3-D problem, not as 2-D slices stitched
across z: the same methods run on the whole (z, y, x) array, with face connectivity
(6-connected, the 3-D counterpart of 4-connectivity), a distance transform measured in
x voxels (``sampling = voxel size / voxel size in x``, so ``h`` and the distance stay in
x voxels on anisotropic data) and a smoothing of the probability seeds that covers the
same physical extent on every axis. A seeded watershed in 3-D lets a cell's seed flood
its whole extent through z, so an object carries one ID over the volume, where
stitching has to match 2-D segments of neighbouring slices by overlap, which splits or
merges objects wherever a membrane is faint in one slice or a neurite branches or runs
obliquely; on near-isotropic data (FIB-SEM, the 3-D demo) z neighbours are as close as
y/x neighbours, which is what 3-D connectivity assumes. Serial sections whose z spacing
is many times the pixel size, or whose slices are misaligned, are better segmented slice
by slice (``--dims 2``, object IDs per slice). ``min_size`` counts voxels in 3-D.
The watershed peaks at about 140 bytes a voxel (h-maxima and flooding work in 64 bits;
measured on a 48 x 96 x 96 volume), the agglomeration as much, components at about 13, the
mutex watershed at about 1,400 (mwatershed holds about 60 bytes an edge, 18 edges a voxel in
3-D; 1,200 bytes a pixel in 2-D): an image larger than a block (``blocks`` in the config) is
segmented block by block (:mod:`unetflow.blockwise`), and the rules request memory for the
largest of the methods they may run (``bytes_per_voxel`` of :func:`segmenter`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.measure import label as connected_components
from skimage.morphology import h_maxima
from skimage.segmentation import relabel_sequential, watershed

from ..affinities import Predicted, affinities_from_foreground, offsets_for
from ..agglomeration import agglomerate, region_graph
from ..config_checks import check_mask
from ..mutex import mutex_segmentation
from ..errors import InputError
from .registry import Registry

SEGMENTERS: Registry = Registry("segmentation method", "segment.method")
STITCHING: dict[str, str] = {}  # method -> how its objects join across block faces (unetflow.stitching.RULES)
WORKING_BYTES: dict[str, int] = {}  # method -> peak bytes it holds per voxel it segments, beyond the input
# the segment section's keys that choose objects (of every method), in the order tables show them
SETTING_KEYS = ("method", "threshold", "seeds", "h", "min_size", "mask", "merge", "bias", "affinities")


def segmenter(name: str, *, stitch: str = "overlap", bytes_per_voxel: int = 140):
    """Decorator: register a segmentation method under ``name`` (``stitch``: see the module's notes).

    ``bytes_per_voxel`` is its measured peak memory per voxel segmented, beyond the input: the
    rules that segment block by block request memory by it (``Plan.block_worker_mb``, which reads
    it from this source, as a literal, while Snakemake builds the DAG).
    """
    def add(function):
        SEGMENTERS.register(name)(function)
        STITCHING[name] = stitch
        WORKING_BYTES[name] = bytes_per_voxel
        return function

    return add
SEED_SMOOTHING = 1.0  # x voxels: the Gaussian that smooths the probability before its h-maxima


AffinitySource = Callable[[], "Predicted | None"]


def segment(foreground: np.ndarray, method: str, settings: dict, *, sampling: tuple[float, ...] | None = None,
            cut_faces: tuple[tuple[bool, bool], ...] | None = None,
            predicted: Predicted | AffinitySource | None = None) -> np.ndarray:
    """Objects of one slice or one volume by ``method``, given the ``segment`` settings it takes.

    ``sampling`` (the voxel size relative to x, one value per axis) goes to the methods that
    measure distances; None is 1 on every axis. ``cut_faces`` (per axis, whether the low and the
    high face cut through the image: a block's window) goes to the methods that take it, and so
    do the affinities the network ``predicted`` for the same pixels: given, or a function that
    reads them (called only for a method that takes them and, with ``affinities: predicted``,
    uses them; it returns None where the model predicts none).
    """
    function = SEGMENTERS.get(method)
    options = settings_of(method, settings)
    parameters = inspect.signature(function).parameters
    if callable(predicted):
        predicted = predicted() if "predicted" in parameters and options.get("affinities") != "estimated" else None
    given = {"sampling": None if sampling is None else tuple(sampling), "cut_faces": cut_faces,
             "predicted": predicted}
    options.update({key: value for key, value in given.items() if value is not None and key in parameters})
    return function(foreground, **options)


@dataclass(frozen=True)
class BlockSettings:
    """How each block of an image segmented block by block is segmented and stitched
    (:mod:`unetflow.blockwise`): the settings a block is segmented with, the stitching rule, the
    ``min_size`` applied to whole objects after stitching (components: their size is known only
    then; 0 where the method applies it itself), and the foreground probability from which a
    voxel votes in overlap stitching (the method's ``threshold``: its interior)."""

    options: dict
    rule: str
    min_size: int
    vote_threshold: float | None


def block_settings(method: str, settings: dict) -> BlockSettings:
    """The :class:`BlockSettings` of ``method`` with the ``segment`` ``settings``."""
    rule = STITCHING[method]
    if rule == "components":
        return BlockSettings({**settings, "min_size": 0}, rule, int(settings.get("min_size", 0)), None)
    return BlockSettings(dict(settings), rule, 0, settings.get("threshold"))


def settings_of(method: str, settings: dict) -> dict:
    """The keys of ``settings`` that ``method`` takes (others do not change its objects)."""
    takes = inspect.signature(SEGMENTERS.get(method)).parameters
    return {key: value for key, value in settings.items() if key in takes}


@segmenter("components", stitch="components", bytes_per_voxel=13)
def components(foreground: np.ndarray, *, threshold: float, min_size: int) -> np.ndarray:
    """Face-connected components of ``foreground >= threshold`` (objects under ``min_size`` px or
    voxels dropped): 4-connected in a slice, 6-connected in a volume."""
    objects = connected_components(foreground >= threshold, connectivity=1)
    if min_size > 0:
        objects[np.bincount(objects.ravel())[objects] < min_size] = 0
    return relabel_sequential(objects)[0].astype(np.uint32)


def watershed_seeds(foreground: np.ndarray, *, threshold: float, seeds: str, h: float, min_size: int,
                    sampling: tuple[float, ...] | None = None,
                    cut_faces: tuple[tuple[bool, bool], ...] | None = None) -> np.ndarray:
    """Labelled seed regions: h-maxima of the interior's distance transform or of the probability.

    Distances and the smoothing of the probability are in x voxels (``sampling`` as in
    :func:`watershed_fill`). A seed is a connected set of maximum voxels, connected across
    edges and corners too (8-connected in a slice, 26-connected in a volume), so one flat
    maximum is one seed. The distance transform measures to the interior's edge or to a cut
    face (``cut_faces``), never past it: where a block's window cuts a cell, the distances
    beyond the cut are unknown, and taking them as large would raise ridges along the cut
    whose h-maxima suppress the true seeds nearby (merging cells the whole image keeps apart).
    """
    interior = foreground >= threshold
    if seeds == "distance":
        landscape = distance_inside(interior, sampling, cut_faces)
    elif seeds == "probability":
        sigma = SEED_SMOOTHING if sampling is None else tuple(SEED_SMOOTHING / np.asarray(sampling))
        landscape = ndimage.gaussian_filter(foreground.astype(np.float64), sigma)
    else:
        raise InputError(f"segment: seeds {seeds!r} is unknown; use distance or probability")
    maxima = h_maxima(landscape, h) > 0
    markers = connected_components(maxima & interior, connectivity=foreground.ndim)
    if min_size > 0:
        # seeds of tiny interiors make tiny cells: keep those whose interior region is large enough
        regions = connected_components(interior, connectivity=1)
        sizes = np.bincount(regions.ravel())
        markers[sizes[regions] < min_size] = 0
    return markers


def distance_inside(interior: np.ndarray, sampling: tuple[float, ...] | None,
                    cut_faces: tuple[tuple[bool, bool], ...] | None) -> np.ndarray:
    """Euclidean distance of each interior voxel to the nearest non-interior voxel or cut face."""
    if not cut_faces or not any(any(faces) for faces in cut_faces):
        return ndimage.distance_transform_edt(interior, sampling=sampling)
    padded = np.pad(interior, [(int(low), int(high)) for low, high in cut_faces], constant_values=False)
    crop = tuple(slice(int(low), length - int(high)) for (low, high), length in zip(cut_faces, padded.shape))
    return ndimage.distance_transform_edt(padded, sampling=sampling)[crop]


@segmenter("watershed", bytes_per_voxel=140)
def watershed_fill(foreground: np.ndarray, *, threshold: float, seeds: str, h: float, min_size: int,
                   mask: float = 0.0, sampling: tuple[float, ...] | None = None,
                   cut_faces: tuple[tuple[bool, bool], ...] | None = None) -> np.ndarray:
    """Seeded watershed of the membrane probability ``1 - foreground`` over the whole slice or volume.

    Parameters
    ----------
    foreground
        Foreground (cell interior) probability of one slice (y, x) or one volume (z, y, x), in [0, 1].
    threshold
        Interior where ``foreground >= threshold``; seeds lie in the interior.
    seeds
        ``distance``: h-maxima of the interior's Euclidean distance transform;
        ``probability``: h-maxima of the (lightly smoothed) probability.
    h
        Minimum height of a maximum to seed its own cell (x voxels for ``distance``).
    min_size
        Interior regions smaller than this (px or voxels) seed no cell of their own.
    mask
        0: flood every pixel. Above 0: pixels whose foreground probability is below ``mask``
        stay background (0); at most ``threshold``, so that every seed lies inside the mask.
    sampling
        Voxel size per axis relative to x (``VoxelSize.in_x_pixels``); None: 1 on every axis.
    cut_faces
        Per axis, whether the low and high face of ``foreground`` cut through the image (a
        block's window, :mod:`unetflow.blockwise`); see :func:`watershed_seeds`.

    Returns
    -------
    np.ndarray
        uint32 labels 1..n covering every pixel of the mask (every pixel with ``mask`` 0), 0
        elsewhere and where no seed is reached, numbered over the whole input, flooded
        face-connected (4- or 6-connected).

    Notes
    -----
    The watershed floods ``1 - foreground`` from the seeds (Beucher & Meyer 1993), so
    boundaries settle on the membrane probability's ridges.

    References
    ----------
    S. Beucher, F. Meyer, "The morphological approach to segmentation: the watershed
    transformation", in Mathematical Morphology in Image Processing, 1993.
    """
    check_mask(mask, threshold)
    markers = watershed_seeds(foreground, threshold=threshold, seeds=seeds, h=h, min_size=min_size,
                              sampling=sampling, cut_faces=cut_faces)
    return flooded_from(markers, foreground, mask)


def flooded_from(markers: np.ndarray, foreground: np.ndarray, mask: float) -> np.ndarray:
    """The labelled ``markers`` grown over ``1 - foreground`` into every pixel (``mask`` 0) or every
    pixel of foreground probability at least ``mask``; uint32 labels 1..n (all 0 without markers)."""
    if markers.max() == 0:
        return np.zeros(foreground.shape, np.uint32)
    flooded = foreground >= mask if mask > 0 else None
    objects = watershed(1.0 - foreground.astype(np.float64), markers, mask=flooded)
    return relabel_sequential(objects)[0].astype(np.uint32)


@segmenter("agglomeration", bytes_per_voxel=140)
def agglomerated_watershed(foreground: np.ndarray, *, threshold: float, seeds: str, h: float, min_size: int,
                           merge: float, mask: float = 0.0, sampling: tuple[float, ...] | None = None,
                           cut_faces: tuple[tuple[bool, bool], ...] | None = None) -> np.ndarray:
    """The fragments of :func:`watershed_fill` merged by mean boundary probability below ``merge``.

    Parameters
    ----------
    foreground, threshold, seeds, h, min_size, mask, sampling, cut_faces
        As :func:`watershed_fill` takes them; a low ``h`` gives the fragments.
    merge
        Touching fragments whose mean membrane probability (``1 - foreground``) over their
        shared face is below this are merged, the lowest first (0: none merged).

    Returns
    -------
    np.ndarray
        uint32 labels 1..n, numbered over the whole input, 0 where the watershed leaves 0.
    """
    fragments = watershed_fill(foreground, threshold=threshold, seeds=seeds, h=h, min_size=min_size, mask=mask,
                               sampling=sampling, cut_faces=cut_faces)
    regions = agglomerate(region_graph(fragments, 1.0 - foreground.astype(np.float64)), merge)
    return relabel_sequential(regions[fragments])[0].astype(np.uint32)


@segmenter("mutex_watershed", bytes_per_voxel=1400)
def mutex_watershed(foreground: np.ndarray, *, bias: float, min_size: int, mask: float = 0.0,
                    affinities: str = "predicted", sampling: tuple[float, ...] | None = None,
                    predicted: Predicted | None = None) -> np.ndarray:
    """Mutex watershed of the predicted affinities, or of those estimated from ``foreground``,
    small clusters filled in.

    Parameters
    ----------
    foreground
        Foreground (cell interior) probability of one slice (y, x) or one volume (z, y, x), in [0, 1].
    bias
        A long-range edge repels where the lowest foreground probability on the line between
        its pixels is below ``bias`` and attracts above it (1: every long-range edge repels,
        the paper's form); face neighbours always attract, with their affinity as strength
        (:func:`unetflow.mutex.mutex_segmentation`).
    min_size
        Clusters smaller than this (px or voxels), and pixels the mutex watershed leaves alone,
        are flooded from the clusters around them over ``1 - foreground``.
    mask
        As :func:`watershed_fill`: 0 fills every pixel; above 0, pixels of lower foreground
        probability stay background (0).
    affinities
        ``predicted``: those of ``predicted`` where given; ``estimated``: estimated from
        ``foreground`` (:func:`unetflow.affinities.affinities_from_foreground`) on the offsets
        of :func:`unetflow.affinities.offsets_for`, also where the network predicts some, so
        that the tune rule can choose between the two.
    sampling
        Voxel size per axis relative to x: long-range offsets keep their physical length.
    predicted
        The affinities the network predicted for these pixels, with their offsets (a model with
        ``affinities``); None: none were predicted, they are estimated.

    Returns
    -------
    np.ndarray
        uint32 labels 1..n, numbered over the whole input.

    References
    ----------
    S. Wolf et al., "The Mutex Watershed and its Objective: Efficient, Parameter-Free Graph
    Partitioning", IEEE TPAMI 43(10), 2021 (arXiv 1904.12654).
    """
    if predicted is None or affinities == "estimated":
        offsets = offsets_for(foreground.ndim, sampling)
        predicted = Predicted(affinities_from_foreground(foreground, offsets), offsets)
    clusters = mutex_segmentation(predicted.values, predicted.offsets, bias=bias)
    if min_size > 0:
        clusters[np.bincount(clusters.ravel())[clusters] < min_size] = 0
    return flooded_from(clusters, foreground, mask)

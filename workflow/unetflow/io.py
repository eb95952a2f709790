"""Zarr stores of the workflow: layout, reading, checking and atomic writing.

Every store is OME-Zarr (NGFF 0.4) on Zarr format 2, the combination that both
napari (napari-ome-zarr) and Fiji (MoBIE / n5-viewer) open today; its images are
written by :mod:`unetflow.ngff` (physical scale, pyramid levels ``0``, ``1``, ...).
Arrays are (z, y, x) (channels, where any, first): a stack of slices (``dims`` 2) is chunked one slice per chunk in z
and in tiles of ``TILE_CHUNK_EDGE`` in y/x for slices over ``MAX_CHUNK_EDGE``; a volume
(``dims`` 3) in cubes of ``VOLUME_CHUNK_EDGE``, which 3-D blocks read and write whole.

``data.zarr`` layout::

    data.zarr/                the image (multiscale levels 0, 1, ...), original dtype,
        0, 1, ...             (z, y, x), or (c, z, y, x) with several channels;
                              attrs["unetflow"] of level 0 holds the intensity
                              normalisation (unetflow.intensity) and the voxel size's source
        labels/objects/0, ... instance labels (uint32, 0 = background)
        labels/classes/0, ... training target: class index per pixel (uint8), IGNORE
                              where the class is unknown (sparse annotations)

Prediction stores are (c, z, y, x) images of class probabilities, followed by one affinity
channel per offset where the model predicts affinities (level 0's attrs["unetflow"] holds
``num_classes`` and ``affinity_offsets``); segmentation
stores are label images (uint32 objects), level 0 at ``"0"`` in each.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numcodecs
import numpy as np
import zarr

from .affinities import Predicted
from .errors import InputError

log = logging.getLogger(__name__)

MAX_CHUNK_EDGE = 2048
TILE_CHUNK_EDGE = 1024
VOLUME_CHUNK_EDGE = 128  # 2 MB of uint8, 8 MB of float32 a chunk; 477 files per 10^9 voxels and array
COMPRESSOR = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)
COMPRESSORS = {2: COMPRESSOR, 3: zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")}  # by Zarr format
VOLUME_SHARD_CHUNKS = 2  # Zarr v3 volumes: a shard (one file) holds 2 x 2 x 2 chunks
LABEL_NAMES = ("objects", "classes")
IGNORE = 255  # labels/classes of a pixel whose class is unknown: no class index (num_classes <= 254)
LEVEL0 = "0"  # the full-resolution level of every image
# augmented sample stores: (sample, y, x) arrays, in the order a sample lists them
SAMPLE_ARRAYS = {"image": np.float32, "labels": np.uint8, "weights": np.float32}
# Every chunk is written, even one of zeros, so that a missing chunk file means a damaged store.
ARRAY_CONFIG = {"write_empty_chunks": True}


def known(classes: np.ndarray) -> np.ndarray:
    """Pixels of a labels/classes array whose class is known (not ``IGNORE``)."""
    return np.asarray(classes) != IGNORE


def slice_chunks(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Chunk shape of a stack: one slice in z; whole rows/columns up to 2048 px, else 1024-px tiles."""
    return (1, *(edge if edge <= MAX_CHUNK_EDGE else TILE_CHUNK_EDGE for edge in shape[1:]))


def volume_chunks(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Chunk shape of a volume: cubes of ``VOLUME_CHUNK_EDGE`` (clipped to the volume)."""
    return tuple(min(edge, VOLUME_CHUNK_EDGE) for edge in shape)


def chunks_for(shape: tuple[int, int, int], volume: bool) -> tuple[int, int, int]:
    """The chunks of a (z, y, x) array of a stack (``volume`` False) or a volume."""
    return volume_chunks(shape) if volume else slice_chunks(shape)


def shards_for(shape: tuple[int, ...], chunks: tuple[int, ...], *, volume: bool, zarr_format: int) -> tuple | None:
    """The shards of an array: in Zarr v3, a volume's chunks grouped ``VOLUME_SHARD_CHUNKS`` to an
    axis (8 chunks a file); else none (a stack's slices are written one by one)."""
    if zarr_format != 3 or not volume:
        return None
    return tuple(chunk * min(VOLUME_SHARD_CHUNKS, -(-length // chunk)) for length, chunk in zip(shape, chunks))


def write_unit(array: zarr.Array) -> tuple[int, ...]:
    """The region one writer must own: a shard where the array has shards, else a chunk."""
    return tuple(array.shards or array.chunks)


@contextmanager
def atomic_store(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only on success.

    A job killed half-way leaves a hidden ``.name.tmp-PID`` folder, never
    something at ``path`` that looks complete; the next run of the step removes
    such leftovers (Snakemake runs one job per output at a time, so none of them
    is being written).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        log.info("removing %s, left by a job that was killed", leftover)
        _remove(leftover)
    temporary = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        yield temporary
    except BaseException:
        _remove(temporary)
        raise
    _remove(path)
    os.replace(temporary, path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def create_group(path: str | Path, zarr_format: int = 2) -> zarr.Group:
    """A new, empty group: Zarr format 2 (NGFF 0.4, the default) or 3 (NGFF 0.5)."""
    return zarr.open_group(str(path), mode="w", zarr_format=zarr_format)


def zarr_format_of(node: zarr.Group | zarr.Array) -> int:
    return node.metadata.zarr_format


def level0_to_write(image: zarr.Group) -> zarr.Array:
    """Level 0 of an image a step fills, writing every chunk, an all-zero one too (an opened array
    forgets the ``ARRAY_CONFIG`` it was created with; a chunk left unwritten reads as damage)."""
    return image[LEVEL0].with_config(ARRAY_CONFIG)


def open_store(path: str | Path) -> zarr.Group:
    """Open a workflow store read-only, with a clear error when it is missing or broken."""
    try:
        return zarr.open_group(str(path), mode="r")
    except Exception as error:
        raise InputError(
            f"{path}: not a readable Zarr store ({error}); delete it and rerun the workflow "
            "so the step that writes it runs again"
        ) from error


def checked_array(store: zarr.Group, key: str) -> zarr.Array:
    """``store[key]``, after checking that the array exists and none of its chunks is missing
    (Zarr would silently read a missing chunk as zeros)."""
    where = f"{location(store)}/{key}"
    try:
        array = store[key]
    except KeyError:
        raise InputError(f"{where}: the array is missing; delete the store and rerun the workflow to rewrite it") from None
    expected, stored = stored_files(array)
    if stored < expected:
        raise InputError(
            f"{where}: {expected - stored} of {expected} chunks are missing (a damaged or half-copied store); "
            "delete the store and rerun the workflow so the step that writes it runs again"
        )
    return array


def stored_files(array: zarr.Array) -> tuple[int, int]:
    """(expected, stored) chunk files of an array: its chunks, or its shards where sharded (a Zarr v3
    shard is one file, under ``c/`` by the spec's default key encoding)."""
    if not array.shards:
        return array.nchunks, array.nchunks_initialized
    expected = int(np.prod([-(-length // shard) for length, shard in zip(array.shape, array.shards)]))
    return expected, sum(1 for path in (Path(location(array)) / "c").rglob("*") if path.is_file())


def location(node: zarr.Group | zarr.Array) -> str:
    """The file-system path of a Zarr group or array, for messages."""
    return str(node.store_path).replace("file://", "")


def open_raw(store: zarr.Group) -> zarr.Array:
    """The image of a ``data.zarr`` store (full resolution)."""
    return checked_array(store, LEVEL0)


def raw_plane(raw: zarr.Array, z: int) -> np.ndarray:
    """Slice ``z`` of a ``data.zarr`` image, its first channel where it has several (previews)."""
    return np.asarray(raw[0, z] if raw.ndim == 4 else raw[z])


def open_labels(store: zarr.Group, name: str = "classes") -> zarr.Array | None:
    """A label image (``objects`` or ``classes``) of a ``data.zarr`` store, or None if unlabelled."""
    if name not in LABEL_NAMES:
        raise ValueError(f"unknown label image {name!r}; choose one of {LABEL_NAMES}")
    key = f"labels/{name}/{LEVEL0}"
    return checked_array(store, key) if "labels" in store and key in store else None


def open_probabilities(path: str | Path) -> zarr.Array:
    """The (c, z, y, x) probabilities of a prediction store (full resolution)."""
    return checked_array(open_store(path), LEVEL0)


def open_objects(path: str | Path) -> zarr.Array:
    """The (z, y, x) object labels of a segmentation store (full resolution)."""
    return checked_array(open_store(path), LEVEL0)


def read_probabilities(array: zarr.Array, z: int, channel: int) -> np.ndarray:
    """One class's probabilities of slice ``z`` as float32 in [0, 1] (uint8 stores scaled back).

    Raises :class:`InputError` naming the store and slice when a value is NaN or
    infinite: a diverged model's output, which would make every later step wrong
    (and a watershed never finish).
    """
    return read_probability_region(array, (slice(z, z + 1),), channel)[0]


def read_probability_region(array: zarr.Array, region: tuple[slice, ...], channels: int | slice) -> np.ndarray:
    """One channel's probabilities of a (z, y, x) ``region`` (trailing axes may be left out: whole),
    or a run of channels' (``channels`` a slice: (c, z, y, x), one read), float32 in [0, 1], refused
    like :func:`read_probabilities` where not finite."""
    values = array[(channels, *region)]
    if array.dtype == np.uint8:
        return values.astype(np.float32) / 255
    broken = ~np.isfinite(values)
    if broken.any():
        channel, count = (channels, np.count_nonzero(broken)) if isinstance(channels, int) else \
            first_broken_channel(broken, channels.start or 0)
        raise InputError(
            f"{location(array)}: {describe_region(region)} ({channel_kind(array, channel)} {channel}) holds {count} "
            "non-finite probabilities (NaN or infinity), so the model that predicted them is broken (its training "
            "diverged, or it was written by an older unetflow that did not check); retrain the model and rerun predict"
        )
    return values


def first_broken_channel(broken: np.ndarray, first: int) -> tuple[int, int]:
    """The first channel of a (c, ...) ``broken`` mask that holds a True, and how many it holds."""
    per_channel = broken.reshape(len(broken), -1).sum(axis=1)
    index = int(np.flatnonzero(per_channel)[0])
    return first + index, int(per_channel[index])


def channel_kind(probabilities: zarr.Array, channel: int) -> str:
    """``class`` or ``affinity channel``: what channel ``channel`` of a prediction store holds, for messages."""
    return "class" if channel < class_count(probabilities) else "affinity channel"


def describe_region(region: tuple[slice, ...]) -> str:
    """``slice 3`` / ``slices 0-63, rows 0-127, columns 128-255``, for messages."""
    names = ("slice", "row", "column")
    parts = []
    for name, axis in zip(names, region):
        if axis.start is None:
            continue
        last = axis.stop - 1
        parts.append(f"{name} {axis.start}" if last == axis.start else f"{name}s {axis.start}-{last}")
    return ", ".join(parts)


def foreground_probability(probabilities: zarr.Array, z: int) -> np.ndarray:
    """P(not background) of slice ``z``: class 1 for two classes, 1 - P(class 0) for more."""
    return foreground_region(probabilities, (slice(z, z + 1),))[0]


def foreground_region(probabilities: zarr.Array, region: tuple[slice, ...]) -> np.ndarray:
    """P(not background) of a (z, y, x) ``region`` of (c, z, y, x) probabilities, float32."""
    if class_count(probabilities) == 2:
        return read_probability_region(probabilities, region, 1)
    return 1.0 - read_probability_region(probabilities, region, 0)


def class_count(probabilities: zarr.Array) -> int:
    """The class channels of a prediction store (the first ones; every channel in a store written
    before affinities, which does not record ``num_classes``)."""
    return int(probabilities.attrs.get("unetflow", {}).get("num_classes", probabilities.shape[0]))


def affinity_offsets(probabilities: zarr.Array) -> list[tuple[int, ...]]:
    """The offsets of a prediction store's affinity channels (after its classes); none if the
    model predicts no affinities."""
    return [tuple(offset) for offset in probabilities.attrs.get("unetflow", {}).get("affinity_offsets", [])]


def affinity_region(probabilities: zarr.Array, region: tuple[slice, ...]) -> Predicted | None:
    """The predicted affinities of a (z, y, x) ``region``: float32 (offsets, z, y, x) values in
    [0, 1] (channel k links a voxel and the voxel ``offsets[k]`` from it), refused where not
    finite; None for a store without affinity channels."""
    offsets = affinity_offsets(probabilities)
    if not offsets:
        return None
    first = class_count(probabilities)
    return Predicted(read_probability_region(probabilities, region, slice(first, first + len(offsets))), offsets)


def affinity_plane(probabilities: zarr.Array, z: int, region: tuple[slice, ...] = ()) -> Predicted | None:
    """The predicted affinities of slice ``z`` (or of its (y, x) ``region``): (offsets, y, x)
    values of a 2-D model's (y, x) offsets; None for a store without affinity channels."""
    found = affinity_region(probabilities, (slice(z, z + 1), *region))
    return None if found is None else Predicted(found.values[:, 0], found.offsets)


def foreground_volume(probabilities: zarr.Array) -> np.ndarray:
    """P(not background) of every slice, as one (z, y, x) float32 volume."""
    return foreground_region(probabilities, (slice(0, probabilities.shape[1]),))

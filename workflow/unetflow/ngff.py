"""OME-Zarr images of the workflow: physical scale, resolution pyramids, labels.

NGFF 0.4 on Zarr format 2 by default, which every viewer opens today (napari, Fiji's
MoBIE and n5-viewer); NGFF 0.5 on Zarr format 3 where a store's group is of that format
(``ngff: "0.5"`` in the config): the metadata then lives under the attribute ``ome``, and a
volume's arrays are sharded (:func:`io.shards_for`), 8 chunks a file. :func:`ome` reads
either.

An image is a group whose arrays ``"0"``, ``"1"``, ... are the levels of a
pyramid: each halves y and x (never z, as slices stay slices) until the largest
edge is at most ``PYRAMID_MIN_EDGE`` pixels, so a viewer loads only the level
the screen needs. Every level's NGFF ``coordinateTransformations`` carry the
voxel size, so napari and Fiji show the stack at its physical scale.

A step writes level 0 and then calls :func:`write_pyramid` for the slices it
wrote; the coarser levels are computed from the finer ones with Dask, by 2 x 2
means for images and probabilities (``local_mean``) and by taking every second
pixel for labels (``nearest``; a mean of object labels is no label). The
pyramid is built here rather than by ome-zarr-py's ``write_image`` because that
writes every level, level 0 included, from one array at once; steps stream level
0 slice by slice and split a stack into parts that each fill their own slices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr
from ome_zarr.format import FormatV04, FormatV05
from ome_zarr.writer import write_label_metadata, write_multiscales_metadata

from . import io
from .voxel_size import UNKNOWN, VoxelSize, from_ngff

PYRAMID_MIN_EDGE = 256  # a level this small is a thumbnail: viewers load it whole
DOWNSAMPLING = {
    "local_mean": "mean of each 2 x 2 block (dask.array.coarsen with numpy.mean)",
    "nearest": "every second pixel in y and x (the top-left one of each 2 x 2 block)",
}
CHANNEL_AXIS = {"name": "c", "type": "channel"}
LABEL_SOURCE = {"image": "../../"}  # a label image's source: the image whose labels group holds it
FORMATS = {2: FormatV04(), 3: FormatV05()}  # Zarr format -> the NGFF version written on it


def ome(group: zarr.Group) -> dict[str, Any]:
    """A group's NGFF metadata: its attributes (0.4), or their ``ome`` entry (0.5)."""
    attributes = group.attrs.asdict()
    return attributes.get("ome", {}) if io.zarr_format_of(group) == 3 else attributes


def set_ome(group: zarr.Group, key: str, value: Any) -> None:
    """Set one NGFF metadata entry of a group (under ``ome`` in 0.5)."""
    if io.zarr_format_of(group) == 3:  # every 0.5 group states its version (ome-zarr-py's labels group may not)
        group.attrs["ome"] = {"version": FormatV05().version, **group.attrs.get("ome", {}), key: value}
    else:
        group.attrs[key] = value


def level_shapes(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The shapes of the pyramid levels of an array whose last two axes are y and x."""
    shapes = [tuple(shape)]
    while max(shapes[-1][-2:]) > PYRAMID_MIN_EDGE and min(shapes[-1][-2:]) >= 2:
        *leading, rows, columns = shapes[-1]
        shapes.append((*leading, rows // 2, columns // 2))
    return shapes


def level_chunks(shape: tuple[int, ...], volume: bool = False) -> tuple[int, ...]:
    """One channel per chunk; z, y, x as :func:`io.chunks_for` chunks a stack or a volume."""
    return (1,) * (len(shape) - 3) + io.chunks_for(shape[-3:], volume)


def axes(voxel_size: VoxelSize, *, channels: bool) -> list[dict[str, str]]:
    """NGFF axes (c,) z, y, x, with the voxel size's unit on the spatial ones."""
    unit = {"unit": voxel_size.unit} if voxel_size.unit else {}
    spatial = [{"name": name, "type": "space", **unit} for name in ("z", "y", "x")]
    return [CHANNEL_AXIS, *spatial] if channels else spatial


def level_transforms(level: int, voxel_size: VoxelSize, downsampling: str, *, channels: bool) -> list[dict]:
    """Scale (and, for means, translation) of pyramid level ``level`` in physical units.

    A mean level's pixel covers 2^level pixels of level 0 per axis, so its centre
    lies (2^level - 1) / 2 level-0 pixels from the first one's; a nearest level's
    pixel is a level-0 pixel and needs no shift.
    """
    factor = 2**level
    scale = [voxel_size.z, voxel_size.y * factor, voxel_size.x * factor]
    shift = (factor - 1) / 2 if downsampling == "local_mean" else 0.0
    translation = [0.0, voxel_size.y * shift, voxel_size.x * shift]
    if channels:
        scale, translation = [1.0, *scale], [0.0, *translation]
    transforms = [{"type": "scale", "scale": scale}]
    if any(translation):
        transforms.append({"type": "translation", "translation": translation})
    return transforms


def create_image(
    group: zarr.Group,
    shape: tuple[int, ...],
    dtype: np.dtype | str,
    voxel_size: VoxelSize = UNKNOWN,
    *,
    name: str,
    downsampling: str = "local_mean",
    pyramid: bool = True,
    channel_names: list[str] | None = None,
    attributes: dict[str, Any] | None = None,
    volume: bool = False,
) -> zarr.Array:
    """Create a multiscale (z, y, x) image, or (c, z, y, x) with ``channel_names``, in ``group``.

    Parameters
    ----------
    group
        An empty Zarr format 2 group; it becomes the image.
    shape, dtype
        Of level 0.
    voxel_size
        The physical size of a level-0 voxel.
    name
        The image's name (napari names the layer after it).
    downsampling
        ``local_mean`` or ``nearest`` (see ``DOWNSAMPLING``), recorded as the multiscale's type.
    pyramid
        False for one level only (stores no viewer opens, e.g. weight maps).
    channel_names
        One name per channel of a (c, z, y, x) image, written as OMERO channel labels.
    attributes
        Stored as ``attrs["unetflow"]`` of level 0.
    volume
        Chunk a volume (``dims`` 3) in cubes rather than slices (:func:`io.chunks_for`).

    Returns
    -------
    zarr.Array
        Level 0, to be filled by the caller; then :func:`write_pyramid` fills the others.
    """
    channels = channel_names is not None
    shapes = level_shapes(shape) if pyramid else [tuple(shape)]
    zarr_format = io.zarr_format_of(group)
    arrays = []
    for level, level_shape in enumerate(shapes):
        chunks = level_chunks(level_shape, volume)
        shards = io.shards_for(level_shape, chunks, volume=volume, zarr_format=zarr_format)
        names = {"dimension_names": [axis["name"] for axis in axes(voxel_size, channels=channels)]} \
            if zarr_format == 3 else {}  # NGFF 0.5: each array names its axes
        arrays.append(group.create_array(str(level), shape=level_shape, chunks=chunks, shards=shards, dtype=dtype,
                                         compressors=io.COMPRESSORS[zarr_format], fill_value=0,
                                         config=io.ARRAY_CONFIG, **names))
    datasets = [{"path": str(level), "coordinateTransformations":
                 level_transforms(level, voxel_size, downsampling, channels=channels)} for level in range(len(shapes))]
    write_multiscales_metadata(group, datasets, fmt=FORMATS[zarr_format], axes=axes(voxel_size, channels=channels),
                               name=name, metadata={"method": DOWNSAMPLING[downsampling]})
    multiscales = ome(group)["multiscales"]
    multiscales[0]["type"] = downsampling
    set_ome(group, "multiscales", multiscales)
    if channels:
        set_ome(group, "omero", omero_channels(channel_names, np.dtype(dtype)))
    if attributes:
        arrays[0].attrs["unetflow"] = attributes
    return arrays[0]


def create_probabilities(path: Path, shape: tuple[int, ...], dtype: str, attributes: dict, voxel_size: VoxelSize,
                         *, channel_names: list[str], volume: bool = False, zarr_format: int = 2) -> zarr.Group:
    """A new prediction store at ``path``: a (c, z, y, x) image of per-class probabilities (then
    affinities, if the model predicts them), a channel per name, ``attributes`` in its level 0's
    ``attrs["unetflow"]``; level 0 to be filled."""
    group = io.create_group(path, zarr_format)
    create_image(group, shape, dtype, voxel_size, name="probabilities", channel_names=channel_names,
                 attributes=attributes, volume=volume)
    return group


CHANNEL_COLOURS = ("808080", "FF00FF", "00FF00", "00FFFF", "FFFF00", "FF8000", "0080FF", "FF0000")


def omero_channels(names: list[str], dtype: np.dtype) -> dict[str, Any]:
    """OMERO rendering metadata: a name, colour and display window per channel; the first
    channel (the background class) starts hidden."""
    top = float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0
    return {"channels": [
        {"label": name, "color": CHANNEL_COLOURS[index % len(CHANNEL_COLOURS)], "active": index > 0,
         "window": {"min": 0.0, "max": top, "start": 0.0, "end": top}}
        for index, name in enumerate(names)
    ], "rdefs": {"model": "color"}}


FLUORESCENCE_COLOURS = ("00FF00", "FF00FF", "00FFFF", "FFFF00")


def channel_names(image: zarr.Group) -> list[str]:
    """The names of an image's channels (its OMERO labels)."""
    return [channel["label"] for channel in ome(image)["omero"]["channels"]]


def set_display(image: zarr.Group, names: list[str], ranges: list[tuple[float, float]]) -> None:
    """OMERO rendering metadata of an image: one channel gray, several in colours, each named and
    shown over its own value range (a 16-bit stack's own range rather than 0-65535)."""
    dtype = image[io.LEVEL0].dtype
    colours = ("FFFFFF",) if len(names) == 1 else FLUORESCENCE_COLOURS
    set_ome(image, "omero", {"channels": [{
        "label": name, "color": colours[index % len(colours)], "active": True,
        "window": {**value_bounds(dtype, low, high), "start": low, "end": high},
    } for index, (name, (low, high)) in enumerate(zip(names, ranges))],
        "rdefs": {"model": "greyscale" if len(names) == 1 else "color"}})


def value_bounds(dtype: np.dtype, low: float, high: float) -> dict[str, float]:
    if np.issubdtype(dtype, np.integer):
        return {"min": float(np.iinfo(dtype).min), "max": float(np.iinfo(dtype).max)}
    return {"min": low, "max": high}


def mark_label_image(group: zarr.Group, colors: list[dict] | None = None) -> None:
    """Give an image group NGFF ``image-label`` metadata: its source is the image two levels up
    (``image/labels/<name>``), where viewers find it."""
    metadata: dict[str, Any] = {"source": LABEL_SOURCE}
    if io.zarr_format_of(group) == 2:
        metadata["version"] = FormatV04().version  # 0.5 states its version once, in ``ome``
    if colors:
        metadata["colors"] = colors
    set_ome(group, "image-label", metadata)


def create_label(image: zarr.Group, name: str, shape: tuple[int, int, int], dtype: np.dtype,
                 voxel_size: VoxelSize = UNKNOWN, *, colors: list[dict] | None = None,
                 volume: bool = False) -> zarr.Array:
    """Create the label image ``labels/<name>`` of ``image`` (listed in ``labels``), return its level 0."""
    labels = image.require_group("labels")
    array = create_image(labels.create_group(name), shape, dtype, voxel_size, name=name, downsampling="nearest",
                         volume=volume)
    write_label_metadata(labels, name, colors=colors, fmt=FORMATS[io.zarr_format_of(image)], source=LABEL_SOURCE)
    set_ome(labels, "labels", ome(labels)["labels"])
    return array


def create_segmentation(path: Path, shape: tuple[int, int, int], voxel_size: VoxelSize, attributes: dict, *,
                        volume: bool, zarr_format: int = 2) -> zarr.Group:
    """A new segmentation store: a uint32 label image (0 = background) that the view rule places in
    the labels group of its image; ``attributes`` (the method and settings) on level 0."""
    group = io.create_group(path, zarr_format)
    create_image(group, shape, np.dtype(np.uint32), voxel_size, name="segmentation", downsampling="nearest",
                 attributes=attributes, volume=volume)
    mark_label_image(group)
    return group


def class_colours(num_classes: int) -> list[dict]:
    """Fixed label colours of class indices: 0 (background) transparent, the others opaque."""
    colours = [{"label-value": 0, "rgba": [0, 0, 0, 0]}]
    for value in range(1, num_classes):
        red, green, blue = (int(CHANNEL_COLOURS[value % len(CHANNEL_COLOURS)][i:i + 2], 16) for i in (0, 2, 4))
        colours.append({"label-value": value, "rgba": [red, green, blue, 255]})
    return colours


def write_pyramid(image: zarr.Group, slices: range | None = None) -> None:
    """Fill levels 1, 2, ... of ``image`` from level 0 for ``slices`` (default: all), with Dask.

    Each level is computed from the one above by the image's downsampling type, in
    one Dask graph, so level 0 is read once; each is stored chunk by chunk (shard by shard
    where sharded: rechunked to the target's write units, so no two tasks write one).
    """
    if slices is not None and not slices:
        return  # a part with nothing to do
    multiscale = ome(image)["multiscales"][0]
    paths = [dataset["path"] for dataset in multiscale["datasets"]]
    source = image[paths[0]]
    region = [slice(None)] * source.ndim
    if slices is not None:
        region[source.ndim - 3] = slice(slices.start, slices.stop)
    level, levels, targets = da.from_zarr(source)[tuple(region)], [], []
    for path in paths[1:]:
        target = image[path].with_config(io.ARRAY_CONFIG)
        level = downsample(level, multiscale["type"], target.shape[-2:])
        levels.append(level.rechunk(io.write_unit(target)))
        targets.append(target)
    if targets:
        da.store(levels, targets, regions=[tuple(region)] * len(targets), lock=False)


def downsample(array: da.Array, downsampling: str, shape: tuple[int, int]) -> da.Array:
    """Halve the last two axes of ``array`` to ``shape`` by ``downsampling``, keeping its dtype."""
    rows, columns = shape
    if downsampling == "nearest":
        return array[..., :2 * rows:2, :2 * columns:2]
    if downsampling != "local_mean":
        raise ValueError(f"unknown downsampling {downsampling!r}; choose one of {sorted(DOWNSAMPLING)}")
    trimmed = array[..., :2 * rows, :2 * columns]
    precision = np.float64 if array.dtype == np.float64 else np.float32  # exact for 4 values of up to 16 bits
    mean = da.coarsen(np.mean, trimmed, {array.ndim - 2: 2, array.ndim - 1: 2}, dtype=precision)
    if np.issubdtype(array.dtype, np.integer):
        mean = da.round(mean)
    return mean.astype(array.dtype)


def voxel_size_of(image: zarr.Group) -> VoxelSize:
    """The voxel size an image's multiscale metadata states (1 pixel if it states none)."""
    multiscales = ome(image).get("multiscales")
    found = from_ngff(multiscales[0], io.location(image)) if multiscales else None
    return found or UNKNOWN

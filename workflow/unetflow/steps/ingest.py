"""Step: raw image and label stacks to one validated OME-Zarr store.

The image is copied slice by slice with its dtype kept (channels first, (c, z, y, x),
where it has several); its normalisation statistics (:mod:`unetflow.intensity`: z-score or
percentiles, per dataset or per image) are stored for later steps. The labels are checked
and made into objects and classes (:mod:`unetflow.label_targets`), slice by slice or, for a
volume, block by block.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from skimage.measure import label as connected_components

from .. import blockwise, cli, intensity, io, ngff, settings
from ..annotations import Annotation, from_options
from ..blocks import BlockGrid
from ..errors import InputError
from ..label_targets import LABEL_KINDS, scan_labels, targets_from_labels, touching_borders
from ..progress import progress
from ..readers import SelectedSlices, SliceStack, open_stack, parse_slices
from ..voxel_size import VoxelSize, from_config, resolve

log = logging.getLogger(__name__)
ZARR_FORMATS = {"0.4": 2, "0.5": 3}  # NGFF version -> the Zarr format it is written on


def check_image_slice(image: np.ndarray, where: str) -> None:
    """Raise if an image slice holds NaN or infinite values."""
    if np.issubdtype(image.dtype, np.floating) and not np.all(np.isfinite(image)):
        count = int(np.size(image) - np.count_nonzero(np.isfinite(image)))
        raise InputError(
            f"{where}: image holds {count} NaN or infinite values; replace them (e.g. with 0 or the "
            "slice mean) before ingestion"
        )


def check_shapes(images: SliceStack, labels: SliceStack) -> None:
    """Raise unless image and label stacks have the same (z, y, x) shape."""
    if images.shape != labels.shape:
        raise InputError(
            f"{labels.path}: labels have shape {labels.shape} (z, y, x) but the images {images.path} "
            f"have {images.shape}; give one label slice per image slice, of the same size"
        )


def ingest(
    images: SliceStack,
    labels: SliceStack | None,
    out: str | Path,
    *,
    label_kind: str,
    num_classes: int,
    voxel_size: VoxelSize | None = None,
    dims: int = 2,
    ngff_version: str = "0.4",
    annotation: Annotation = Annotation(),
    normalize: dict | None = None,
) -> None:
    """Validate the stacks and write them to an OME-Zarr store, slice by slice, with
    their resolution pyramids.

    ``voxel_size`` (the config's) wins over what the images' metadata states; with
    neither, the store has 1 pixel per voxel. With ``dims`` 3 the labels' objects are
    those of the volume (:func:`targets_from_labels` on the whole label stack, held in
    memory), else of each slice. Nothing appears at ``out`` unless every slice was
    valid and written. ``ngff_version`` 0.5 writes the store in NGFF 0.5 on Zarr format 3, and
    the steps after this one write theirs as it is. ``annotation`` says which label pixels
    are known (sparse annotations). ``normalize`` is the config's section of that name
    (method, scope, percentiles; default: the schema's).
    """
    normalize = settings.section("normalize", normalize)
    kind, foreground_value = "none", 0
    if labels is not None:
        check_shapes(images, labels)
        kind, foreground_value = scan_labels(labels, label_kind, num_classes, annotation)
        log.info("labels %s: kind %s", labels.path, kind)
    voxels, voxels_source = resolve(voxel_size, images.voxel_size, str(images.path))
    with io.atomic_store(out) as temporary:
        store = io.create_group(temporary, ZARR_FORMATS[ngff_version])
        channels = images.channels
        names = None if channels == 1 else [f"channel {index}" for index in range(channels)]
        shape = images.shape if channels == 1 else (channels, *images.shape)
        raw = ngff.create_image(store, shape, images.dtype, voxels, name="raw", volume=dims == 3, channel_names=names)
        statistics = intensity.Accumulator(
            normalize["method"], "dataset" if dims == 3 else normalize["scope"], tuple(normalize["percentiles"]),
            channels, np.dtype(images.dtype), int(np.prod(images.shape)))
        value_ranges = _write_images(images, raw, statistics)
        normalization = statistics.result()
        normalization = intensity.Normalization(normalization.method, normalize["scope"], normalization.offset,
                                                normalization.scale, normalization.percentiles)
        ngff.write_pyramid(store)
        ngff.set_display(store, names or ["raw"], value_ranges)
        if labels is not None:
            _write_labels(labels, store, kind, foreground_value, voxels, num_classes, dims, annotation)
        raw.attrs["unetflow"] = {
            "normalization": normalization.as_attrs(),
            "source": str(images.path),
            "voxel_size": {**voxels.as_config(), "source": voxels_source},
            "labels": None if labels is None else {
                "source": str(labels.path), "kind": kind, "ignore_label": annotation.ignore_label,
                "labelled_slices": None if annotation.labelled is None else sorted(annotation.labelled)},
        }
    log.info("wrote %s: %d slices of %dx%d, %d channel(s), voxel size %s, normalised by %s per %s", out,
             *images.shape, images.channels, voxels.describe(), normalization.method, normalization.scope)


SLAB_BYTES = 512 * 2**20  # a volume is written in slabs of slices up to this size (at most a chunk deep)


def slabs(stack: SliceStack, target, desc: str):
    """(first slice, slices) of ``stack`` in runs as deep as ``target``'s chunks or shards in z (a
    volume's slabs are no larger than ``SLAB_BYTES``; a deeper chunk is then written in several
    goes, by this one writer). Slices with channels come as (z, c, y, x)."""
    slice_bytes = max(1, int(np.prod(stack.shape[1:])) * stack.channels * np.dtype(target.dtype).itemsize)
    depth = max(1, min(io.write_unit(target)[-3], SLAB_BYTES // slice_bytes))
    for start in progress(range(0, stack.shape[0], depth), desc=desc):
        yield start, np.stack([stack.read(index) for index in range(start, min(start + depth, stack.shape[0]))])


def _write_images(images: SliceStack, raw, statistics: intensity.Accumulator) -> list[tuple[float, float]]:
    """Write every slice, feeding ``statistics``; return each channel's value range."""
    low, high = np.full(images.channels, np.inf), np.full(images.channels, -np.inf)
    for start, slab in slabs(images, raw, "ingesting images"):
        for offset, image in enumerate(slab):
            check_image_slice(image, images.name_of(start + offset))
        by_channel = slab[:, None] if images.channels == 1 else slab.swapaxes(0, 1)  # (c, z, y, x)
        region = slice(start, start + len(slab))
        if images.channels == 1:
            raw[region] = slab
        else:
            raw[:, region] = by_channel
        if statistics.scope == "image":
            for plane in by_channel.swapaxes(0, 1):
                statistics.add(plane)
        else:
            statistics.add(by_channel)
        flat = by_channel.reshape(images.channels, -1)
        low, high = np.minimum(low, flat.min(axis=1)), np.maximum(high, flat.max(axis=1))
    return [(float(a), float(b)) for a, b in zip(low, high)]


def _write_labels(labels: SliceStack, store, kind: str, foreground_value: int, voxels: VoxelSize,
                  num_classes: int, dims: int, annotation: Annotation) -> None:
    volume = dims == 3
    objects = ngff.create_label(store, "objects", labels.shape, np.dtype(np.uint32), voxels, volume=volume)
    classes = ngff.create_label(store, "classes", labels.shape, np.dtype(np.uint8), voxels,
                                colors=ngff.class_colours(num_classes), volume=volume)
    if volume and objects.chunks == objects.shape:  # one chunk: the volume at once, as it always fits
        whole = np.stack([labels.read(index) for index in progress(range(labels.shape[0]), desc="reading labels")])
        objects[:], classes[:] = targets_from_labels(whole, kind, foreground_value, annotation.unknown(whole))
    elif volume:
        volume_targets(labels, objects, classes, kind, foreground_value, Path(io.location(store)), annotation)
    else:
        for index in progress(range(labels.shape[0]), desc="ingesting labels"):
            plane = labels.read(index)
            unknown = annotation.unknown(plane[None], index)
            objects[index], classes[index] = targets_from_labels(plane, kind, foreground_value,
                                                                 None if unknown is None else unknown[0])
    for name in ("objects", "classes"):
        ngff.write_pyramid(store["labels"][name])


def volume_targets(labels: SliceStack, objects, classes, kind: str, foreground_value: int, workspace: Path,
                   annotation: Annotation = Annotation()) -> None:
    """The objects and classes of a label volume larger than a chunk, chunk by chunk: objects of
    binary labels and class indices are the volume's 6-connected components, found block by block
    and stitched (exact, :mod:`unetflow.blockwise`); instance labels get the border between
    touching objects from each chunk with a one-voxel halo. Unknown voxels: class IGNORE, no object."""
    for start, slab in slabs(labels, objects, "ingesting labels"):
        region = slice(start, start + len(slab))
        unknown = annotation.unknown(slab, start)
        if unknown is not None:
            slab = np.where(unknown, 0, slab)
        if kind == "instance":
            objects[region] = slab.astype(np.uint32)
            target = np.zeros(slab.shape, np.uint8)
        else:
            target = (slab == foreground_value).astype(np.uint8) if kind == "binary" else slab.astype(np.uint8)
        classes[region] = target if unknown is None else np.where(unknown, io.IGNORE, target)
    grid = BlockGrid(objects.shape, objects.chunks, (1, 1, 1) if kind == "instance" else (0, 0, 0))
    if kind != "instance":
        blockwise.segment_image(lambda region: (classes[region] > 0) & io.known(classes[region]),
                                lambda window, cut, region: connected_components(window, connectivity=1), grid,
                                workspace / ".objects-fragments", objects, rule="components")
        return
    for block in progress(list(grid), desc="borders between touching objects"):
        window = objects[block.outer]
        target = ((window > 0) & ~touching_borders(window))[block.core_in_outer].astype(np.uint8)
        classes[block.core] = np.where(io.known(classes[block.core]), target, io.IGNORE)


def parse_args(argv: Iterable[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m unetflow.steps.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True, help="image stack: TIFF, folder, .npy or Zarr")
    parser.add_argument("--labels", help="label stack, same formats (optional)")
    parser.add_argument("--out", required=True, help="output data.zarr")
    parser.add_argument("--label-kind", choices=LABEL_KINDS, default=settings.default("datasets", "*", "label_kind"))
    parser.add_argument("--num-classes", type=int, default=settings.default("num_classes"))
    parser.add_argument("--slices", default=settings.default("datasets", "*", "slices"),
                        help='slices to take, e.g. "0-17" or "0,3,5-7" (default: all)')
    parser.add_argument("--ignore-label", type=int, help="sparse annotations: the label value of unknown pixels")
    parser.add_argument("--labelled-slices", default="", help='sparse annotations: the annotated slices of the '
                        'label stack, e.g. "0,10,20" (numbered in the whole stack; default: all)')
    parser.add_argument("--voxel-size", default=json.dumps(settings.default("datasets", "*", "voxel_size")),
                        help='voxel size as JSON, e.g. \'{"z": 50, "y": 4, "x": 4, "unit": "nanometer"}\' '
                             "(default: from the images' metadata)")
    parser.add_argument("--channel-axis", type=int, help="the axis of the images' array that holds channels "
                        "(default: from the file's metadata, else one channel)")
    parser.add_argument("--normalize", default=json.dumps(settings.default("normalize")),
                        help='intensity normalisation as JSON, e.g. \'{"method": "percentile", "scope": "image", '
                             '"percentiles": [1, 99.8]}\' (default: the schema\'s)')
    cli.add_dims_option(parser, help="2: objects of each label slice; 3: objects of the label volume, through z")
    parser.add_argument("--ngff", choices=sorted(ZARR_FORMATS), default=settings.default("ngff"),
                        help="0.4 on Zarr format 2 (every viewer opens it), or 0.5 on Zarr format 3 (sharded volumes)")
    return parser.parse_args(None if argv is None else list(argv))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    images = open_stack(args.images, channel_axis=args.channel_axis)
    labels = open_stack(args.labels, labels=True) if args.labels else None
    stack_length = images.shape[0]
    indices = list(range(stack_length))
    if args.slices:
        if labels is not None:
            check_shapes(images, labels)
        indices = parse_slices(args.slices, images.shape[0], str(images.path))
        images = SelectedSlices(images, indices)
        labels = SelectedSlices(labels, indices) if labels is not None else None
    labelled = parse_slices(args.labelled_slices, len(indices) if not args.slices else stack_length,
                            f"{args.labels}: labelled_slices") if args.labelled_slices else None
    annotation = from_options(args.ignore_label, labelled, indices)
    ingest(images, labels, args.out, label_kind=args.label_kind, num_classes=args.num_classes,
           voxel_size=from_config(json.loads(args.voxel_size), "voxel_size"), dims=args.dims, ngff_version=args.ngff,
           annotation=annotation, normalize=json.loads(args.normalize))


if __name__ == "__main__":
    cli.run(main)

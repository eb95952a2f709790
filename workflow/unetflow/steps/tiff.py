"""TIFF export: a store's image (probabilities, segmentation or raw) as an OME-TIFF with its
voxel size, for Fiji/ImageJ and other tools without a Zarr reader.

The full-resolution level is written plane by plane (one slice, of one channel, in
memory at a time), zlib-compressed, with the OME-XML physical sizes and channel
names; Fiji opens it through Bio-Formats (File > Import > Bio-Formats, or drag and
drop) as a stack at its physical scale, probabilities as a hyperstack with one
channel per class. A file that would pass 4 GB is written as BigTIFF.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile
import zarr

from .. import cli, io, ngff
from ..errors import InputError
from ..progress import progress
from ..voxel_size import VoxelSize, ome_symbol

log = logging.getLogger(__name__)
CLASSIC_TIFF_LIMIT = 2**32 - 2**25  # bytes; beyond it (with room for the tags) only BigTIFF can address
COMPRESSION = "zlib"  # lossless and read by every TIFF reader, Bio-Formats and ImageJ included


def ome_metadata(image: zarr.Group, array: zarr.Array, voxel_size: VoxelSize) -> dict:
    """The OME-XML metadata tifffile writes: axes, physical sizes with units, channel names."""
    channels = array.ndim == 4
    metadata: dict = {"axes": "CZYX" if channels else "ZYX", "Name": ngff.ome(image)["multiscales"][0].get("name", "")}
    if voxel_size.unit is not None:
        symbol = ome_symbol(voxel_size.unit)
        for axis in ("z", "y", "x"):
            metadata[f"PhysicalSize{axis.upper()}"] = getattr(voxel_size, axis)
            metadata[f"PhysicalSize{axis.upper()}Unit"] = symbol
    if channels and "omero" in ngff.ome(image):
        metadata["Channel"] = {"Name": ngff.channel_names(image)}
    return metadata


def planes(array: zarr.Array) -> Iterator[np.ndarray]:
    """The 2-D planes of a (z, y, x) or (c, z, y, x) array in TIFF page order (channel, then slice)."""
    leading = array.shape[:-2]
    for index in progress(np.ndindex(*leading), desc="written planes", total=int(np.prod(leading))):
        yield array[index]


def export_tiff(store: Path, out: Path) -> None:
    """Write the image of ``store`` (a prediction, segmentation or data store) to the OME-TIFF ``out``.

    Nothing appears at ``out`` unless the whole file was written.
    """
    image = io.open_store(store)
    if "multiscales" not in ngff.ome(image):
        raise InputError(f"{store}: not an OME-Zarr image of this workflow (no multiscales metadata); give a "
                         "results/predictions, results/segmentation or results/<dataset>/data.zarr store")
    array = io.checked_array(image, io.LEVEL0)
    voxel_size = ngff.voxel_size_of(image)
    with io.atomic_store(out) as temporary:
        tifffile.imwrite(temporary, planes(array), shape=array.shape, dtype=array.dtype, ome=True,
                         bigtiff=array.nbytes > CLASSIC_TIFF_LIMIT, compression=COMPRESSION,
                         metadata=ome_metadata(image, array, voxel_size))
    log.info("wrote %s: %s %s, voxel size %s", out, "x".join(map(str, array.shape)), array.dtype,
             voxel_size.describe())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m unetflow.steps.tiff", description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path, help="a predictions, segmentation or data .zarr store")
    parser.add_argument("out", type=Path, help="output .ome.tif")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    export_tiff(args.store, args.out)


if __name__ == "__main__":
    cli.run(main)

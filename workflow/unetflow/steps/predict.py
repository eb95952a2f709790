"""Prediction: a trained U-Net over every slice of a dataset, overlap-tile, Zarr to Zarr.

Writes per-class probabilities as an OME-Zarr image (c, z, y, x) with named
channels, the data's voxel size and a resolution pyramid, float32 or quantised
to uint8 (probability x 255). Slices stream block by block (one output chunk at
a time) and tile by tile, reading only the input windows each block needs, so
memory does not grow with the slice or the stack.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import zarr

from .. import cli, io, ngff, parts, settings
from ..errors import InputError
from ..inference import (
    TileGeometry,
    auto_batch_size,
    autocast_dtype,
    describe_precision,
    load_model,
    make_forward,
    prepare_for_inference,
    resolve_device,
    tile_geometry,
)
from ..methods.architectures import class_names
from ..progress import progress
from ..tiling import array_window_reader, predict_block, tile_grid_for
from ..voxel_size import VoxelSize

log = logging.getLogger(__name__)


class NormalisedPlane:
    """One slice of a Zarr image, normalised on read, indexable like a 2-D array."""

    def __init__(self, raw: zarr.Array, z: int, stats: dict[str, float]):
        self.raw, self.z, self.stats = raw, z, stats
        self.shape = raw.shape[1:]

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        return io.normalize(self.raw[(self.z, *key)], self.stats)


def output_blocks(shape: tuple[int, int], chunks: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """The (row0, row1, col0, col1) regions of the output chunks of one slice."""
    return [
        (row, min(row + chunks[0], shape[0]), col, min(col + chunks[1], shape[1]))
        for row in range(0, shape[0], chunks[0])
        for col in range(0, shape[1], chunks[1])
    ]


def quantise(probabilities: np.ndarray, dtype: str) -> np.ndarray:
    return np.round(probabilities * 255).astype(np.uint8) if dtype == "uint8" else probabilities


def create_output(path: Path, shape: tuple[int, ...], dtype: str, attributes: dict,
                  voxel_size: VoxelSize) -> zarr.Group:
    group = io.create_group(path)
    ngff.create_image(group, shape, dtype, voxel_size, name="probabilities", channel_names=class_names(shape[0]),
                      attributes=attributes)
    return group


def predict_stack(raw: zarr.Array, stats: dict, target: zarr.Array, forward, *, geometry: TileGeometry,
                  batch_size: int, dtype: str, source: str = "the model", slices: range | None = None) -> None:
    """Predict the ``slices`` of ``raw`` (default: all) into ``target`` (c, z, y, x), one output
    chunk at a time.

    The next slice is read and normalised, and finished blocks are compressed and
    written, on two helper threads while the network runs (both release the GIL),
    so the device does not wait for storage. Stops with :class:`InputError` at the
    first block whose output is not finite (``source`` names the model and data in
    the message); writes already started finish before the error leaves.
    """
    num_classes = target.shape[0]
    blocks = output_blocks(raw.shape[1:], target.chunks[2:])
    whole_slices = raw.chunks[1:] == raw.shape[1:]

    def load(z: int):
        # a slice stored as one chunk (up to 2048 px) is decoded once; larger ones window by window
        return io.normalize(raw[z], stats) if whole_slices else NormalisedPlane(raw, z, stats)

    with ThreadPoolExecutor(1, thread_name_prefix="read") as reader, \
            ThreadPoolExecutor(1, thread_name_prefix="write") as writer:
        pending: deque[Future] = deque()
        slices = range(raw.shape[0]) if slices is None else slices
        next_plane = reader.submit(load, slices[0]) if slices else None
        for index, z in enumerate(progress(slices, desc="predicted slices")):
            plane = next_plane.result()
            next_plane = reader.submit(load, slices[index + 1]) if index + 1 < len(slices) else None
            read = array_window_reader(plane)
            for row0, row1, col0, col1 in blocks:
                probabilities = predict_block(forward, read, (row0, row1, col0, col1), raw.shape[1:],
                                              tile=geometry.tile, margin=geometry.margin, num_classes=num_classes,
                                              batch_size=batch_size, blend=geometry.blend, align=geometry.align)
                if not np.isfinite(probabilities).all():
                    raise InputError(
                        f"predict: {source} gives non-finite probabilities (NaN or infinity) on slice {z}, rows "
                        f"{row0}-{row1}, columns {col0}-{col1}; no predictions were written. If the input there "
                        "is finite, the model overflows: predict with precision fp32, or retrain it"
                    )
                pending.append(writer.submit(write_block, target, z, (row0, row1, col0, col1),
                                             quantise(probabilities, dtype)))
                while len(pending) > MAX_PENDING_WRITES:  # bounded memory: wait for the oldest
                    pending.popleft().result()
        for write in pending:
            write.result()  # raise a write's error here


MAX_PENDING_WRITES = 2


def write_block(target: zarr.Array, z: int, block: tuple[int, int, int, int], values: np.ndarray) -> None:
    row0, row1, col0, col1 = block
    target[:, z, row0:row1, col0:col1] = values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m unetflow.steps.predict", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="model.pt written by the train rule")
    parser.add_argument("data", type=Path, help="data.zarr")
    parser.add_argument("out", type=Path, help="output predictions .zarr")
    cli.add_settings_option(parser, "predict")
    parser.add_argument("--runtime", default="{}", help="its runtime keys (device, batch_size) as JSON")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = its default)")
    cli.add_part_options(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    options = settings.section("predict", {**json.loads(args.settings), **json.loads(args.runtime)})
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(options["device"])
    network, architecture = load_model(args.model, device)
    model = prepare_for_inference(network, device)
    geometry = tile_geometry(architecture, options["tile"])
    if geometry.tile < architecture.margin:
        raise InputError(
            f"predict: tile {options['tile']} px is smaller than the network's margin of {architecture.margin} px, "
            f"so most of every input tile would be context; set predict.tile to at least {architecture.margin} "
            f"(better {4 * architecture.margin} or the slice size)"
        )
    data = io.open_store(args.data)
    raw, voxel_size = io.open_raw(data), ngff.voxel_size_of(data)
    dtype = autocast_dtype(options["precision"], device)
    tta = options["test_time_augmentation"]
    forward = make_forward(model, device, dtype, geometry.tile, test_time_augmentation=tta)
    batch_size = (auto_batch_size(forward, geometry.tile + 2 * geometry.margin, device,
                                  len(tile_grid_for(raw.shape[1:], geometry)))
                  if options["batch_size"] == "auto" else options["batch_size"])
    shape = (architecture.num_classes, *raw.shape)
    log.info("predicting %s with %s on %s: %d slices of %dx%d, tiles %d px (+%d margin%s), batch %d%s, "
             "precision %s", args.data, args.model, device, *raw.shape, geometry.tile, geometry.margin,
             ", blended" if geometry.blend else "", batch_size, ", 8-fold TTA" if tta else "",
             describe_precision(options["precision"], device, dtype))
    attributes = {"model": str(args.model), "tile": geometry.tile, "margin": geometry.margin,
                  "test_time_augmentation": tta, "dtype": options["dtype"],
                  "scale": 255 if options["dtype"] == "uint8" else 1}
    start = time.perf_counter()

    def predict_into(store: zarr.Group, slices: range) -> None:
        predict_stack(raw, io.normalization(raw), store[io.LEVEL0], forward, geometry=geometry,
                      batch_size=batch_size, dtype=options["dtype"], source=f"model {args.model} on {args.data}",
                      slices=slices)
        ngff.write_pyramid(store, slices)

    def create(path: Path) -> zarr.Group:
        return create_output(path, shape, options["dtype"], attributes, voxel_size)

    if args.parts == 1:
        parts.discard_workspace(args.out)
        with io.atomic_store(args.out) as temporary:
            predict_into(create(temporary), range(shape[1]))
    else:
        signature = {"shape": shape, "attributes": attributes, "data": str(args.data),
                     "voxel_size": voxel_size.as_config()}
        store = parts.shared_store(args.out, signature, create)
        slices = parts.slice_range(args.part, args.parts, shape[1])
        predict_into(store, slices)
        parts.mark_done(args.out, args.part, args.parts, slices)
    seconds = time.perf_counter() - start
    log.info("%.1f s, %.2f megapixels/s", seconds, raw.size / seconds / 1e6)


if __name__ == "__main__":
    cli.run(main)

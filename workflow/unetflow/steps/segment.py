"""Segmentation step: per-pixel probabilities to objects, by the method of ``segment.method``
(see :mod:`unetflow.methods.segmenters`): slice by slice with Dask (``--dims 2``), or the
volume as one 3-D segmentation whose object IDs are one set through z (``--dims 3``).

An image no larger than one block (``blocks`` in the config: a slice up to
``plane_edge`` px, a volume up to ``edge`` voxels along each axis) is segmented in one
piece. A larger one is segmented block by block, each with a halo of context, and
objects that cross block faces are joined (:mod:`unetflow.blockwise`), so memory
depends on the block, not on the image. A volume's blocks can be split into jobs over
ranges of block rows in z (``--parts``): each part segments its blocks into a shared
fragments store, and the merge step stitches them and writes the store, the same for
any number of parts.

The store is an OME-Zarr label image (uint32 objects, 0 = background) with the
probabilities' voxel size and a resolution pyramid; the view rule places it in
the labels group of the image it was computed from.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import dask
import numpy as np
import zarr

from .. import blockwise, cli, fragments, io, ngff, parts, settings
from ..config_checks import SEEDED_METHODS, check_watershed
from ..errors import InputError
from ..methods.segmenters import block_settings, segment
from ..parallel import TaskProgress, dask_config

log = logging.getLogger(__name__)


def segment_settings(section: dict, tuned: Path | None) -> dict:
    """The settings to segment with: the section's own (``settings: fixed``) or those the
    tune step chose (``settings: tuned``), without the ``settings`` key."""
    options = dict(section)
    if options.pop("settings") == "fixed":
        return options
    if tuned is None:
        raise InputError("segment.settings is tuned, but no tuned settings were given (--tuned results/tuning/"
                         "<model>/segment.json, written by the tune rule); or set segment.settings: fixed")
    try:
        chosen = json.loads(tuned.read_text())["settings"]
    except (OSError, ValueError, KeyError) as error:
        raise InputError(f"{tuned}: not the tune step's settings ({error}); rerun the tune rule") from None
    checked = settings.section("segment", chosen)
    checked.pop("settings")
    return checked


def segment_slice(probabilities: zarr.Array, target: zarr.Array, z: int, method: str, options: dict) -> int:
    objects = segment(io.foreground_probability(probabilities, z), method, options,
                      predicted=lambda: io.affinity_plane(probabilities, z))
    target[z] = objects
    return int(objects.max())


def segment_large_slice(probabilities: zarr.Array, target: zarr.Array, z: int, grid, method: str, options: dict,
                        workspace: Path) -> int:
    """Segment slice ``z`` block by block (``grid`` over its y and x) into ``target``; its objects' count."""
    plan = block_settings(method, options)

    def read(region):
        return io.foreground_region(probabilities, (slice(z, z + 1), *region))[0]

    def segment_window(window: np.ndarray, cut_faces, region) -> np.ndarray:
        return segment(window, method, plan.options, cut_faces=cut_faces,
                       predicted=lambda: io.affinity_plane(probabilities, z, region))

    return blockwise.segment_image(read, segment_window, grid, workspace / f"slice-{z}", SliceView(target, z),
                                   rule=plan.rule, min_size=plan.min_size, vote_threshold=plan.vote_threshold)


class SliceView:
    """Slice ``z`` of a (z, y, x) array, written to like a (y, x) array."""

    def __init__(self, array: zarr.Array, z: int):
        self.array, self.z = array, z
        self.chunks, self.shards = array.chunks[1:], array.shards and array.shards[1:]

    def __setitem__(self, region: tuple[slice, slice], values: np.ndarray) -> None:
        self.array[(self.z, *region)] = values


def segment_stack(probabilities: zarr.Array, store: zarr.Group, slices: range, method: str, options: dict, *,
                  blocks: dict, workspace: Path) -> list[int]:
    """Objects of every slice in ``slices``: with Dask over slices, or, for slices larger than a
    block, block by block within each slice."""
    target = io.level0_to_write(store)
    grid = blockwise.plane_grid(target.shape[1:], target.chunks[1:], edge=blocks["plane_edge"], halo=blocks["halo"])
    if not grid.single:
        log.info("slices of %dx%d px are segmented in %d blocks of %s px with a halo of %d px", *target.shape[1:],
                 len(grid), "x".join(map(str, grid.block_shape)), blocks["halo"])
        return [segment_large_slice(probabilities, target, z, grid, method, options, workspace) for z in slices]
    tasks = [dask.delayed(segment_slice, pure=False)(probabilities, target, z, method, options,
                                                     dask_key_name=f"segment-slice-{z}") for z in slices]
    with TaskProgress(total=len(tasks), desc="segmented slices", unit="slices", prefix="segment-slice"):
        return list(dask.compute(*tasks))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m unetflow.steps.segment", description=__doc__.splitlines()[0])
    parser.add_argument("predictions", type=Path, help="predictions .zarr (probabilities)")
    parser.add_argument("out", type=Path, help="output segmentation .zarr")
    cli.add_settings_option(parser, "segment")
    parser.add_argument("--tuned", type=Path, help="the tune step's choice (JSON), used when segment.settings is tuned")
    cli.add_blocks_option(parser)
    cli.add_dask_options(parser)
    cli.add_part_options(parser)
    cli.add_dims_option(parser, help="2: each slice on its own; 3: the whole volume as one, object IDs through z")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    options = segment_settings(settings.section("segment", json.loads(args.settings)), args.tuned)
    blocks = settings.section("blocks", json.loads(args.blocks))
    method = options.pop("method")
    if method in SEEDED_METHODS:
        check_watershed(options)
    probabilities = io.open_probabilities(args.predictions)
    voxel_size = ngff.voxel_size_of(io.open_store(args.predictions))
    shape = probabilities.shape[1:]
    attributes = {"method": method, **options}
    if args.dims == 3:
        segment_volume(args, probabilities, shape, method, options, blocks, voxel_size, attributes)
    else:
        segment_slices(args, probabilities, shape, method, options, blocks, voxel_size, attributes)


def segment_slices(args, probabilities, shape, method, options, blocks, voxel_size, attributes) -> None:
    """``--dims 2``: every slice of the stack, or of this part's slice range, into the store."""
    def create(path: Path) -> zarr.Group:
        return ngff.create_segmentation(path, shape, voxel_size, attributes, volume=False,
                                        zarr_format=io.zarr_format_of(probabilities))

    def segment_into(store: zarr.Group, slices: range) -> list[int]:
        with dask_config(args.scheduler, args.workers):  # inside the atomic store: its tasks end before it goes
            counts = segment_stack(probabilities, store, slices, method, options, blocks=blocks,
                                   workspace=parts.workspace(args.out) / f"blocks-{args.part}")
            ngff.write_pyramid(store, slices)
        return counts

    if args.parts == 1:
        parts.discard_workspace(args.out)
        with io.atomic_store(args.out) as temporary:
            counts = segment_into(create(temporary), range(shape[0]))
        parts.discard_workspace(args.out)
    else:
        signature = {"shape": shape, "method": method, "options": options, "predictions": str(args.predictions),
                     "voxel_size": voxel_size.as_config(), "blocks": blocks}
        store = parts.shared_store(args.out, signature, create)
        slices = parts.slice_range(args.part, args.parts, shape[0])
        counts = segment_into(store, slices)
        parts.mark_done(args.out, args.part, args.parts, slices)
    log.info("%s: %d objects per slice on average (%s)", args.out, np.mean(counts) if counts else 0, method)


def segment_volume(args, probabilities, shape, method, options, blocks, voxel_size, attributes) -> None:
    """``--dims 3``: the volume as one 3-D segmentation, in one piece or block by block."""
    sampling = voxel_size.in_x_pixels()
    grid = blockwise.volume_grid(shape, probabilities.chunks[1:], edge=blocks["edge"], halo=blocks["halo"],
                                 sampling=sampling)
    if grid.single and args.parts == 1:
        parts.discard_workspace(args.out)
        with io.atomic_store(args.out) as temporary, dask_config(args.scheduler, args.workers):
            store = ngff.create_segmentation(temporary, shape, voxel_size, attributes, volume=True,
                                             zarr_format=io.zarr_format_of(probabilities))
            objects = segment(io.foreground_volume(probabilities), method, options, sampling=sampling,
                              predicted=lambda: io.affinity_region(probabilities, (slice(0, shape[0]),)))
            io.level0_to_write(store)[:] = objects
            ngff.write_pyramid(store)
        log.info("%s: %d objects in the volume (%s, 3-D, one block)", args.out, objects.max(initial=0), method)
        return
    how = block_settings(method, options)
    plan = fragments.VolumePlan(shape=shape, block_shape=grid.block_shape, halo=grid.halo, rule=how.rule,
                                min_size=how.min_size, voxel_size=voxel_size.as_config(), attributes=attributes,
                                source=str(args.predictions), zarr_format=io.zarr_format_of(probabilities))
    log.info("segmenting the %s volume in %d blocks of %s voxels with a halo of %s (part %d of %d)",
             "x".join(map(str, shape)), len(grid), "x".join(map(str, grid.block_shape)),
             "x".join(map(str, grid.halo)), args.part, args.parts)
    store = fragments.shared(args.out, plan)

    def read(region):
        return io.foreground_region(probabilities, region)

    def segment_window(window: np.ndarray, cut_faces, region) -> np.ndarray:
        return segment(window, method, how.options, sampling=sampling, cut_faces=cut_faces,
                       predicted=lambda: io.affinity_region(probabilities, region))

    numbers = grid.numbers_in(parts.slice_range(args.part, args.parts, grid.grid_shape[0]))
    with dask_config(args.scheduler, args.workers):
        sizes = blockwise.segment_blocks(read, segment_window, grid, store, numbers, vote_threshold=how.vote_threshold)
    fragments.save_sizes(args.out, args.part, args.parts, sizes)
    parts.mark_done(args.out, args.part, args.parts, numbers, "blocks")
    if args.parts == 1:
        blockwise.merge_parts(args.out, 1, scheduler=args.scheduler, workers=args.workers)


if __name__ == "__main__":
    cli.run(main)

"""Segmentation step: per-pixel probabilities to objects, slice by slice with Dask, or
the whole volume at once (``--dims 3``), by the method of ``segment.method`` (see
:mod:`unetflow.methods.segmenters`).

With ``--dims 3`` the volume is one 3-D segmentation: object IDs are one set over the
volume (an object keeps its ID through z), distances are measured with the voxel size,
and the whole volume is held in memory: its float32 foreground probability and, at the
watershed's peak, about 140 bytes a voxel more (see :mod:`unetflow.methods.segmenters`).
A volume cannot be split into jobs over slice ranges without breaking IDs at the cuts,
so ``--parts`` must stay 1 there.

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

from .. import cli, io, ngff, parts, settings
from ..config_checks import check_seed_height
from ..errors import InputError
from ..methods.segmenters import segment
from ..parallel import TaskProgress, dask_config

log = logging.getLogger(__name__)
PARTS_SETTING = "predict.parts"  # the config key that splits segment jobs (rules/common.smk)


def segment_slice(probabilities: zarr.Array, target: zarr.Array, z: int, method: str, options: dict) -> int:
    objects = segment(io.foreground_probability(probabilities, z), method, options)
    target[z] = objects
    return int(objects.max())


def segment_volume(probabilities: zarr.Array, target: zarr.Array, method: str, options: dict,
                   sampling: tuple[float, float, float]) -> int:
    """Segment the whole volume as one 3-D problem into ``target``; the number of objects."""
    objects = segment(io.foreground_volume(probabilities), method, options, sampling=sampling)
    target[:] = objects
    return int(objects.max())


def check_volume_parts(parts_count: int) -> None:
    """A 3-D segmentation is one job: split by slices, objects would change ID at every cut."""
    if parts_count > 1:
        raise InputError(f"segment --dims 3: --parts is {parts_count}, but a volume is segmented as one 3-D "
                         "problem, so its object IDs would break where slice ranges meet; set "
                         f"{PARTS_SETTING}: 1 to segment 3-D data")


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m unetflow.steps.segment", description=__doc__.splitlines()[0])
    parser.add_argument("predictions", type=Path, help="predictions .zarr (probabilities)")
    parser.add_argument("out", type=Path, help="output segmentation .zarr")
    cli.add_settings_option(parser, "segment")
    parser.add_argument("--tuned", type=Path, help="the tune step's choice (JSON), used when segment.settings is tuned")
    cli.add_dask_options(parser)
    cli.add_part_options(parser)
    cli.add_dims_option(parser, help="2: each slice on its own; 3: the whole volume as one, object IDs through z")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.dims == 3:
        check_volume_parts(args.parts)
    options = segment_settings(settings.section("segment", json.loads(args.settings)), args.tuned)
    method = options.pop("method")
    if method == "watershed":
        check_seed_height(options["seeds"], options["h"])
    probabilities = io.open_probabilities(args.predictions)
    voxel_size = ngff.voxel_size_of(io.open_store(args.predictions))
    shape = probabilities.shape[1:]

    def create(path: Path) -> zarr.Group:
        group = io.create_group(path)
        ngff.create_image(group, shape, np.dtype(np.uint32), voxel_size, name="segmentation", downsampling="nearest",
                          attributes={"method": method, **options})
        ngff.mark_label_image(group)
        return group

    def segment_into(store: zarr.Group, slices: range) -> list[int]:
        target = store[io.LEVEL0]
        tasks = [dask.delayed(segment_slice, pure=False)(probabilities, target, z, method, options,
                                                         dask_key_name=f"segment-slice-{z}") for z in slices]
        with dask_config(args.scheduler, args.workers):
            with TaskProgress(total=len(tasks), desc="segmented slices", unit="slices", prefix="segment-slice"):
                counts = list(dask.compute(*tasks))
            ngff.write_pyramid(store, slices)
        return counts

    if args.dims == 3:
        parts.discard_workspace(args.out)
        with io.atomic_store(args.out) as temporary:
            store = create(temporary)
            count = segment_volume(probabilities, store[io.LEVEL0], method, options, voxel_size.in_x_pixels())
            ngff.write_pyramid(store)
        log.info("%s: %d objects in the volume (%s, 3-D)", args.out, count, method)
        return
    if args.parts == 1:
        parts.discard_workspace(args.out)
        with io.atomic_store(args.out) as temporary:
            counts = segment_into(create(temporary), range(shape[0]))
    else:
        signature = {"shape": shape, "method": method, "options": options, "predictions": str(args.predictions),
                     "voxel_size": voxel_size.as_config()}
        store = parts.shared_store(args.out, signature, create)
        slices = parts.slice_range(args.part, args.parts, shape[0])
        counts = segment_into(store, slices)
        parts.mark_done(args.out, args.part, args.parts, slices)
    log.info("%s: %d objects per slice on average (%s)", args.out, np.mean(counts) if counts else 0, method)


if __name__ == "__main__":
    cli.run(main)

"""Step: the U-Net weight map of a labelled dataset (:mod:`unetflow.weight_maps`), computed
with Dask into ``weights.zarr``, and a preview of one slice like the paper's Figure 3.

With ``--dims 2`` (default) every slice gets its own 2-D map. With ``--dims 3``
the map is computed over the whole volume in 3-D, in the store's voxel size.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import dask.array as da
import numpy as np

from .. import cli, io, ngff, settings
from ..config_checks import check_class_weight_source
from ..errors import InputError
from ..parallel import TaskProgress, dask_config, store_progress
from ..plots import pyplot, save_figure
from ..weight_maps import slice_class_weights, weight_map_stack, weight_map_volume

log = logging.getLogger(__name__)


def write_preview(path: Path, image: np.ndarray, classes: np.ndarray, weights: np.ndarray) -> None:
    """Image, labels and weight map of one slice side by side, like the paper's Figure 3."""
    figure, axes = pyplot().subplots(1, 3, figsize=(13, 4.4))
    axes[0].imshow(image, cmap="gray")
    axes[1].imshow(classes, cmap="gray", interpolation="nearest")
    shown = axes[2].imshow(weights, cmap="jet")
    figure.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.04, label="w(x)")
    for axis, title in zip(axes, ("image", "labels (training target)", "weight map")):
        axis.set_title(title)
        axis.axis("off")
    save_figure(figure, path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m unetflow.steps.weights", description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="input data.zarr")
    parser.add_argument("out", type=Path, help="output weights.zarr")
    parser.add_argument("--preview", type=Path, help="PNG of one slice (the middle one with --dims 3), its "
                        "labels and its weight map")
    cli.add_dims_option(parser, help="2: a 2-D map per slice; 3: one 3-D map of the volume, in its voxel size")
    cli.add_settings_option(parser, "weights")
    parser.add_argument("--num-classes", type=int, default=settings.default("num_classes"))
    cli.add_dask_options(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    options = settings.section("weights", json.loads(args.settings))
    w0, sigma = options["w0"], options["sigma"]
    store = io.open_store(args.data)
    classes_array, objects_array = io.open_labels(store, "classes"), io.open_labels(store, "objects")
    if classes_array is None:
        raise InputError(
            f"{args.data}: has no labels, and weight maps need them; add labels to this dataset in the "
            "config or remove it from train_on"
        )
    check_class_weight_source(options["class_weights"], args.dims)
    classes, objects = da.from_zarr(classes_array), da.from_zarr(objects_array)
    voxel_size = ngff.voxel_size_of(store)
    slice_weights = slice_class_weights(classes, args.num_classes, per_slice=options["class_weights"] == "slice")
    attributes = {"w0": w0, "sigma": sigma, "class_weights": options["class_weights"], "dims": args.dims}
    if args.dims == 3:
        spacing = voxel_size.in_x_pixels()
        log.info("3-D weight maps of the %s volume: voxel size %s, spacing (z, y, x) %s in x pixels, w0 %g, "
                 "sigma %g x pixels; class weights (dataset): %s", "x".join(map(str, classes.shape)),
                 voxel_size.describe(), tuple(round(step, 4) for step in spacing), w0, sigma,
                 np.round(slice_weights[0], 4).tolist())
        weights = weight_map_volume(classes, objects, class_weight=slice_weights[0], w0=w0, sigma=sigma,
                                    spacing=spacing)
        progress = TaskProgress(total=math.prod(classes.numblocks), desc="3-D weight maps", unit="chunks",
                                prefix="store-map")
        attributes["spacing"] = list(spacing)
    else:
        log.info("2-D weight maps of %d slices: w0 %g, sigma %g px; class weights (first slice): %s",
                 classes.shape[0], w0, sigma, np.round(slice_weights[0], 4).tolist())
        weights = weight_map_stack(classes, objects, slice_weights=slice_weights, w0=w0, sigma=sigma)
        progress = store_progress(classes.numblocks, "weight maps")
    with io.atomic_store(args.out) as temporary:
        # a volume's weights are a sharded Zarr v3 store (no viewer opens them); a stack's, as its data's
        group = io.create_group(temporary, 3 if args.dims == 3 else io.zarr_format_of(store))
        target = ngff.create_image(group, classes.shape, np.dtype(np.float32), voxel_size, name="weights",
                                   pyramid=False, attributes=attributes, volume=args.dims == 3)
        with dask_config(args.scheduler, args.workers), progress:
            da.store(weights.rechunk(io.write_unit(target)), target, lock=False)  # one task per chunk it writes
    if args.preview:
        shown = classes.shape[0] // 2 if args.dims == 3 else 0
        write_preview(args.preview, io.raw_plane(io.open_raw(store), shown), classes_array[shown],
                      io.open_store(args.out)[io.LEVEL0][shown])


if __name__ == "__main__":
    cli.run(main)

"""Step: a trained U-Net's per-class probabilities of a dataset, overlap-tile, Zarr to Zarr
(:mod:`unetflow.prediction`)."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import zarr

from .. import cli, io, ngff, parts, settings
from ..errors import InputError
from ..inference import (
    auto_batch_size,
    autocast_dtype,
    describe_precision,
    load_weights,
    make_forward,
    prepare_for_inference,
    read_model_file,
    resolve_device,
    tile_geometry,
)
from ..intensity import NormalizedImage, setting_in
from ..methods.architectures import channel_names
from ..prediction import predict_stack, predict_volume
from ..tiling import tile_grid_for

log = logging.getLogger(__name__)



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


def check_applicable(saved: dict, architecture, image: NormalizedImage, args: argparse.Namespace) -> None:
    """The model takes the data's channels, normalised as in its training; else an InputError."""
    if architecture.in_channels != image.channels:
        raise InputError(f"predict: the model {args.model} takes images of {architecture.in_channels} channel(s), but "
                         f"{args.data} has {image.channels}; apply a model trained on such images (or set the "
                         "dataset's channel_axis if its channels were read wrong)")
    trained = setting_in(saved.get("normalization"))
    if trained != image.normalization.setting():
        raise InputError(f"predict: the model {args.model} was trained on images normalised by {trained}, but "
                         f"{args.data} is normalised by {image.normalization.setting()}; set the config's normalize "
                         "to the model's, so the network sees intensities as in its training")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    options = settings.section("predict", {**json.loads(args.settings), **json.loads(args.runtime)})
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(options["device"])
    saved, architecture = read_model_file(args.model)
    network = load_weights(args.model, architecture.network(), saved["state_dict"]).to(device).eval()
    model = prepare_for_inference(network, device, architecture.dims)
    if options["tile"] < architecture.margin:
        raise InputError(
            f"predict: tile {options['tile']} px is smaller than the network's margin of {architecture.margin} px, "
            f"so most of every input tile would be context; set predict.tile to at least {architecture.margin} "
            f"(better {4 * architecture.margin} or the slice size)"
        )
    data = io.open_store(args.data)
    image, voxel_size = NormalizedImage.of(io.open_raw(data)), ngff.voxel_size_of(data)
    check_applicable(saved, architecture, image, args)
    geometry = tile_geometry(architecture, options["tile"], image.shape[3 - architecture.dims:])
    dtype = autocast_dtype(options["precision"], device)
    tta = options["test_time_augmentation"]
    forward = make_forward(model, device, dtype, geometry.tile, num_classes=architecture.num_classes,
                           test_time_augmentation=tta)
    tiles_per_pass = len(tile_grid_for(image.shape[1:], geometry)) if architecture.dims == 2 else len(
        tile_grid_for((geometry.tile[0], *image.shape[1:]), geometry))
    batch_size = (auto_batch_size(forward, geometry.input_shape, device, tiles_per_pass)
                  if options["batch_size"] == "auto" else options["batch_size"])
    shape = (architecture.output_channels, *image.shape)
    log.info("predicting %s with the %d-D model %s on %s: %d slices of %dx%d, tiles %s px (+%s margin%s), batch %d%s, "
             "precision %s", args.data, architecture.dims, args.model, device, *image.shape,
             "x".join(map(str, geometry.tile)), "x".join(map(str, geometry.margin)),
             ", blended" if geometry.blend else "", batch_size, ", 8-fold TTA" if tta else "",
             describe_precision(options["precision"], device, dtype))
    attributes = {"model": str(args.model), "dims": architecture.dims, "tile": list(geometry.tile),
                  "margin": list(geometry.margin),
                  "test_time_augmentation": tta, "dtype": options["dtype"],
                  "scale": 255 if options["dtype"] == "uint8" else 1, "num_classes": architecture.num_classes,
                  "affinity_offsets": [list(offset) for offset in architecture.affinities]}
    start = time.perf_counter()

    predict = predict_stack if architecture.dims == 2 else predict_volume

    def predict_into(store: zarr.Group, slices: range) -> None:
        predict(image, io.level0_to_write(store), forward, geometry=geometry, batch_size=batch_size,
                dtype=options["dtype"], source=f"model {args.model} on {args.data}", slices=slices)
        ngff.write_pyramid(store, slices)

    def create(path: Path) -> zarr.Group:
        return ngff.create_probabilities(path, shape, options["dtype"], attributes, voxel_size,
                                         channel_names=channel_names(architecture),
                                         volume=architecture.dims == 3, zarr_format=io.zarr_format_of(data))

    if args.parts == 1:
        parts.discard_workspace(args.out)
        with io.atomic_store(args.out) as temporary:
            predict_into(create(temporary), range(shape[1]))
    else:
        signature = {"shape": shape, "attributes": attributes, "data": str(args.data),
                     "voxel_size": voxel_size.as_config()}
        store = parts.shared_store(args.out, signature, create)
        # parts of a volume meet at its chunks' (shards') faces, so no two parts write one
        slices = parts.slice_range(args.part, args.parts, shape[1], step=io.write_unit(store[io.LEVEL0])[1])
        predict_into(store, slices)
        parts.mark_done(args.out, args.part, args.parts, slices)
    seconds = time.perf_counter() - start
    log.info("%.1f s, %.2f megapixels/s", seconds, np.prod(image.shape) / seconds / 1e6)


if __name__ == "__main__":
    cli.run(main)

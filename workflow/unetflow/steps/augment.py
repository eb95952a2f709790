"""Training samples by the paper's data augmentation, precomputed with Dask.

Writes ``augmented.zarr`` (``precomputed`` mode) so that a GPU job never waits
on CPU augmentation and augmentation can run on CPU nodes; each sample is
:func:`unetflow.augmentation.augment_sample` (2-D, sizes ``N``) or
:func:`unetflow.augmentation.augment_volume_sample` (3-D, sizes ``ZxYxX``) with
its own seed, the same functions ``online`` mode runs inside the training data
loader's workers. The store's arrays image, labels and weights are
(count, *tile shape), one sample per chunk.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path

import dask
import numcodecs
import numpy as np
import zarr

from .. import cli, io, settings
from ..augmentation import AugmentSettings, OnlineSamples, open_training_arrays
from ..errors import InputError
from ..geometry import Size, format_size, parse_size, sample_shape
from ..parallel import TaskProgress, dask_config
from ..plots import pyplot, save_figure

log = logging.getLogger(__name__)
SAMPLES_PER_TASK = 8
# Samples are a cache read once per epoch: fast lz4 rather than the stores' zstd.
SAMPLE_COMPRESSOR = numcodecs.Blosc(cname="lz4", clevel=1, shuffle=numcodecs.Blosc.SHUFFLE)


def write_samples(samples: OnlineSamples, target: zarr.Group, start: int, stop: int) -> int:
    """Draw samples ``start .. stop-1`` and write them into the store's arrays.

    Every chunk is written, an all-zero label tile too (a missing chunk means a
    damaged store): arrays looked up in a group do not keep their creation config,
    so ``write_empty_chunks`` is set again here.
    """
    arrays = [target[name].with_config(io.ARRAY_CONFIG) for name in io.SAMPLE_ARRAYS]
    for index in range(start, stop):
        for array, tile in zip(arrays, samples[index]):
            array[index] = tile
    return stop - start


def create_sample_store(path: Path, count: int, input_size: Size, output_size: Size, attributes: dict,
                        channels: int = 1) -> zarr.Group:
    """An empty sample store: arrays (count, *tile shape) chunked one sample per chunk, images
    (count, channels, *tile shape); sizes are edges (2-D) or (z, y, x) shapes (3-D), as
    :class:`unetflow.augmentation.OnlineSamples` takes."""
    group = io.create_group(path)
    for name, dtype in io.SAMPLE_ARRAYS.items():
        shape = (channels, *sample_shape(input_size)) if name == "image" else sample_shape(output_size)
        group.create_array(name, shape=(count, *shape), chunks=(1, *shape), dtype=dtype,
                           compressors=SAMPLE_COMPRESSOR, fill_value=0, config=io.ARRAY_CONFIG)
    group.attrs["unetflow"] = attributes
    return group


def middle_plane(tile: np.ndarray) -> np.ndarray:
    """A 2-D tile itself, or the middle z plane of a 3-D one (the input's and output's coincide)."""
    return tile[tile.shape[0] // 2] if tile.ndim == 3 else tile


def write_preview(path: Path, store: zarr.Group, count: int = 6) -> None:
    """A grid of samples: image tiles (output region framed), their labels and weights;
    the middle z plane of 3-D samples."""
    plt = pyplot()
    count = min(count, store["image"].shape[0])
    figure, axes = plt.subplots(3, count, figsize=(2.4 * count, 7.4), squeeze=False)
    height, width = store["labels"].shape[-2:]
    top, left = ((store["image"].shape[axis] - store["labels"].shape[axis]) / 2 for axis in (-2, -1))
    for column in range(count):
        axes[0, column].imshow(middle_plane(store["image"][column][0]), cmap="gray")  # the first channel
        axes[0, column].add_patch(plt.Rectangle((left - 0.5, top - 0.5), width, height, fill=False, color="y"))
        axes[1, column].imshow(middle_plane(store["labels"][column]), cmap="gray", interpolation="nearest")
        axes[2, column].imshow(middle_plane(store["weights"][column]), cmap="jet")
        axes[0, column].set_title(f"sample {column}")
    for axis in axes.ravel():
        axis.axis("off")
    for row, name in enumerate(("image (output region framed)", "labels", "weights")):
        axes[row, 0].text(-0.1, 0.5, name, rotation=90, va="center", ha="right", transform=axes[row, 0].transAxes)
    save_figure(figure, path, dpi=70)


def precompute(samples: OnlineSamples, out: Path, *, scheduler: str, workers: int) -> None:
    """Write every sample to ``out`` with Dask, one task per ``SAMPLES_PER_TASK`` samples."""
    attributes = {"settings": asdict(samples.settings), "seed": samples.seed,
                  "input_size": samples.input_size, "output_size": samples.output_size,  # int, or [z, y, x]
                  "sources": [str(p) for p in samples.data], "normalization": samples.normalization}
    with io.atomic_store(out) as temporary:
        target = create_sample_store(temporary, len(samples), samples.input_size, samples.output_size, attributes,
                                     samples.channels)
        starts = range(0, len(samples), SAMPLES_PER_TASK)
        tasks = [
            dask.delayed(write_samples, pure=False)(
                samples, target, start, min(start + SAMPLES_PER_TASK, len(samples)),
                dask_key_name=f"augment-samples-{start}",
            )
            for start in starts
        ]
        progress = TaskProgress(total=len(tasks), desc="augmented samples",
                                unit=f"batches of {SAMPLES_PER_TASK}", prefix="augment-samples")
        with dask_config(scheduler, workers), progress:
            dask.compute(*tasks)


def sample_sizes(input_text: str, output_text: str) -> tuple[Size, Size]:
    """``--input-size`` and ``--output-size``, both 2-D or both 3-D, the output within the input."""
    input_size, output_size = parse_size(input_text, "--input-size"), parse_size(output_text, "--output-size")
    input_shape, output_shape = sample_shape(input_size), sample_shape(output_size)
    if len(input_shape) != len(output_shape) or any(o > i for i, o in zip(input_shape, output_shape)):
        raise InputError(f"--input-size {input_text} --output-size {output_text}: give both as N (2-D) or both "
                         "as ZxYxX (3-D), the output no larger than the input in any axis")
    return input_size, output_size


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m unetflow.steps.augment", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="data.zarr of each dataset")
    parser.add_argument("--weights", type=Path, nargs="+", required=True, help="weights.zarr of each dataset")
    parser.add_argument("--out", type=Path, required=True, help="output augmented.zarr")
    parser.add_argument("--preview", type=Path)
    parser.add_argument("--input-size", required=True, help="image tile: N (2-D) or ZxYxX (3-D), e.g. 44x92x92")
    parser.add_argument("--output-size", required=True, help="label and weight tile: N or ZxYxX")
    cli.add_settings_option(parser, "augment")
    cli.add_dask_options(parser)
    args = parser.parse_args(argv)
    args.input_size, args.output_size = sample_sizes(args.input_size, args.output_size)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if len(args.data) != len(args.weights):
        raise InputError("augment: give one --weights store per --data store")
    options = settings.section("augment", json.loads(args.settings))
    for data, weights in zip(args.data, args.weights):
        open_training_arrays(data, weights)  # fail early, naming the store
    samples = OnlineSamples(args.data, args.weights, settings=AugmentSettings.from_config(options["transforms"]),
                            input_size=args.input_size, output_size=args.output_size, seed=options["seed"],
                            length=options["samples"])
    log.info("%d samples of %s px (labels %s px)", options["samples"],
             format_size(args.input_size), format_size(args.output_size))
    precompute(samples, args.out, scheduler=args.scheduler, workers=args.workers)
    if args.preview:
        write_preview(args.preview, zarr.open_group(str(args.out), mode="r"))


if __name__ == "__main__":
    cli.run(main)

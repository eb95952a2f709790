"""Training samples by the paper's data augmentation, precomputed with Dask.

Writes ``augmented.zarr`` (``precomputed`` mode) so that a GPU job never waits
on CPU augmentation and augmentation can run on CPU nodes; each sample is
:func:`unetflow.augmentation.augment_sample` with its own seed, the same
function ``online`` mode runs inside the training data loader's workers.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path

import dask
import numcodecs
import zarr

from .. import cli, io, settings
from ..augmentation import AugmentSettings, OnlineSamples, open_training_arrays
from ..errors import InputError
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


def create_sample_store(path: Path, count: int, input_size: int, output_size: int, attributes: dict) -> zarr.Group:
    group = io.create_group(path)
    for name, dtype in io.SAMPLE_ARRAYS.items():
        size = input_size if name == "image" else output_size
        group.create_array(name, shape=(count, size, size), chunks=(1, size, size), dtype=dtype,
                           compressors=SAMPLE_COMPRESSOR, fill_value=0, config=io.ARRAY_CONFIG)
    group.attrs["unetflow"] = attributes
    return group


def write_preview(path: Path, store: zarr.Group, count: int = 6) -> None:
    """A grid of samples: image tiles (output region framed), their labels and weights."""
    plt = pyplot()
    count = min(count, store["image"].shape[0])
    figure, axes = plt.subplots(3, count, figsize=(2.4 * count, 7.4), squeeze=False)
    border = (store["image"].shape[1] - store["labels"].shape[1]) / 2
    for column in range(count):
        axes[0, column].imshow(store["image"][column], cmap="gray")
        size = store["labels"].shape[1]
        axes[0, column].add_patch(plt.Rectangle((border - 0.5, border - 0.5), size, size, fill=False, color="y"))
        axes[1, column].imshow(store["labels"][column], cmap="gray", interpolation="nearest")
        axes[2, column].imshow(store["weights"][column], cmap="jet")
        axes[0, column].set_title(f"sample {column}")
    for axis in axes.ravel():
        axis.axis("off")
    for row, name in enumerate(("image (output region framed)", "labels", "weights")):
        axes[row, 0].text(-0.1, 0.5, name, rotation=90, va="center", ha="right", transform=axes[row, 0].transAxes)
    save_figure(figure, path, dpi=70)


def precompute(samples: OnlineSamples, out: Path, *, scheduler: str, workers: int) -> None:
    """Write every sample to ``out`` with Dask, one task per ``SAMPLES_PER_TASK`` samples."""
    attributes = {"settings": asdict(samples.settings), "seed": samples.seed,
                  "input_size": samples.input_size, "output_size": samples.output_size,
                  "sources": [str(p) for p in samples.data]}
    with io.atomic_store(out) as temporary:
        target = create_sample_store(temporary, len(samples), samples.input_size, samples.output_size, attributes)
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m unetflow.steps.augment", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="data.zarr of each dataset")
    parser.add_argument("--weights", type=Path, nargs="+", required=True, help="weights.zarr of each dataset")
    parser.add_argument("--out", type=Path, required=True, help="output augmented.zarr")
    parser.add_argument("--preview", type=Path)
    parser.add_argument("--input-size", type=int, required=True)
    parser.add_argument("--output-size", type=int, required=True)
    cli.add_settings_option(parser, "augment")
    cli.add_dask_options(parser)
    return parser.parse_args(argv)


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
    log.info("%d samples of %d px (labels %d px)", options["samples"], args.input_size, args.output_size)
    precompute(samples, args.out, scheduler=args.scheduler, workers=args.workers)
    if args.preview:
        write_preview(args.preview, zarr.open_group(str(args.out), mode="r"))


if __name__ == "__main__":
    cli.run(main)

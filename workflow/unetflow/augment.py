"""Training samples by the paper's data augmentation, precomputed with Dask or on the fly.

Sample ``i`` draws everything (slice, position, flips, rotation, elastic
deformation, gray values) from its own generator seeded with ``(seed, i)``,
so it is the same whatever the number of workers or the chunking. Each sample
is an input tile of the normalised image (the model's valid input size) and
the matching output-size tiles of the labels and the weight map.

``precomputed`` mode writes ``augmented.zarr`` so that a GPU job never waits
on CPU augmentation and augmentation can run on CPU nodes; ``online`` mode
uses :class:`OnlineSamples`, the same function, inside the training data
loader's workers.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import dask
import numcodecs
import numpy as np
import zarr

from . import cli, io
from .errors import InputError
from .parallel import TaskProgress, dask_config
from .plots import pyplot, save_figure
from .transforms import (
    PAPER_ELASTIC_GRID,
    PAPER_ELASTIC_SIGMA,
    Geometry,
    add_noise,
    adjust_gray_values,
    elastic_displacement,
    transform_planes,
)

log = logging.getLogger(__name__)
SAMPLES_PER_TASK = 8
# Samples are a cache read once per epoch: fast lz4 rather than the stores' zstd.
SAMPLE_COMPRESSOR = numcodecs.Blosc(cname="lz4", clevel=1, shuffle=numcodecs.Blosc.SHUFFLE)


@dataclass(frozen=True)
class AugmentSettings:
    """Probability and magnitude of each transform (the config's ``augment.transforms``)."""

    elastic_probability: float = 1.0
    elastic_grid: int = PAPER_ELASTIC_GRID
    elastic_sigma: float = PAPER_ELASTIC_SIGMA
    rotation_probability: float = 1.0
    rotation_degrees: float = 180.0
    flip_probability: float = 0.5
    gray_probability: float = 1.0
    brightness: float = 0.1
    contrast: float = 0.1
    gamma: float = 0.1
    noise_probability: float = 0.0
    noise_std: float = 0.05
    interpolation: str = "cubic"

    @classmethod
    def from_config(cls, transforms: dict[str, Any]) -> AugmentSettings:
        """From the config's nested form, e.g. ``{"elastic": {"probability": 1, "sigma": 10}}``."""
        flat = {
            RENAMED.get(f"{group}_{key}", f"{group}_{key}"): value
            for group, options in transforms.items()
            if isinstance(options, dict)
            for key, value in options.items()
        }
        if "interpolation" in transforms:
            flat["interpolation"] = transforms["interpolation"]
        unknown = sorted(set(flat) - {field.name for field in fields(cls)})
        if unknown:
            raise InputError(f"augment.transforms: unknown settings {unknown}; see the config schema")
        return cls(**flat)


RENAMED = {
    "rotation_max_degrees": "rotation_degrees",
    "gray_brightness": "brightness",
    "gray_contrast": "contrast",
    "gray_gamma": "gamma",
}


def draw_geometry(
    rng: np.random.Generator, plane_shape: tuple[int, int], input_size: int, settings: AugmentSettings
) -> Geometry:
    """A random crop position, flips, rotation and elastic deformation for one sample."""
    half_pixel = 0.5 * ((input_size - 1) % 2)  # even tiles are centred between pixels
    center = (rng.integers(0, plane_shape[0]) + half_pixel, rng.integers(0, plane_shape[1]) + half_pixel)
    flips = rng.random(2) < settings.flip_probability
    rotate = rng.random() < settings.rotation_probability and settings.rotation_degrees > 0
    angle = np.deg2rad(rng.uniform(-settings.rotation_degrees, settings.rotation_degrees)) if rotate else 0.0
    displacement = None
    if rng.random() < settings.elastic_probability and settings.elastic_sigma > 0:
        displacement = elastic_displacement(
            input_size, rng, grid=settings.elastic_grid, sigma=settings.elastic_sigma
        )
    return Geometry(center, float(angle), bool(flips[0]), bool(flips[1]), displacement)


def augment_sample(
    image: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    rng: np.random.Generator,
    *,
    settings: AugmentSettings,
    input_size: int,
    output_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One augmented sample from one slice.

    Parameters
    ----------
    image
        Normalised float32 slice.
    labels, weights
        The slice's class labels and weight map.
    rng
        The sample's own generator.
    settings
        Transform probabilities and magnitudes.
    input_size, output_size
        Edge lengths of the image tile and of the label/weight tiles (same centre).

    Returns
    -------
    image_tile, label_tile, weight_tile
        float32 (input_size²), uint8 and float32 (output_size²).
    """
    geometry = draw_geometry(rng, image.shape, input_size, settings)
    image_order = 3 if settings.interpolation == "cubic" else 1
    (image_tile,) = transform_planes([image], [image_order], geometry, input_size)
    label_tile, weight_tile = transform_planes([labels, weights], [0, 1], geometry, output_size)
    if rng.random() < settings.gray_probability:
        image_tile = adjust_gray_values(
            image_tile, rng, brightness=settings.brightness, contrast=settings.contrast, gamma=settings.gamma
        )
    if rng.random() < settings.noise_probability and settings.noise_std > 0:
        image_tile = add_noise(image_tile, rng, std=settings.noise_std)
    return image_tile.astype(np.float32), label_tile.astype(np.uint8), weight_tile.astype(np.float32)


class OnlineSamples:
    """Map-style dataset of augmented samples drawn on the fly (``online`` mode).

    ``samples[i]`` equals sample ``i`` of the precomputed store for the same
    settings and seed. Stores are opened lazily, so the object can be sent to
    data-loader worker processes.
    """

    def __init__(self, data: list[Path], weights: list[Path], *, settings: AugmentSettings,
                 input_size: int, output_size: int, seed: int, length: int):
        self.data, self.weights = [Path(p) for p in data], [Path(p) for p in weights]
        self.settings, self.input_size, self.output_size = settings, input_size, output_size
        self.seed, self.length = seed, length
        self._stores: list[tuple[zarr.Array, zarr.Array, zarr.Array, dict]] | None = None

    def __len__(self) -> int:
        return self.length

    def _open(self) -> list[tuple[zarr.Array, zarr.Array, zarr.Array, dict]]:
        if self._stores is None:
            self._stores = [open_training_arrays(d, w) for d, w in zip(self.data, self.weights)]
        return self._stores

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        stores = self._open()
        raw, classes, weights, stats = stores[rng.integers(len(stores))]
        z = int(rng.integers(raw.shape[0]))
        return augment_sample(
            io.normalize(raw[z], stats), classes[z], weights[z], rng,
            settings=self.settings, input_size=self.input_size, output_size=self.output_size,
        )


def open_training_arrays(data: Path, weights: Path) -> tuple[zarr.Array, zarr.Array, zarr.Array, dict]:
    """Image, class labels, weight map and normalisation of one labelled dataset."""
    store = io.open_store(data)
    classes = io.open_labels(store, "classes")
    if classes is None:
        raise InputError(f"{data}: has no labels; training samples need them: add labels to the dataset")
    raw = io.open_raw(store)
    return raw, classes, io.checked_array(io.open_store(weights), "weights"), io.normalization(raw)


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
    parser = argparse.ArgumentParser(prog="python -m unetflow.augment", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="data.zarr of each dataset")
    parser.add_argument("--weights", type=Path, nargs="+", required=True, help="weights.zarr of each dataset")
    parser.add_argument("--out", type=Path, required=True, help="output augmented.zarr")
    parser.add_argument("--preview", type=Path)
    parser.add_argument("--samples", type=int, required=True)
    parser.add_argument("--input-size", type=int, required=True)
    parser.add_argument("--output-size", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", default="{}", help="augment.transforms of the config, as JSON")
    parser.add_argument("--scheduler", default="threads")
    parser.add_argument("--workers", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if len(args.data) != len(args.weights):
        raise InputError("augment: give one --weights store per --data store")
    settings = AugmentSettings.from_config(json.loads(args.settings))
    for data, weights in zip(args.data, args.weights):
        open_training_arrays(data, weights)  # fail early, naming the store
    samples = OnlineSamples(args.data, args.weights, settings=settings, input_size=args.input_size,
                            output_size=args.output_size, seed=args.seed, length=args.samples)
    log.info("%d samples of %d px (labels %d px)", args.samples, args.input_size, args.output_size)
    precompute(samples, args.out, scheduler=args.scheduler, workers=args.workers)
    if args.preview:
        write_preview(args.preview, zarr.open_group(str(args.out), mode="r"))


if __name__ == "__main__":
    cli.run(main)

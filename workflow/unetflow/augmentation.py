"""The paper's data augmentation of one training sample, and samples drawn on the fly.

Sample ``i`` draws everything (slice, position, flips, rotation, elastic
deformation, gray values) from its own generator seeded with ``(seed, i)``,
so it is the same whatever the number of workers or the chunking. Each sample
is an input tile of the normalised image (the model's valid input size) and
the matching output-size tiles of the labels and the weight map. The augment
step writes such samples to a store; in ``online`` mode the training data
loader draws them with :class:`OnlineSamples`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from . import io, settings
from .errors import InputError
from .transforms import (
    Geometry,
    add_noise,
    adjust_gray_values,
    elastic_displacement,
    transform_planes,
)


@dataclass(frozen=True)
class AugmentSettings:
    """Probability and magnitude of each transform (the config's ``augment.transforms``, flat)."""

    elastic_probability: float
    elastic_grid: int
    elastic_sigma: float
    rotation_probability: float
    rotation_degrees: float
    flip_probability: float
    gray_probability: float
    brightness: float
    contrast: float
    gamma: float
    noise_probability: float
    noise_std: float
    interpolation: str

    @classmethod
    def from_config(cls, transforms: dict[str, Any]) -> AugmentSettings:
        """From the config's nested form, e.g. ``{"elastic": {"probability": 1, "sigma": 10}}``;
        missing keys take the schema's defaults (the paper's where it gives one)."""
        transforms = settings.section("augment", {"transforms": transforms})["transforms"]
        flat = {
            RENAMED.get(f"{group}_{key}", f"{group}_{key}"): value
            for group, options in transforms.items()
            if isinstance(options, dict)
            for key, value in options.items()
        }
        flat["interpolation"] = transforms["interpolation"]
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
    return raw, classes, io.checked_array(io.open_store(weights), io.LEVEL0), io.normalization(raw)

"""The paper's data augmentation of one training sample, and samples drawn on the fly.

Sample ``i`` draws everything (slice, position, flips, rotation, elastic
deformation, gray values) from its own generator seeded with ``(seed, i)``,
so it is the same whatever the number of workers or the chunking. Each sample
is an input tile of the normalised image (the model's valid input size) and
the matching output-size tiles of the labels and the weight map: 2-D tiles of
one slice (sizes given as ints), or 3-D tiles of the whole (z, y, x) volume
(sizes given as (z, y, x) shapes). The augment step writes such samples to a
store; in ``online`` mode the training data loader draws them with
:class:`OnlineSamples`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from . import io, ngff, settings
from .intensity import NormalizedImage
from .errors import InputError
from .geometry import Size, sample_shape
from .transforms import (
    Geometry,
    add_noise,
    adjust_gray_values,
    elastic_displacement,
    transform_planes,
)
from .transforms3d import VolumeGeometry, elastic_displacement_3d, transform_volumes


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


MAX_DRAWS = 100  # tiles drawn for one sample before the labels are called too sparse

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
        Normalised float32 slice, (c, y, x).
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
        float32 (c, input_size, input_size), uint8 and float32 (output_size²).
    """
    geometry = draw_geometry(rng, image.shape[1:], input_size, settings)
    image_tile = np.stack(transform_planes(list(image), [image_order(settings)] * len(image), geometry, input_size))
    label_tile, weight_tile = transform_planes([labels, weights], [0, 1], geometry, output_size)
    image_tile = change_gray_values(image_tile, rng, settings)
    return image_tile.astype(np.float32), label_tile.astype(np.uint8), weight_tile.astype(np.float32)


def image_order(settings: AugmentSettings) -> int:
    """Spline order of the image's interpolation: 3 (cubic) or 1 (linear)."""
    return 3 if settings.interpolation == "cubic" else 1


def change_gray_values(image_tile: np.ndarray, rng: np.random.Generator, settings: AugmentSettings) -> np.ndarray:
    """The random gray-value change and noise of one image tile (2-D or 3-D)."""
    if rng.random() < settings.gray_probability:
        image_tile = adjust_gray_values(
            image_tile, rng, brightness=settings.brightness, contrast=settings.contrast, gamma=settings.gamma
        )
    if rng.random() < settings.noise_probability and settings.noise_std > 0:
        image_tile = add_noise(image_tile, rng, std=settings.noise_std)
    return image_tile


def draw_volume_geometry(
    rng: np.random.Generator, volume_shape: tuple[int, int, int], input_shape: tuple[int, int, int],
    settings: AugmentSettings, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> VolumeGeometry:
    """A random position in the volume, flips of each axis, rotation in the y-x plane and
    elastic deformation in all three axes for one 3-D sample.

    The elastic ``sigma`` is in x pixels; ``spacing`` (the voxel size in x pixels,
    ``VoxelSize.in_x_pixels``) turns it into voxels per axis, so that voxels twice as long
    in z are displaced half as many slices: the same physical warp on every axis."""
    center = tuple(
        rng.integers(0, length) + 0.5 * ((edge - 1) % 2)  # even edges are centred between voxels
        for length, edge in zip(volume_shape, input_shape)
    )
    flips = rng.random(3) < settings.flip_probability
    rotate = rng.random() < settings.rotation_probability and settings.rotation_degrees > 0
    angle = np.deg2rad(rng.uniform(-settings.rotation_degrees, settings.rotation_degrees)) if rotate else 0.0
    displacement = None
    if rng.random() < settings.elastic_probability and settings.elastic_sigma > 0:
        sigma = tuple(settings.elastic_sigma / step for step in spacing)
        displacement = elastic_displacement_3d(input_shape, rng, grid=settings.elastic_grid, sigma=sigma)
    return VolumeGeometry(
        tuple(float(c) for c in center), float(angle), tuple(bool(flip) for flip in flips), displacement
    )


def augment_volume_sample(
    image: Any,
    labels: Any,
    weights: Any,
    rng: np.random.Generator,
    *,
    settings: AugmentSettings,
    input_shape: tuple[int, int, int],
    output_shape: tuple[int, int, int],
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One augmented 3-D sample from one volume.

    Parameters
    ----------
    image
        (c, z, y, x) normalised image: an array, or a lazy
        :class:`~unetflow.intensity.NormalizedImage` of a Zarr array (its ``shape`` is (z, y, x));
        only the window the sample needs is read.
    labels, weights
        (z, y, x) class labels and weight map, array-likes of the image's shape.
    rng
        The sample's own generator.
    settings
        Transform probabilities and magnitudes; rotation turns the y-x plane only.
    input_shape, output_shape
        (z, y, x) shapes of the image tile and of the label/weight tiles (same centre).
    spacing
        The voxel size in x pixels (``VoxelSize.in_x_pixels``): the elastic deformation's
        sigma, in x pixels, is the same physical length on every axis.

    Returns
    -------
    image_tile, label_tile, weight_tile
        float32 (c, ``input_shape``), uint8 and float32 (``output_shape``).
    """
    channels = [image.channel(index) for index in range(image.channels)] if isinstance(image, NormalizedImage) \
        else list(image)
    geometry = draw_volume_geometry(rng, tuple(channels[0].shape), input_shape, settings, spacing)
    image_tile = np.stack(transform_volumes(channels, [image_order(settings)] * len(channels), geometry, input_shape))
    label_tile, weight_tile = transform_volumes([labels, weights], [0, 1], geometry, output_shape)
    image_tile = change_gray_values(image_tile, rng, settings)
    return image_tile.astype(np.float32), label_tile.astype(np.uint8), weight_tile.astype(np.float32)


def sample_dims(input_size: Size, output_size: Size) -> int:
    """2 when both sizes are edges (ints), 3 when both are (z, y, x) shapes."""
    edges = [isinstance(size, (int, np.integer)) for size in (input_size, output_size)]
    if all(edges):
        return 2
    if not any(edges) and len(input_size) == len(output_size) == 3:
        return 3
    raise ValueError(
        f"sample sizes {input_size} -> {output_size}: give two ints (2-D tiles) or two (z, y, x) shapes (3-D tiles)"
    )


class OnlineSamples:
    """Map-style dataset of augmented samples drawn on the fly (``online`` mode).

    ``samples[i]`` equals sample ``i`` of the precomputed store for the same
    settings and seed. Stores are opened lazily, so the object can be sent to
    data-loader worker processes.

    ``input_size`` and ``output_size`` are ints for 2-D samples (square tiles
    of one slice, :func:`augment_sample`) or (z, y, x) shapes for 3-D samples
    (tiles of the whole volume, :func:`augment_volume_sample`).
    """

    def __init__(self, data: list[Path], weights: list[Path], *, settings: AugmentSettings,
                 input_size: Size, output_size: Size, seed: int, length: int):
        if sample_dims(input_size, output_size) == 3:
            input_size, output_size = tuple(map(int, input_size)), tuple(map(int, output_size))
        self.data, self.weights = [Path(p) for p in data], [Path(p) for p in weights]
        self.settings, self.input_size, self.output_size = settings, input_size, output_size
        self.seed, self.length = seed, length
        self._stores: list[tuple[NormalizedImage, zarr.Array, zarr.Array, tuple[float, float, float]]] | None = None

    @property
    def dims(self) -> int:
        """2 for square tiles of one slice, 3 for (z, y, x) tiles of the volume."""
        return sample_dims(self.input_size, self.output_size)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of an image tile: (size, size) in 2-D, (z, y, x) in 3-D."""
        return sample_shape(self.input_size)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of a label or weight tile."""
        return sample_shape(self.output_size)

    def __len__(self) -> int:
        return self.length

    @property
    def channels(self) -> int:
        """The image channels of every dataset (they must agree: one network takes them all)."""
        counts = {path: image.channels for path, (image, *_) in zip(self.data, self._open())}
        if len(set(counts.values())) > 1:
            listed = ", ".join(f"{path} {count}" for path, count in counts.items())
            raise InputError(f"the training datasets have different numbers of channels ({listed}); one network "
                             "takes one number of channels: train a model per kind of image")
        return next(iter(counts.values()))

    @property
    def normalization(self) -> dict:
        """The normalisation setting of every dataset (they agree: the config has one), with the
        statistics (``offset``, ``scale`` per channel) of the first where they are per dataset: what
        a bioimage.io export fixes."""
        images = [image for image, *_ in self._open()]
        found = {json.dumps(image.normalization.setting(), sort_keys=True) for image in images}
        if len(found) > 1:
            raise InputError(f"{self.data}: the training datasets were normalised differently ({sorted(found)}); "
                             "rerun ingest for them (the workflow normalises every dataset by the config's normalize)")
        return images[0].normalization.recorded()

    def _open(self) -> list[tuple[NormalizedImage, zarr.Array, zarr.Array, tuple[float, float, float]]]:
        """Per dataset: normalised image, class labels, weight map and voxel size in x pixels."""
        if self._stores is None:
            self._stores = [(*open_training_arrays(d, w), ngff.voxel_size_of(io.open_store(d)).in_x_pixels())
                            for d, w in zip(self.data, self.weights)]
        return self._stores

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        for _ in range(MAX_DRAWS):  # sparse annotations: a tile with no known label teaches nothing
            sample = self._draw(rng)
            if io.known(sample[1]).any():
                return sample
        raise InputError(f"training sample {index}: none of {MAX_DRAWS} random tiles of {self.data} holds a labelled "
                         "pixel: the labels are (almost) all unknown; annotate more pixels, or check the datasets' "
                         "ignore_label and labelled_slices")

    def _draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        stores = self._open()
        image, classes, weights, spacing = stores[rng.integers(len(stores))]
        if self.dims == 3:
            return augment_volume_sample(
                image, classes, weights, rng, settings=self.settings,
                input_shape=self.input_size, output_shape=self.output_size, spacing=spacing,
            )
        z = int(rng.integers(image.shape[0]))
        return augment_sample(
            image[z], classes[z], weights[z], rng,
            settings=self.settings, input_size=self.input_size, output_size=self.output_size,
        )


def open_training_arrays(data: Path, weights: Path) -> tuple[NormalizedImage, zarr.Array, zarr.Array]:
    """Normalised image, class labels and weight map of one labelled dataset."""
    store = io.open_store(data)
    classes = io.open_labels(store, "classes")
    if classes is None:
        raise InputError(f"{data}: has no labels; training samples need them: add labels to the dataset")
    return NormalizedImage.of(io.open_raw(store)), classes, io.checked_array(io.open_store(weights), io.LEVEL0)

"""Random geometric transforms of the paper's data augmentation for volumes, as pure functions.

The 3-D counterpart of :mod:`unetflow.transforms`: one geometric transform
(crop position, a flip of each axis, rotation in the y-x plane and the paper's
elastic deformation, here on a coarse grid in all three axes) is built as a map
of source coordinates in the (z, y, x) volume and applied to the image (cubic or
linear), the labels (nearest neighbour) and the weights (linear) alike. Where the
map reaches outside the volume the volume is mirrored, as in the overlap-tile
strategy. z is never rotated into y or x: voxels are often anisotropic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from .mirror import mirrored_window
from .transforms import SPLINE_HALO, cubic_weights

Shape = tuple[int, int, int]


@dataclass(frozen=True)
class VolumeGeometry:
    """One 3-D sample's geometric transform: where it sits and how it is turned and warped."""

    center: tuple[float, float, float]  # volume coordinates (z, y, x) of the tile centre
    rotation: float = 0.0  # radians, in the y-x plane
    flips: tuple[bool, bool, bool] = (False, False, False)  # of the z, y and x axes
    displacement: np.ndarray | None = None  # (3, *shape) in voxels for the largest tile, or None

    def is_integer_shift(self, shape: Shape) -> bool:
        """True when a ``shape`` tile is a plain crop: no rotation or warp, voxel-aligned."""
        return (
            self.rotation == 0.0
            and self.displacement is None
            and all(float(c - (edge - 1) / 2).is_integer() for c, edge in zip(self.center, shape))
        )


def elastic_displacement_3d(shape: Shape, rng: np.random.Generator, *, grid: int,
                            sigma: float | tuple[float, float, float]) -> np.ndarray:
    """The paper's elastic deformation in 3-D: random vectors on a coarse ``grid``³ grid,
    Gaussian with ``sigma`` voxels standard deviation in each of the three components (or
    one per component, z, y, x), interpolated with a tricubic spline to every voxel of a
    ``shape`` tile.

    Returns
    -------
    numpy.ndarray
        (3, z, y, x) displacement field in voxels, components in (z, y, x) order.

    Notes
    -----
    The tensor-product spline is applied one axis at a time, ``W_z``, ``W_y``
    and ``W_x`` being :func:`unetflow.transforms.cubic_weights`; the last,
    full-size step is a sum of outer products rather than a BLAS matmul, whose
    threads would contend with Dask's.
    """
    control = rng.normal(0.0, 1.0, size=(3, grid, grid, grid)) * np.reshape(np.broadcast_to(sigma, 3), (3, 1, 1, 1))
    z_weights, y_weights, x_weights = (cubic_weights(edge, grid) for edge in shape)
    partial = np.einsum("zk,ckmn->czmn", z_weights, control)
    partial = np.einsum("ym,czmn->czyn", y_weights, partial)  # (3, z, y, grid): small
    field = np.zeros((3, *shape))
    for n in range(grid):
        field += partial[..., n, None] * x_weights[:, n]
    return field


def volume_source_coordinates(geometry: VolumeGeometry, shape: Shape) -> np.ndarray:
    """(3, *shape) volume coordinates from which each voxel of a ``shape`` tile is sampled.

    Offsets from the tile centre are flipped per axis, turned in the y-x plane,
    displaced by the central ``shape`` part of the elastic field and moved to
    the centre.
    """
    offsets = [np.arange(edge, dtype=np.float64) - (edge - 1) / 2.0 for edge in shape]
    offsets = [-offset if flip else offset for offset, flip in zip(offsets, geometry.flips)]
    z, y, x = np.meshgrid(*offsets, indexing="ij")
    cos, sin = np.cos(geometry.rotation), np.sin(geometry.rotation)
    coordinates = np.stack([z, cos * y - sin * x, sin * y + cos * x])
    if geometry.displacement is not None:
        borders = [(field_edge - edge) // 2 for field_edge, edge in zip(geometry.displacement.shape[1:], shape)]
        coordinates += geometry.displacement[
            (slice(None), *(slice(border, border + edge) for border, edge in zip(borders, shape)))
        ]
    for axis in range(3):
        coordinates[axis] += geometry.center[axis]
    return coordinates


def sample_volumes(volumes: list[Any], orders: list[int], coordinates: np.ndarray) -> list[np.ndarray]:
    """Sample each (z, y, x) volume at ``coordinates`` with its spline order (0, 1 or 3).

    Only the mirrored window the coordinates touch, plus a halo for the cubic
    prefilter, is read and filtered, so the cost does not grow with the volume.
    Nearest-neighbour samples keep the volume's dtype; the others are float32.

    Notes
    -----
    ``scipy.ndimage.map_coordinates`` is adequate here, where 2-D needed its own
    kernel: it does any dimension and order, a whole sample of 44 x 140 x 140
    voxels (862,400 points, the prefilter and cubic interpolation of the image
    dominating) takes about 0.3-0.4 s on one core, and it releases the GIL, so Dask
    threads augment samples in parallel. The window already holds the mirrored
    data and the coordinates stay ``SPLINE_HALO`` voxels inside it, so the
    window's own boundary mode does not reach the result (for cubic, below 1e-7).
    """
    flat = coordinates.reshape(3, -1)
    lowest, highest = np.floor(flat.min(axis=1)).astype(int), np.ceil(flat.max(axis=1)).astype(int)
    sampled = []
    for volume, order in zip(volumes, orders):
        if order not in (0, 1, 3):
            raise ValueError(f"interpolation order {order} is not supported; use 0, 1 or 3")
        halo = SPLINE_HALO if order == 3 else 1
        low, high = lowest - halo, highest + halo + 1
        window = mirrored_window(volume, *zip(low, high))
        local = coordinates - low[:, None, None, None]
        if order == 3:  # float32 coefficients: ~15% faster than float64, errors ~1e-7 of the values
            window = ndimage.spline_filter(window, order=3, mode="mirror", output=np.float32)
        output = window.dtype if order == 0 else np.float32
        sampled.append(ndimage.map_coordinates(window, local, order=order, mode="mirror", output=output,
                                               prefilter=False))
    return sampled


def crop_volume(volume: Any, center: tuple[float, float, float], shape: Shape) -> np.ndarray:
    """The voxel-aligned ``shape`` tile around ``center``, mirrored at the edges; exact."""
    low = tuple(round(c - (edge - 1) / 2) for c, edge in zip(center, shape))
    return mirrored_window(volume, *((start, start + edge) for start, edge in zip(low, shape)))


def transform_volumes(volumes: list[Any], orders: list[int], geometry: VolumeGeometry, shape: Shape) -> list[np.ndarray]:
    """The ``shape`` tile of each volume under ``geometry`` (a plain crop when it is one)."""
    if geometry.is_integer_shift(shape):
        flips = [axis for axis, flip in enumerate(geometry.flips) if flip]
        return [np.flip(crop_volume(volume, geometry.center, shape), axis=flips) for volume in volumes]
    return sample_volumes(volumes, orders, volume_source_coordinates(geometry, shape))

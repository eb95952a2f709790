"""Random transforms of the paper's data augmentation, as pure functions.

One geometric transform (crop position, flips, rotation by any angle and the
paper's elastic deformation) is built as a map of source coordinates and then
applied to the image (cubic or linear), the labels (nearest neighbour) and the
weights (linear) alike. Where the map reaches outside the slice the slice is
mirrored, as in the overlap-tile strategy. Gray-value changes (brightness,
contrast, gamma, noise) act on the image alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numba import njit
from scipy import ndimage

from .mirror import mirrored_window

SPLINE_HALO = 12  # cubic spline prefilter on a window: edge error below 0.27**12 ~ 1e-7


@dataclass(frozen=True)
class Geometry:
    """One sample's geometric transform: where it sits and how it is turned and warped."""

    center: tuple[float, float]  # slice coordinates of the tile centre
    rotation: float = 0.0  # radians
    flip_rows: bool = False
    flip_cols: bool = False
    displacement: np.ndarray | None = None  # (2, size, size) in pixels for the largest tile, or None

    def is_integer_shift(self, size: int) -> bool:
        """True when a ``size`` tile is a plain crop: no rotation or warp, pixel-aligned."""
        return (
            self.rotation == 0.0
            and self.displacement is None
            and all(float(c - (size - 1) / 2).is_integer() for c in self.center)
        )


@lru_cache(maxsize=16)
def cubic_weights(size: int, grid: int) -> np.ndarray:
    """(size, grid) matrix that interpolates ``grid`` control values to ``size`` pixels with a
    cubic spline; control points sit at the first pixel, the last pixel and evenly between."""
    positions = np.linspace(0, grid - 1, size)
    return np.stack(
        [ndimage.map_coordinates(np.eye(grid)[k], positions[None], order=3, mode="nearest") for k in range(grid)],
        axis=1,
    )


def elastic_displacement(
    size: int, rng: np.random.Generator, *, grid: int, sigma: float
) -> np.ndarray:
    """The paper's elastic deformation: random vectors on a coarse ``grid`` x ``grid`` grid,
    Gaussian with ``sigma`` px standard deviation, interpolated bicubically to every pixel.

    Returns a (2, size, size) displacement field in pixels. The tensor-product
    spline is two small matrix products, ``W @ G @ W.T``.
    """
    control = rng.normal(0.0, sigma, size=(2, grid, grid))
    weights = cubic_weights(size, grid)
    rows = np.einsum("ik,akl->ail", weights, control)  # (2, size, grid): tiny
    # a sum of outer products, not a BLAS matmul: BLAS threads would contend with Dask's
    field = np.zeros((2, size, size))
    for k in range(grid):
        field += rows[:, :, None, k] * weights[None, None, :, k]
    return field


def source_coordinates(geometry: Geometry, size: int) -> np.ndarray:
    """(2, size, size) slice coordinates from which each pixel of a ``size`` tile is sampled."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    rows, cols = np.meshgrid(offsets, offsets, indexing="ij")
    if geometry.flip_rows:
        rows = -rows
    if geometry.flip_cols:
        cols = -cols
    cos, sin = np.cos(geometry.rotation), np.sin(geometry.rotation)
    coordinates = np.stack([cos * rows - sin * cols, sin * rows + cos * cols])
    if geometry.displacement is not None:
        border = (geometry.displacement.shape[1] - size) // 2
        coordinates += geometry.displacement[:, border : border + size, border : border + size]
    coordinates[0] += geometry.center[0]
    coordinates[1] += geometry.center[1]
    return coordinates


CUBIC_POLE = np.sqrt(3.0) - 2.0


@njit(cache=True, nogil=True)
def _prefilter_line(line, tolerance):
    """Cubic B-spline coefficients of one line in place, mirror boundaries (Unser 1999)."""
    pole = CUBIC_POLE
    length = line.shape[0]
    if length == 1:
        return
    for k in range(length):
        line[k] *= 6.0  # gain (1 - z)(1 - 1/z)
    horizon = min(length, int(np.ceil(np.log(tolerance) / np.log(abs(pole)))))
    power, total = 1.0, 0.0
    for k in range(horizon):
        total += power * line[k]
        power *= pole
    line[0] = total
    for k in range(1, length):
        line[k] += pole * line[k - 1]
    line[length - 1] = pole / (pole * pole - 1.0) * (line[length - 1] + pole * line[length - 2])
    for k in range(length - 2, -1, -1):
        line[k] = pole * (line[k + 1] - line[k])


@njit(cache=True, nogil=True)
def _spline_prefilter(values):
    """2-D cubic B-spline coefficients, as ``scipy.ndimage.spline_filter(order=3, mode="mirror")``
    computes them, but without holding the GIL, so that Dask threads augment in parallel."""
    coefficients = values.astype(np.float64)
    column = np.empty(coefficients.shape[0])
    for j in range(coefficients.shape[1]):
        column[:] = coefficients[:, j]
        _prefilter_line(column, 1e-12)
        coefficients[:, j] = column
    for i in range(coefficients.shape[0]):
        _prefilter_line(coefficients[i], 1e-12)
    return coefficients


@njit(cache=True, nogil=True)
def _nearest(values, rows, cols):
    out = np.empty(rows.shape, values.dtype)
    for i in range(rows.shape[0]):
        for j in range(rows.shape[1]):
            out[i, j] = values[int(np.floor(rows[i, j] + 0.5)), int(np.floor(cols[i, j] + 0.5))]
    return out


@njit(cache=True, nogil=True)
def _interpolate(values, rows, cols, order):
    """Linear (order 1) or cubic B-spline (order 3, ``values`` prefiltered) interpolation at
    points that lie at least 2 px inside ``values``. scipy's map_coordinates does the same for
    any order and dimension, with per-point boundary handling; this 2-D kernel is 2-3x faster,
    which the augmentation benchmark needs."""
    out = np.empty(rows.shape, np.float32)
    for i in range(rows.shape[0]):
        for j in range(rows.shape[1]):
            row, col = rows[i, j], cols[i, j]
            top, left = int(np.floor(row)), int(np.floor(col))
            t, u = row - top, col - left
            if order == 1:
                out[i, j] = (
                    (1 - t) * ((1 - u) * values[top, left] + u * values[top, left + 1])
                    + t * ((1 - u) * values[top + 1, left] + u * values[top + 1, left + 1])
                )
                continue
            row_weights = (
                (1 - t) ** 3 / 6, (3 * t**3 - 6 * t**2 + 4) / 6, (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6, t**3 / 6
            )
            col_weights = (
                (1 - u) ** 3 / 6, (3 * u**3 - 6 * u**2 + 4) / 6, (-3 * u**3 + 3 * u**2 + 3 * u + 1) / 6, u**3 / 6
            )
            total = 0.0
            for a in range(4):
                line = 0.0
                for b in range(4):
                    line += col_weights[b] * values[top - 1 + a, left - 1 + b]
                total += row_weights[a] * line
            out[i, j] = total
    return out


def sample_planes(planes: list[np.ndarray], orders: list[int], coordinates: np.ndarray) -> list[np.ndarray]:
    """Sample each 2-D plane at ``coordinates`` with its spline order (0, 1 or 3).

    Only the window the coordinates touch (plus a halo for the cubic
    prefilter) is read and filtered, so the cost does not grow with the slice.
    """
    halo = SPLINE_HALO
    low = np.floor(coordinates.reshape(2, -1).min(axis=1)).astype(int) - halo
    high = np.ceil(coordinates.reshape(2, -1).max(axis=1)).astype(int) + halo + 1
    local = coordinates - low[:, None, None]
    sampled = []
    for plane, order in zip(planes, orders):
        window = mirrored_window(plane, (low[0], high[0]), (low[1], high[1]))
        if order == 0:
            sampled.append(_nearest(window, local[0], local[1]))
        elif order in (1, 3):
            values = _spline_prefilter(window) if order == 3 else window.astype(np.float64)
            sampled.append(_interpolate(values, local[0], local[1], order))
        else:
            raise ValueError(f"interpolation order {order} is not supported; use 0, 1 or 3")
    return sampled


def crop(plane: np.ndarray, center: tuple[float, float], size: int) -> np.ndarray:
    """The pixel-aligned ``size`` x ``size`` tile around ``center``, mirrored at the edges; exact."""
    top = round(center[0] - (size - 1) / 2)
    left = round(center[1] - (size - 1) / 2)
    return mirrored_window(plane, (top, top + size), (left, left + size))


def transform_planes(
    planes: list[np.ndarray], orders: list[int], geometry: Geometry, size: int
) -> list[np.ndarray]:
    """The ``size`` tile of each plane under ``geometry`` (a plain crop when it is one)."""
    if geometry.is_integer_shift(size):
        flips = [axis for axis, flip in enumerate((geometry.flip_rows, geometry.flip_cols)) if flip]
        return [np.flip(crop(plane, geometry.center, size), axis=flips) for plane in planes]
    return sample_planes(planes, orders, source_coordinates(geometry, size))


def adjust_gray_values(
    image: np.ndarray, rng: np.random.Generator, *, brightness: float, contrast: float, gamma: float
) -> np.ndarray:
    """Random brightness shift, contrast scale and gamma of a normalised (z-scored) tile.

    Brightness adds U(-b, b) standard deviations; contrast scales about the tile
    mean by U(1-c, 1+c); gamma raises the tile, rescaled to [0, 1], to the power
    exp(U(-g, g)) and rescales it back. Zero magnitudes leave the tile unchanged.
    """
    out = image.astype(np.float32, copy=True)
    if gamma > 0:
        low, high = float(out.min()), float(out.max())
        if high > low:
            exponent = np.exp(rng.uniform(-gamma, gamma))
            out = low + (high - low) * ((out - low) / (high - low)) ** exponent
    if contrast > 0:
        mean = out.mean()
        out = mean + (out - mean) * rng.uniform(1 - contrast, 1 + contrast)
    if brightness > 0:
        out = out + rng.uniform(-brightness, brightness)
    return out.astype(np.float32)


def add_noise(image: np.ndarray, rng: np.random.Generator, *, std: float) -> np.ndarray:
    """Additive Gaussian noise of ``std`` (in units of the image's standard deviation)."""
    return (image + rng.normal(0.0, std, size=image.shape)).astype(np.float32)


def deform_elastically(
    planes: list[np.ndarray], orders: list[int], rng: np.random.Generator, *,
    grid: int, sigma: float,
) -> list[np.ndarray]:
    """The paper's elastic deformation of square planes of one size, all by one random field."""
    size = planes[0].shape[0]
    if any(plane.shape != (size, size) for plane in planes):
        raise ValueError("deform_elastically takes square planes of one size")
    geometry = Geometry(center=((size - 1) / 2, (size - 1) / 2), displacement=elastic_displacement(size, rng, grid=grid, sigma=sigma))
    return sample_planes(planes, orders, source_coordinates(geometry, size))

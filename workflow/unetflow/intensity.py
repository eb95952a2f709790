"""Intensity normalisation: statistics found at ingestion, applied alike by training, prediction
and the bioimage.io export.

Two methods, each per channel:

``zscore``
    ``(x - mean) / std``, the classic choice for EM.
``percentile``
    ``(x - p_low) / (p_high - p_low)`` with the ``percentiles`` (default 1 and 99.8), as
    CSBDeep, StarDist and Cellpose normalise fluorescence: a few saturated or hot pixels do
    not squash the rest of the range.

and two scopes:

``dataset``
    one set of statistics for the whole stack or volume;
``image``
    one per slice of a 2-D stack (a volume is one image, so in 3-D the scopes agree). It is
    what a bioimage.io sample is, so the exported package normalises new images exactly as
    training did.

Statistics are found in one streaming pass at ingestion (:class:`Accumulator`) and stored with
the image; :class:`Normalization` applies them to any region. Percentiles over a dataset are
exact for 8- and 16-bit integer images (a histogram); for other types they come from a regular
subsample of at most ``MAX_SAMPLED`` values per channel (exact below that size).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr

METHODS = ("zscore", "percentile")
SCOPES = ("dataset", "image")
MAX_SAMPLED = 2**24  # values per channel kept for dataset percentiles of float or 32-bit data
HISTOGRAM_DTYPES = tuple(np.dtype(name) for name in ("bool", "uint8", "int8", "uint16", "int16"))


@dataclass(frozen=True)
class Normalization:
    """Per image (or once) and channel: ``(x - offset) / scale``.

    ``offset`` and ``scale`` are (images, channels): one row for the scope ``dataset``, one per
    slice for ``image``.
    """

    method: str
    scope: str
    offset: np.ndarray
    scale: np.ndarray
    percentiles: tuple[float, float] | None = None

    @classmethod
    def from_attrs(cls, attrs: dict) -> Normalization:
        """From a store's ``attrs["unetflow"]["normalization"]``; the older form (``mean``, ``std``
        of one channel) reads as a dataset z-score."""
        if "offset" not in attrs:
            return cls("zscore", "dataset", np.array([[attrs["mean"]]]), np.array([[attrs["std"]]]))
        percentiles = attrs.get("percentiles")
        return cls(attrs["method"], attrs["scope"], np.asarray(attrs["offset"], np.float64),
                   np.asarray(attrs["scale"], np.float64), None if percentiles is None else tuple(percentiles))

    def as_attrs(self) -> dict:
        return {"method": self.method, "scope": self.scope, "percentiles": self.percentiles,
                "offset": self.offset.tolist(), "scale": self.scale.tolist()}

    def setting(self) -> dict:
        """What the config says (method, scope, percentiles), without the statistics."""
        return setting_of(self.method, self.scope, self.percentiles)

    def recorded(self) -> dict:
        """What a model records of its training data's normalisation: the setting, and for one set
        of statistics per dataset its ``offset`` and ``scale`` per channel (a bioimage.io export
        applies them as fixed values)."""
        if self.scope != "dataset":
            return self.setting()
        return {**self.setting(), "offset": self.offset[0].tolist(), "scale": self.scale[0].tolist()}

    def apply(self, values: np.ndarray, z: int | slice | None = None) -> np.ndarray:
        """Normalised float32 ``values`` of shape (c, ...) taken from slice ``z`` (an int, (c, y, x)
        values) or slices ``z`` (a slice, (c, z, y, x) values); ``z`` matters only per image."""
        offset, scale = self._rows(z, values.ndim)
        return ((values.astype(np.float32) - offset) / scale).astype(np.float32)

    def _rows(self, z: int | slice | None, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        """Offset and scale, broadcastable against (c, ...) values of ``ndim`` axes."""
        if len(self.offset) == 1:
            rows = self.offset[0], self.scale[0]  # (c,)
        elif isinstance(z, slice):
            rows = self.offset[z].T, self.scale[z].T  # (c, slices)
        elif z is None:
            raise ValueError("a per-image normalisation needs the slice the values come from")
        else:
            rows = self.offset[z], self.scale[z]
        return tuple(np.asarray(row, np.float32).reshape(row.shape + (1,) * (ndim - row.ndim)) for row in rows)


def setting_of(method: str, scope: str, percentiles) -> dict:
    """The config's ``normalize`` section as a model file records it."""
    return {"method": method, "scope": scope,
            "percentiles": None if method != "percentile" else [float(p) for p in percentiles]}


def setting_in(recorded: dict | None) -> dict:
    """The setting part of what a model file records (:meth:`Normalization.recorded`); models
    that record none were trained with the one method of older unetflow, a dataset z-score."""
    if not recorded:
        return setting_of("zscore", "dataset", None)
    return setting_of(recorded["method"], recorded["scope"], recorded.get("percentiles"))


def image_statistics(values: np.ndarray, method: str, percentiles: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(offset, scale) per channel of one (c, ...) image, as the bioimage.io preprocessing
    ``zero_mean_unit_variance`` / ``scale_range`` finds them over its spatial axes."""
    flat = values.reshape(values.shape[0], -1).astype(np.float64)
    if method == "zscore":
        return flat.mean(axis=1), flat.std(axis=1)
    low, high = np.percentile(flat, percentiles, axis=1)
    return low, high - low


@dataclass
class Accumulator:
    """Streams the slices (or slabs) of an image through and returns its :class:`Normalization`.

    Feed (c, ...) arrays with :meth:`add`, with the slice index for the scope ``image``."""

    method: str
    scope: str
    percentiles: tuple[float, float]
    channels: int
    dtype: np.dtype
    voxels: int  # per channel, for the subsample of dataset percentiles
    _per_image: list = field(default_factory=list)
    _sums: np.ndarray | None = None
    _histograms: list | None = None
    _sampled: list = field(default_factory=list)
    _histogram_low: int = 0

    def add(self, values: np.ndarray) -> None:
        """One slice (c, y, x), or a slab (c, z, y, x) where the scope is ``dataset``."""
        if self.scope == "image":
            self._per_image.append(image_statistics(values, self.method, self.percentiles))
        elif self.method == "zscore":
            flat = values.reshape(self.channels, -1).astype(np.float64)
            sums = np.stack([flat.sum(axis=1), np.square(flat).sum(axis=1), np.full(self.channels, flat.shape[1])])
            self._sums = sums if self._sums is None else self._sums + sums
        elif np.dtype(self.dtype) in HISTOGRAM_DTYPES:
            self._add_histogram(values)
        else:
            step = max(1, -(-self.voxels // MAX_SAMPLED))
            self._sampled.append(values.reshape(self.channels, -1)[:, ::step].astype(np.float64))

    def _add_histogram(self, values: np.ndarray) -> None:
        low = np.iinfo(np.int16).min if np.dtype(self.dtype).kind == "i" else 0
        flat = values.reshape(self.channels, -1).astype(np.int64) - low
        counts = [np.bincount(row, minlength=2**16) for row in flat]
        self._histograms = counts if self._histograms is None else [a + b for a, b in zip(self._histograms, counts)]
        self._histogram_low = low

    def result(self) -> Normalization:
        if self.scope == "image":
            offset, scale = (np.stack(column) for column in zip(*self._per_image))
        elif self.method == "zscore":
            total, total_sq, count = self._sums
            offset = total / count
            scale = np.sqrt(np.maximum(total_sq / count - offset**2, 0.0))
            offset, scale = offset[None], scale[None]
        else:
            low, high = (self._histogram_percentiles() if self._histograms is not None
                         else np.percentile(np.concatenate(self._sampled, axis=1), self.percentiles, axis=1))
            offset, scale = low[None], (high - low)[None]
        scale = np.where(scale > 0, scale, 1.0)  # a constant image (channel) is shifted, not divided by 0
        percentiles = tuple(self.percentiles) if self.method == "percentile" else None
        return Normalization(self.method, self.scope, offset, scale, percentiles)

    def _histogram_percentiles(self) -> tuple[np.ndarray, np.ndarray]:
        """``np.percentile`` (linear interpolation) of every channel, from its histogram."""
        rows = [[histogram_percentile(counts, q) + self._histogram_low for q in self.percentiles]
                for counts in self._histograms]
        return np.array(rows).T


def histogram_percentile(counts: np.ndarray, q: float) -> float:
    """The ``q``-th percentile of the values ``0 .. len(counts)-1`` counted by ``counts``, exactly
    as :func:`numpy.percentile` (linear) finds it on the values themselves."""
    position = (counts.sum() - 1) * q / 100
    below = int(np.floor(position))
    cumulative = np.cumsum(counts)
    low, high = np.searchsorted(cumulative, [below + 1, min(below + 2, cumulative[-1])])
    return float(low + (position - below) * (high - low))


def channels_of(raw: zarr.Array | np.ndarray) -> int:
    """Channels of a ``data.zarr`` image: (c, z, y, x) holds several, (z, y, x) one."""
    return raw.shape[0] if raw.ndim == 4 else 1


class NormalizedImage:
    """The image of a ``data.zarr`` store, read region by region as normalised float32.

    ``shape`` is the spatial (z, y, x) shape; ``image[z]`` is slice ``z`` as (c, y, x),
    ``image[z0:z1, y0:y1, x0:x1]`` a (c, z, y, x) region: the channel axis always comes first,
    also for a one-channel image, which the store keeps as (z, y, x).
    """

    def __init__(self, raw: zarr.Array, normalization: Normalization):
        self.raw, self.normalization = raw, normalization
        self.channels = channels_of(raw)
        self.shape = tuple(raw.shape[-3:])

    @classmethod
    def of(cls, raw: zarr.Array) -> NormalizedImage:
        return cls(raw, Normalization.from_attrs(raw.attrs["unetflow"]["normalization"]))

    def __getitem__(self, selection: Any) -> np.ndarray:
        selection = selection if isinstance(selection, tuple) else (selection,)
        values = np.asarray(self.raw[(slice(None), *selection)] if self.channels > 1 else self.raw[selection])
        if self.channels == 1:
            values = values[None]
        return self.normalization.apply(values, selection[0])

    def plane(self, z: int) -> NormalizedPlane:
        """Slice ``z``, read lazily: ``plane[rows, cols]`` is (c, rows, cols)."""
        return NormalizedPlane(self, z)

    def channel(self, index: int) -> ChannelView:
        """One channel as a (z, y, x) array-like (for the 3-D augmentation, which warps it)."""
        return ChannelView(self, index)


class NormalizedPlane:
    """One slice of a :class:`NormalizedImage`, indexable like a 2-D array; gives (c, ...)."""

    def __init__(self, image: NormalizedImage, z: int):
        self.image, self.z, self.shape = image, z, image.shape[1:]

    def __getitem__(self, key: tuple) -> np.ndarray:
        return self.image[(self.z, *key)]


class ChannelView:
    """One channel of a :class:`NormalizedImage` as a (z, y, x) array-like."""

    def __init__(self, image: NormalizedImage, index: int):
        self.image, self.index, self.shape = image, index, image.shape

    def __getitem__(self, selection: Any) -> np.ndarray:
        return self.image[selection][self.index]

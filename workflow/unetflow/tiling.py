"""The overlap-tile strategy (paper, Fig. 2): a slice or volume of any size, tile by tile.

Valid-padded networks: output tiles cover the slice; each input tile is its
output tile grown by the network's margin on every side; where that reaches
past the slice border, the input is mirrored. Every output pixel then sees
exactly the context it would see in one pass over the whole mirror-padded
slice, so the tiled result equals the whole-slice result. Volumes (z, y, x)
are tiled the same way along all three axes, with a margin per axis.

Same-padded networks see zero padding at every tile edge, so their tiles
overlap by half and are blended with Gaussian weights (as nnU-Net and MONAI
do) on one global grid, which hides the seams.

Work is done block by block (a block is one output chunk of the Zarr store),
reading only the input windows each block needs, so memory stays bounded
whatever the slice size.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import numpy as np

from .mirror import ChannelsFirst, mirrored_window

Forward = Callable[[np.ndarray], np.ndarray]
WindowReader = Callable[..., np.ndarray]  # read((start, stop), ...) -> the mirrored window


def tile_origins(length: int, tile: int, align: int = 1, stride: int | None = None) -> list[int]:
    """Origins of output tiles of edge ``tile`` that cover ``0 .. length-1``, all multiples of
    ``align``.

    A U-Net is shift-equivariant only for shifts by multiples of ``2**depth``
    (its pooling grid), so valid-padded tiles start at such multiples: they are
    placed every ``tile`` px rounded down to a multiple of ``align``, and the
    last one as far back as alignment allows; what hangs past the border is
    mirrored input and cropped output.
    """
    if length <= tile:
        return [0]
    stride = stride or max(align, tile // align * align)
    last = -(-(length - tile) // align) * align
    return [origin for origin in range(0, last, stride)] + [last]


def blend_origins(length: int, tile: int, align: int = 1) -> list[int]:
    """Origins of half-overlapping tiles that cover ``0 .. length-1`` (aligned); see
    :func:`tile_origins`."""
    return tile_origins(length, tile, align, stride=max(align, tile // 2 // align * align))


def per_axis(value: int | tuple[int, ...], dims: int) -> tuple[int, ...]:
    """A tile setting per axis: an int is the same along every axis."""
    return (value,) * dims if isinstance(value, int) else tuple(value)


def axis_origins(length: int, tile: int, align: int, blend: bool) -> list[int]:
    return (blend_origins if blend else tile_origins)(length, tile, align)


def tile_grid_for(shape: tuple[int, ...], geometry) -> list[tuple[int, ...]]:
    """Every tile origin of a slice or volume, for a :class:`~unetflow.inference.TileGeometry`."""
    return list(itertools.product(*(axis_origins(length, tile, align, geometry.blend)
                                     for length, tile, align in zip(shape, geometry.tile, geometry.align))))


def gaussian_window(tile: tuple[int, ...]) -> np.ndarray:
    """Blending weights of a tile: a Gaussian of sigma edge/8 around its centre, floored at 1e-3."""
    window = np.ones((), np.float64)
    for edge in tile:
        offsets = np.arange(edge) - (edge - 1) / 2
        window = np.multiply.outer(window, np.exp(-(offsets**2) / (2 * (edge / 8) ** 2)))
    return np.maximum(window, 1e-3).astype(np.float32)


def array_window_reader(array) -> WindowReader:
    """Reads mirrored windows of a 2-D or 3-D array-like (numpy or Zarr), touching only the
    region the window needs: ``read((start, stop), ...)``, one range per axis."""

    def read(*ranges: tuple[int, int]) -> np.ndarray:
        return mirrored_window(array, *ranges)

    return read


def tiles_meeting(start: int, stop: int, origins: list[int], tile: int, length: int, blend: bool) -> list[int]:
    """The origins of the tiles a block ``start .. stop-1`` of an axis needs.

    Blended tiles: every tile that overlaps the block. Exact tiles overwrite one
    another in order, so a pixel keeps the output of the last tile that starts at
    or before it: a tile is needed only where it is that last one (up to the next
    origin), and blocks cut at origins run each tile once.
    """
    if blend:
        return [origin for origin in origins if origin < stop and origin + tile > start]
    ends = [*origins[1:], length]
    return [origin for origin, end in zip(origins, ends) if origin < stop and end > start]


def batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def predict_block(
    forward: Forward,
    read: WindowReader,
    block: tuple[int, ...],
    shape: tuple[int, ...],
    *,
    tile: int | tuple[int, ...],
    margin: int | tuple[int, ...],
    num_classes: int,
    batch_size: int = 1,
    blend: bool = False,
    align: int | tuple[int, ...] = 1,
) -> np.ndarray:
    """Per-class outputs of one block of a slice (or volume) of ``shape``.

    Tiles lie on one grid over the whole slice, and a block runs the tiles that
    meet it, so blocks join without seams.

    Parameters
    ----------
    forward
        Maps input tiles (B, 1, tile + 2 margin, ...) to outputs (B, K, tile, ...).
    read
        Returns the normalised, mirrored input window for one (start, stop) range per axis:
        (c, *window), or the window alone for one channel.
    block
        ``(start, stop)`` per axis, flat: ``(row0, row1, col0, col1)`` or
        ``(z0, z1, row0, row1, col0, col1)``.
    tile, margin
        Output tile edge and the context added on each side (0 for blended tiles),
        per axis or one for all.
    blend
        Half-overlapping tiles blended with Gaussian weights (same-padded networks).
    align
        Tile origins are multiples of it (the product of the network's poolings).

    Returns
    -------
    np.ndarray
        (K, *block shape) float32.
    """
    dims = len(shape)
    tile, margin, align = (per_axis(value, dims) for value in (tile, margin, align))
    starts, stops = block[0::2], block[1::2]
    axes = [tiles_meeting(starts[axis], stops[axis], axis_origins(shape[axis], tile[axis], align[axis], blend),
                          tile[axis], shape[axis], blend) for axis in range(dims)]
    origins = list(itertools.product(*axes))
    out = np.zeros((num_classes, *(stop - start for start, stop in zip(starts, stops))), np.float32)
    total_weight = np.zeros(out.shape[1:], np.float32)
    window = gaussian_window(tile) if blend else np.ones(tile, np.float32)
    for group in batches(origins, batch_size):
        inputs = np.stack([read(*((o - m, o + t + m) for o, t, m in zip(origin, tile, margin))) for origin in group])
        if inputs.ndim == dims + 1:  # windows of a one-channel image, read without its channel axis
            inputs = inputs[:, None]
        outputs = forward(inputs.astype(np.float32))
        for origin, output in zip(group, outputs):
            first = [max(o, start) for o, start in zip(origin, starts)]
            last = [min(o + t, stop) for o, t, stop in zip(origin, tile, stops)]
            source = tuple(slice(a - o, b - o) for a, b, o in zip(first, last, origin))
            target = tuple(slice(a - start, b - start) for a, b, start in zip(first, last, starts))
            if blend:
                weight = window[source]
                out[(slice(None), *target)] += output[(slice(None), *source)] * weight
                total_weight[target] += weight
            else:
                out[(slice(None), *target)] = output[(slice(None), *source)]
    return out / total_weight if blend else out


def predict_whole(forward: Forward, image: np.ndarray, *, tile: int | tuple[int, ...], margin: int | tuple[int, ...],
                  num_classes: int, batch_size: int = 1, blend: bool = False,
                  align: int | tuple[int, ...] = 1) -> np.ndarray:
    """Per-class outputs (K, *shape) of a whole in-memory slice or volume, (c, *shape) or, with one
    channel, (*shape); the tile per axis (a tuple) says how many axes are spatial. See
    :func:`predict_block`."""
    dims = len(tile) if isinstance(tile, tuple) else image.ndim
    shape = image.shape[image.ndim - dims:]
    block = tuple(bound for length in shape for bound in (0, length))
    reader = array_window_reader(image if image.ndim == dims else ChannelsFirst(image))
    return predict_block(forward, reader, block, shape, tile=tile, margin=margin,
                         num_classes=num_classes, batch_size=batch_size, blend=blend, align=align)

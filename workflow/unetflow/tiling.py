"""The overlap-tile strategy (paper, Fig. 2): a slice of any size, tile by tile.

Valid-padded networks: output tiles cover the slice; each input tile is its
output tile grown by the network's margin on every side; where that reaches
past the slice border, the input is mirrored. Every output pixel then sees
exactly the context it would see in one pass over the whole mirror-padded
slice, so the tiled result equals the whole-slice result.

Same-padded networks see zero padding at every tile edge, so their tiles
overlap by half and are blended with Gaussian weights (as nnU-Net and MONAI
do) on one global grid, which hides the seams.

Work is done block by block (a block is one output chunk of the Zarr store),
reading only the input windows each block needs, so memory stays bounded
whatever the slice size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from .mirror import mirror_indices

Forward = Callable[[np.ndarray], np.ndarray]
WindowReader = Callable[[tuple[int, int], tuple[int, int]], np.ndarray]


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


def tile_grid_for(shape: tuple[int, int], geometry) -> list[tuple[int, int]]:
    """Every (row, col) tile origin of a slice, for a :class:`~unetflow.inference.TileGeometry`."""
    grid = blend_origins if geometry.blend else tile_origins
    return [(r, c) for r in grid(shape[0], geometry.tile, geometry.align) for c in grid(shape[1], geometry.tile, geometry.align)]


def gaussian_window(tile: int) -> np.ndarray:
    """Blending weights of a tile: a Gaussian of sigma tile/8 around its centre, floored at 1e-3."""
    offsets = np.arange(tile) - (tile - 1) / 2
    profile = np.exp(-(offsets**2) / (2 * (tile / 8) ** 2))
    return np.maximum(np.outer(profile, profile), 1e-3).astype(np.float32)


def array_window_reader(plane) -> WindowReader:
    """Reads mirrored windows of a 2-D array-like (numpy or Zarr), touching only the rows and
    columns the window needs."""
    height, width = plane.shape

    def read(rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        row_index = mirror_indices(*rows, height)
        col_index = mirror_indices(*cols, width)
        row_low, col_low = row_index.min(), col_index.min()
        block = np.asarray(plane[row_low : row_index.max() + 1, col_low : col_index.max() + 1])
        return block[(row_index - row_low)[:, None], (col_index - col_low)[None, :]]

    return read


def batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def predict_block(
    forward: Forward,
    read: WindowReader,
    block: tuple[int, int, int, int],
    shape: tuple[int, int],
    *,
    tile: int,
    margin: int,
    num_classes: int,
    batch_size: int = 1,
    blend: bool = False,
    align: int = 1,
) -> np.ndarray:
    """Per-class outputs of the block ``(row0, row1, col0, col1)`` of a slice of ``shape``.

    Tiles lie on one grid over the whole slice, and a block runs the tiles that
    meet it, so blocks join without seams.

    Parameters
    ----------
    forward
        Maps input tiles (B, 1, tile + 2 margin, tile + 2 margin) to outputs (B, K, tile, tile).
    read
        Returns the normalised, mirrored input window for (row range, column range).
    tile, margin
        Output tile edge and the context added on each side (0 for blended tiles).
    blend
        Half-overlapping tiles blended with Gaussian weights (same-padded networks).
    align
        Tile origins are multiples of it (``2**depth``).

    Returns
    -------
    np.ndarray
        (K, row1 - row0, col1 - col0) float32.
    """
    row0, row1, col0, col1 = block
    grid = blend_origins if blend else tile_origins
    rows = [r for r in grid(shape[0], tile, align) if r < row1 and r + tile > row0]
    cols = [c for c in grid(shape[1], tile, align) if c < col1 and c + tile > col0]
    origins = [(r, c) for r in rows for c in cols]
    out = np.zeros((num_classes, row1 - row0, col1 - col0), np.float32)
    total_weight = np.zeros(out.shape[1:], np.float32)
    window = gaussian_window(tile) if blend else np.ones((tile, tile), np.float32)
    for group in batches(origins, batch_size):
        inputs = np.stack([read((r - margin, r + tile + margin), (c - margin, c + tile + margin)) for r, c in group])
        outputs = forward(inputs[:, None].astype(np.float32))
        for (row, col), output in zip(group, outputs):
            top, left = max(row, row0), max(col, col0)
            bottom, right = min(row + tile, row1), min(col + tile, col1)
            source = (slice(top - row, bottom - row), slice(left - col, right - col))
            target = (slice(top - row0, bottom - row0), slice(left - col0, right - col0))
            weight = window[source]
            if blend:
                out[(slice(None), *target)] += output[(slice(None), *source)] * weight
                total_weight[target] += weight
            else:
                out[(slice(None), *target)] = output[(slice(None), *source)]
    return out / total_weight if blend else out


def predict_slice(forward: Forward, image: np.ndarray, *, tile: int, margin: int, num_classes: int,
                  batch_size: int = 1, blend: bool = False, align: int = 1) -> np.ndarray:
    """Per-class outputs (K, H, W) of a whole in-memory slice; see :func:`predict_block`."""
    height, width = image.shape
    return predict_block(forward, array_window_reader(image), (0, height, 0, width), (height, width), tile=tile, margin=margin,
                         num_classes=num_classes, batch_size=batch_size, blend=blend, align=align)

"""The overlap-tile strategy (paper, Fig. 2): a slice of any size, tile by tile.

Output tiles cover the slice; each input tile is its output tile grown by the
network's margin on every side; where that reaches past the slice border the
input is mirrored. A valid-padded network sees, for every output pixel,
exactly the context it would see in one pass over the whole mirror-padded
slice, so the tiled result equals the whole-slice result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from .transforms import mirrored_window

Forward = Callable[[np.ndarray], np.ndarray]


def tile_origins(length: int, tile: int) -> list[int]:
    """Origins of output tiles of edge ``tile`` that cover ``0 .. length-1``.

    Tiles are placed every ``tile`` pixels; the last one is moved back to end at
    the border (overlapping its neighbour) instead of hanging over it. A slice
    shorter than a tile gets one tile at 0, cropped afterwards.
    """
    if length <= tile:
        return [0]
    origins = list(range(0, length - tile, tile))
    return origins + [length - tile]


def tile_grid(shape: tuple[int, int], tile: int) -> list[tuple[int, int]]:
    """(row, col) origins of the output tiles that cover a slice."""
    return [(row, col) for row in tile_origins(shape[0], tile) for col in tile_origins(shape[1], tile)]


def input_tile(image: np.ndarray, origin: tuple[int, int], tile: int, margin: int) -> np.ndarray:
    """The input tile of the output tile at ``origin``: grown by ``margin``, mirrored at borders."""
    row, col = origin
    return mirrored_window(image, (row - margin, row + tile + margin), (col - margin, col + tile + margin))


def batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def predict_slice(
    forward: Forward, image: np.ndarray, *, tile: int, margin: int, num_classes: int, batch_size: int = 1
) -> np.ndarray:
    """Per-class outputs of a 2-D slice, tile by tile.

    Parameters
    ----------
    forward
        Maps a batch of input tiles (B, 1, tile + 2 margin, tile + 2 margin) to
        outputs (B, K, tile, tile).
    image
        The normalised slice (H, W), any size.
    tile, margin
        Output tile edge and the context added on each side.

    Returns
    -------
    np.ndarray
        (K, H, W) float32.
    """
    height, width = image.shape
    out = np.empty((num_classes, height, width), np.float32)
    for group in batches(tile_grid(image.shape, tile), batch_size):
        inputs = np.stack([input_tile(image, origin, tile, margin) for origin in group])[:, None]
        outputs = forward(inputs.astype(np.float32))
        for (row, col), output in zip(group, outputs):
            rows, cols = min(tile, height - row), min(tile, width - col)
            out[:, row : row + rows, col : col + cols] = output[:, :rows, :cols]
    return out

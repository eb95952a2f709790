"""Tile-size arithmetic of the U-Net (no torch needed), one axis at a time, and sample sizes.

With unpadded ("valid") 3x3 convolutions every block of two convolutions loses
4 px, at the scale of its level. Along an axis pooled by ``factors`` (2 per
level in the paper; 1 where an anisotropic 3-D network pools y/x only) level
``l`` works at scale ``s_l = factors[0] * ... * factors[l-1]``, so the network
loses ``4 s_d + 8 (s_0 + ... + s_{d-1})`` px: ``12 * 2**depth - 8`` for 2x2
poolings (paper: 572 -> 388 for depth 4). The ``margin`` is the context lost on
each side, half that (92 px for the paper's network). Every pooling must see a
size its factor divides, so valid outputs are spaced ``s_d`` apart (``4 mod
2**depth`` for the paper's network). Same-padded networks keep the size; their
input must be divisible by ``s_d``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from .errors import InputError

Factors = Sequence[int]
Size = int | tuple[int, int, int]  # a square 2-D tile's edge, or a 3-D tile's (z, y, x) shape


def paper_factors(depth: int) -> tuple[int, ...]:
    """The pooling factors of one axis of the paper's network: 2 at every level."""
    return (2,) * depth


def axis_margin(factors: Factors, padding: str = "valid") -> int:
    """Pixels of context a valid-padded U-Net consumes on each side of an axis pooled by ``factors``."""
    if padding == "same":
        return 0
    scales = [math.prod(factors[:level]) for level in range(len(factors) + 1)]
    return (4 * scales[-1] + 8 * sum(scales[:-1])) // 2


def axis_output_size(input_size: int, factors: Factors, padding: str = "valid") -> int:
    """Output length of an axis for an input length; raises ValueError for invalid sizes."""
    step = math.prod(factors)
    if padding == "same":
        if input_size % step or input_size <= 0:
            raise ValueError(f"input size {input_size} is not a positive multiple of {step} (the network's poolings)")
        return input_size
    size = _valid_output(input_size, factors)
    if size is not None:
        return size
    example = axis_model_input_size(axis_valid_output_size(1, factors), factors)
    raise ValueError(f"input size {input_size} is not valid for a U-Net pooling {tuple(factors)}: it must be "
                     f"{2 * axis_margin(factors)} plus a valid output size (e.g. {example})")


def axis_valid_output_size(at_least: int, factors: Factors, padding: str = "valid") -> int:
    """The smallest valid output length of an axis that is at least ``at_least``."""
    step = math.prod(factors)
    if padding == "same":
        return max(step, -(-at_least // step) * step)
    size = max(at_least, 1)
    while not _is_valid_output(size, factors):  # valid outputs recur every ``step`` sizes
        size += 1
    return size


def _is_valid_output(output: int, factors: Factors) -> bool:
    return _valid_output(output + 2 * axis_margin(factors), factors) == output


def _valid_output(input_size: int, factors: Factors) -> int | None:
    """The output length of a valid-padded U-Net for ``input_size``, or None if a pooling sees a
    size its factor does not divide or nothing is left."""
    size = input_size
    for factor in factors:  # contracting path: two convolutions, then a pooling
        size -= 4
        if size < 1 or size % factor:
            return None
        size //= factor
    size -= 4  # bottleneck
    for factor in reversed(factors):  # expansive path: up-convolution, two convolutions
        size = size * factor - 4
    return size if size >= 1 else None


def axis_model_input_size(output: int, factors: Factors, padding: str = "valid") -> int:
    """Input length a U-Net needs to produce an ``output`` tile along an axis (plus what it crops).

    Valid padding: ``output + 2 * margin`` (``output`` must be valid). Same padding:
    the smallest multiple of the poolings' product that is at least ``output`` and
    has the same parity, so that the output centre-crops evenly.
    """
    if padding == "valid":
        size = output + 2 * axis_margin(factors)
        axis_output_size(size, factors)  # validates
        return size
    step = math.prod(factors)
    size = axis_valid_output_size(output, factors, "same")
    while (size - output) % 2:
        size += step
    return size


def margin(depth: int, padding: str = "valid") -> int:
    """:func:`axis_margin` of the paper's 2x2 poolings."""
    return axis_margin(paper_factors(depth), padding)


def output_size(input_size: int, depth: int, padding: str = "valid") -> int:
    """:func:`axis_output_size` of the paper's 2x2 poolings."""
    return axis_output_size(input_size, paper_factors(depth), padding)


def valid_output_size(at_least: int, depth: int, padding: str = "valid") -> int:
    """:func:`axis_valid_output_size` of the paper's 2x2 poolings."""
    return axis_valid_output_size(at_least, paper_factors(depth), padding)


def input_size_for(output: int, depth: int, padding: str = "valid") -> int:
    """Input length that gives exactly ``output`` (which must be valid)."""
    size = output + 2 * margin(depth, padding)
    output_size(size, depth, padding)  # validates
    return size


def sample_shape(size: Size) -> tuple[int, ...]:
    """The tile shape of a sample size: (n, n) for a 2-D edge ``n``, the (z, y, x) shape itself for 3-D."""
    return (int(size), int(size)) if isinstance(size, (int, np.integer)) else tuple(int(edge) for edge in size)


def size_of(shape: tuple[int, ...]) -> Size:
    """The sample size of a tile shape: the edge of a square 2-D tile, a 3-D tile's shape."""
    return int(shape[0]) if len(shape) == 2 and shape[0] == shape[1] else tuple(int(edge) for edge in shape)


def parse_size(text: str, option: str) -> Size:
    """A sample size option: ``N`` (2-D tiles of N x N) or ``ZxYxX`` (3-D tiles, e.g. ``44x92x92``);
    raises :class:`InputError` naming ``option``."""
    edges = tuple(int(edge) for edge in text.split("x")) if re.fullmatch(r"[0-9]+(x[0-9]+x[0-9]+)?", text) else ()
    if not edges or 0 in edges:
        raise InputError(f"{option} {text!r}: not a sample size; give N for 2-D tiles (e.g. 572) or ZxYxX "
                         "for 3-D tiles (e.g. 44x92x92), with positive integers")
    return edges[0] if len(edges) == 1 else edges


def format_size(size: Size) -> str:
    """A sample size as options and file names write it: ``572`` or ``44x92x92``."""
    return "x".join(map(str, size)) if isinstance(size, tuple) else str(size)

"""Tile-size arithmetic of the U-Net (no torch needed).

With unpadded ("valid") 3x3 convolutions every block of two convolutions loses
4 px, at the scale of its level. For ``depth`` poolings an input of size ``i``
gives an output of size ``i - (12 * 2**depth - 8)``, provided every 2x2 pooling
sees an even size, i.e. ``i = -4 (mod 2**depth)``; outputs are then
``4 (mod 2**depth)`` (paper: 572 -> 388 for depth 4). The ``margin`` is the context lost on each side, half that difference
(92 px for the paper's network). Same-padded networks keep the size; their
input must be divisible by ``2**depth``.
"""

from __future__ import annotations


def margin(depth: int, padding: str = "valid") -> int:
    """Pixels of context a valid-padded U-Net consumes on each side (0 for same padding)."""
    return 0 if padding == "same" else (12 * 2**depth - 8) // 2


def output_size(input_size: int, depth: int, padding: str = "valid") -> int:
    """Output edge length for an input edge length; raises ValueError for invalid sizes."""
    step = 2**depth
    if padding == "same":
        if input_size % step or input_size <= 0:
            raise ValueError(f"input size {input_size} is not a positive multiple of 2**depth = {step}")
        return input_size
    size = input_size - 2 * margin(depth)
    if input_size % step != -4 % step or size < 1:
        raise ValueError(
            f"input size {input_size} is not valid for a depth-{depth} U-Net: it must be -4 modulo "
            f"{step} and above {2 * margin(depth)} (e.g. {input_size_for(valid_output_size(1, depth), depth)})"
        )
    return size


def valid_output_size(at_least: int, depth: int, padding: str = "valid") -> int:
    """The smallest valid output edge length that is at least ``at_least``."""
    step = 2**depth
    if padding == "same":
        return max(step, -(-at_least // step) * step)
    remainder = 4 % step
    size = max(at_least, 4)
    return size + (remainder - size) % step


def input_size_for(output: int, depth: int, padding: str = "valid") -> int:
    """Input edge length that gives exactly ``output`` (which must be valid)."""
    size = output + 2 * margin(depth, padding)
    output_size(size, depth, padding)  # validates
    return size


def model_input_size(output: int, depth: int, padding: str = "valid") -> int:
    """Input edge length a U-Net needs to produce an ``output`` tile (plus what it crops).

    Valid padding: ``output + 2 * margin`` (``output`` must be valid). Same padding:
    the smallest multiple of ``2**depth`` that is at least ``output`` and has the
    same parity, so that the output centre-crops evenly.
    """
    if padding == "valid":
        return input_size_for(output, depth)
    step = 2**depth
    size = valid_output_size(output, depth, "same")
    while (size - output) % 2:
        size += step
    return size

"""Resolution pyramids: unetflow's (levels from a stored level 0) against ome-zarr-py's write_image.

Run: python benchmarks/pyramid.py [--slices 6] [--edge 4096]
In one process, on one stack of uint8 slices (smooth noise, so it compresses like
an image): the seconds to write level 0 alone, unetflow's ``ngff.write_pyramid``
(levels 1.. from the stored level 0, 2 x 2 means; the steps stream level 0, so it
is read back from the store), and ome-zarr-py's ``write_image`` with the same
levels and method (``local_mean``) writing level 0 alone and level 0 with the
pyramid, from the stack in memory. Ratios: each pyramid's cost on top of level 0,
and unetflow's pyramid time over ome-zarr-py's.
Level 1 of both is checked equal (within 1 grey level of rounding).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import dask.array as da
import numpy as np
import zarr
from ome_zarr.writer import write_image
from scipy.ndimage import gaussian_filter

from common import machine
from unetflow import io, ngff


def stack(slices: int, edge: int) -> np.ndarray:
    noise = np.random.default_rng(0).random((slices, edge, edge), dtype=np.float32)
    smooth = np.stack([gaussian_filter(plane, 3) for plane in noise])
    return np.round((smooth - smooth.min()) / np.ptp(smooth) * 255).astype(np.uint8)


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=6)
    parser.add_argument("--edge", type=int, default=4096)
    args = parser.parse_args()
    values = stack(args.slices, args.edge)
    levels = len(ngff.level_shapes(values.shape)) - 1
    with tempfile.TemporaryDirectory() as folder:
        warm_up = io.create_group(Path(folder) / "warm-up.zarr")  # imports and thread pools, untimed
        ngff.create_image(warm_up, (1, 600, 600), values.dtype, name="warm-up")
        ngff.write_pyramid(warm_up)
        ours = io.create_group(Path(folder) / "ours.zarr")
        level0 = ngff.create_image(ours, values.shape, values.dtype, name="raw")
        chunked = da.from_array(values, chunks=level0.chunks)
        ours_level0 = timed(lambda: da.store(chunked, level0, lock=False))
        ours_pyramid = timed(lambda: ngff.write_pyramid(ours))
        read_level0 = timed(lambda: da.from_zarr(ours["0"]).max().compute())  # what reading it back costs
        options = {"chunks": level0.chunks, "compressor": io.COMPRESSOR}

        def peer(name: str, factors: list[int]) -> float:
            group = zarr.open_group(str(Path(folder) / name), mode="w", zarr_format=2)
            return timed(lambda: write_image(chunked, group, axes="zyx", scale_factors=factors, method="local_mean",
                                             storage_options=options))

        peer_level0 = peer("theirs0.zarr", [])
        peer_all = peer("theirs.zarr", [2**level for level in range(1, levels + 1)])
        theirs = zarr.open_group(str(Path(folder) / "theirs.zarr"), mode="r")
        difference = np.abs(ours["1"][:].astype(int) - theirs["s1"][:].astype(int)).max()
    peer_pyramid = peer_all - peer_level0
    print(f"machine: {machine()}")
    print(f"stack: {args.slices} x {args.edge}² uint8, {levels} levels below level 0; level 1 of both differs by "
          f"at most {difference} grey level")
    print(f"unetflow: level 0 {ours_level0:.2f} s, pyramid from the stored level 0 {ours_pyramid:.2f} s "
          f"({ours_pyramid / ours_level0:.2f} x level 0), of which reading level 0 back {read_level0:.2f} s")
    print(f"ome-zarr-py write_image: level 0 {peer_level0:.2f} s, level 0 + pyramid {peer_all:.2f} s, so its pyramid "
          f"{peer_pyramid:.2f} s ({peer_pyramid / peer_level0:.2f} x level 0)")
    print(f"pyramid time, unetflow / ome-zarr-py: {ours_pyramid / peer_pyramid:.2f}")


if __name__ == "__main__":
    main()

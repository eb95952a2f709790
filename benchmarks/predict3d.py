"""3-D prediction speed: our block-streamed overlap-tile predictor against the raw forward.

Run: python benchmarks/predict3d.py [--depth-slices Z --size N] [--depth D --channels C]
     [--tile T] [--device cuda]

On one synthetic EM-like volume (``unetflow.synthetic.generate_volume``), with one
3-D U-Net's weights, in one process, output megavoxels/s of:

1. ours: ``unetflow.prediction.predict_volume``, Zarr in and Zarr out, the
   volume streamed in blocks of slices with a halo of the network's margin
   (read, mirrored and normalised on a helper thread; written on another);
2. the limit: the raw model forward on exactly the tiles ours runs, their inputs
   cut and normalised beforehand and kept in memory.

The ratio limit/ours is the share of the network's own speed that prediction
keeps. Each time is the best of 3 runs, taken in turns.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import machine
from unetflow import io, ngff
from unetflow.inference import autocast, autocast_dtype, describe_precision, make_forward, tile_geometry
from unetflow.methods.architectures import ModelConfig
from unetflow.model import UNet
from unetflow.prediction import predict_volume
from unetflow.synthetic import generate_volume
from unetflow.intensity import Normalization, NormalizedImage
from unetflow.tiling import array_window_reader, tile_grid_for
from unetflow.voxel_size import UNKNOWN

REPEATS = 3


def data_store(folder: Path, volume: np.ndarray):
    raw = ngff.create_image(io.create_group(folder / "data.zarr"), volume.shape, volume.dtype, name="raw",
                            pyramid=False)
    raw[:] = volume
    return raw


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def ours(model, raw, stats, geometry, device, dtype, folder: Path) -> float:
    forward = make_forward(model, device, dtype, geometry.tile)
    target = ngff.create_probabilities(folder / "p.zarr", (2, *raw.shape), "float32", {}, UNKNOWN,
                                       channel_names=["background", "foreground"])[io.LEVEL0]
    synchronize(device)
    start = time.perf_counter()
    predict_volume(NormalizedImage(raw, Normalization.from_attrs(stats)), target, forward, geometry=geometry, batch_size=1, dtype="float32")
    synchronize(device)
    return time.perf_counter() - start


def tile_inputs(raw, stats, geometry, device) -> list[torch.Tensor]:
    """The normalised, mirrored input of every tile ours runs, on ``device``."""
    read = array_window_reader(Normalization.from_attrs(stats).apply(raw[:][None])[0])
    return [torch.from_numpy(np.ascontiguousarray(read(*((o - m, o + t + m) for o, t, m
                                                          in zip(origin, geometry.tile, geometry.margin)))))
            [None, None].to(device) for origin in tile_grid_for(raw.shape, geometry)]


def raw_forward(model, tensors: list[torch.Tensor], device, dtype) -> float:
    synchronize(device)
    start = time.perf_counter()
    with torch.inference_mode(), autocast(device, dtype):
        for tensor in tensors:
            model(tensor)
    synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--depth-slices", type=int, default=64, help="slices of the volume")
    parser.add_argument("--size", type=int, default=192, help="y and x edge of the volume")
    parser.add_argument("--depth", type=int, default=2, help="poolings of the 3-D U-Net")
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--tile", type=int, default=48)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = autocast_dtype("auto", device)
    volume, _, _ = generate_volume(args.depth_slices, args.size, seed=0, split="test")
    config = ModelConfig(depth=args.depth, base_channels=args.channels, dims=3)
    torch.manual_seed(0)
    model = UNet(config).eval().to(device)
    geometry = tile_geometry(config, args.tile, volume.shape)
    megavoxels = volume.size / 1e6
    print(f"machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads"
          + (f"; GPU {torch.cuda.get_device_name()}" if device.type == "cuda" else ""))
    print(f"data: volume {'x'.join(map(str, volume.shape))}; 3-D U-Net depth {args.depth}, {args.channels} "
          f"channels; tiles {'x'.join(map(str, geometry.tile))} (+{geometry.margin[0]} margin), "
          f"{len(tile_grid_for(volume.shape, geometry))} tiles; precision "
          f"{describe_precision('auto', device, dtype)}")
    with tempfile.TemporaryDirectory() as folder:
        raw = data_store(Path(folder), volume)
        stats = {"mean": float(volume.mean()), "std": float(volume.std())}
        tensors = tile_inputs(raw, stats, geometry, device)
        ours(model, raw, stats, geometry, device, dtype, Path(folder))  # warm-up
        times = [(ours(model, raw, stats, geometry, device, dtype, Path(folder)),
                  raw_forward(model, tensors, device, dtype)) for _ in range(REPEATS)]
    seconds, limit = min(t for t, _ in times), min(t for _, t in times)
    print(f"3-D prediction: ours {megavoxels / seconds:.3f} MVx/s ({seconds:.2f} s), raw forward on the same "
          f"tiles {megavoxels / limit:.3f} MVx/s ({limit:.2f} s), ratio ours/limit {limit / seconds:.2f}")


if __name__ == "__main__":
    main()

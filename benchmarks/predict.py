"""Prediction speed: our overlap-tile predictor against the raw forward passes and MONAI.

Run: python benchmarks/predict.py [--slices N] [--depth D --channels C] [--device cuda]
(MONAI is a benchmark-only dependency: `pip install monai`; without it that row is skipped.)

On the same slices (ISBI 2012 test slices, synthetic where absent), with the
same network weights, in one process, output megapixels/s of:

1. valid-padded U-Net (the paper's): `unetflow.prediction.predict_stack` (Zarr in,
   Zarr out) against the raw model forward on exactly the tiles it runs (the
   limit);
2. the same architecture with same padding: ours (half-overlapping tiles,
   Gaussian blending) against MONAI's `sliding_window_inference` at the same
   tile size, overlap 0.5 and Gaussian blending;
3. ``precision: auto`` against fp32 (``--model`` gives trained weights, whose
   probabilities are not all near 0.5 as a random network's are) (on the CPU: bf16 where it has bf16 matrix
   units, else fp32 again): speed-up and the share of thresholded (0.5) pixels
   that differ; and 8-fold test-time augmentation's cost.
Each time is the best of 3 runs. Speeds are also given as 512² slices/s.
With --device cuda the same rows on the GPU (use --slices 64 or more there).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common import ISBI, machine
from unetflow import io, ngff
from unetflow.inference import (
    autocast_dtype,
    describe_precision,
    load_model,
    make_forward,
    prepare_for_inference,
    tile_geometry,
)
from unetflow.methods.architectures import ModelConfig
from unetflow.model import UNet
from unetflow.prediction import predict_stack
from unetflow.intensity import Normalization, NormalizedImage
from unetflow.tiling import array_window_reader, tile_grid_for
from unetflow.voxel_size import UNKNOWN


def slices(count: int) -> np.ndarray:
    files = sorted((ISBI / "test").glob("*.png"))[:count]
    if files:
        return np.stack([np.asarray(Image.open(f)) for f in files])
    return np.random.default_rng(0).integers(0, 255, (count, 512, 512), dtype=np.uint8)


def data_store(folder: Path, stack: np.ndarray):
    group = io.create_group(folder / "data.zarr")
    raw = ngff.create_image(group, stack.shape, stack.dtype, name="raw", pyramid=False)
    raw[:] = stack
    return raw


def ours(model, raw, device, dtype, tile: int, folder: Path, name: str, tta: bool = False) -> tuple[float, np.ndarray]:
    geometry = tile_geometry(model.config, tile)
    forward = make_forward(model, device, dtype, geometry.tile, test_time_augmentation=tta)
    stats = {"mean": float(raw[:].mean()), "std": float(raw[:].std())}
    target = ngff.create_probabilities(folder / f"{name}.zarr", (2, *raw.shape), "float32", {}, UNKNOWN,
                                       channel_names=["background", "foreground"])[io.LEVEL0]
    synchronize(device)
    start = time.perf_counter()
    predict_stack(NormalizedImage(raw, Normalization.from_attrs(stats)), target, forward, geometry=geometry, batch_size=1, dtype="float32")
    synchronize(device)
    return time.perf_counter() - start, target[1]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def raw_forward(model, raw, device, tile: int) -> float:
    """The model alone on the tiles our predictor runs, inputs prepared beforehand."""
    geometry = tile_geometry(model.config, tile)
    stats = {"mean": float(raw[:].mean()), "std": float(raw[:].std())}
    inputs = []
    for z in range(raw.shape[0]):
        read = array_window_reader(Normalization.from_attrs(stats).apply(raw[z][None])[0])
        inputs += [read(*((o - m, o + t + m) for o, t, m in zip(origin, geometry.tile, geometry.margin)))
                   for origin in tile_grid_for(raw.shape[1:], geometry)]
    tensors = [torch.from_numpy(np.ascontiguousarray(x))[None, None].to(device) for x in inputs]
    if device.type == "cpu":
        tensors = [t.contiguous(memory_format=torch.channels_last) for t in tensors]
    synchronize(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for tensor in tensors:
            model(tensor)
    synchronize(device)
    return time.perf_counter() - start


def monai(model, raw, device, tile: int) -> float:
    from monai.inferers import sliding_window_inference

    stats = {"mean": float(raw[:].mean()), "std": float(raw[:].std())}
    start = time.perf_counter()
    with torch.inference_mode():
        for z in range(raw.shape[0]):
            image = torch.from_numpy(Normalization.from_attrs(stats).apply(raw[z][None])[0])[None, None].to(device)
            logits = sliding_window_inference(image, (tile, tile), 1, model, overlap=0.5, mode="gaussian")
            torch.softmax(logits, dim=1).cpu()
    return time.perf_counter() - start


REPEATS = 3


def best_of(measure) -> float:
    """Fastest of REPEATS runs: the least disturbed by other load on a shared machine."""
    return min(measure() for _ in range(REPEATS))


def best_of_alternating(first, second, repeats: int = 2 * REPEATS) -> tuple[float, float]:
    """Fastest of ``repeats`` runs of each, taken in turns, so that drifting load on a shared
    machine weighs on both alike."""
    times = [(first(), second()) for _ in range(repeats)]
    return min(t for t, _ in times), min(t for _, t in times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=2)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU rows")
    parser.add_argument("--model", type=Path, help="a trained model.pt for the valid rows (default: random weights)")
    args = parser.parse_args()
    device = torch.device(args.device)
    stack = slices(args.slices)
    megapixels = stack.size / 1e6
    per_slice = 512 * 512 / 1e6

    def speed(seconds: float) -> str:
        return f"{megapixels / seconds:.3f} MP/s ({megapixels / seconds / per_slice:.1f} slices of 512²/s)"

    print(f"machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads"
          + (f"; GPU {torch.cuda.get_device_name()}" if device.type == "cuda" else ""))
    print(f"data: {stack.shape[0]} slices of {stack.shape[1]}x{stack.shape[2]}; network depth {args.depth}, "
          f"{args.channels} channels; tile {args.tile}")
    auto = autocast_dtype("auto", device)
    with tempfile.TemporaryDirectory() as folder:
        raw = data_store(Path(folder), stack)
        torch.manual_seed(0)
        if args.model:
            valid = prepare_for_inference(load_model(args.model, device)[0], device)
            print(f"valid rows: trained model {args.model} (depth {valid.config.depth}, "
                  f"{valid.config.base_channels} channels)")
        else:
            valid = prepare_for_inference(UNet(ModelConfig(depth=args.depth, base_channels=args.channels)).eval(),
                                          device)
        _, fp32 = ours(valid, raw, device, None, args.tile, Path(folder), "valid")
        seconds = best_of(lambda: ours(valid, raw, device, None, args.tile, Path(folder), "valid")[0])
        limit = best_of(lambda: raw_forward(valid, raw, device, args.tile))
        print(f"valid fp32: ours {speed(seconds)}, raw forward {speed(limit)}, ratio {limit / seconds:.2f}")
        auto_seconds = best_of(lambda: ours(valid, raw, device, auto, args.tile, Path(folder), "auto")[0])
        _, mixed = ours(valid, raw, device, auto, args.tile, Path(folder), "auto")
        differing = np.mean((mixed >= 0.5) != (fp32 >= 0.5))
        print(f"valid precision {describe_precision('auto', device, auto)}: {speed(auto_seconds)}, "
              f"speed-up over fp32 {seconds / auto_seconds:.2f}x, thresholded pixels differing: {differing:.2e}")
        tta_seconds = best_of(lambda: ours(valid, raw, device, auto, args.tile, Path(folder), "tta", tta=True)[0])
        print(f"valid precision auto with 8-fold TTA: {speed(tta_seconds)}, {tta_seconds / auto_seconds:.2f}x the time")
        torch.manual_seed(0)
        same = prepare_for_inference(UNet(ModelConfig(depth=args.depth, base_channels=args.channels, padding="same")).eval(), device)
        try:
            same_seconds, monai_seconds = best_of_alternating(
                lambda: ours(same, raw, device, None, args.tile, Path(folder), "same")[0],
                lambda: monai(same, raw, device, args.tile))
        except ModuleNotFoundError:
            print("same fp32: MONAI not installed (pip install monai)")
            return
        print(f"same fp32: ours {speed(same_seconds)}, MONAI {speed(monai_seconds)}, "
              f"ratio ours/MONAI {monai_seconds / same_seconds:.2f}")


if __name__ == "__main__":
    main()

"""Augmentation: our elastic deformation against the elasticdeform package, and Dask scaling.

Run: python benchmarks/augment.py
(elasticdeform is a benchmark-only dependency: `pip install --no-binary
elasticdeform elasticdeform`, its wheel is built against NumPy 1.)

1. The same work for both: a 3-channel 572x572 stack deformed on a 3x3 grid
   with sigma 10 px, orders (3, 0, 1) for image, labels and weights; seconds
   per sample and the ratio, in one process.
2. Whole augmented samples (paper tile 572 -> 388, every transform on) written
   with 1 and 2 Dask workers: samples/s.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import elasticdeform
import numpy as np
from common import isbi_training_labels, machine
from unetflow import io, ngff
from unetflow.augmentation import AugmentSettings, OnlineSamples
from unetflow.steps.augment import precompute
from unetflow.transforms import deform_elastically

DEFAULTS = AugmentSettings.from_config({})  # the schema's (the paper's) transforms

REPEATS = 30


def interleaved_medians(first, second) -> tuple[float, float]:
    """Median seconds of each function, run alternately so that load changes hit both alike."""
    first(), second()  # warm-up (numba compiles here)
    timings: tuple[list[float], list[float]] = ([], [])
    for _ in range(REPEATS):
        for function, times in zip((first, second), timings):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
    return float(np.median(timings[0])), float(np.median(timings[1]))


def training_stores(folder: Path) -> tuple[Path, Path]:
    found = isbi_training_labels()
    classes = found[1][:8] if found else (np.random.default_rng(0).random((8, 512, 512)) > 0.2).astype(np.uint8)
    shape = classes.shape
    data = io.create_group(folder / "data.zarr")
    raw = ngff.create_image(data, shape, np.dtype(np.uint8), name="raw")
    raw[:] = np.random.default_rng(1).integers(0, 255, shape, dtype=np.uint8)
    raw.attrs["unetflow"] = {"normalization": {"mean": 127.0, "std": 70.0}}
    ngff.create_label(data, "classes", shape, np.dtype(np.uint8))[:] = classes
    weights = io.create_group(folder / "weights.zarr")
    ngff.create_image(weights, shape, np.dtype(np.float32), name="weights", pyramid=False)[:] = 1.0 + 9.0 * (classes == 0)
    return folder / "data.zarr", folder / "weights.zarr"


def samples_per_second(samples: OnlineSamples, folder: Path, workers: int) -> float:
    start = time.perf_counter()
    precompute(samples, folder / f"aug-{workers}.zarr", scheduler="threads", workers=workers)
    return len(samples) / (time.perf_counter() - start)


def main() -> None:
    rng = np.random.default_rng(0)
    stack = [rng.random((572, 572)).astype(np.float32), (rng.random((572, 572)) > 0.5).astype(np.float32),
             rng.random((572, 572)).astype(np.float32)]
    theirs, ours = interleaved_medians(
        lambda: elasticdeform.deform_random_grid(stack, sigma=10, points=3, order=[3, 0, 1]),
        lambda: deform_elastically(stack, [3, 0, 1], rng, grid=3, sigma=10),
    )
    print(f"machine: {machine()}")
    print(f"elasticdeform.deform_random_grid, 3 x 572 x 572, orders 3/0/1: {theirs:.4f} s/sample (median)")
    print(f"unetflow.transforms.deform_elastically, same work: {ours:.4f} s/sample")
    print(f"ratio elasticdeform/ours: {theirs / ours:.2f}x")
    with tempfile.TemporaryDirectory() as folder:
        data, weights = training_stores(Path(folder))
        samples = OnlineSamples([data], [weights], settings=replace(DEFAULTS, noise_probability=0.5),
                                input_size=572, output_size=388, seed=0, length=64)
        samples[0]
        one, two = samples_per_second(samples, Path(folder), 1), samples_per_second(samples, Path(folder), 2)
    print(f"whole samples (572 -> 388, all transforms), Dask threads: 1 worker {one:.1f}/s, "
          f"2 workers {two:.1f}/s, speed-up {two / one:.2f}x")


if __name__ == "__main__":
    main()

"""Training speed: iterations/s and the share of step time spent waiting for data.

Run: python benchmarks/train.py [--gpu]
On the CPU: the demo model (depth 3, 16 channels, 188 -> 100 tiles, batch 4)
and the paper model (depth 4, 64 channels, 572 -> 388, batch 1), both on
precomputed samples read through the same SampleBank and DataLoader as the
train rule. With --gpu (a CUDA device): 100 iterations of the paper model in
fp32 and in mixed precision, iterations/s and peak GPU memory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import machine
from unetflow.augment import create_sample_store
from unetflow.model import ModelConfig, model_input_size
from unetflow.train import TrainSettings, train
from unetflow.training_data import SampleBank


def sample_bank(folder: Path, config: ModelConfig, output: int, count: int) -> SampleBank:
    size = model_input_size(config, output)
    store = create_sample_store(folder / f"samples-{size}.zarr", count, size, output, {})
    rng = np.random.default_rng(0)
    store["image"][:] = rng.normal(size=(count, size, size)).astype(np.float32)
    store["labels"][:] = rng.integers(0, 2, (count, output, output), dtype=np.uint8)
    store["weights"][:] = rng.random((count, output, output)).astype(np.float32)
    return SampleBank([folder / f"samples-{size}.zarr"])


def measure(name: str, config: ModelConfig, output: int, batch: int, iterations: int, device: str,
            precision: str, folder: Path) -> dict:
    samples = sample_bank(folder, config, output, 16)
    settings = TrainSettings(iterations=iterations, batch_size=batch, device=device, precision=precision,
                             validate_every=10**9, checkpoint_every=10**9, log_every=iterations)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    metrics = train(model_config=config, settings=settings, samples=samples, validation=[],
                    out_dir=folder / name, fingerprint_of={})
    wall = time.perf_counter() - start
    result = {"name": name, "iterations/s": iterations / metrics["seconds"].iloc[-1],
              "data wait": metrics["data_wait_fraction"].iloc[-1], "wall s": wall}
    if device.startswith("cuda"):
        result["peak GiB"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu", action="store_true")
    args = parser.parse_args()
    demo = ModelConfig(depth=3, base_channels=16)
    paper = ModelConfig()
    print(f"machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as folder:
        runs = []
        if args.gpu:
            print(f"GPU: {torch.cuda.get_device_name()}")
            for precision in ("fp32", "auto"):
                runs.append(measure(f"paper 572, batch 1, {precision}", paper, 388, 1, 100, "cuda", precision, Path(folder)))
        else:
            runs.append(measure("demo 188->100, batch 4", demo, 100, 4, 40, "cpu", "fp32", Path(folder)))
            runs.append(measure("paper 572->388, batch 1", paper, 388, 1, 5, "cpu", "fp32", Path(folder)))
        for run in runs:
            print(" | ".join(f"{key} {value:.3f}" if isinstance(value, float) else f"{value}" for key, value in run.items()))


if __name__ == "__main__":
    main()

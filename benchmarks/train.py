"""Training speed: the sample loader against a plain memory copy, and iterations/s of training.

Run: python benchmarks/train.py [--device cuda] [--skip-loader]

1. Loader: paper-size samples (572 -> 388) from a bank larger than 2 GiB
   (1,100 samples, 2.3 GB) through the train rule's SampleBank + DataLoader,
   in memory (the default when it fits in half the available memory) and
   streamed from Zarr; samples/s against the limit, a NumPy copy of the same
   bytes per sample.
2. Training, through ``unetflow.training.train`` as the rule runs it: iterations/s,
   samples/s, the share of step time spent waiting for data, and (CUDA) peak
   memory. On the CPU: the demo model (188 -> 100, batch 4) and the paper model
   (572 -> 388, batch 1), in fp32 and with ``precision: auto``. With
   ``--device cuda``: the paper model at batch 1 and 4, fp32 and auto (bf16).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from common import machine
from unetflow.steps.augment import create_sample_store
from unetflow.inference import autocast_dtype, describe_precision
from unetflow.methods.architectures import ModelConfig
from unetflow.training import TrainSettings, train
from unetflow.training_data import IterationBatches, SampleBank, collate

PAPER_BANK_SAMPLES = 1100  # 2.3 GB at 572 -> 388: over the former fixed 2 GiB in-memory limit


def sample_store(folder: Path, config: ModelConfig, output: int, count: int) -> Path:
    size = config.input_size(output)
    path = folder / f"samples-{size}-{count}.zarr"
    if path.exists():
        return path
    store = create_sample_store(path, count, size, output, {})
    rng = np.random.default_rng(0)
    for start in range(0, count, 100):
        part = slice(start, min(start + 100, count))
        n = part.stop - part.start
        store["image"][part] = rng.normal(size=(n, size, size)).astype(np.float32)
        store["labels"][part] = rng.integers(0, 2, (n, output, output), dtype=np.uint8)
        store["weights"][part] = rng.random((n, output, output)).astype(np.float32)
    return path


def loader_rate(bank: SampleBank, batches: int) -> float:
    """Samples/s of the train rule's data loader over ``batches`` batches of 1 (after the first)."""
    loader = DataLoader(bank, batch_sampler=IterationBatches(seed=0, start=0, stop=batches + 1, batch_size=1,
                                                             count=len(bank)), collate_fn=collate)
    batches_iter = iter(loader)
    next(batches_iter)  # the in-memory bank loads here
    start = time.perf_counter()
    for _ in batches_iter:
        pass
    return batches / (time.perf_counter() - start)


def copy_rate(bank: SampleBank, samples: int) -> float:
    """The limit: samples/s of copying one sample's bytes out of memory-resident arrays."""
    arrays = [np.ones((64, *shape), dtype) for shape, dtype in
              (((bank.input_size,) * 2, np.float32), ((bank.output_size,) * 2, np.uint8),
               ((bank.output_size,) * 2, np.float32))]
    order = np.random.default_rng(0).integers(0, 64, samples)
    start = time.perf_counter()
    for index in order:
        for array in arrays:
            np.array(array[index:index + 1])
    return samples / (time.perf_counter() - start)


def loader_benchmark(folder: Path) -> None:
    path = sample_store(folder, ModelConfig(), 388, PAPER_BANK_SAMPLES)
    in_memory = SampleBank([path], in_memory_limit=10**12)
    streamed = SampleBank([path], in_memory_limit=0)
    limit = copy_rate(in_memory, 400)
    print(f"loader, paper samples 572 -> 388, bank {in_memory.nbytes / 1e9:.2f} GB:")
    for name, bank, batches in (("in memory", in_memory, 400), ("streamed from Zarr", streamed, 100)):
        rate = loader_rate(bank, batches)
        print(f"  {name}: {rate:.0f} samples/s, {rate / limit:.2f}x of a memory copy ({limit:.0f} samples/s)")


def measure(name: str, config: ModelConfig, output: int, batch: int, iterations: int, device: str,
            precision: str, folder: Path) -> dict:
    samples = SampleBank([sample_store(folder, config, output, 16)])
    settings = TrainSettings.from_config(dict(iterations=iterations, batch_size=batch, device=device, precision=precision,
                             validate_every=10**9, checkpoint_every=10**9, log_every=iterations))
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    metrics = train(architecture=config, settings=settings, samples=samples, validation=[],
                    out_dir=folder / name.replace(" ", "_"), fingerprint_of={})
    rate = iterations / metrics["seconds"].iloc[-1]
    resolved = describe_precision(precision, torch.device(device), autocast_dtype(precision, torch.device(device)))
    result = {"run": name, "precision": resolved, "iterations/s": rate, "samples/s": rate * batch,
              "data wait": metrics["data_wait_fraction"].iloc[-1]}
    if device.startswith("cuda"):
        result["peak GiB"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def training_benchmark(device: str, folder: Path) -> None:
    demo, paper = ModelConfig(depth=3, base_channels=16), ModelConfig()
    if device.startswith("cuda"):
        print(f"GPU: {torch.cuda.get_device_name()}")
        runs = [(f"paper 572->388, batch {batch}", paper, 388, batch, 200, precision)
                for batch in (1, 4) for precision in ("fp32", "auto")]
    else:
        runs = [(name, config, output, batch, iterations, precision)
                for name, config, output, batch, iterations in (("demo 188->100, batch 4", demo, 100, 4, 40),
                                                                ("paper 572->388, batch 1", paper, 388, 1, 5))
                for precision in ("fp32", "auto")]
    for name, config, output, batch, iterations, precision in runs:
        measure(name, config, output, batch, 2, device, precision, folder)  # warm-up
        result = measure(name, config, output, batch, iterations, device, precision, folder)
        print("  " + " | ".join(f"{key} {value:.3f}" if isinstance(value, float) else f"{value}"
                                for key, value in result.items()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU rows")
    parser.add_argument("--skip-loader", action="store_true")
    args = parser.parse_args()
    print(f"machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as folder:
        if not args.skip_loader:
            loader_benchmark(Path(folder))
        training_benchmark(args.device, Path(folder))


if __name__ == "__main__":
    main()

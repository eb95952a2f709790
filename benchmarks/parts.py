"""Prediction of a large stack in 1 part and in 2 parts, through the snakemake CLI.

A synthetic stack of 64 slices of 2048² and a small U-Net (depth 2, 8 base
channels, seeded random weights, fp32) are predicted in a temporary copy of the
workflow with ``--cores 2 --resources gpu=2``: once as one job with 2 threads,
once as two part jobs with 1 thread each (and the merge). Wall time is the
snakemake run's (the data are ingested beforehand), peak memory per job is the
``max_rss`` of each job's benchmark file. The two outputs are checked equal.

    python benchmarks/parts.py [--slices 64] [--size 2048]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import tifffile
import torch
import yaml
import zarr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(REPO / "benchmarks"))

from common import machine  # noqa: E402
from unetflow import inference  # noqa: E402
from unetflow.methods.architectures import ModelConfig  # noqa: E402

PARTS = (1, 2)


def workflow_copy(folder: Path) -> Path:
    folder.mkdir()
    for part in ("Snakefile", "workflow", "config", "profiles", "envs"):
        source = REPO / part
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, folder / part)
    return folder


def snakemake(directory: Path, target: str, *arguments: str) -> float:
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "snakemake", target, "--cores", "2", "--resources", "gpu=2",
                          *arguments], cwd=directory, capture_output=True, text=True)
    if run.returncode:
        raise RuntimeError(f"snakemake {target} failed in {directory}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    return time.perf_counter() - start


def peak_memory_mb(directory: Path) -> list[float]:
    files = sorted((directory / "benchmarks/runs/predict/mine").glob("*.tsv"))
    return [float(next(csv.DictReader(open(path), delimiter="\t"))["max_rss"]) for path in files]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        stack = np.random.default_rng(0).integers(0, 256, (args.slices, args.size, args.size), dtype=np.uint8)
        tifffile.imwrite(scratch / "stack.tif", stack, imagej=True, metadata={"axes": "ZYX"})
        architecture = ModelConfig(depth=2, base_channels=8, dropout=0.0)
        torch.manual_seed(0)
        inference.save_model(scratch / "model.pt", architecture, architecture.network())
        results = {}
        for parts in PARTS:
            directory = workflow_copy(scratch / f"parts-{parts}")
            config = {"datasets": {"big": {"images": str(scratch / "stack.tif")}},
                      "models": {"mine": {"file": str(scratch / "model.pt")}}, "run_models": ["mine"],
                      "train_on": [], "validate_on": [], "predict_on": ["big"],
                      "predict": {"parts": parts, "tile": 512, "precision": "fp32", "device": "cpu"}}
            (directory / "big.yaml").write_text(yaml.safe_dump(config))
            options = ["--configfile", "big.yaml", "--set-threads", f"predict={2 // parts}"]
            snakemake(directory, "results/big/data.zarr", *options)
            seconds = snakemake(directory, "results/predictions/mine/big.zarr", *options)
            output = zarr.open_group(str(directory / "results/predictions/mine/big.zarr"), mode="r")
            results[parts] = (seconds, peak_memory_mb(directory), output["0"][:, :: args.slices // 4])
        assert np.array_equal(results[1][2], results[2][2]), "1 part and 2 parts differ"
    one, two = results[1][0], results[2][0]
    print(f"| {date.today()} | {machine()} | {args.slices} x {args.size}², depth-2 U-Net, 8 channels, fp32 | "
          f"{one:.1f} s | {two:.1f} s | {one / two:.2f}x | "
          f"{', '.join(f'{m:.0f}' for m in results[1][1])} MB | {', '.join(f'{m:.0f}' for m in results[2][1])} MB |")


if __name__ == "__main__":
    main()

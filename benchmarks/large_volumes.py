"""Data larger than memory (issue 31): segment and evaluate block by block, with each job's peak
memory, beside the whole-volume path; a 16,384^2 slice; 3-D prediction on >= 100 M voxels; and
the files each store writes per 10^9 voxels.

Run: python benchmarks/large_volumes.py [--depth 512 --size 1024] [--compare 256] [--plane 16384]
     [--predict-depth 100 --predict-size 1024] [--workers 2] [--out DIR] [--only NAME ...]

The data are synthetic and made block by block: cells of a jittered-grid Voronoi
tessellation (16 voxels apart), one-voxel membranes where the nearest and second-nearest
seed are about equally far, a foreground probability that falls off across the membranes
with noise (stored as uint8, as ``predict.dtype: uint8`` does), and the cells as ground
truth. Every step runs as the workflow runs it, ``python -m unetflow.steps.<step>``, in a
process of its own under ``/usr/bin/time -v``, whose maximum resident set size is the
job's peak memory. The settings are the schema's defaults (watershed, distance seeds,
``blocks``: edge 128, halo 24), with ``--workers`` Dask threads.

1. ``volume``: segment and evaluate the ``--depth`` x ``--size``^2 volume (0.5 G voxels by
   default) block by block.
2. ``compare``: a ``--compare``^3 volume, segmented and evaluated whole (one block) and
   block by block: the memory and time ratio, where the whole path still fits.
3. ``plane``: one ``--plane``^2 slice (2-D), segmented and evaluated in blocks.
4. ``predict``: a 3-D U-Net (depth 2, 16 channels: the 3-D demo's) on a
   ``--predict-depth`` x ``--predict-size``^2 volume (random weights, synthetic image).
5. Files per 10^9 voxels of every store written.

Results go to ``--out``/results.json and are printed as Markdown rows.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import torch
import zarr
from scipy.spatial import cKDTree
from skimage.metrics import adapted_rand_error

from common import machine
from unetflow import io, ngff
from unetflow.blocks import BlockGrid
from unetflow.inference import save_model
from unetflow.methods.architectures import ModelConfig
from unetflow.voxel_size import VoxelSize

SPACING = 16.0  # voxels between cell seeds
MEMBRANE = 1.5  # voxels: d2 - d1 below this is membrane
VOXELS = VoxelSize(z=8, y=8, x=8, unit="nanometer")


def cell_seeds(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    axes = [np.arange(min(SPACING, edge) / 2, edge, SPACING) for edge in shape]  # a single slice: seeds in it
    centres = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(shape))
    return centres + rng.uniform(-0.35, 0.35, centres.shape) * SPACING


def synthetic_block(tree: cKDTree, region: tuple[slice, ...], rng: np.random.Generator):
    """Foreground probability (uint8 x 255) and cells (uint32, 0 = membrane) of one region."""
    coordinates = np.stack(np.meshgrid(*(np.arange(axis.start, axis.stop) for axis in region), indexing="ij"), -1)
    distances, nearest = tree.query(coordinates.reshape(-1, len(region)).astype(np.float32), k=2)
    gap = (distances[:, 1] - distances[:, 0]).reshape(coordinates.shape[:-1])
    probability = 1 / (1 + np.exp(-(gap - MEMBRANE) / 0.5)) + rng.normal(0, 0.05, gap.shape)
    cells = np.where(gap >= MEMBRANE, nearest[:, 0].reshape(gap.shape) + 1, 0).astype(np.uint32)
    return np.round(np.clip(probability, 0, 1) * 255).astype(np.uint8), cells


def write_dataset(folder: Path, shape: tuple[int, int, int], *, volume: bool, workers: int) -> tuple[Path, Path]:
    """A data.zarr (blank image, labels) and a predictions.zarr of the synthetic cells, chunk by chunk."""
    tree = cKDTree(cell_seeds(shape, np.random.default_rng(0)))
    data = io.create_group(folder / "data.zarr")
    raw = ngff.create_image(data, shape, np.dtype(np.uint8), VOXELS, name="raw", volume=volume, pyramid=False)
    objects = ngff.create_label(data, "objects", shape, np.dtype(np.uint32), VOXELS, volume=volume)
    classes = ngff.create_label(data, "classes", shape, np.dtype(np.uint8), VOXELS, volume=volume)
    predictions = io.create_group(folder / "predictions.zarr")
    probabilities = ngff.create_image(predictions, (2, *shape), "uint8", VOXELS, name="probabilities",
                                      channel_names=["background", "foreground"], attributes={"scale": 255},
                                      volume=volume)

    def one_chunk(number: int) -> None:
        region = chunks.block(number).core
        foreground, cells = synthetic_block(tree, region, np.random.default_rng(number))
        probabilities[(1, *region)], probabilities[(0, *region)] = foreground, 255 - foreground
        objects[region], classes[region], raw[region] = cells, cells > 0, 0

    chunks = BlockGrid(shape, objects.chunks, (0, 0, 0))
    with dask.config.set(scheduler="threads", num_workers=workers):
        dask.compute(*(dask.delayed(one_chunk)(number) for number in range(len(chunks))))
    for group in (data["labels/objects"], data["labels/classes"], predictions):
        with dask.config.set(scheduler="threads", num_workers=workers):
            ngff.write_pyramid(group)
    return folder / "data.zarr", folder / "predictions.zarr"


def timed(arguments: list[str], log: Path) -> dict:
    """Run a step as its own process under /usr/bin/time -v: seconds and peak resident memory."""
    start = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", *arguments], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments)} failed: see {log}\n{result.stderr[-2000:]}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    return {"seconds": round(seconds, 1), "peak_rss_gib": round(peak_kb / 2**20, 3)}


def files_per_gigavoxel(store: Path, voxels: int) -> float:
    """Files of a store (every level and array) per 10^9 voxels of its image."""
    return round(sum(1 for path in store.rglob("*") if path.is_file()) / voxels * 1e9)


def segment_and_evaluate(folder: Path, data: Path, predictions: Path, *, dims: int, blocks: dict, workers: int,
                         name: str) -> dict:
    segmentation, scores = folder / f"{name}.zarr", folder / f"{name}.csv"
    common = ["--dims", str(dims), "--blocks", json.dumps(blocks), "--workers", str(workers)]
    segment = timed(["unetflow.steps.segment", str(predictions), str(segmentation),
                     "--settings", json.dumps({"settings": "fixed"}), *common], folder / f"{name}-segment.log")
    evaluate = timed(["unetflow.steps.evaluate", "--data", str(data), "--predictions", str(predictions),
                      "--segmentation", str(segmentation), "--out", str(scores), *common], folder / f"{name}-evaluate.log")
    voxels = int(np.prod(io.open_objects(segmentation).shape))
    for step in (segment, evaluate):
        step["megavoxels_per_s"] = round(voxels / step["seconds"] / 1e6, 3)
    row = scores.read_text().splitlines()
    return {"voxels": voxels, "segment": segment, "evaluate": evaluate, "scores_rows": len(row) - 1,
            "files_per_1e9_voxels": {"segmentation": files_per_gigavoxel(segmentation, voxels),
                                     "predictions": files_per_gigavoxel(predictions, voxels),
                                     "data": files_per_gigavoxel(data, voxels)}}


def volume_run(out: Path, shape: tuple[int, int, int], workers: int) -> dict:
    folder = out / "volume"
    started = time.perf_counter()
    data, predictions = write_dataset(folder, shape, volume=True, workers=workers)
    made = time.perf_counter() - started
    result = segment_and_evaluate(folder, data, predictions, dims=3, blocks={}, workers=workers, name="blocks")
    return {"shape": shape, "synthesis_s": round(made, 1), **result}


def compare_run(out: Path, edge: int, workers: int) -> dict:
    folder = out / "compare"
    data, predictions = write_dataset(folder, (edge,) * 3, volume=True, workers=workers)
    blocks = segment_and_evaluate(folder, data, predictions, dims=3, blocks={}, workers=workers, name="blocks")
    whole = segment_and_evaluate(folder, data, predictions, dims=3, blocks={"edge": 10**6}, workers=workers,
                                 name="whole")
    first, second = (zarr.open_group(str(folder / f"{name}.zarr"), mode="r")["0"][:] for name in ("whole", "blocks"))
    interior = zarr.open_group(str(predictions), mode="r")["0"][1] >= 128
    pairs = np.unique(np.stack([first[interior], second[interior]]), axis=1).shape[1]
    same = pairs == len(np.unique(first[interior])) == len(np.unique(second[interior]))
    return {"shape": (edge,) * 3, "whole": whole, "blocks": blocks, "same_partition_of_the_interior": bool(same),
            "objects_whole_blocks": [len(np.unique(first[interior])), len(np.unique(second[interior]))],
            "adapted_rand_error_blocks_vs_whole": round(float(adapted_rand_error(first, second)[0]), 5),
            "ground_truth_adapted_rand_error_whole_blocks": [round(float(pd.read_csv(folder / f"{name}.csv").iloc[-1][
                "adapted_rand_error"]), 5) for name in ("whole", "blocks")],
            "memory_ratio_whole_over_blocks": round(whole["segment"]["peak_rss_gib"] / blocks["segment"]["peak_rss_gib"], 2),
            "time_ratio_blocks_over_whole": round(blocks["segment"]["seconds"] / whole["segment"]["seconds"], 2)}


def plane_run(out: Path, edge: int, workers: int) -> dict:
    folder = out / "plane"
    data, predictions = write_dataset(folder, (1, edge, edge), volume=False, workers=workers)
    return {"shape": (1, edge, edge), **segment_and_evaluate(folder, data, predictions, dims=2, blocks={},
                                                             workers=workers, name="blocks")}


def predict_run(out: Path, shape: tuple[int, int, int], workers: int) -> dict:
    folder = out / "predict"
    folder.mkdir(parents=True, exist_ok=True)
    data = io.create_group(folder / "data.zarr")
    raw = ngff.create_image(data, shape, np.dtype(np.uint8), VOXELS, name="raw", volume=True)
    rng = np.random.default_rng(0)
    for start in range(0, shape[0], raw.chunks[0]):
        slab = rng.integers(40, 200, (min(raw.chunks[0], shape[0] - start), *shape[1:]), dtype=np.uint8)
        raw[start:start + len(slab)] = slab
    raw.attrs["unetflow"] = {"normalization": {"method": "zscore", "mean": 120.0, "std": 46.0}}
    architecture = ModelConfig(depth=2, base_channels=16, dims=3, dropout=0.0)
    torch.manual_seed(0)
    save_model(folder / "model.pt", architecture, architecture.network())
    predictions = folder / "predictions.zarr"
    step = timed(["unetflow.steps.predict", str(folder / "model.pt"), str(folder / "data.zarr"), str(predictions),
                  "--settings", json.dumps({"tile": 48}), "--runtime", json.dumps({"device": "cpu"}),
                  "--threads", str(workers)], folder / "predict.log")
    voxels = int(np.prod(shape))
    return {"shape": shape, "model": "3-D U-Net, depth 2, 16 channels (the 3-D demo's), tile 48",
            **step, "megavoxels_per_s": round(voxels / step["seconds"] / 1e6, 3),
            "files_per_1e9_voxels": {"predictions": files_per_gigavoxel(predictions, voxels),
                                     "data": files_per_gigavoxel(folder / "data.zarr", voxels)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=512)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--compare", type=int, default=256)
    parser.add_argument("--plane", type=int, default=16384)
    parser.add_argument("--predict-depth", type=int, default=100)
    parser.add_argument("--predict-size", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/runs/large_volumes"))
    parser.add_argument("--only", nargs="*", default=["compare", "plane", "predict", "volume"])
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    results = {"machine": machine(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
               "workers": args.workers, "command": " ".join(sys.argv)}
    runs = {"compare": lambda: compare_run(args.out, args.compare, args.workers),
            "plane": lambda: plane_run(args.out, args.plane, args.workers),
            "predict": lambda: predict_run(args.out, (args.predict_depth, args.predict_size, args.predict_size),
                                           args.workers),
            "volume": lambda: volume_run(args.out, (args.depth, args.size, args.size), args.workers)}
    for name in args.only:
        results[name] = runs[name]()
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
        print(json.dumps({name: results[name]}, indent=2), flush=True)
        for store in (args.out / name).glob("*.zarr"):  # the data are big: keep only the logs
            shutil.rmtree(store)


if __name__ == "__main__":
    main()

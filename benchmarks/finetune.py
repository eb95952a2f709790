"""Fine-tuning against training from scratch (issue 32): iterations to the same validation loss.

Run: python benchmarks/finetune.py [--iterations 400] [--out DIR]

1. The 2-D demo runs (``snakemake --cores 2``) and its model is exported
   (``results/models/small/bioimageio.zip``).
2. "A lab's own data": synthetic EM-like slices of other cells (another seed) imaged
   differently (contrast 0.7, brighter, more noise), 8 slices to train on and 2 to validate.
3. One workflow run trains two models side by side on them, with the same samples,
   iterations, schedule and seed: ``fresh`` (the demo's architecture, from scratch) and
   ``tuned`` (``start_from`` the export). Validation every 20 iterations.

Reported: the validation loss each reaches at the end, and the first validated iteration
at which each is at or below ``fresh``'s final validation loss (the same validation loss).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
import yaml

from common import machine

REPO = Path(__file__).resolve().parents[1]
PARTS = ("Snakefile", "workflow", "config", "profiles", "envs")


def snakemake(directory: Path, *args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=directory, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"snakemake {' '.join(args)} failed in {directory}:\n{result.stderr[-3000:]}")


def lab_stack(path: Path, count: int, seed: int) -> None:
    """Slices of other cells, imaged with less contrast, brighter and noisier than the demo's."""
    sys.path.insert(0, str(REPO / "workflow"))
    from unetflow import synthetic

    images, binary, _ = synthetic.generate_stack(count, 256, seed=seed)
    rng = np.random.default_rng(seed)
    shifted = 0.7 * images.astype(np.float32) + 50 + rng.normal(0, 12, images.shape)
    tifffile.imwrite(path / "lab-images.tif", np.clip(shifted, 0, 255).astype(np.uint8), photometric="minisblack")
    tifffile.imwrite(path / "lab-labels.tif", binary, photometric="minisblack")


def first_reaching(metrics: pd.DataFrame, target: float) -> int | None:
    validated = metrics.dropna(subset=["val_loss"])
    reached = validated[validated["val_loss"] <= target]
    return int(reached["iteration"].iloc[0]) if len(reached) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("/tmp/unetflow-finetune-benchmark"))
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    run = args.out / "run"
    run.mkdir(parents=True)
    for part in PARTS:
        (shutil.copytree if (REPO / part).is_dir() else shutil.copy2)(REPO / part, run / part)
    started = time.perf_counter()
    snakemake(run, "--cores", "2")
    snakemake(run, "--cores", "2", "results/models/small/bioimageio.zip")
    demo_seconds = time.perf_counter() - started
    lab_stack(run, 10, seed=11)
    architecture = {"depth": 3, "base_channels": 16, "padding": "valid"}
    config = {
        "datasets": {"lab_train": {"images": "lab-images.tif", "labels": "lab-labels.tif", "slices": "0-7"},
                     "lab_val": {"images": "lab-images.tif", "labels": "lab-labels.tif", "slices": "8-9"}},
        "train_on": ["lab_train"], "validate_on": ["lab_val"], "predict_on": [],
        "models": {"fresh": architecture, "tuned": {"start_from": "results/models/small/bioimageio.zip"}},
        "augment": {"samples": 200, "output_size": 100},
        "train": {"iterations": args.iterations, "batch_size": 4, "optimizer": "adam", "lr": 0.002,
                  "schedule": "cosine", "seed": 0, "validate_every": 20, "checkpoint_every": 100},
        "segment": {"settings": "fixed"},
    }
    (run / "lab.yaml").write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    # targets before --configfile, which takes every file name after it
    snakemake(run, "--cores", "2", "results/models/fresh/model.pt", "results/models/tuned/model.pt",
              "--configfile", "lab.yaml")
    seconds = time.perf_counter() - started
    metrics = {name: pd.read_csv(run / f"results/models/{name}/metrics.csv") for name in ("fresh", "tuned")}
    target = float(metrics["fresh"]["val_loss"].dropna().iloc[-1])
    rows = {name: {"final_val_loss": float(table["val_loss"].dropna().iloc[-1]),
                   "first_val_loss": float(table["val_loss"].dropna().iloc[0]),
                   "iterations_to_target": first_reaching(table, target)} for name, table in metrics.items()}
    result = {"machine": machine(), "iterations": args.iterations, "target_val_loss": target, "models": rows,
              "seconds_both": round(seconds, 1), "demo_seconds": round(demo_seconds, 1)}
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

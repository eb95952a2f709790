"""Helpers shared by the benchmark scripts: data sets, the machine's description, and scoring a
run's predictions with this checkout's steps."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from skimage.measure import label as connected_components

REPO = Path(__file__).resolve().parents[1]
ISBI = REPO.parent / "shared" / "data" / "isbi2012"
PARTS = ("Snakefile", "workflow", "config", "profiles", "envs")  # what a run of the workflow needs


def snapshot(out: Path) -> Path:
    """A copy of the workflow under ``out``, so that every run of a benchmark runs the same code."""
    code = out / "code"
    if code.exists():
        shutil.rmtree(code)
    code.mkdir(parents=True)
    for part in PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, code / part, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, code / part)
    return code


def checkout_of(code: Path, checkout: Path) -> Path:
    """An empty run folder at ``checkout`` whose workflow parts link to the snapshot ``code``."""
    if checkout.exists():
        shutil.rmtree(checkout)
    checkout.mkdir(parents=True)
    for part in PARTS:
        if (code / part).exists():
            (checkout / part).symlink_to(code / part)
    return checkout


def machine() -> str:
    """CPU model and core count (or the GPU's name where torch sees one)."""
    model = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores"


def isbi_training_labels() -> tuple[str, np.ndarray, np.ndarray] | None:
    """(name, classes, objects) of the 22 ISBI training slices, or None where absent."""
    folder = ISBI / "train" / "label"
    if not folder.is_dir():
        return None
    labels = np.stack([np.asarray(Image.open(path)) for path in sorted(folder.glob("*.png"))])
    classes = (labels == 255).astype(np.uint8)
    objects = np.stack([connected_components(plane, connectivity=1) for plane in classes]).astype(np.uint32)
    return "ISBI 2012 training labels (22 x 512 x 512)", classes, objects


def isbi_png_datasets() -> dict:
    """The ISBI config's datasets (train 0-14, validate 15-17, report 18-21, test) read from
    ../shared's PNG folders instead of the challenge's TIFF files."""
    image, truth = str(ISBI / "train" / "image"), str(ISBI / "train" / "label")
    voxel_size = {"z": 50, "y": 4, "x": 4, "unit": "nanometer"}
    datasets = {name: {"images": image, "labels": truth, "slices": slices, "voxel_size": voxel_size}
                for name, slices in (("isbi_train", "0-14"), ("isbi_val", "15-17"), ("isbi_report", "18-21"))}
    datasets["isbi_test"] = {"images": str(ISBI / "test"), "voxel_size": voxel_size}
    return datasets


# the evaluation columns the ISBI scripts' rows show (benchmarks/isbi_methods.py, isbi_ensemble.py)
REPORT_COLUMNS = ["adapted_rand_error", "vi_split", "vi_merge", "objects_v_rand", "objects_v_info", "v_rand", "v_info",
                  "pixel_error_at_threshold", "average_precision", "f1"]


def run_step(name: str, *arguments: str, cwd: Path) -> None:
    """Run this checkout's step ``name`` (``python -m unetflow.steps.<name>``) in ``cwd``."""
    done = subprocess.run([sys.executable, "-m", f"unetflow.steps.{name}", *arguments], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "workflow")})
    if done.returncode:
        sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")


def report_scores(checkout: Path, model: str, settings: dict, scratch: Path) -> dict:
    """The dataset row of ``model``'s report slices (a run's ``isbi_report``) segmented with the
    ``segment`` ``settings`` and scored, by this checkout's segment and evaluate steps in
    ``scratch`` (never in the run's results)."""
    name = f"{model}-{settings['method']}"
    predictions = str(checkout / "results/predictions" / model / "isbi_report.zarr")
    segmentation, table = scratch / f"{name}.zarr", scratch / f"{name}.csv"
    run_step("segment", predictions, str(segmentation), "--settings", json.dumps({"settings": "fixed", **settings}),
             "--dims", "2", "--workers", "2", cwd=checkout)
    run_step("evaluate", "--data", str(checkout / "results/isbi_report/data.zarr"), "--predictions", predictions,
             "--segmentation", str(segmentation), "--out", str(table), "--model", model, "--dataset", "isbi_report",
             "--dims", "2", "--workers", "2", cwd=checkout)
    rows = pd.read_csv(table, dtype={"slice": str})
    return rows[rows["slice"] == "all"].iloc[0].to_dict()

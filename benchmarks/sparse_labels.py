"""What the ignore label buys (issue 32): ISBI 2012 trained from full labels, from ~10 % of each
training slice's cells (the rest unknown), and from the same sparse labels read with the
unlabelled pixels as background, with one training budget; scored on the report slices.

Run: python benchmarks/sparse_labels.py [--iterations 400] [--samples 500] [--keep 0.1] [--out DIR]

Every variant is the workflow itself (``snakemake --configfile config/isbi2012.yaml
variant.yaml`` in a copy of the checkout) with the same model (the demo's depth-3,
16-channel U-Net), samples, iterations and seed. Only the training slices' labels
(0-14) differ:

- ``full``: the ground truth;
- ``ignore``: in each slice a fraction ``--keep`` of the cells (connected components of the
  interior) with the membrane within 3 px of them; every other pixel painted 128 and declared
  ``ignore_label: 128`` (how a lab paints a few cells in napari);
- ``background``: the same painting with the unknown pixels as membrane (0), which is what
  the labels would teach without an ignore label.

Validation and tuning use slices 15-17 with full labels in every variant (so that the
segmentation settings are chosen alike), and slices 18-21 are scored: adapted Rand error
and the challenge's V_Rand, the dataset rows of results/evaluation/cpu30/isbi_report.csv.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image
from scipy import ndimage
from skimage.measure import label as connected_components

from common import ISBI, checkout_of, machine, snapshot

UNKNOWN = 128
MEMBRANE_REACH = 3  # px of membrane around a painted cell that the painter sets as well


def sparse_slice(labels: np.ndarray, keep: float, rng: np.random.Generator) -> np.ndarray:
    """A slice with a fraction `keep` of its cells painted (and their membrane), the rest UNKNOWN."""
    cells = connected_components(labels == 255, connectivity=1)
    ids = np.arange(1, cells.max() + 1)
    chosen = np.isin(cells, rng.choice(ids, max(1, round(keep * ids.size)), replace=False))
    near = ndimage.binary_dilation(chosen, iterations=MEMBRANE_REACH)
    painted = np.full(labels.shape, UNKNOWN, np.uint8)
    painted[near & (labels == 0)] = 0
    painted[chosen] = 255
    return painted


def label_folders(out: Path, keep: float) -> dict[str, Path]:
    """The training labels of each variant as PNG folders (all 22 slices; 0-14 are read)."""
    rng = np.random.default_rng(0)
    truth = sorted((ISBI / "train" / "label").glob("*.png"))
    folders = {name: out / f"labels-{name}" for name in ("ignore", "background")}
    known = []
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(truth):
        labels = np.asarray(Image.open(path))
        painted = sparse_slice(labels, keep, rng) if index <= 14 else labels
        if index <= 14:
            known.append(float(np.mean(painted != UNKNOWN)))
        Image.fromarray(painted).save(folders["ignore"] / path.name)
        as_background = np.where(painted == UNKNOWN, 0, painted).astype(np.uint8)
        Image.fromarray(as_background).save(folders["background"] / path.name)
    print(f"painted: {np.mean(known):.3f} of the training slices' pixels known", flush=True)
    return {"full": ISBI / "train" / "label", **folders}


def variant_config(labels: Path, ignore: bool, iterations: int, samples: int) -> dict:
    image = str(ISBI / "train" / "image")
    train = {"images": image, "labels": str(labels), "slices": "0-14"}
    if ignore:
        train["ignore_label"] = UNKNOWN
    truth = str(ISBI / "train" / "label")
    return {
        "datasets": {"isbi_train": train,
                     "isbi_val": {"images": image, "labels": truth, "slices": "15-17"},
                     "isbi_report": {"images": image, "labels": truth, "slices": "18-21"},
                     "isbi_test": {"images": str(ISBI / "test")}},
        "predict_on": ["isbi_report"],
        "models": {"cpu30": {"depth": 3, "base_channels": 16, "batch_norm": False, "dropout": 0.0, "train": {
            "iterations": iterations, "max_minutes": None, "validate_every": max(1, iterations // 4),
            "checkpoint_every": max(1, iterations // 4)}}},
        "augment": {"samples": samples},
        "predict": {"test_time_augmentation": False},
    }


def run_variant(name: str, labels: Path, out: Path, code: Path, iterations: int, samples: int) -> dict:
    checkout = checkout_of(code, out / name)
    config = variant_config(labels, name == "ignore", iterations, samples)
    (checkout / "variant.yaml").write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/isbi2012.yaml",
                    "variant.yaml"], cwd=checkout, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    table = pd.read_csv(checkout / "results/evaluation/cpu30/isbi_report.csv", dtype={"slice": str})
    row = table[table["slice"] == "all"].iloc[0]
    return {"variant": name, "adapted_rand_error": float(row["adapted_rand_error"]), "v_rand": float(row["v_rand"]),
            "pixel_error": float(row["pixel_error_at_threshold"]), "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--keep", type=float, default=0.1, help="fraction of each training slice's cells painted")
    parser.add_argument("--out", type=Path, default=Path("/tmp/unetflow-sparse-benchmark"))
    parser.add_argument("--only", nargs="*", default=["full", "ignore", "background"])
    args = parser.parse_args()
    if not (ISBI / "train" / "label").is_dir():
        sys.exit(f"ISBI 2012 data not found at {ISBI}")
    args.out.mkdir(parents=True, exist_ok=True)
    folders = label_folders(args.out, args.keep)
    code, rows = snapshot(args.out), []
    for name in args.only:
        rows.append(run_variant(name, folders[name], args.out, code, args.iterations, args.samples))
        print(json.dumps(rows[-1]), flush=True)
    (args.out / "results.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    for row in rows:
        print(f"| {time.strftime('%Y-%m-%d')} | {machine()} | {row['variant']} | {row['adapted_rand_error']:.4f} | "
              f"{row['v_rand']:.4f} | {row['pixel_error']:.4f} | {row['seconds']:.0f} s |")


if __name__ == "__main__":
    main()

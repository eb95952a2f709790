"""The ISBI 2012 configuration end to end on the real data in ../shared (skipped where absent):
from the PNG folders, and from multi-page TIFFs built from them, as the challenge ships them."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml
import zarr
from PIL import Image

from conftest import snakemake

pytestmark = pytest.mark.slow

QUICK = {  # a small network trained for a minute: enough to find the membranes, far from the paper
    "models": {"cpu30": {"base_channels": 8, "train": {"iterations": 150, "max_minutes": 5, "validate_every": 150,
                                                        "checkpoint_every": 150}}},
    "augment": {"samples": 300},
    "predict": {"test_time_augmentation": False},
    "train": {"log_every": 25},
    "tune": {"grid": [{"method": ["watershed"], "seeds": ["probability"], "threshold": [0.3, 0.5], "h": [0.15]}]},
}

def run_isbi(directory: Path, datasets: dict, *targets: str) -> None:
    extra = directory / "isbi-quick.yaml"
    extra.write_text(yaml.safe_dump({**QUICK, "datasets": datasets}))
    snakemake(directory, "--cores", "2", *targets, "--configfile", "config/isbi2012.yaml", str(extra))


def split(images, labels) -> dict:
    return {
        "isbi_train": {"images": str(images), "labels": str(labels), "slices": "0-14"},
        "isbi_val": {"images": str(images), "labels": str(labels), "slices": "15-17"},
        "isbi_report": {"images": str(images), "labels": str(labels), "slices": "18-21"},
    }


def arrays(group: zarr.Group, prefix: str = "") -> dict[str, np.ndarray]:
    """Every array of a store, by its path, read whole."""
    found = {f"{prefix}{name}": array[...] for name, array in group.arrays()}
    for name, child in group.groups():
        found |= arrays(child, f"{prefix}{name}/")
    return found


DATASETS = ("isbi_train", "isbi_val", "isbi_report", "isbi_test")


def test_isbi_from_png_folders_trains_segments_and_scores_within_bounds(workflow_dir, isbi_dir):
    run_isbi(workflow_dir, {**split(isbi_dir / "train/image", isbi_dir / "train/label"),
                            "isbi_test": {"images": str(isbi_dir / "test")}})
    store = zarr.open_group(str(workflow_dir / "results/isbi_report/data.zarr"), mode="r")
    assert store["0"].shape == (4, 512, 512)
    segmentation = zarr.open_group(str(workflow_dir / "results/segmentation/cpu30/isbi_test.zarr"), mode="r")
    assert segmentation["0"].shape == (30, 512, 512)
    scores = pd.read_csv(workflow_dir / "results/evaluation/cpu30/isbi_report.csv", dtype={"slice": str})
    assert list(scores["slice"]) == ["0", "1", "2", "3", "all"]
    whole = scores.set_index("slice").loc["all"]
    # measured 0.34 and 0.80 (AMD EPYC, fp32); a network trained for 6 iterations scores 0.82 and 0.21,
    # one object per slice above 0.9 and near 0
    assert whole["adapted_rand_error"] < 0.5, whole
    assert whole["v_rand"] > 0.7, whole
    assert segmentation["0"][0].max() > 50  # hundreds of cells in an ISBI slice, not one blob


def test_multipage_tiffs_ingest_to_the_stores_of_the_png_folders(workflow_dir, isbi_dir, tmp_path):
    targets = [f"results/{name}/data.zarr" for name in DATASETS]
    run_isbi(workflow_dir, {**split(isbi_dir / "train/image", isbi_dir / "train/label"),
                            "isbi_test": {"images": str(isbi_dir / "test")}}, *targets)
    for name, folder in (("train-volume", "train/image"), ("train-labels", "train/label"), ("test-volume", "test")):
        stack = np.stack([np.asarray(Image.open(path)) for path in sorted((isbi_dir / folder).glob("*.png"))])
        tifffile.imwrite(tmp_path / f"{name}.tif", stack, photometric="minisblack")
    tiff_dir = workflow_dir.parent / "tiff-copy"
    tiff_dir.mkdir()
    for part in ("Snakefile", "workflow", "config", "profiles", "envs"):
        (tiff_dir / part).symlink_to(workflow_dir / part)
    run_isbi(tiff_dir, {**split(tmp_path / "train-volume.tif", tmp_path / "train-labels.tif"),
                        "isbi_test": {"images": str(tmp_path / "test-volume.tif")}}, *targets)
    for target in targets:  # the same stores: every later step reads only these (and is deterministic)
        png, tiff = (zarr.open_group(str(directory / target), mode="r") for directory in (workflow_dir, tiff_dir))
        png_arrays, tiff_arrays = arrays(png), arrays(tiff)
        assert png_arrays.keys() == tiff_arrays.keys()
        assert ("labels/objects/0" in png_arrays) == (target != "results/isbi_test/data.zarr")
        for path, array in png_arrays.items():
            np.testing.assert_array_equal(array, tiff_arrays[path], err_msg=f"{target}/{path}")
        assert png["0"].attrs["unetflow"]["normalization"] == tiff["0"].attrs["unetflow"]["normalization"]

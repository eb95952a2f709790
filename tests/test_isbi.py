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

QUICK = {
    "models": {"cpu30": {"base_channels": 4, "train": {"iterations": 6, "max_minutes": 5, "validate_every": 6,
                                                        "checkpoint_every": 6}}},
    "augment": {"samples": 8},
    "predict": {"test_time_augmentation": False},
    "train": {"log_every": 3},
    "tune": {"grid": [{"method": ["watershed"], "seeds": ["probability"], "threshold": [0.3, 0.5], "h": [0.15]}]},
}


def run_isbi(directory: Path, datasets: dict) -> pd.DataFrame:
    extra = directory / "isbi-quick.yaml"
    extra.write_text(yaml.safe_dump({**QUICK, "datasets": datasets}))
    snakemake(directory, "--cores", "2", "--configfile", "config/isbi2012.yaml", str(extra))
    store = zarr.open_group(str(directory / "results/isbi_report/data.zarr"), mode="r")
    assert store["0"].shape == (4, 512, 512)
    assert zarr.open_group(str(directory / "results/segmentation/cpu30/isbi_test.zarr"), mode="r")["0"].shape == (30, 512, 512)
    return pd.read_csv(directory / "results/evaluation/cpu30/isbi_report.csv", dtype={"slice": str})


def split(images, labels) -> dict:
    return {
        "isbi_train": {"images": str(images), "labels": str(labels), "slices": "0-14"},
        "isbi_val": {"images": str(images), "labels": str(labels), "slices": "15-17"},
        "isbi_report": {"images": str(images), "labels": str(labels), "slices": "18-21"},
    }


def test_isbi_from_png_folders_and_from_multipage_tiffs(workflow_dir, isbi_dir, tmp_path):
    from_png = run_isbi(workflow_dir, {**split(isbi_dir / "train/image", isbi_dir / "train/label"),
                                       "isbi_test": {"images": str(isbi_dir / "test")}})
    assert list(from_png["slice"]) == ["0", "1", "2", "3", "all"]
    for name, folder in (("train-volume", "train/image"), ("train-labels", "train/label"), ("test-volume", "test")):
        stack = np.stack([np.asarray(Image.open(path)) for path in sorted((isbi_dir / folder).glob("*.png"))])
        tifffile.imwrite(tmp_path / f"{name}.tif", stack, photometric="minisblack")
    tiff_dir = workflow_dir.parent / "tiff-copy"
    tiff_dir.mkdir()
    for part in ("Snakefile", "workflow", "config", "profiles", "envs"):
        (tiff_dir / part).symlink_to(workflow_dir / part)
    from_tiff = run_isbi(tiff_dir, {**split(tmp_path / "train-volume.tif", tmp_path / "train-labels.tif"),
                                    "isbi_test": {"images": str(tmp_path / "test-volume.tif")}})
    pd.testing.assert_frame_equal(from_png, from_tiff)  # same data, same seed: the same results

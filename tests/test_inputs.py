"""Inputs real labs have, through the snakemake CLI: odd paths and settings refused before any job.

Each case of docs/reliability.md's "Real-world inputs" table that concerns paths
and settings; the data cases are tests of their modules (readers, ingest,
evaluate, augment).
"""

import numpy as np
import pytest
import tifffile
import yaml
import zarr

from conftest import copy_workflow, on_demo, snakemake

ODD_NAMES = {
    "apostrophe": "data/O'Brien lab/train-volume.tif",
    "command": "data/'$(touch PWNED)'.tif",
    "backticks": "data/`touch PWNED2`.tif",
    "unicode": "data/données µm/ß 1.tif",
    "shell_characters": "data/a & b; [1] *.tif",
    "dollar": "data/$HOME.tif",
}


def write_stack(path, seed: int) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(seed).integers(0, 255, (2, 24, 24), dtype=np.uint8)
    tifffile.imwrite(path, data, photometric="minisblack")
    return data


def config_file(directory, config: dict) -> list[str]:
    (directory / "case.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    return ["--configfile", "case.yaml"]


@pytest.mark.slow
def test_odd_paths_in_an_odd_checkout_ingest_and_run_nothing_they_hold(tmp_path):
    checkout = copy_workflow(tmp_path / "Dr O'Neil's lab $work")
    # record which copy of unetflow the jobs import: this checkout's, not an installed one
    marker = tmp_path / "imported-from.txt"
    with open(checkout / "workflow/unetflow/__init__.py", "a") as init:
        init.write(f"\nopen({str(marker)!r}, 'a').write(__file__ + '\\n')\n")
    expected = {name: write_stack(checkout / path, seed) for seed, (name, path) in enumerate(ODD_NAMES.items())}
    labels = checkout / "data/O'Brien lab/train-labels.tif"
    tifffile.imwrite(labels, np.tile(np.array([0, 255], np.uint8), (2, 24, 12)), photometric="minisblack")
    datasets = {name: {"images": path} for name, path in ODD_NAMES.items()}
    datasets["apostrophe"]["labels"] = "data/O'Brien lab/train-labels.tif"
    targets = [f"results/{name}/data.zarr" for name in ODD_NAMES]
    snakemake(checkout, "--cores", "2", *targets, *on_demo(config_file(checkout, {"datasets": datasets})[-1]))
    for name, data in expected.items():
        np.testing.assert_array_equal(zarr.open_group(str(checkout / f"results/{name}/data.zarr"))["0"][:], data)
    assert not list(tmp_path.rglob("PWNED*"))
    imported = set(marker.read_text().splitlines())
    assert imported == {str(checkout / "workflow/unetflow/__init__.py")}


@pytest.mark.parametrize("change, message", [
    ({"datasets": {"demo_train": {"images": "data/run{1}.tif"}}},
     "config: datasets.demo_train.images is 'data/run{1}.tif', whose braces Snakemake reads as a wildcard"),
    ({"datasets": {"demo_train": {"slices": "3-1"}}},
     "config: datasets.demo_train.slices: slice range '3-1' runs backwards"),
    ({"datasets": {"demo_train": {"slices": "0-3,2"}}},
     "config: datasets.demo_train.slices: slice selection '0-3,2' names slices [2] more than once"),
    ({"predict_on": ["demo_test", "demo_test"]}, "config: predict_on names demo_test more than once"),
    ({"segment": {"seeds": "probability"}}, "segment.h is 2.0 with segment.seeds: probability"),
    ({"segment": {"h": 0}}, "0 is less than or equal to the minimum of 0"),
])
def test_settings_that_would_be_quietly_wrong_are_refused_before_any_job(workflow_dir, change, message):
    config = yaml.safe_load((workflow_dir / "config/config.yaml").read_text())
    for section, value in change.items():
        if section == "datasets":
            for name, entry in value.items():
                config["datasets"][name].update(entry)
        elif isinstance(value, dict):
            config[section] = {**config.get(section, {}), **value}
        else:
            config[section] = value
    result = snakemake(workflow_dir, "-n", *config_file(workflow_dir, config), check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and message in output, output[-2000:]


def test_a_checkout_whose_path_holds_braces_is_refused_naming_it(tmp_path):
    checkout = copy_workflow(tmp_path / "lab {2024}")
    result = snakemake(checkout, "-n", check=False)
    assert result.returncode != 0
    assert "lab {2024}' holds braces, which Snakemake reads as wildcards" in result.stdout + result.stderr


@pytest.mark.slow
def test_sparse_labels_train_through_the_cli(workflow_dir):
    images = np.random.default_rng(0).integers(0, 255, (4, 256, 256), dtype=np.uint8)
    labels = np.zeros_like(images)
    labels[:, 100:120, 100:120] = 255  # one object a slice: most sample tiles hold background only
    tifffile.imwrite(workflow_dir / "images.tif", images, photometric="minisblack")
    tifffile.imwrite(workflow_dir / "labels.tif", labels, photometric="minisblack")
    config = {"datasets": {"sparse": {"images": "images.tif", "labels": "labels.tif"}}, "train_on": ["sparse"],
              "augment": {"samples": 40}, "train": {"iterations": 6, "batch_size": 2, "validate_every": 6}}
    snakemake(workflow_dir, "--cores", "2", "results/models/small/model.pt",
              *on_demo(config_file(workflow_dir, config)[-1]))
    samples = zarr.open_group(str(workflow_dir / "results/sparse/augmented/188-100.zarr"), mode="r")["labels"]
    assert samples.nchunks_initialized == 40
    assert (samples[:].reshape(40, -1).max(axis=1) == 0).any()  # the case: background-only tiles

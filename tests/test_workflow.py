"""The workflow through the snakemake CLI, in temporary copies."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import pandas as pd
import torch
import yaml
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from PIL import Image

from conftest import on_demo, planned_jobs, snakemake


def write_config(directory: Path, config: dict) -> str:
    path = directory / "extra.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_dry_run_lists_demo_data_and_ingest(workflow_dir):
    result = snakemake(workflow_dir, "-n", "--quiet", "rules")
    jobs = result.stdout + result.stderr
    assert "demo_data" in jobs and "ingest" in jobs
    assert "Error" not in jobs


def test_lint_reports_nothing(workflow_dir):
    result = snakemake(workflow_dir, "--lint")
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def isbi_dry_run(directory: Path, run_models: str) -> str:
    """The jobs of config/isbi2012.yaml, on stand-in files (a dry run reads none of them)."""
    (directory / "resources/isbi2012").mkdir(parents=True)
    for name in ("train-volume", "train-labels", "test-volume"):
        (directory / f"resources/isbi2012/{name}.tif").touch()
    result = snakemake(directory, "-n", "--configfile", "config/isbi2012.yaml", "--config", f"run_models={run_models}")
    return result.stdout + result.stderr


def train_job(jobs: str, model: str) -> str:
    return next(job for job in jobs.split("\n\n") if f"output: results/models/{model}/model.pt" in job)


def test_each_model_trains_on_its_own_sample_size(workflow_dir):
    jobs = isbi_dry_run(workflow_dir, '["paper","cpu30"]')
    paper, cpu30 = train_job(jobs, "paper"), train_job(jobs, "cpu30")
    assert "input: results/isbi_train/augmented/572-388.zarr" in paper and '"batch_size": 1' in paper  # the paper's
    assert "input: results/isbi_train/augmented/284-100.zarr" in cpu30  # depth 4, augment.output_size 100
    assert jobs.count("rule augment:") == 2


def test_the_paper_preset_alone_trains_on_572_to_388_tiles(workflow_dir):
    jobs = isbi_dry_run(workflow_dir, '["paper"]')
    assert "input: results/isbi_train/augmented/572-388.zarr" in train_job(jobs, "paper")
    assert "284-100" not in jobs and jobs.count("rule augment:") == 1


def test_demo_ingests_into_ome_zarr_stores(workflow_dir):
    snakemake(workflow_dir, "--cores", "2", "results/demo_train/data.zarr", "results/demo_test/data.zarr")
    for name, slices in (("demo_train", 8), ("demo_test", 4)):
        store_path = workflow_dir / "results" / name / "data.zarr"
        store = zarr.open_group(str(store_path), mode="r")
        assert store["0"].shape == (slices, 256, 256)
        assert store["labels/objects/0"].shape == (slices, 256, 256)
        assert set(np.unique(store["labels/classes/0"][0])) == {0, 1}
        assert store.attrs["multiscales"][0]["version"] == "0.4"
        image_node = next(iter(Reader(parse_url(str(store_path)))()))
        assert image_node.data[0].shape == (slices, 256, 256)
    assert (workflow_dir / "logs" / "ingest" / "demo_train.log").read_text().count("done") >= 2
    rerun = snakemake(workflow_dir, "-n", "results/demo_train/data.zarr")
    assert "Nothing to be done" in rerun.stdout + rerun.stderr


def test_demo_weights_and_augmented_samples(workflow_dir):
    snakemake(workflow_dir, "--cores", "2", "results/demo_train/augmented/188-100.zarr")
    data = zarr.open_group(str(workflow_dir / "results/demo_train/data.zarr"), mode="r")
    weights = zarr.open_group(str(workflow_dir / "results/demo_train/weights.zarr"), mode="r")["0"]
    classes = data["labels/classes/0"]
    assert weights.shape == classes.shape and weights.chunks == classes.chunks and weights.dtype == np.float32
    values, labels = weights[:], classes[:]
    assert np.all(np.isfinite(values))
    assert values[labels == 0].max() > 8  # narrow membranes between cells carry the border term
    assert (workflow_dir / "results/demo_train/weights_preview.png").stat().st_size > 10_000
    assert "weight maps: 8/8 slices done" in (workflow_dir / "logs/weights/demo_train.log").read_text()
    samples = zarr.open_group(str(workflow_dir / "results/demo_train/augmented/188-100.zarr"), mode="r")
    # demo model: depth 3, valid padding; output 100 px -> input 100 + 2 * 44
    assert samples["image"].shape == (200, 1, 188, 188) and samples["image"].dtype == np.float32
    assert samples["labels"].shape == samples["weights"].shape == (200, 100, 100)
    assert set(np.unique(samples["labels"][:20])) == {0, 1}
    assert (workflow_dir / "results/demo_train/augmented/188-100_preview.png").stat().st_size > 10_000
    assert "augmented samples: 25/25 batches of 8 done" in (workflow_dir / "logs/augment/demo_train/188-100.log").read_text()


def test_mistyped_config_key_is_a_schema_error(workflow_dir):
    extra = write_config(workflow_dir, {"num_clases": 3})
    result = snakemake(workflow_dir, "-n", *on_demo(extra), check=False)
    assert result.returncode != 0
    assert "'num_clases' was unexpected" in result.stdout + result.stderr


def test_wrong_type_and_missing_key_are_schema_errors(workflow_dir):
    extra = write_config(workflow_dir, {"num_classes": "two"})
    result = snakemake(workflow_dir, "-n", *on_demo(extra), check=False)
    assert result.returncode != 0 and "'two' is not of type 'integer'" in result.stdout + result.stderr
    extra = write_config(workflow_dir, {"datasets": {"mine": {"labels": "labels.tif"}}})
    result = snakemake(workflow_dir, "-n", *on_demo(extra), check=False)
    assert result.returncode != 0 and "'images' is a required property" in result.stdout + result.stderr


def test_bad_slice_fails_the_rule_with_the_message_and_no_store(workflow_dir):
    folder = workflow_dir / "mine"
    folder.mkdir()
    for index, size in enumerate((32, 32, 40)):
        Image.fromarray(np.zeros((size, size), np.uint8)).save(folder / f"{index}.png")
    extra = write_config(workflow_dir, {"datasets": {"mine": {"images": "mine"}}})
    result = snakemake(workflow_dir, "--cores", "1", "results/mine/data.zarr", *on_demo(extra), check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "mine/2.png: slice is 40x40 but 0.png is 32x32" in output
    assert not (workflow_dir / "results" / "mine" / "data.zarr").exists()


def test_isbi_png_folders_ingest(workflow_dir, isbi_dir):
    extra = write_config(
        workflow_dir,
        {"datasets": {"isbi_train": {"images": str(isbi_dir / "train/image"), "labels": str(isbi_dir / "train/label")}}},
    )
    snakemake(workflow_dir, "--cores", "2", "results/isbi_train/data.zarr", *on_demo(extra))
    store = zarr.open_group(str(workflow_dir / "results/isbi_train/data.zarr"), mode="r")
    assert store["0"].shape == (22, 512, 512)
    assert store["0"].attrs["unetflow"]["labels"]["kind"] == "binary"
    first = np.asarray(Image.open(isbi_dir / "train/image/00.png"))
    np.testing.assert_array_equal(store["0"][0], first)
    assert store["labels/objects/0"][0].max() > 100  # ISBI slices hold hundreds of cells


def test_a_stray_file_in_a_folder_of_slices_reruns_nothing_and_an_edited_slice_reruns_ingest(workflow_dir):
    slices = workflow_dir / "slices"
    slices.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        Image.fromarray(rng.integers(0, 255, (32, 40), dtype=np.uint8)).save(slices / f"{index:02d}.png")
    options = ["results/folder/data.zarr", *on_demo(write_config(workflow_dir, {"datasets": {"folder": {"images": "slices"}}}))]
    snakemake(workflow_dir, "--cores", "1", *options)
    for stray in (".DS_Store", "notes.txt", "._00.png", "Thumbs.db"):  # what file managers and people leave
        (slices / stray).write_bytes(b"not a slice")
    assert planned_jobs(workflow_dir, *options) == Counter()
    Image.fromarray(rng.integers(0, 255, (32, 40), dtype=np.uint8)).save(slices / "01.png")
    assert planned_jobs(workflow_dir, *options) == Counter({"ingest": 1})


QUICK = {
    "augment": {"samples": 16},
    "train": {"iterations": 12, "batch_size": 2, "validate_every": 6, "checkpoint_every": 6, "log_every": 3},
}


def test_train_rule_runs_on_the_demo(workflow_dir):
    extra = write_config(workflow_dir, QUICK)
    snakemake(workflow_dir, "--cores", "2", "results/models/small/model.pt", *on_demo(extra))
    model_dir = workflow_dir / "results/models/small"
    metrics = pd.read_csv(model_dir / "metrics.csv")
    assert list(metrics["iteration"]) == [3, 6, 9, 12]
    assert metrics["val_pixel_error"].notna().sum() == 2
    assert (model_dir / "loss.png").exists() and not (model_dir / "checkpoint.pt").exists()
    saved = torch.load(model_dir / "model.pt", weights_only=False)
    assert saved["architecture"] == "unet"
    assert saved["arguments"]["depth"] == 3 and saved["arguments"]["base_channels"] == 16
    assert "iteration 12/12" in (workflow_dir / "logs/train/small.log").read_text()


@pytest.mark.parametrize("config, message", [
    ({"segment": {"method": "watersheds"}}, "segment.method is 'watersheds', which methods/segmenters.py does not "
                                            "define; use one of components, watershed, agglomeration"),
    ({"train": {"loss": "dice"}}, "models.small.train.loss is 'dice', which methods/losses.py does not define"),
    ({"models": {"small": {"architecture": "resnet"}}}, "models.small.architecture is 'resnet', which "
                                                        "methods/architectures.py does not define; use one of unet"),
    ({"models": {"small": {"dept": 3}}}, "models.small: dept is not an argument of architecture 'unet' (it takes "
                                         "affinities, base_channels, batch_norm, depth, dropout, padding, planar_poolings)"),
    ({"models": {"small": {"train": {"lr": -1}}}}, "models.small.train.lr: -1 is less than or equal to the minimum"),
    ({"train_on": []}, "train_on is missing or empty, so the models have nothing to train on"),
    ({"models": {"mine": {"file": "nowhere/model.pt"}}}, "models.mine.file: nowhere/model.pt does not exist or is "
                                                        "not a file; give the path of a model.pt written by unetflow"),
    ({"models": {"mine": {"file": "config/config.yaml"}}}, "models.mine.file: config/config.yaml: not a readable model "
                                                          "file"),
    ({"models": {"mine": {"file": "config/config.yaml", "depth": 3}}}, "models.mine gives a model file and also "
                                                                      "depth"),
    ({"dims": 3, "weights": {"class_weights": "slice"}}, "weights.class_weights is 'slice', but 3-D weight maps"),
    ({"models": {"small": {"planar_poolings": 1}}}, "models.small: planar_poolings 1 must be 0 for 2-D models"),
    ({"validate_on": [], "segment": {"settings": "fixed"}, "train": {"keep": "best"}},
     "models.small.train.keep is best, but validate_on is empty"),
    ({"segment": {"threshold": 0.4, "mask": 0.6}}, "segment.mask is 0.6 with segment.threshold 0.4"),
    ({"tune": {"grid": [{"method": ["agglomeration"], "threshold": [0.3], "mask": [0.5]}]}},
     r"tune.grid[0].mask is 0.5 with tune.grid[0].threshold 0.3"),
])
def test_unknown_methods_and_missing_training_data_are_refused_before_any_job(workflow_dir, config, message):
    result = snakemake(workflow_dir, "-n", *on_demo(write_config(workflow_dir, config)), check=False)
    assert result.returncode != 0
    assert message in " ".join((result.stdout + result.stderr).split())


def test_a_pretrained_model_of_other_dims_is_refused_before_any_job(workflow_dir):
    from unetflow import inference
    from unetflow.methods.architectures import ModelConfig

    config = ModelConfig(depth=1, base_channels=2, dims=3)
    inference.save_model(workflow_dir / "volume.pt", config, config.network())
    result = snakemake(workflow_dir, "-n", *on_demo(write_config(
        workflow_dir, {"models": {"mine": {"file": "volume.pt"}}, "run_models": ["mine"]})), check=False)
    assert result.returncode != 0
    assert "models.mine.file: volume.pt is a 3-D model, but dims is 2; set dims: 3 to apply it" in " ".join(
        (result.stdout + result.stderr).split())


def test_the_isbi_folds_train_three_ten_minute_models_on_slabs_of_slices_0_to_17(workflow_dir):
    jobs = isbi_dry_run(workflow_dir, '["cpu30_cv"]')
    for number, held_out in ((1, "0-5"), (2, "6-11"), (3, "12-17")):
        train = train_job(jobs, f"cpu30_cv-fold{number}")
        assert f"results/cpu30_cv-fold{number}-train-isbi_train/augmented/284-100.zarr" in train
        assert f"--validation results/cpu30_cv-fold{number}-heldout-isbi_train/data.zarr" in train
        assert '"max_minutes": 10' in train and '"batch_norm": true' in train
        assert f"--slices {held_out} " in jobs
    assert jobs.count("rule train:") == 3 and jobs.count("rule ensemble:") == 2  # isbi_report, isbi_test

"""Fine-tuning: training that starts from a unetflow model file or bioimage.io export."""

from __future__ import annotations

import zipfile

import pandas as pd
import pytest
import torch
import yaml

from conftest import copy_run, on_demo, planned_jobs, snakemake
from test_export import SMALL, save_one_slice, save_trained_like
from unetflow import inference, start_model, synthetic
from unetflow.errors import InputError
from unetflow.steps.export import main as export


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("start")
    model = save_trained_like(folder / "small" / "model.pt", SMALL, seed=5)
    data = save_one_slice(folder / "data.zarr", synthetic.generate_stack(1, 100, seed=3)[0][0])
    package = folder / "small" / "bioimageio.zip"
    export([str(model), str(package), "--data", str(data), "--tile", "60"])
    return model, package


def test_a_model_file_and_its_export_give_one_start(exported):
    model, package = exported
    from_file, from_package = start_model.read(model), start_model.read(package)
    assert from_file.architecture.to_dict() == from_package.architecture.to_dict() == SMALL.to_dict()
    saved, _ = inference.read_model_file(model)
    for state in (from_file.state_dict, from_package.state_dict):
        assert state.keys() == saved["state_dict"].keys()
        assert all(torch.equal(state[key], saved["state_dict"][key]) for key in state)
    network = from_package.network()
    assert all(torch.equal(value, saved["state_dict"][key]) for key, value in network.state_dict().items())
    assert len(from_file.sha256) == 64 and from_file.sha256 != from_package.sha256


def test_a_package_of_another_tool_and_a_model_of_other_classes_are_refused(exported, tmp_path):
    model, package = exported
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(foreign, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name == "rdf.yaml":
                description = yaml.safe_load(data)
                description["weights"]["pytorch_state_dict"]["architecture"]["callable"] = "StarDist2D"
                data = yaml.safe_dump(description).encode()
            target.writestr(name, data)
    with pytest.raises(InputError, match="a bioimage.io package of another tool"):
        start_model.read(foreign)
    with pytest.raises(InputError, match="models.x.start_from: .* is a 2-D model of 2 classes, but the config has "
                                         "dims 2 and num_classes 3"):
        start_model.check_fits(start_model.read(model), num_classes=3, dims=2, setting="models.x.start_from")


QUICK = {"augment": {"samples": 16}, "train": {"iterations": 6, "batch_size": 2, "validate_every": 3,
                                               "log_every": 3}}


@pytest.mark.slow
def test_a_model_fine_tuned_from_the_demos_export_starts_where_it_left_off(demo_run, tmp_path):
    run = copy_run(demo_run, tmp_path / "run")
    snakemake(run, "--cores", "2", "results/models/small/bioimageio.zip")
    start = start_model.read(run / "results/models/small/bioimageio.zip")
    config = {**QUICK, "models": {"small": {"depth": 3, "base_channels": 16, "padding": "valid"},
                                  "tuned": {"start_from": "results/models/small/bioimageio.zip"},
                                  "fresh": {"depth": 3, "base_channels": 16, "padding": "valid"}},
              "run_models": ["tuned", "fresh"]}
    (run / "tune.yaml").write_text(yaml.safe_dump(config))
    options = on_demo(run / "tune.yaml")
    jobs = planned_jobs(run, *options)
    assert jobs["train"] == 2 and jobs["augment"] == 1  # one sample store serves both: the same architecture
    snakemake(run, "--cores", "2", *options)

    saved, architecture = inference.read_model_file(run / "results/models/tuned/model.pt")
    assert saved["started_from"] == {"path": "results/models/small/bioimageio.zip", "sha256": start.sha256}
    assert architecture.to_dict() == start.architecture.to_dict()
    first = {model: pd.read_csv(run / f"results/models/{model}/metrics.csv")["val_loss"].dropna().iloc[0]
             for model in ("tuned", "fresh")}
    assert first["tuned"] < 0.5 * first["fresh"]  # it starts from a trained network, not from scratch
    report = (run / "results/report/metrics.md").read_text()
    assert f"starting from results/models/small/bioimageio.zip (sha256 {start.sha256[:12]})" in report
    assert "| fresh | trained here from scratch |" in report

    (run / "results/models/small/bioimageio.zip").touch()  # a replaced start file retrains
    assert planned_jobs(run, *options)["train"] == 1


def test_a_fine_tuned_entry_with_architecture_keys_is_refused(demo_run, tmp_path):
    run = copy_run(demo_run, tmp_path / "run")
    (run / "x.yaml").write_text(yaml.safe_dump({"models": {"tuned": {"start_from": "results/models/small/model.pt",
                                                                     "depth": 2}}, "run_models": ["tuned"]}))
    result = snakemake(run, "-n", *on_demo(run / "x.yaml"), check=False)
    assert result.returncode != 0
    assert "models.tuned starts from a model file and also gives depth; its architecture is the file's" in " ".join(
        (result.stdout + result.stderr).split())

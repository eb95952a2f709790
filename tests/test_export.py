"""The export step: a trained U-Net as a bioimage.io model package that the spec validates and
bioimageio.core runs, reproducing unetflow's own prediction with both weight formats."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from unetflow import inference, io, ngff, synthetic
from unetflow.errors import InputError
from unetflow.methods import architectures
from unetflow.methods.architectures import ModelConfig
from unetflow.model import UNet
from unetflow.steps import predict
from unetflow.steps.export import main

from conftest import copy_workflow, snakemake

bioimageio_core = pytest.importorskip("bioimageio.core")
v0_5 = pytest.importorskip("bioimageio.spec.model.v0_5")

TOLERANCE = 1e-4  # largest difference of a probability between the package's and unetflow's predictions
WEIGHT_FORMATS = ("pytorch_state_dict", "torchscript")
SMALL = ModelConfig(depth=2, base_channels=8)  # margin 20 px, valid inputs 44 + 4n
TRAIN_SETTINGS = {"iterations": 500, "batch_size": 4, "loss": "weighted_ce", "optimizer": "adam", "lr": 0.002,
                  "schedule": "cosine", "weight_decay": 0.0}


def save_trained_like(path: Path, config: ModelConfig, seed: int = 0) -> Path:
    """A model.pt as the train rule writes it, with random (seeded) weights."""
    torch.manual_seed(seed)
    inference.save_model(path, config, UNet(config), train_settings=TRAIN_SETTINGS, iterations=500)
    return path


def save_one_slice(path: Path, image: np.ndarray) -> Path:
    """A data.zarr of one slice whose stored normalisation is the package's for the whole slice."""
    raw = ngff.create_image(io.create_group(path), (1, *image.shape), image.dtype, name="raw")
    raw[0] = image
    values = image.astype(np.float64)
    raw.attrs["unetflow"] = {"normalization": {"mean": float(values.mean()), "std": float(values.std()) + 1e-6}}
    return path


def read_member(package: Path, name: str) -> np.ndarray:
    with zipfile.ZipFile(package) as archive, archive.open(name) as file:
        return np.load(file)


def bioimageio_predictions(package: Path) -> dict[str, np.ndarray]:
    """bioimageio.core's prediction of the package's test input, per weight format."""
    description = bioimageio_core.load_description(package)
    test_input = read_member(package, "test_input.npy")
    predictions = {}
    for weights in WEIGHT_FORMATS:
        # predict loads and unloads the pipeline (a second unload, by `with`, would wait forever)
        pipeline = bioimageio_core.create_prediction_pipeline(bioimageio_model=description, weight_format=weights,
                                                              devices=["cpu"])
        sample = bioimageio_core.predict(model=pipeline, inputs={"raw": test_input})
        predictions[weights] = sample.members["probabilities"].data.to_numpy()
    return predictions


def bioimageio_test_failures(package: Path) -> list[str]:
    """The failed checks of ``bioimageio.core.test_model`` (test outputs reproduced, sizes run)."""
    summary = bioimageio_core.test_model(package, devices=["cpu"])
    assert summary.status == "passed", summary.format()
    return [detail.name for detail in summary.details if detail.status != "passed"]


@dataclass
class Exported:
    model: Path
    data: Path
    package: Path


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Exported:
    """A depth-2 U-Net exported with a test tile from a one-slice data.zarr of 100 x 100 px."""
    folder = tmp_path_factory.mktemp("export")
    image = synthetic.generate_stack(1, 100, seed=3)[0][0]
    model = save_trained_like(folder / "small" / "model.pt", SMALL)
    data = save_one_slice(folder / "data.zarr", image)
    package = folder / "small" / "bioimageio.zip"
    main([str(model), str(package), "--data", str(data), "--tile", "60", "--author", "Ada Tester",
          "--tag", "electron-microscopy"])
    return Exported(model, data, package)


def test_the_package_is_valid_and_states_the_networks_sizes_and_normalisation(small):
    description = bioimageio_core.load_description(small.package)
    assert isinstance(description, v0_5.ModelDescr), description.validation_summary.format()
    assert description.validation_summary.status == "valid-format"
    assert [error for detail in description.validation_summary.details for error in detail.errors] == []
    raw, = description.inputs
    probabilities, = description.outputs
    assert [axis.id for axis in raw.axes] == ["batch", "channel", "y", "x"]
    assert raw.axes[1].channel_names == ["raw"]
    assert [(axis.size.min, axis.size.step) for axis in raw.axes[2:]] == [(44, 4), (44, 4)]  # 4 + 2 x 20, 2**2
    assert [(axis.size.tensor_id, axis.size.axis_id, axis.size.offset) for axis in probabilities.axes[2:]] == [
        ("raw", "y", -40), ("raw", "x", -40)]
    assert probabilities.axes[1].channel_names == ["background", "foreground"]
    normalisation, = [step for step in raw.preprocessing if step.id == "zero_mean_unit_variance"]
    assert list(normalisation.kwargs.axes) == ["y", "x"]
    assert description.weights.pytorch_state_dict.architecture.callable == "ProbabilityUNet"
    assert description.weights.pytorch_state_dict.architecture.kwargs == {
        "depth": 2, "base_channels": 8, "padding": "valid", "batch_norm": False, "dropout": 0.5, "in_channels": 1,
        "num_classes": 2}
    assert description.weights.torchscript is not None
    assert str(description.cite[0].doi) == "10.1007/978-3-319-24574-4_28"
    assert description.license == "MIT" and [author.name for author in description.authors] == ["Ada Tester"]
    assert {"unet", "semantic-segmentation", "electron-microscopy"} <= set(description.tags)
    assert description.name == "unetflow U-Net small"


def test_the_test_input_is_the_middle_of_the_data_and_the_readme_its_training(small):
    image = zarr.open_group(str(small.data), mode="r")["0"][0]
    np.testing.assert_array_equal(read_member(small.package, "test_input.npy"), image[None, None].astype(np.float32))
    assert read_member(small.package, "test_output.npy").shape == (1, 2, 60, 60)
    with zipfile.ZipFile(small.package) as archive:
        readme = archive.read("README.md").decode()
        assert archive.read("cover.png").startswith(b"\x89PNG")
    assert "500 iterations" in readme and "| lr | 0.002 |" in readme
    assert "over (y, x), to zero mean and unit variance" in " ".join(readme.split()) and "10.1007/978-3-319-24574-4_28" in readme


def test_both_weight_formats_reproduce_unetflows_prediction_of_the_test_tile(small, tmp_path):
    settings = '{"tile": 28, "precision": "fp32"}'
    predict.main([str(small.model), str(small.data), str(tmp_path / "p.zarr"), "--settings", settings,
                  "--runtime", '{"device": "cpu"}'])
    ours = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")["0"][:, 0, 20:80, 20:80]  # exact interior
    np.testing.assert_allclose(read_member(small.package, "test_output.npy")[0], ours, rtol=0, atol=TOLERANCE)
    for weights, probabilities in bioimageio_predictions(small.package).items():
        assert probabilities.shape == (1, 2, 60, 60), weights
        np.testing.assert_allclose(probabilities[0], ours, rtol=0, atol=TOLERANCE, err_msg=weights)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_bioimageio_core_reproduces_the_test_output_and_runs_every_size(small):
    assert bioimageio_test_failures(small.package) == []


def test_the_architecture_source_builds_the_network_without_unetflow(small, tmp_path):
    with zipfile.ZipFile(small.package) as archive:
        archive.extractall(tmp_path)
    script = f"""
import importlib.util, sys
import numpy as np, torch
sys.modules["unetflow"] = None  # `import unetflow` now raises ImportError
spec = importlib.util.spec_from_file_location("architecture", {str(tmp_path / "model.py")!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
network = module.ProbabilityUNet(depth=2, base_channels=8, padding="valid", batch_norm=False, dropout=0.5,
                                 in_channels=1, num_classes=2)
network.load_state_dict(torch.load({str(tmp_path / "weights.pt")!r}, weights_only=True))
tile = np.load({str(tmp_path / "test_input.npy")!r}).astype(np.float64)
tile = ((tile - tile.mean()) / (tile.std() + 1e-6)).astype(np.float32)
with torch.no_grad():
    output = network.eval()(torch.from_numpy(tile)).numpy()
print(np.abs(output - np.load({str(tmp_path / "test_output.npy")!r})).max())
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin"}, check=False)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) <= TOLERANCE


def test_a_same_padded_network_keeps_the_size_and_states_its_halo(tmp_path):
    config = ModelConfig(depth=2, base_channels=8, padding="same", num_classes=3)
    package = tmp_path / "bioimageio.zip"
    main([str(save_trained_like(tmp_path / "same" / "model.pt", config)), str(package), "--tile", "40"])
    description = bioimageio_core.load_description(package)
    raw, = description.inputs
    probabilities, = description.outputs
    # halo: the receptive-field radius (the valid twin's margin, 20 px); inputs beyond twice it, multiples of 4
    assert [(axis.halo, axis.size.offset) for axis in probabilities.axes[2:]] == [(20, 0), (20, 0)]
    assert [(axis.size.min, axis.size.step) for axis in raw.axes[2:]] == [(44, 4), (44, 4)]
    assert probabilities.axes[1].channel_names == ["background", "class1", "class2"]
    assert read_member(package, "test_output.npy").shape == (1, 3, 44, 44)
    assert bioimageio_test_failures(package) == []


@pytest.mark.slow
def test_the_paper_network_exports_and_reproduces_unetflows_prediction(tmp_path):
    model = save_trained_like(tmp_path / "paper" / "model.pt", ModelConfig())  # 31.0 million weights
    package = tmp_path / "bioimageio.zip"
    main([str(model), str(package), "--tile", "100"])  # 284 px in (100 + 2 x 92), 100 px out
    tile = read_member(package, "test_input.npy")[0, 0].astype(np.float64)
    network, _ = inference.load_model(model, torch.device("cpu"))
    forward = inference.make_forward(network, torch.device("cpu"), None, 100)
    ours = forward(((tile - tile.mean()) / (tile.std() + 1e-6)).astype(np.float32)[None, None])
    for weights, probabilities in bioimageio_predictions(package).items():
        np.testing.assert_allclose(probabilities, ours, rtol=0, atol=TOLERANCE, err_msg=weights)
    description = bioimageio_core.load_description(package)
    assert [axis.size.min for axis in description.inputs[0].axes[2:]] == [188, 188]  # the paper's 572 = 188 + 24 x 16
    assert bioimageio_test_failures(package) == []


@dataclass(frozen=True)
class ToyNet(architectures.Architecture):
    """A same-padded convolution: an architecture other than the U-Net."""

    in_channels: int = 1
    num_classes: int = 2
    name = "export_toy"
    margin = 0
    align = 1
    blend = True

    def network(self):
        return torch.nn.Conv2d(self.in_channels, self.num_classes, 3, padding=1)


def test_a_model_of_another_architecture_is_refused_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setitem(architectures.ARCHITECTURES.entries, "export_toy", ToyNet)
    model = tmp_path / "toy.pt"
    inference.save_model(model, ToyNet(), ToyNet().network())
    with pytest.raises(InputError, match=r"toy\.pt holds a 'export_toy' network; export supports unet only"):
        main([str(model), str(tmp_path / "bioimageio.zip")])
    assert not (tmp_path / "bioimageio.zip").exists()


def test_a_3d_model_is_refused_with_the_fix(tmp_path):
    model = tmp_path / "volume.pt"
    config = ModelConfig(depth=1, base_channels=2, dims=3)
    inference.save_model(model, config, config.network())
    with pytest.raises(InputError, match=r"volume\.pt is a 3-D U-Net; export writes bioimage\.io packages of 2-D"):
        main([str(model), str(tmp_path / "bioimageio.zip")])
    assert not (tmp_path / "bioimageio.zip").exists()


def test_an_invalid_name_or_license_is_refused_before_anything_is_written(tmp_path):
    model = save_trained_like(tmp_path / "model.pt", SMALL)
    with pytest.raises(InputError, match=r"--name 'a/b' is not a valid bioimage.io model name; use 5 to 128"):
        main([str(model), str(tmp_path / "bioimageio.zip"), "--name", "a/b"])
    with pytest.raises(InputError, match=r"--license 'MIT-ish' is not an SPDX license identifier; use one such as"):
        main([str(model), str(tmp_path / "bioimageio.zip"), "--license", "MIT-ish"])
    assert list(tmp_path.iterdir()) == [model]


def test_a_model_with_nan_weights_is_refused_not_exported(tmp_path):
    model = save_trained_like(tmp_path / "model.pt", SMALL)
    saved = torch.load(model, weights_only=True)
    saved["state_dict"]["head.bias"][0] = float("nan")
    torch.save(saved, model)
    with pytest.raises(InputError, match=r"model\.pt: 1 of its weight tensors hold NaN or infinity \(head\.bias\)"):
        main([str(model), str(tmp_path / "bioimageio.zip")])
    assert not (tmp_path / "bioimageio.zip").exists()


def planned_exports(workflow: Path, *targets: str) -> list[str]:
    """The export jobs' counts in a dry run's job stats."""
    result = snakemake(workflow, *targets, "-n", "--quiet", "rules")
    return re.findall(r"^export\s+(\d+)\s*$", result.stdout + result.stderr, re.MULTILINE)


def test_the_export_rule_runs_only_when_its_package_is_asked_for(tmp_path):
    workflow = copy_workflow(tmp_path / "workflow")
    assert set(planned_exports(workflow, "results/models/small/bioimageio.zip")) == {"1"}
    assert planned_exports(workflow) == []  # not part of rule all

"""A new architecture, loss, segmentation method and metric, each added in one place (its
registry module under unetflow/methods/), run through the demo by the snakemake CLI."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import yaml
import zarr

from conftest import copy_workflow, snakemake

pytestmark = pytest.mark.slow

TOYS = {
    "architectures.py": '''

@architecture("toy")
@dataclass(frozen=True)
class ToyNet(Architecture):
    """Two same-padded convolutions."""

    channels: int = 8
    in_channels: int = 1
    num_classes: int = 2
    name = "toy"
    margin = 0
    align = 1
    blend = True

    def valid_output_size(self, at_least):
        return at_least

    def input_size(self, output):
        return output

    def network(self):
        from torch import nn

        return nn.Sequential(nn.Conv2d(self.in_channels, self.channels, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(self.channels, self.num_classes, 1))
''',
    "losses.py": '''

@loss("toy_unweighted")
def toy_unweighted(logits, labels, weights):
    return F.cross_entropy(logits.float(), labels.long())
''',
    "segmenters.py": '''

@segmenter("toy_threshold")
def toy_threshold(foreground, *, threshold):
    return connected_components(foreground >= threshold, connectivity=2).astype(np.uint32)
''',
    "metrics.py": '''

@pixel_metric("toy_accuracy")
def toy_accuracy(counts):
    return (counts.true_positive + counts.true_negative) / counts.total
''',
}
CONFIG = {
    "models": {"toy": {"architecture": "toy", "channels": 6},
               "flat": {"depth": 3, "base_channels": 8, "padding": "same"}},  # every model same-size
    "train": {"iterations": 40, "loss": "toy_unweighted", "validate_every": 20, "checkpoint_every": 20},
    "segment": {"settings": "fixed", "method": "toy_threshold"},
    "run_models": ["toy", "flat"],
}


@pytest.fixture(scope="module")
def extended_run(tmp_path_factory):
    directory = copy_workflow(tmp_path_factory.mktemp("extended") / "workflow")
    methods = directory / "workflow" / "unetflow" / "methods"
    for module, code in TOYS.items():
        with open(methods / module, "a") as handle:
            handle.write(code)
    (directory / "toys.yaml").write_text(yaml.safe_dump(CONFIG))
    snakemake(directory, "--cores", "2", "--configfile", "config/config.yaml", "toys.yaml")
    return directory


def test_the_toy_architecture_and_loss_train_and_are_recorded(extended_run):
    saved = torch.load(extended_run / "results/models/toy/model.pt", weights_only=True)
    assert saved["architecture"] == "toy" and saved["arguments"] == {"channels": 6}
    assert saved["train_settings"]["loss"] == "toy_unweighted" and saved["iterations"] == 40
    assert sorted(saved["state_dict"]) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    flat = torch.load(extended_run / "results/models/flat/model.pt", weights_only=True)
    assert flat["architecture"] == "unet" and flat["arguments"]["padding"] == "same"
    augmented = sorted(path.name for path in (extended_run / "results/demo_train/augmented").glob("*.zarr"))
    assert augmented == ["100-100.zarr", "104-104.zarr"]  # toy: any size; depth-3 same U-Net: multiples of 8


def test_the_toy_segmenter_made_the_objects(extended_run):
    for model in ("toy", "flat"):
        store = zarr.open_group(str(extended_run / f"results/segmentation/{model}/demo_test.zarr"), mode="r")
        assert store["0"].attrs["unetflow"]["method"] == "toy_threshold"
        assert store["0"][0].max() > 0


def test_the_toy_metric_is_computed_and_reported(extended_run):
    table = pd.read_csv(extended_run / "results/evaluation/toy/demo_test.csv", dtype={"slice": str})
    assert table["toy_accuracy"].to_numpy() == pytest.approx(1 - table["pixel_error_at_threshold"].to_numpy())
    report = (extended_run / "results/report/metrics.md").read_text()
    header = report.splitlines()[2]  # under "## Scores"
    assert "toy_accuracy" in header and "| toy | demo_test |" in report and "| flat | demo_test |" in report

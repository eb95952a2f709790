"""A model with affinities through the snakemake CLI: trained, its predictions hold the
affinity channels after the classes, the mutex watershed segments by them, and it exports."""

import zipfile

import numpy as np
import pytest
import yaml

from conftest import copy_run, on_demo, snakemake
from unetflow import io, ngff
from unetflow.affinities import offsets_for
from unetflow.methods.segmenters import segment

pytestmark = pytest.mark.slow

MUTEX = {"method": "mutex_watershed", "bias": 0.5, "min_size": 20}


def test_a_model_with_affinities_predicts_them_segments_by_them_and_exports(demo_run, tmp_path):
    run = copy_run(demo_run, tmp_path / "run")
    config = {"models": {"aff": {"depth": 2, "base_channels": 8, "affinities": True}}, "run_models": ["aff"],
              "train": {"iterations": 40, "validate_every": 20, "checkpoint_every": 20},
              "segment": {"settings": "tuned"},
              "tune": {"grid": [{key: [value] for key, value in MUTEX.items()}]}}
    overlay = run / "aff.yaml"
    overlay.write_text(yaml.safe_dump(config))
    options = on_demo(overlay)
    snakemake(run, "--cores", "2", *options)
    snakemake(run, "--cores", "2", "results/models/aff/bioimageio.zip", *options)

    predictions = run / "results/predictions/aff/demo_test.zarr"
    probabilities = io.open_probabilities(predictions)
    offsets = offsets_for(2)
    assert probabilities.shape[0] == 2 + len(offsets)
    assert io.class_count(probabilities) == 2 and io.affinity_offsets(probabilities) == offsets
    names = ngff.channel_names(io.open_store(predictions))
    assert names == ["background", "foreground", *(f"affinity_{dy}_{dx}" for dy, dx in offsets)]
    values = probabilities[:]
    np.testing.assert_allclose(values[:2].sum(axis=0), 1.0, atol=1e-5)
    assert values[2:].min() >= 0 and values[2:].max() <= 1

    # the segmentation is the mutex watershed of the stored affinities, not of estimated ones
    objects = io.open_objects(run / "results/segmentation/aff/demo_test.zarr")
    z = 1
    settings = {key: value for key, value in MUTEX.items() if key != "method"}
    foreground = io.foreground_probability(probabilities, z)
    expected = segment(foreground, "mutex_watershed", settings, predicted=io.affinity_plane(probabilities, z))
    np.testing.assert_array_equal(objects[z], expected)
    assert not np.array_equal(expected, segment(foreground, "mutex_watershed", settings))

    # the package states the affinity channels, and its network's kwargs rebuild the head
    with zipfile.ZipFile(run / "results/models/aff/bioimageio.zip") as package:
        description = yaml.safe_load(package.read("rdf.yaml"))
    output_channels = description["outputs"][0]["axes"][1]["channel_names"]
    assert output_channels == names
    kwargs = description["weights"]["pytorch_state_dict"]["architecture"]["kwargs"]
    assert [tuple(offset) for offset in kwargs["affinities"]] == offsets

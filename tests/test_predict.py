import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from unetflow import inference, io, ngff, parts
from unetflow.errors import InputError
from unetflow.methods.architectures import ModelConfig
from unetflow.model import UNet
from unetflow.steps.predict import main

TINY = ModelConfig(depth=1, base_channels=4, dropout=0.0)


def save_model(path: Path, config: ModelConfig = TINY) -> Path:
    torch.manual_seed(0)
    model = UNet(config)
    inference.save_model(path, config, model)
    return path


def save_data(path: Path, shape: tuple[int, int, int]) -> Path:
    store = io.create_group(path)
    raw = ngff.create_image(store, shape, np.dtype(np.uint8), name="raw")
    rng = np.random.default_rng(0)
    for z in range(shape[0]):
        raw[z] = rng.integers(0, 255, shape[1:], dtype=np.uint8)
    raw.attrs["unetflow"] = {"normalization": {"mean": 127.0, "std": 73.0}}
    return path


def test_prediction_store_is_ome_zarr_with_class_probabilities(tmp_path):
    model, data = save_model(tmp_path / "model.pt"), save_data(tmp_path / "data.zarr", (3, 50, 70))
    main([str(model), str(data), str(tmp_path / "p.zarr"), "--settings", '{"tile": 24}', "--runtime", '{"device": "cpu"}'])
    main([str(model), str(data), str(tmp_path / "q.zarr"), "--settings", '{"tile": 24, "dtype": "uint8"}', "--runtime", '{"device": "cpu"}'])
    group = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")
    probabilities = group["0"][:]
    assert probabilities.shape == (2, 3, 50, 70)
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-5)
    assert [axis["name"] for axis in group.attrs["multiscales"][0]["axes"]] == ["c", "z", "y", "x"]
    quantised = zarr.open_group(str(tmp_path / "q.zarr"), mode="r")["0"][:]
    assert quantised.dtype == np.uint8
    assert np.abs(quantised / 255 - probabilities).max() <= 0.5 / 255 + 1e-6


def test_a_corrupted_or_foreign_model_file_is_refused(tmp_path):
    data = save_data(tmp_path / "data.zarr", (1, 20, 20))
    (tmp_path / "broken.pt").write_bytes(b"not a model")
    with pytest.raises(InputError, match=r"broken\.pt: not a readable model file .* rerun the train rule"):
        main([str(tmp_path / "broken.pt"), str(data), str(tmp_path / "p.zarr"), "--runtime", '{"device": "cpu"}'])
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(InputError, match=r"foreign\.pt: not a unetflow model"):
        main([str(tmp_path / "foreign.pt"), str(data), str(tmp_path / "p.zarr"), "--runtime", '{"device": "cpu"}'])
    assert not (tmp_path / "p.zarr").exists()


# VmHWM is the peak resident memory of this process image; ru_maxrss would also count the
# test runner's memory that the child held between fork and exec
PEAK_MEMORY_SCRIPT = """
import sys
from unetflow.steps.predict import main
main(sys.argv[1:])
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(peak_kib // 1024)  # MiB
"""


@pytest.mark.slow
def test_a_4096_square_slice_predicts_in_bounded_memory(tmp_path):
    config = ModelConfig(depth=1, base_channels=16, dropout=0.0)
    model, data = save_model(tmp_path / "model.pt", config), save_data(tmp_path / "data.zarr", (1, 4096, 4096))
    result = subprocess.run(
        [sys.executable, "-c", PEAK_MEMORY_SCRIPT, str(model), str(data), str(tmp_path / "p.zarr"),
         "--settings", '{"tile": 256, "dtype": "uint8"}', "--runtime", '{"device": "cpu"}', "--threads", "2"],
        capture_output=True, text=True, check=True,
    )
    peak_mib = int(result.stdout.strip().splitlines()[-1])
    print(f"peak resident memory of the prediction: {peak_mib} MiB")
    # one full-resolution feature map of this network alone: 16 x 4096 x 4096 float32 = 1024 MiB;
    # a whole-slice forward pass holds several at once
    whole_slice_feature_map_mib = 16 * 4096 * 4096 * 4 / 2**20
    assert peak_mib < whole_slice_feature_map_mib, (peak_mib, result.stderr[-2000:])
    written = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")["0"]
    assert written.shape == (2, 1, 4096, 4096) and written.chunks == (1, 1, 1024, 1024)


def test_a_model_with_non_finite_weights_is_refused(tmp_path):
    data = save_data(tmp_path / "data.zarr", (1, 20, 20))
    saved = torch.load(save_model(tmp_path / "model.pt"), weights_only=False)
    saved["state_dict"]["head.weight"][0, 0] = float("nan")
    torch.save(saved, tmp_path / "nan.pt")
    with pytest.raises(InputError, match=r"nan\.pt: 1 of its weight tensors hold NaN or infinity \(head\.weight\).*"
                                         r"the training that wrote it diverged"):
        main([str(tmp_path / "nan.pt"), str(data), str(tmp_path / "p.zarr"), "--runtime", '{"device": "cpu"}'])
    assert not (tmp_path / "p.zarr").exists()


def test_prediction_stops_at_the_first_non_finite_output(tmp_path):
    # finite weights, but a bias so large that the logits overflow float32 on every pixel
    saved = torch.load(save_model(tmp_path / "model.pt"), weights_only=False)
    saved["state_dict"]["head.weight"].fill_(3e38)
    torch.save(saved, tmp_path / "overflowing.pt")
    data = save_data(tmp_path / "data.zarr", (2, 20, 20))
    with pytest.raises(InputError, match=r"overflowing\.pt on .*data\.zarr gives non-finite probabilities \(NaN or "
                                         r"infinity\) on slice 0, rows 0-20, columns 0-20; no predictions were written"):
        main([str(tmp_path / "overflowing.pt"), str(data), str(tmp_path / "p.zarr"), "--runtime", '{"device": "cpu"}',
              "--settings", '{"dtype": "uint8"}'])  # uint8 would have turned NaN into 0 without a word
    assert not (tmp_path / "p.zarr").exists()
    assert not list(tmp_path.glob(".p.zarr.tmp-*"))


def test_a_model_of_the_earlier_format_is_refused_not_run_differently(tmp_path):
    saved = torch.load(save_model(tmp_path / "model.pt"), weights_only=False)
    torch.save({**saved, "format": "unetflow-model-1"}, tmp_path / "old.pt")
    data = save_data(tmp_path / "data.zarr", (1, 20, 20))
    with pytest.raises(InputError, match=r"old\.pt: written by an earlier unetflow \(a U-Net without the ReLU after its "
                                         r"up-convolutions\).*rerun the train rule"):
        main([str(tmp_path / "old.pt"), str(data), str(tmp_path / "p.zarr"), "--runtime", '{"device": "cpu"}'])


def test_auto_batch_size_is_one_on_the_cpu_and_fits_half_the_free_gpu_memory():
    from unetflow.inference import auto_batch_size, batch_for_memory

    assert auto_batch_size(lambda batch: batch, 700, torch.device("cpu"), tiles_per_slice=16) == 1
    gib = 2**30
    assert batch_for_memory(free_bytes=40 * gib, per_tile_bytes=2 * gib, most=32) == 10
    assert batch_for_memory(free_bytes=40 * gib, per_tile_bytes=gib // 10, most=32) == 32  # capped
    assert batch_for_memory(free_bytes=gib, per_tile_bytes=4 * gib, most=32) == 1  # never below one


class Payload:
    """What a malicious model file may hold: unpickling it runs a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_model_file_with_code_in_it_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "the-code-ran"
    planted = tmp_path / "planted.pt"
    torch.save({"format": inference.MODEL_FORMAT, "state_dict": Payload(marker)}, planted)
    data = save_data(tmp_path / "data.zarr", (1, 20, 20))
    with pytest.raises(InputError, match=r"planted\.pt: not a readable model file .*holds Python objects other "
                                         r"than tensors, numbers and strings, which unetflow does not load"):
        main([str(planted), str(data), str(tmp_path / "p.zarr"), "--runtime", '{"device": "cpu"}'])
    assert not marker.exists() and not (tmp_path / "p.zarr").exists()
    # the plant is real: an unsafe load runs it
    subprocess.run([sys.executable, "-c", f"import torch; torch.load({str(planted)!r}, weights_only=False)"],
                   capture_output=True, check=False)
    assert marker.exists()


def test_a_3d_model_predicts_the_volume_block_by_block_as_one_whole_pass(tmp_path):
    config = ModelConfig(depth=2, base_channels=2, dropout=0.0, dims=3, planar_poolings=1)
    model, data = save_model(tmp_path / "model.pt", config), save_data(tmp_path / "data.zarr", (47, 30, 26))
    main([str(model), str(data), str(tmp_path / "p.zarr"), "--settings", '{"tile": 20, "precision": "fp32"}', "--runtime",
          '{"device": "cpu", "batch_size": 3}'])
    group = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")
    settings = group["0"].attrs["unetflow"]
    assert settings["dims"] == 3 and settings["tile"][0] < 47  # tiled in z
    network, _ = inference.load_model(model, torch.device("cpu"))
    raw = zarr.open_group(str(data), mode="r")["0"][:]
    volume = ((raw - 127.0) / 73.0).astype(np.float32)
    output = config.valid_output_shape_for(volume.shape)
    padded = np.pad(volume, [(m, m + o - s) for m, o, s in zip(config.margins, output, volume.shape)], mode="reflect")
    with torch.inference_mode():
        whole = torch.softmax(network(torch.from_numpy(padded)[None, None]), 1)[0][:, :47, :30, :26].numpy()
    np.testing.assert_allclose(group["0"][:], whole, atol=1e-5)


def test_parts_of_a_3d_prediction_join_into_the_whole(tmp_path):
    config = ModelConfig(depth=1, base_channels=2, dropout=0.0, dims=3)
    model, data = save_model(tmp_path / "model.pt", config), save_data(tmp_path / "data.zarr", (23, 12, 12))
    options = ["--settings", '{"tile": 8}', "--runtime", '{"device": "cpu"}']
    main([str(model), str(data), str(tmp_path / "whole.zarr"), *options])
    for part in (1, 2):
        main([str(model), str(data), str(tmp_path / "split.zarr"), *options, "--part", str(part), "--parts", "2"])
    parts.merge(tmp_path / "split.zarr", 2)
    whole = zarr.open_group(str(tmp_path / "whole.zarr"), mode="r")["0"][:]
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "split.zarr"), mode="r")["0"][:], whole)

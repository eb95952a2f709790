import logging
import math
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import zarr

from unetflow import checkpoint
from unetflow.errors import InputError
from unetflow.methods.architectures import ModelConfig
from unetflow.model import UNet
from unetflow.synthetic import generate_stack
from unetflow.inference import autocast_dtype, cpu_has_bf16_matrix_units, resolve_device
from unetflow.methods.losses import weighted_cross_entropy
from unetflow.optimisation import optimisation_step
from unetflow.training import TrainSettings, train
from unetflow.weight_maps import class_weights, weight_map

TINY = ModelConfig(depth=2, base_channels=8, dropout=0.3)


class TileSamples:
    """Samples cut from one synthetic slice: the same tile, or tiles at fixed places."""

    channels, normalization = 1, {"method": "zscore", "scope": "dataset", "percentiles": None}

    def __init__(self, output_size: int, count: int, same_tile: bool = False):
        images, binary, instances = generate_stack(1, 160, seed=2)
        classes = (binary[0] == 255).astype(np.uint8)
        weights = weight_map(classes, instances[0].astype(np.uint32),
                             class_weight=class_weights(np.bincount(classes.ravel())), w0=10, sigma=5)
        image = ((images[0] - images[0].mean()) / images[0].std()).astype(np.float32)
        self.output_size = output_size
        self.input_size = TINY.input_size(output_size)
        border = (self.input_size - output_size) // 2
        self.items = []
        for index in range(count):
            top = 0 if same_tile else (index * 17) % (160 - self.input_size)
            window = (slice(top, top + self.input_size), slice(top, top + self.input_size))
            inner = (slice(top + border, top + border + output_size),) * 2
            self.items.append((image[window][None], classes[inner], weights[inner]))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def test_weighted_loss_equals_a_hand_computation():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])  # (1, K=2, 1, 2): two pixels
    labels = torch.tensor([[[0, 0]]])
    weights = torch.tensor([[[1.0, 3.0]]])
    first = -math.log(math.exp(2) / (math.exp(2) + 1))
    second = -math.log(1 / (1 + math.e))
    expected = (1.0 * first + 3.0 * second) / 2
    assert weighted_cross_entropy(logits, labels, weights).item() == pytest.approx(expected, rel=1e-6)


def test_small_model_overfits_one_tile(tmp_path):
    samples = TileSamples(output_size=36, count=1, same_tile=True)
    settings = TrainSettings.from_config(dict(iterations=150, batch_size=1, optimizer="adam", lr=3e-3, device="cpu",
                             validate_every=1000, checkpoint_every=1000, log_every=10))
    metrics = train(architecture=ModelConfig(depth=2, base_channels=8, dropout=0.0), settings=settings,
                    samples=samples, validation=[], out_dir=tmp_path, fingerprint_of={})
    assert metrics["loss"].iloc[0] / metrics["loss"].iloc[-1] >= 10


def run(out_dir, iterations, on_iteration=None, **options):
    settings = TrainSettings.from_config(dict(iterations=iterations, batch_size=2, lr=0.01, momentum=0.99, device="cpu",
                             validate_every=10, checkpoint_every=5, log_every=5) | options)
    samples = TileSamples(output_size=20, count=6)
    validation = [(np.random.default_rng(0).normal(size=(1, 44, 50)).astype(np.float32),
                   np.random.default_rng(1).integers(0, 2, (44, 50)).astype(np.uint8))]
    return train(architecture=TINY, settings=settings, samples=samples, validation=validation,
                 out_dir=out_dir, fingerprint_of={"test": 1}, on_iteration=on_iteration)


class Interrupt(Exception):
    pass


def weights_of(path):
    return torch.load(path / "model.pt", weights_only=False)["state_dict"]


def test_resumed_training_ends_with_the_same_weights(tmp_path, caplog):
    torch.set_num_threads(1)
    run(tmp_path / "whole", 20)

    def interrupt_at_12(iteration):
        if iteration == 12:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(tmp_path / "resumed", 20, interrupt_at_12)
    saved = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)  # tensors and numbers only
    assert saved["iteration"] == 10  # the last checkpoint before the interruption
    with caplog.at_level(logging.INFO, logger="unetflow.training"):
        metrics = run(tmp_path / "resumed", 20)
    assert "at iteration 10" in caplog.text and "starts from iteration 0" not in caplog.text
    whole, resumed = weights_of(tmp_path / "whole"), weights_of(tmp_path / "resumed")
    assert all(torch.equal(whole[name], resumed[name]) for name in whole)
    assert list(metrics["iteration"]) == [5, 10, 15, 20]
    pd.testing.assert_frame_equal(
        metrics.drop(columns=["seconds", "data_wait_fraction"]),
        pd.read_csv(tmp_path / "whole" / "metrics.csv").drop(columns=["seconds", "data_wait_fraction"]),
    )
    assert not (tmp_path / "resumed" / "checkpoint.pt").exists()  # removed once training finished


def test_outputs_hold_everything_prediction_needs(tmp_path):
    run(tmp_path, 10)
    saved = torch.load(tmp_path / "model.pt", weights_only=False)
    model = UNet(ModelConfig(**saved["arguments"], num_classes=saved["num_classes"]))
    model.load_state_dict(saved["state_dict"])
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert {"iteration", "loss", "lr", "seconds", "val_loss", "val_pixel_error", "val_foreground_iou"} <= set(metrics)
    assert metrics["val_pixel_error"].notna().iloc[-1]
    assert (tmp_path / "loss.png").stat().st_size > 5000


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    def stop(iteration):
        if iteration == 6:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(tmp_path, 20, stop)
    metrics = run(tmp_path, 20, seed=1)  # other settings: starts from iteration 0
    assert metrics["iteration"].iloc[0] == 5


def test_time_budget_stops_training_early(tmp_path):
    metrics = run(tmp_path, 100000, max_minutes=0.05)
    assert metrics["iteration"].iloc[-1] < 100000
    assert metrics["seconds"].iloc[-1] == pytest.approx(3.0, abs=2.0)


def test_learning_rate_schedules():
    settings = TrainSettings.from_config(dict(lr=0.1, schedule="cosine", warmup=0.1))
    assert settings.learning_rate(0.05) == pytest.approx(0.05)
    assert settings.learning_rate(0.1) == pytest.approx(0.1)
    assert settings.learning_rate(1.0) == pytest.approx(0.0, abs=1e-12)
    assert TrainSettings.from_config(dict(lr=0.1)).learning_rate(0.7) == 0.1
    assert TrainSettings.from_config(dict(lr=0.1, schedule="poly")).learning_rate(0.5) == pytest.approx(0.1 * 0.5**0.9)


def test_devices_and_precisions_are_checked():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="'cuda' is not available on this machine; set device to auto or cpu"):
            resolve_device("cuda")
    with pytest.raises(InputError, match="is unknown"):
        resolve_device("tpu")
    with pytest.raises(InputError, match="fp16 needs a CUDA GPU"):
        autocast_dtype("fp16", torch.device("cpu"))
    assert autocast_dtype("auto", torch.device("cpu")) == (torch.bfloat16 if cpu_has_bf16_matrix_units() else None)
    assert autocast_dtype("fp32", torch.device("cpu")) is None
    assert autocast_dtype("bf16", torch.device("cpu")) == torch.bfloat16


def test_a_checkpoint_torn_while_writing_never_replaces_the_last_good_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"iteration": 10, "fingerprint": "f"})

    def torn_save(state, target):
        with open(target, "wb") as handle:
            handle.write(b"partial")
        raise KeyboardInterrupt  # the process dies mid-write

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, {"iteration": 20, "fingerprint": "f"})
    monkeypatch.undo()
    assert checkpoint.load(path, "f")["iteration"] == 10


def test_an_absurd_learning_rate_stops_training_within_a_few_iterations(tmp_path):
    settings = TrainSettings.from_config(dict(iterations=500, batch_size=2, lr=1e4, momentum=0.99, device="cpu", validate_every=1000,
                             checkpoint_every=5, log_every=5, max_nonfinite_steps=5))
    (tmp_path / "model.pt").write_bytes(b"an earlier run's model")
    with pytest.raises(InputError) as raised:
        train(architecture=TINY, settings=settings, samples=TileSamples(output_size=20, count=6), validation=[],
              out_dir=tmp_path, fingerprint_of={})
    message = str(raised.value)
    assert f"training of model '{tmp_path.name}' diverged at iteration" in message
    assert "learning rate 1e+04" in message and "No model.pt was written" in message
    assert "lower the learning rate" in message and "lower train.grad_clip (now 12)" in message
    assert not (tmp_path / "model.pt").exists()  # not even the stale one, which would look like this run's
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    stopped_at = int(message.split("diverged at iteration ")[1].split()[0])
    assert stopped_at <= 10 and metrics["iteration"].iloc[-1] == stopped_at
    assert metrics["skipped_steps"].sum() >= 5


def test_a_model_with_a_non_finite_weight_is_never_written(tmp_path, monkeypatch):
    import unetflow.training

    def step_that_breaks_a_weight(model, optimizer, scaler, loss, *, grad_clip):
        outcome = optimisation_step(model, optimizer, scaler, loss, grad_clip=grad_clip)
        with torch.no_grad():
            model.head.bias[0] = math.inf  # a fault no gradient check sees
        return outcome

    monkeypatch.setattr(unetflow.training, "optimisation_step", step_that_breaks_a_weight)
    settings = TrainSettings.from_config(dict(iterations=3, batch_size=2, device="cpu", validate_every=1000, checkpoint_every=2,
                             log_every=1))
    with pytest.raises(InputError, match=r"1 weight tensors hold NaN or infinity \(head.bias\)"):
        train(architecture=TINY, settings=settings, samples=TileSamples(output_size=20, count=6), validation=[],
              out_dir=tmp_path, fingerprint_of={})
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "checkpoint.pt").exists()


def test_clipped_training_logs_the_gradient_norm_and_no_skipped_steps(tmp_path):
    metrics = run(tmp_path, 10, grad_clip=0.5)
    assert (metrics["grad_norm"] > 0).all() and (metrics["grad_norm_max"] >= metrics["grad_norm"]).all()
    assert (metrics["skipped_steps"] == 0).all()


def test_the_resume_fingerprint_follows_the_content_of_a_store_not_its_path_or_age(tmp_path):
    from unetflow.fingerprints import store_fingerprint

    def write(path, value):
        group = zarr.open_group(str(path), mode="w", zarr_format=2)
        group.create_array("x", shape=(4,), dtype="uint8", fill_value=0)[:] = value
        return path

    first = store_fingerprint(write(tmp_path / "a.zarr", 1))
    shutil.copytree(tmp_path / "a.zarr", tmp_path / "copy.zarr")  # other times, same bytes
    os.utime(tmp_path / "copy.zarr/x/0", (0, 0))
    assert store_fingerprint(tmp_path / "copy.zarr") == first
    assert store_fingerprint(write(tmp_path / "a.zarr", 2)) != first  # same path, other samples


def test_auto_precision_on_the_cpu_follows_its_bf16_matrix_units(monkeypatch):
    from unetflow import inference

    for has_units, expected in ((True, torch.bfloat16), (False, None)):
        monkeypatch.setattr(inference, "cpu_has_bf16_matrix_units", lambda has_units=has_units: has_units)
        assert inference.autocast_dtype("auto", torch.device("cpu")) == expected
        reason = "(bf16 matrix units)" if has_units else "(no bf16 matrix units)"
        assert inference.describe_precision("auto", torch.device("cpu"), expected).endswith(reason)


def test_the_step_reads_nothing_back_from_the_device_between_reports(tmp_path, monkeypatch):
    """The GPU path (fused optimiser, on-device skip) run on the CPU as a stand-in: every
    tensor-to-host read (item, tolist, bool, float, int) inside a training step, and per
    iteration of the loop, is counted."""
    from unetflow import training as train_module

    monkeypatch.setattr(train_module, "fused_on", lambda device: True)
    reads, in_step = [], []
    for method in ("item", "tolist", "__bool__", "__float__", "__int__"):
        original = getattr(torch.Tensor, method)
        monkeypatch.setattr(torch.Tensor, method, lambda self, *a, _original=original, **k: (
            reads.append(bool(in_step)), _original(self, *a, **k))[1])
    step = train_module.training_step

    def watched_step(*args, **kwargs):
        in_step.append(1)
        try:
            return step(*args, **kwargs)
        finally:
            in_step.clear()

    monkeypatch.setattr(train_module, "training_step", watched_step)
    per_iteration = []
    settings = TrainSettings.from_config(dict(iterations=30, batch_size=2, device="cpu", precision="fp32", validate_every=1000,
                             checkpoint_every=1000, log_every=10))
    train(architecture=TINY, settings=settings, samples=TileSamples(output_size=20, count=6), validation=[],
          out_dir=tmp_path, fingerprint_of={}, on_iteration=lambda i: per_iteration.append(len(reads)))
    assert not any(reads[:per_iteration[-1]])  # none inside a training step
    new_reads = np.diff(per_iteration)  # from iteration 2 on (the data loader seeds itself before 1)
    assert {i + 2: n for i, n in enumerate(new_reads) if n} == {10: 1, 20: 1, 30: 1}


def test_in_memory_and_streamed_sample_banks_train_to_the_same_weights(tmp_path):
    """The loader's path (in memory, or Zarr batch by batch) changes nothing in training."""
    from unetflow.steps.augment import create_sample_store
    from unetflow.training_data import SampleBank

    source = TileSamples(output_size=20, count=6)
    store = create_sample_store(tmp_path / "samples.zarr", 6, source.input_size, 20,
                                {"normalization": TileSamples.normalization})
    for index, (image, labels, weights) in enumerate(source.items):
        store["image"][index], store["labels"][index], store["weights"][index] = image, labels, weights
    settings = TrainSettings.from_config(dict(iterations=8, batch_size=3, device="cpu", validate_every=1000, checkpoint_every=1000,
                             log_every=4))
    trained = []
    for name, limit in (("memory", 10**12), ("streamed", 0)):
        bank = SampleBank([tmp_path / "samples.zarr"], in_memory_limit=limit)
        assert bank.in_memory == (name == "memory")
        train(architecture=TINY, settings=settings, samples=bank, validation=[], out_dir=tmp_path / name,
              fingerprint_of={})
        trained.append(weights_of(tmp_path / name))
    assert all(torch.equal(trained[0][key], trained[1][key]) for key in trained[0])


class VolumeSamples:
    channels, normalization = TileSamples.channels, TileSamples.normalization
    """3-D samples: a blob volume's tiles at fixed places (input and output tile shapes per axis)."""

    def __init__(self, architecture: ModelConfig, count: int):
        self.input_size, self.output_size = architecture.sample_shapes(8)
        rng = np.random.default_rng(3)
        shape = tuple(size + 6 for size in self.input_size)
        classes = (np.add.reduce(np.indices(shape) % 9, axis=0) % 4 == 0).astype(np.uint8)  # a 3-D lattice
        image = np.where(classes, 1.0, -1.0).astype(np.float32) + rng.normal(0, 0.3, shape).astype(np.float32)
        margins = architecture.margins
        self.items = []
        for index in range(count):
            shift = [index % 3, (index * 2) % 5, index % 6]
            window = tuple(slice(s, s + size) for s, size in zip(shift, self.input_size))
            inner = tuple(slice(s + m, s + m + size) for s, m, size in zip(shift, margins, self.output_size))
            self.items.append((image[window][None], classes[inner], np.ones(self.output_size, np.float32)))
        self.volume = (image[None], classes)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def test_a_3d_unet_learns_a_volume_and_validates_on_the_whole_volume(tmp_path):
    architecture = ModelConfig(depth=1, base_channels=4, dropout=0.0, dims=3)
    samples = VolumeSamples(architecture, count=6)
    settings = TrainSettings.from_config(dict(iterations=60, batch_size=2, optimizer="adam", lr=1e-2, device="cpu",
                                              precision="fp32", validate_every=60, checkpoint_every=1000,
                                              log_every=10))
    metrics = train(architecture=architecture, settings=settings, samples=samples, validation=[samples.volume],
                    out_dir=tmp_path, fingerprint_of={})
    assert metrics["loss"].iloc[-1] < 0.5 * metrics["loss"].iloc[0]
    assert metrics["val_pixel_error"].dropna().iloc[-1] < 0.1
    from unetflow.inference import read_model_file
    saved, saved_architecture = read_model_file(tmp_path / "model.pt")
    assert saved_architecture.dims == 3 and saved["dims"] == 3


def test_3d_samples_of_the_wrong_size_are_refused_naming_the_right_one(tmp_path):
    architecture = ModelConfig(depth=1, base_channels=4, dims=3, planar_poolings=1)
    samples = VolumeSamples(ModelConfig(depth=1, base_channels=4, dims=3), count=1)
    settings = TrainSettings.from_config(dict(iterations=1, device="cpu"))
    needed = "x".join(map(str, architecture.input_shape(samples.output_size)))
    with pytest.raises(InputError, match=f"rerun augment with --input-size {needed}"):
        train(architecture=architecture, settings=settings, samples=samples, validation=[], out_dir=tmp_path,
              fingerprint_of={})


def test_keep_best_writes_the_iterate_of_the_lowest_validation_loss_and_resumes_to_it(tmp_path):
    torch.set_num_threads(1)
    metrics = run(tmp_path / "best", 60, keep="best", validate_every=5)
    validated = metrics.dropna(subset=["val_loss"])
    best = int(validated.loc[validated["val_loss"].idxmin(), "iteration"])
    assert best < 60  # the case is not the trivial one where the last iterate is also the best
    assert list(metrics.loc[metrics["kept"], "iteration"]) == [best]
    saved = torch.load(tmp_path / "best" / "model.pt", weights_only=False)
    assert saved["selection"] == {"keep": "best", "kept_iteration": best, "best_iteration": best,
                                  "best_val_loss": pytest.approx(validated["val_loss"].min())}
    run(tmp_path / "until_best", best)  # training is deterministic on the CPU: its last iterate is the best one
    kept, reference = weights_of(tmp_path / "best"), weights_of(tmp_path / "until_best")
    assert all(torch.equal(kept[name], reference[name]) for name in kept)

    def interrupt_at_57(iteration):
        if iteration == 57:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(tmp_path / "resumed", 60, interrupt_at_57, keep="best", validate_every=5)
    run(tmp_path / "resumed", 60, keep="best", validate_every=5)
    resumed = weights_of(tmp_path / "resumed")
    assert all(torch.equal(kept[name], resumed[name]) for name in kept)


def test_keep_last_marks_the_last_iterate_and_records_the_lowest_validation_loss(tmp_path):
    metrics = run(tmp_path, 20)
    assert list(metrics["kept"]) == [False, False, False, True]
    selection = torch.load(tmp_path / "model.pt", weights_only=False)["selection"]
    assert selection["keep"] == "last" and selection["kept_iteration"] == 20
    assert selection["best_val_loss"] == pytest.approx(metrics["val_loss"].min())


def test_keep_best_without_validation_is_refused(tmp_path):
    settings = TrainSettings.from_config(dict(iterations=5, device="cpu", keep="best"))
    with pytest.raises(InputError, match="keep is best, but there is no validation data"):
        train(architecture=TINY, settings=settings, samples=TileSamples(output_size=20, count=2), validation=[],
              out_dir=tmp_path, fingerprint_of={})

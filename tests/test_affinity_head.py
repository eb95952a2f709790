"""The affinity head (models.<name>.affinities): offsets, network outputs, training targets and
loss, prediction channels, and the mutex watershed on predicted affinities."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from skimage.measure import label as connected_components
from skimage.metrics import adapted_rand_error

from unetflow import io, ngff
from unetflow.affinities import Predicted, affinities_from_labels, offsets_for
from unetflow.errors import InputError
from unetflow.inference import make_forward
from unetflow.label_targets import affinity_targets
from unetflow.methods import architectures
from unetflow.methods.architectures import ModelConfig, channel_names
from unetflow.methods.losses import weighted_affinity_loss
from unetflow.methods.segmenters import segment
from unetflow.model import ProbabilityUNet, UNet
from unetflow.training import TrainSettings, train
from unetflow.voxel_size import UNKNOWN

OFFSETS_2D = ((0, 1), (1, 0), (0, 3), (3, 0), (3, 3), (3, -3))


def test_affinities_true_takes_the_nearest_and_long_range_offsets_of_the_dims():
    for dims, count in ((2, 14), (3, 18)):
        architecture = architectures.create("unet", {"affinities": True}, num_classes=2, dims=dims)
        assert architecture.affinities == tuple(offsets_for(dims)) and len(architecture.affinities) == count
        assert architecture.output_channels == 2 + count
    plain = architectures.create("unet", {}, num_classes=3)
    assert plain.affinities == () and plain.output_channels == 3
    given = architectures.create("unet", {"affinities": [[0, 1], [1, 0], [0, -9]]}, num_classes=2)
    assert given.affinities == ((0, 1), (1, 0), (0, -9))
    assert channel_names(given) == ["background", "foreground", "affinity_0_1", "affinity_1_0", "affinity_0_-9"]
    # the model file records the resolved offsets, and rebuilds the same architecture from them
    rebuilt = architectures.create("unet", given.arguments(), num_classes=2)
    assert rebuilt == given


@pytest.mark.parametrize("offsets, problem", [([[0, 1, 1]], "must have 2 integers"), ([[0, 0]], "not all 0"),
                                              ([[0, 1], [0, 1]], "repeat an offset")])
def test_malformed_offsets_are_refused_naming_the_model(offsets, problem):
    with pytest.raises(InputError, match=rf"models.m: .*affinities.*{problem}"):
        architectures.create("unet", {"affinities": offsets}, num_classes=2, where="models.m")


def test_the_network_outputs_class_probabilities_then_one_sigmoid_per_offset():
    torch.manual_seed(0)
    config = ModelConfig(depth=1, base_channels=4, dropout=0.0, affinities=OFFSETS_2D)
    unet = UNet(config).eval()
    image = torch.randn(2, 1, 36, 36)
    logits = unet(image)
    assert logits.shape[1] == 2 + len(OFFSETS_2D)
    packaged = ProbabilityUNet(depth=1, base_channels=4, padding="valid", batch_norm=False, dropout=0.0,
                               in_channels=1, num_classes=2, affinities=[list(offset) for offset in OFFSETS_2D])
    packaged.load_state_dict(unet.state_dict())
    packaged.eval()
    with torch.no_grad():
        output = packaged(image)
    torch.testing.assert_close(output[:, :2], torch.softmax(logits[:, :2], dim=1))
    torch.testing.assert_close(output[:, 2:], torch.sigmoid(logits[:, 2:]))
    # the predict step's forward gives the same channels, cropped to the tile
    forward = make_forward(unet, torch.device("cpu"), None, logits.shape[-1], num_classes=2)
    np.testing.assert_allclose(forward(image.numpy()), output.numpy(), atol=1e-6)


def test_test_time_augmentation_averages_the_classes_and_keeps_the_affinities_of_the_input_as_it_is():
    torch.manual_seed(1)
    unet = UNet(ModelConfig(depth=1, base_channels=4, dropout=0.0, padding="same", affinities=OFFSETS_2D)).eval()
    plain = UNet(ModelConfig(depth=1, base_channels=4, dropout=0.0, padding="same")).eval()
    plain.load_state_dict({key: value[:2] if key.startswith("head.") else value
                           for key, value in unet.state_dict().items()})
    batch = np.random.default_rng(0).normal(size=(1, 1, 32, 32)).astype(np.float32)
    with_tta = make_forward(unet, torch.device("cpu"), None, 32, num_classes=2, test_time_augmentation=True)(batch)
    without = make_forward(unet, torch.device("cpu"), None, 32, num_classes=2)(batch)
    classes_with_tta = make_forward(plain, torch.device("cpu"), None, 32, test_time_augmentation=True)(batch)
    np.testing.assert_allclose(with_tta[:, :2], classes_with_tta, atol=1e-6)
    np.testing.assert_array_equal(with_tta[:, 2:], without[:, 2:])


def naive_targets(tile: np.ndarray, offsets) -> tuple[np.ndarray, np.ndarray]:
    """Pixel pair by pixel pair: 1 where both ends lie in one component of the known foreground;
    known where both ends are in the tile and known, unless they lie in two components that both
    touch the tile's edge."""
    known = tile != io.IGNORE
    components = connected_components((tile > 0) & known, connectivity=1)
    edge_labels = set(np.concatenate([components[0], components[-1], components[:, 0], components[:, -1]]).tolist())
    targets = np.zeros((len(offsets), *tile.shape), np.float32)
    valid = np.zeros(targets.shape, bool)
    for channel, offset in enumerate(offsets):
        for y, x in itertools.product(*map(range, tile.shape)):
            v, u = y + offset[0], x + offset[1]
            if not (0 <= v < tile.shape[0] and 0 <= u < tile.shape[1]) or not (known[y, x] and known[v, u]):
                continue
            a, b = components[y, x], components[v, u]
            targets[channel, y, x] = a == b and a > 0
            valid[channel, y, x] = not (a > 0 and b > 0 and a != b and a in edge_labels and b in edge_labels)
    return targets, valid


def random_class_tile(seed: int, shape=(24, 26)) -> np.ndarray:
    """Cells (1) parted by membranes (0), with a patch of unknown pixels."""
    rng = np.random.default_rng(seed)
    tile = np.ones(shape, np.uint8)
    for _ in range(3):
        tile[rng.integers(shape[0]), :] = 0
        tile[:, rng.integers(shape[1])] = 0
    tile[rng.random(shape) < 0.05] = 0
    top, left = rng.integers(0, shape[0] - 4), rng.integers(0, shape[1] - 4)
    tile[top:top + 4, left:left + 4] = io.IGNORE
    return tile


def test_affinity_targets_of_class_tiles_equal_a_pixel_by_pixel_reference():
    tiles = np.stack([random_class_tile(seed) for seed in range(4)])
    targets, valid = affinity_targets(tiles, OFFSETS_2D)
    assert targets.shape == valid.shape == (4, len(OFFSETS_2D), 24, 26)
    for index, tile in enumerate(tiles):
        expected_targets, expected_valid = naive_targets(tile, OFFSETS_2D)
        np.testing.assert_array_equal(valid[index], expected_valid)
        np.testing.assert_array_equal(np.where(valid[index], targets[index], 0),
                                      np.where(expected_valid, expected_targets, 0))


def test_an_edge_between_two_cells_that_may_meet_outside_the_tile_is_unknown_and_from_a_whole_cell_known():
    tile = np.ones((12, 12), np.uint8)
    tile[:, 6] = 0  # a membrane across the whole tile: the two halves may be one cell outside it
    tile[3:6, 1:4] = 2  # (class 2 is foreground too)
    targets, valid = affinity_targets(tile[None], ((0, 3),))
    assert not valid[0, 0, 8, 4] and valid[0, 0, 8, 2] and targets[0, 0, 8, 2] == 1  # across / inside the left half
    closed = np.zeros((12, 12), np.uint8)
    closed[2:5, 2:5] = 1  # a whole cell inside the tile, and another reaching the edge
    closed[:, 8:] = 1
    targets, valid = affinity_targets(closed[None], ((0, 6),))
    assert valid[0, 0, 3, 2] and targets[0, 0, 3, 2] == 0  # from the whole cell into the other: known, apart
    # the class tile's objects are exactly affinities_from_labels' where nothing reaches the edge
    exact, exact_valid = affinities_from_labels(connected_components(closed > 0, connectivity=1), [(0, 6)])
    assert np.array_equal(targets[0][valid[0]], exact[valid[0]])


def test_the_affinity_loss_is_the_weighted_mean_over_known_edges_and_ignores_unknown_ones():
    logits = torch.tensor([[[[2.0, -1.0, 0.5]]]], requires_grad=True)  # (N=1, A=1, 1, 3)
    targets = torch.tensor([[[[1.0, 0.0, 1.0]]]])
    valid = torch.tensor([[[[True, True, False]]]])
    weights = torch.tensor([[[1.0, 4.0, 9.0]]])
    expected = (1.0 * math.log(1 + math.exp(-2.0)) + 4.0 * math.log(1 + math.exp(-1.0))) / 2
    loss = weighted_affinity_loss(logits, targets, valid, weights)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert logits.grad[0, 0, 0, 2] == 0 and logits.grad[0, 0, 0, 0] != 0


class CellSamples:
    """Tiles of a synthetic slice of cells (the training test's), for a network with affinities."""

    channels, normalization = 1, {"method": "zscore", "scope": "dataset", "percentiles": None}

    def __init__(self, architecture: ModelConfig, output_size: int, count: int):
        from unetflow.synthetic import generate_stack
        from unetflow.weight_maps import class_weights, weight_map

        images, binary, instances = generate_stack(1, 160, seed=2)
        classes = (binary[0] == 255).astype(np.uint8)
        weights = weight_map(classes, instances[0].astype(np.uint32),
                             class_weight=class_weights(np.bincount(classes.ravel())), w0=10, sigma=5)
        image = ((images[0] - images[0].mean()) / images[0].std()).astype(np.float32)
        self.output_size, self.input_size = output_size, architecture.input_size(output_size)
        border = (self.input_size - output_size) // 2
        self.items = []
        for index in range(count):
            top = (index * 23) % (160 - self.input_size)
            window = (slice(top, top + self.input_size), slice(top, top + self.input_size))
            inner = (slice(top + border, top + border + output_size),) * 2
            self.items.append((image[window][None], classes[inner], weights[inner]))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def test_training_with_affinities_lowers_both_losses_and_the_model_file_rebuilds_the_head(tmp_path):
    torch.manual_seed(0)
    architecture = ModelConfig(depth=2, base_channels=8, dropout=0.0, affinities=OFFSETS_2D)
    samples = CellSamples(architecture, output_size=36, count=4)
    settings = TrainSettings.from_config(dict(iterations=150, batch_size=2, optimizer="adam", lr=3e-3, device="cpu",
                                              validate_every=1000, checkpoint_every=1000, log_every=10))
    metrics = train(architecture=architecture, settings=settings, samples=samples, validation=[], out_dir=tmp_path,
                    fingerprint_of={})
    assert metrics["loss"].iloc[-1] < 0.5 * metrics["loss"].iloc[0]
    saved = torch.load(tmp_path / "model.pt", weights_only=False)
    rebuilt = architectures.create(saved["architecture"], saved["arguments"], num_classes=saved["num_classes"])
    assert rebuilt.affinities == OFFSETS_2D
    network = rebuilt.network()
    network.load_state_dict(saved["state_dict"])
    # the trained head separates cells: affinities across a membrane are low, inside a cell high
    image, classes, _ = samples[0]
    with torch.no_grad():
        logits = network.eval()(torch.from_numpy(image[None]))
    targets, valid = affinity_targets(classes[None], OFFSETS_2D)
    predicted = torch.sigmoid(logits[0, 2:]).numpy()
    apart, together = valid[0] & (targets[0] == 0), valid[0] & (targets[0] == 1)
    assert predicted[together].mean() > predicted[apart].mean() + 0.3


def cells(shape=(60, 60), size=15) -> np.ndarray:
    """A grid of square cells, IDs 1..n, touching each other (no membrane pixels)."""
    rows, columns = np.indices(shape) // size
    return (rows * (shape[1] // size) + columns + 1).astype(np.uint32)


def test_the_mutex_watershed_segments_by_the_predicted_affinities_where_the_foreground_shows_no_membrane():
    truth = cells()
    offsets = offsets_for(2)
    exact, _ = affinities_from_labels(truth, offsets)
    foreground = np.ones(truth.shape, np.float32)  # no membrane anywhere: estimated affinities join everything
    settings = {"bias": 0.5, "min_size": 0, "mask": 0.0}
    from_predicted = segment(foreground, "mutex_watershed", settings, predicted=Predicted(exact, offsets))
    assert adapted_rand_error(truth, from_predicted)[0] == pytest.approx(0.0)
    estimated = segment(foreground, "mutex_watershed", settings)
    assert len(np.unique(estimated)) == 1
    # a reader is called only by a method that takes affinities
    calls = []

    def read():
        calls.append(1)
        return Predicted(exact, offsets)

    segment(foreground, "components", {"threshold": 0.5, "min_size": 0}, predicted=read)
    assert not calls
    assert adapted_rand_error(truth, segment(foreground, "mutex_watershed", settings, predicted=read))[0] == 0
    assert calls == [1]


def test_affinities_estimated_leaves_the_predicted_ones_unread_so_the_tune_rule_can_compare_the_two():
    truth = cells()
    offsets = offsets_for(2)
    exact, _ = affinities_from_labels(truth, offsets)
    foreground = np.where(np.isin(truth, [1, 2]), 1.0, 0.8).astype(np.float32)
    calls = []

    def read():
        calls.append(1)
        return Predicted(exact, offsets)

    settings = {"bias": 0.5, "min_size": 0, "mask": 0.0}
    estimated = segment(foreground, "mutex_watershed", {**settings, "affinities": "estimated"}, predicted=read)
    assert not calls
    np.testing.assert_array_equal(estimated, segment(foreground, "mutex_watershed", settings))
    predicted = segment(foreground, "mutex_watershed", {**settings, "affinities": "predicted"}, predicted=read)
    assert calls == [1] and adapted_rand_error(truth, predicted)[0] == 0 < adapted_rand_error(truth, estimated)[0]


def test_3d_affinity_targets_of_whole_objects_are_their_exact_affinities():
    volume = np.zeros((8, 12, 12), np.uint8)
    volume[2:6, 2:5, 2:5] = 1  # two whole cells apart by a membrane, inside the tile
    volume[2:6, 2:5, 6:9] = 1
    offsets = tuple(offsets_for(3))
    targets, valid = affinity_targets(volume[None], offsets)
    exact, inside = affinities_from_labels(connected_components(volume > 0, connectivity=1), list(offsets))
    np.testing.assert_array_equal(valid[0], inside)  # nothing reaches the tile's edge: every edge inside is known
    np.testing.assert_array_equal(targets[0], exact)
    assert targets[0][offsets.index((0, 0, 3)), 3, 3, 3] == 0 and targets[0][offsets.index((1, 0, 0)), 3, 3, 3] == 1


def affinity_store(path, dtype: str, broken: tuple | None = None) -> tuple:
    """A (2 classes + 3 affinities, 2, 8, 9) prediction store as the predict step writes it (NaN
    at ``broken``), and its values."""
    offsets = [(0, 1), (1, 0), (3, 3)]
    values = np.random.default_rng(5).uniform(size=(5, 2, 8, 9)).astype(np.float32)
    if broken is not None:
        values[broken] = np.nan
    stored = np.round(values * 255).astype(np.uint8) if dtype == "uint8" else values
    group = ngff.create_probabilities(path, stored.shape, dtype, {"num_classes": 2, "affinity_offsets": offsets},
                                      UNKNOWN,
                                      channel_names=[f"channel{index}" for index in range(5)])
    group["0"][:] = stored
    return io.open_probabilities(path), stored, offsets


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_the_affinity_channels_of_a_region_are_read_as_each_channel_alone(tmp_path, dtype):
    probabilities, stored, offsets = affinity_store(tmp_path / "p.zarr", dtype)
    region = (slice(1, 2), slice(2, 7), slice(0, 4))
    found = io.affinity_region(probabilities, region)
    reference = np.stack([io.read_probability_region(probabilities, region, channel) for channel in (2, 3, 4)])
    assert found.offsets == offsets and found.values.dtype == np.float32
    np.testing.assert_array_equal(found.values, reference)
    plane = np.stack([io.read_probability_region(probabilities, (slice(1, 2),), channel)[0] for channel in (2, 3, 4)])
    np.testing.assert_array_equal(io.affinity_plane(probabilities, 1).values, plane)


def test_a_non_finite_affinity_channel_is_refused_naming_it(tmp_path):
    probabilities, _, _ = affinity_store(tmp_path / "p.zarr", "float32", broken=(3, 1, 4, slice(4, 6)))
    with pytest.raises(InputError, match=r"slice 1 \(affinity channel 3\) holds 2 non-finite probabilities"):
        io.affinity_region(probabilities, (slice(1, 2),))

import numpy as np
import pytest
import torch

from unetflow.inference import make_forward, tile_geometry
from unetflow.methods.architectures import ModelConfig
from unetflow.model import UNet
from unetflow.tiling import array_window_reader, blend_origins, predict_block, predict_whole, tile_origins
from unetflow.mirror import mirrored_window

VALID = ModelConfig(depth=2, base_channels=4, dropout=0.0)  # margin 20, outputs are 0 mod 4


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return UNet(VALID).eval()


def whole_slice(model: UNet, image: np.ndarray) -> np.ndarray:
    """One pass over the whole mirror-padded slice: the reference for tiling. The slice is
    mirrored by the margin, and further at the bottom/right up to a valid input size."""
    extra = [(-size) % 4 for size in image.shape]  # valid outputs of a depth-2 network: multiples of 4
    padded = mirrored_window(image, (-VALID.margin, image.shape[0] + extra[0] + VALID.margin),
                             (-VALID.margin, image.shape[1] + extra[1] + VALID.margin))
    with torch.inference_mode():
        logits = model(torch.from_numpy(padded)[None, None])
    return torch.softmax(logits, dim=1)[0, :, : image.shape[0], : image.shape[1]].numpy()


@pytest.mark.parametrize("tile", [28, 36, 200])
@pytest.mark.parametrize("shape", [(100, 76), (101, 67)])
def test_tiled_prediction_equals_the_whole_mirror_padded_slice(model, tile, shape):
    image = np.random.default_rng(0).normal(size=shape).astype(np.float32)  # not square, not tile multiples
    forward = make_forward(model, torch.device("cpu"), None, tile)
    tiled = predict_whole(forward, image, tile=tile, margin=VALID.margin, num_classes=2, batch_size=3, align=4)
    np.testing.assert_allclose(tiled, whole_slice(model, image), atol=1e-5)


def test_blocks_of_a_slice_equal_the_whole_slice(model):
    image = np.random.default_rng(1).normal(size=(100, 76)).astype(np.float32)
    forward = make_forward(model, torch.device("cpu"), None, 28)
    reader = array_window_reader(image)
    blocks = [(0, 40, 0, 76), (40, 100, 0, 30), (40, 100, 30, 76)]
    whole = whole_slice(model, image)
    for row0, row1, col0, col1 in blocks:
        block = predict_block(forward, reader, (row0, row1, col0, col1), image.shape, tile=28, margin=VALID.margin,
                              num_classes=2, align=4)
        np.testing.assert_allclose(block, whole[:, row0:row1, col0:col1], atol=1e-5)


def test_test_time_augmentation_is_equivariant(model):
    image = np.random.default_rng(2).normal(size=(60, 84)).astype(np.float32)
    forward = make_forward(model, torch.device("cpu"), None, 28, test_time_augmentation=True)
    prediction = predict_whole(forward, image, tile=28, margin=VALID.margin, num_classes=2, align=4)
    for turns in (1, 2):
        rotated = predict_whole(forward, np.ascontiguousarray(np.rot90(image, turns)), tile=28,
                                margin=VALID.margin, num_classes=2, align=4)
        np.testing.assert_allclose(rotated, np.rot90(prediction, turns, axes=(1, 2)), atol=1e-5)
    flipped = predict_whole(forward, np.ascontiguousarray(image[:, ::-1]), tile=28, margin=VALID.margin,
                            num_classes=2, align=4)
    np.testing.assert_allclose(flipped, prediction[:, :, ::-1], atol=1e-5)


def test_tile_origins_cover_every_pixel_without_overhang():
    for length, tile, align in ((100, 28, 1), (28, 28, 4), (10, 28, 4), (57, 19, 1), (1000, 388, 16)):
        covered = np.zeros(length + tile, bool)
        for origin in tile_origins(length, tile, align):
            assert origin >= 0 and origin % align == 0 and origin < length
            covered[origin : origin + tile] = True
        assert covered[:length].all()


def test_blending_reproduces_a_pure_centre_forward_exactly():
    image = np.random.default_rng(3).normal(size=(70, 45)).astype(np.float32)

    def identity(batch):  # a "network" whose output is its input: any blend must give the image back
        return np.repeat(batch, 2, axis=1)

    blended = predict_whole(identity, image, tile=32, margin=0, num_classes=2, blend=True)
    np.testing.assert_allclose(blended[0], image, atol=1e-5)
    assert blend_origins(70, 32) == [0, 16, 32, 38]  # half-overlapping, the last one flush with the end


def test_same_padded_models_blend_without_seams():
    torch.manual_seed(0)
    model = UNet(ModelConfig(depth=2, base_channels=4, padding="same", dropout=0.0)).eval()
    geometry = tile_geometry(model.config, 30)
    assert geometry.blend and geometry.margin == (0, 0) and geometry.tile[0] % 4 == 0
    image = np.random.default_rng(4).normal(size=(96, 96)).astype(np.float32)
    forward = make_forward(model, torch.device("cpu"), None, geometry.tile)
    options = {"tile": geometry.tile, "margin": 0, "num_classes": 2, "align": geometry.align}
    blended = predict_whole(forward, image, blend=True, **options)
    abutting = predict_whole(forward, image, blend=False, **options)
    with torch.inference_mode():
        whole = torch.softmax(model(torch.from_numpy(image)[None, None]), 1)[0].numpy()
    inner = (slice(None), slice(16, -16), slice(16, -16))  # away from the zero-padded slice border
    seam_error, blend_error = (np.abs(out[inner] - whole[inner]).mean() for out in (abutting, blended))
    assert blend_error < 0.5 * seam_error


VOLUME = ModelConfig(depth=2, base_channels=2, dropout=0.0, dims=3, planar_poolings=1)  # pools 1x2x2, then 2x2x2


def whole_volume(model: UNet, volume: np.ndarray) -> np.ndarray:
    """One pass over the whole mirror-padded volume, grown to a valid output size per axis."""
    config = model.config
    output = config.valid_output_shape_for(volume.shape)
    padded = np.pad(volume, [(margin, margin + out - size) for margin, out, size
                             in zip(config.margins, output, volume.shape)], mode="reflect")
    with torch.inference_mode():
        logits = model(torch.from_numpy(padded)[None, None])
    return torch.softmax(logits, dim=1)[(0, slice(None), *(slice(0, size) for size in volume.shape))].numpy()


def test_a_3d_network_has_anisotropic_margins_and_alignment():
    assert VOLUME.margins == (12, 20, 20) and VOLUME.aligns == (2, 4, 4)
    input_shape, output_shape = VOLUME.sample_shapes(8)
    torch.manual_seed(0)
    with torch.inference_mode():
        assert UNet(VOLUME)(torch.zeros(1, 1, *input_shape)).shape == (1, 2, *output_shape)


@pytest.mark.parametrize("tile", [8, 12])
def test_tiled_3d_prediction_equals_the_whole_mirror_padded_volume(tile):
    torch.manual_seed(0)
    model = UNet(VOLUME).eval()
    volume = np.random.default_rng(5).normal(size=(15, 21, 18)).astype(np.float32)  # no tile multiple
    geometry = tile_geometry(VOLUME, tile)
    assert len(tile_origins(volume.shape[0], geometry.tile[0], 2)) > 1  # tiled in z, too
    forward = make_forward(model, torch.device("cpu"), None, geometry.tile)
    tiled = predict_whole(forward, volume, tile=geometry.tile, margin=geometry.margin, num_classes=2, batch_size=2,
                          align=geometry.align)
    np.testing.assert_allclose(tiled, whole_volume(model, volume), atol=1e-5)


def test_exact_tiles_run_once_per_block_cut_at_their_origins():
    calls = []

    def counting(batch):
        calls.append(len(batch))
        return np.zeros((len(batch), 2, 4, 4), np.float32)

    reader = array_window_reader(np.zeros((13, 13), np.float32))
    origins = tile_origins(13, 4, 2)
    for start, stop in zip(origins, [*origins[1:], 13]):
        predict_block(counting, reader, (start, stop, 0, 13), (13, 13), tile=4, margin=0, num_classes=2, align=2)
    assert sum(calls) == len(origins) ** 2

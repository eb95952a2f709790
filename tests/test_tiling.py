import numpy as np
import pytest
import torch

from unetflow.inference import make_forward, tile_geometry
from unetflow.model import ModelConfig, UNet
from unetflow.tiling import array_window_reader, blend_origins, predict_block, predict_slice, tile_origins
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
    tiled = predict_slice(forward, image, tile=tile, margin=VALID.margin, num_classes=2, batch_size=3, align=4)
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
    prediction = predict_slice(forward, image, tile=28, margin=VALID.margin, num_classes=2, align=4)
    for turns in (1, 2):
        rotated = predict_slice(forward, np.ascontiguousarray(np.rot90(image, turns)), tile=28,
                                margin=VALID.margin, num_classes=2, align=4)
        np.testing.assert_allclose(rotated, np.rot90(prediction, turns, axes=(1, 2)), atol=1e-5)
    flipped = predict_slice(forward, np.ascontiguousarray(image[:, ::-1]), tile=28, margin=VALID.margin,
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

    blended = predict_slice(identity, image, tile=32, margin=0, num_classes=2, blend=True)
    np.testing.assert_allclose(blended[0], image, atol=1e-5)
    assert blend_origins(70, 32) == [0, 16, 32, 38]  # half-overlapping, the last one flush with the end


def test_same_padded_models_blend_without_seams():
    torch.manual_seed(0)
    model = UNet(ModelConfig(depth=2, base_channels=4, padding="same", dropout=0.0)).eval()
    geometry = tile_geometry(model.config, 30)
    assert geometry.blend and geometry.margin == 0 and geometry.tile % 4 == 0
    image = np.random.default_rng(4).normal(size=(96, 96)).astype(np.float32)
    forward = make_forward(model, torch.device("cpu"), None, geometry.tile)
    options = {"tile": geometry.tile, "margin": 0, "num_classes": 2, "align": geometry.align}
    blended = predict_slice(forward, image, blend=True, **options)
    abutting = predict_slice(forward, image, blend=False, **options)
    with torch.inference_mode():
        whole = torch.softmax(model(torch.from_numpy(image)[None, None]), 1)[0].numpy()
    inner = (slice(None), slice(16, -16), slice(16, -16))  # away from the zero-padded slice border
    seam_error, blend_error = (np.abs(out[inner] - whole[inner]).mean() for out in (abutting, blended))
    assert blend_error < 0.5 * seam_error

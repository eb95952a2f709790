import math

import pytest
import torch

from unetflow.model import ModelConfig, UNet, count_convolutions, count_parameters, model_input_size


def test_paper_network_shape_layers_and_size():
    model = UNet()
    with torch.inference_mode():
        out = model(torch.zeros(1, 1, 572, 572))
    assert out.shape == (1, 2, 388, 388)
    assert count_convolutions(model) == 23
    assert count_parameters(model) == pytest.approx(31.0e6, rel=0.005)


def test_initialisation_follows_the_fan_in():
    model = UNet(ModelConfig(depth=2, base_channels=64, dropout=0.0))
    conv = model.down[1][0]  # 3x3 convolution with 64 input channels: N = 576
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / 576), rel=0.05)
    assert torch.all(conv.bias == 0)


@pytest.mark.parametrize("config", [
    ModelConfig(depth=3, base_channels=8),
    ModelConfig(depth=2, base_channels=4, padding="same", batch_norm=True),
    ModelConfig(depth=1, base_channels=4, num_classes=3, dropout=0.0),
])
def test_configured_networks_map_their_input_size_to_the_wanted_output(config):
    model = UNet(config).eval()
    for wanted in (20, 36, 44):
        size = model_input_size(config, wanted)
        with torch.inference_mode():
            out = model(torch.zeros(1, 1, size, size))
        assert out.shape[1] == config.num_classes
        if config.padding == "valid":
            assert out.shape[-1] == wanted
        else:
            assert out.shape[-1] == size >= wanted and (size - wanted) % 2 == 0

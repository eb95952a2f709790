import pytest

from unetflow.geometry import input_size_for, margin, output_size, valid_output_size
from unetflow.methods.architectures import ModelConfig


def test_paper_network_maps_572_to_388_with_a_92_pixel_margin():
    assert output_size(572, 4) == 388
    assert margin(4) == 92
    assert input_size_for(388, 4) == 572


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_valid_sizes_round_trip(depth):
    for wanted in range(1, 300, 7):
        output = valid_output_size(wanted, depth)
        assert output >= wanted
        assert output_size(input_size_for(output, depth), depth) == output


def test_invalid_input_size_is_refused_with_an_example():
    with pytest.raises(ValueError, match=r"not valid for a U-Net pooling \(2, 2, 2, 2\).*e.g. 188"):
        output_size(570, 4)


def test_same_padding_keeps_the_size_and_needs_multiples():
    assert output_size(256, 4, "same") == 256
    assert margin(4, "same") == 0
    assert valid_output_size(100, 4, "same") == 112
    with pytest.raises(ValueError):
        output_size(100, 4, "same")


def test_each_model_gets_its_own_sample_sizes():
    assert ModelConfig(depth=4, padding="valid").sample_sizes(388) == (572, 388)  # the paper's tiles
    assert ModelConfig(depth=4, padding="valid").sample_sizes(100) == (284, 100)
    assert ModelConfig(depth=3, padding="valid").sample_sizes(100) == (188, 100)
    assert ModelConfig(depth=2, padding="same").sample_sizes(100) == (100, 100)
    assert ModelConfig(depth=4, padding="same").sample_sizes(100) == (112, 112)  # was 100 -> 100, which a depth-4 same-padded net cannot take


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_sample_sizes_are_exactly_what_the_model_takes_and_gives(depth, padding):
    for wanted in range(4, 200, 9):
        input_size, output = ModelConfig(depth=depth, padding=padding).sample_sizes(wanted)
        assert output >= wanted
        assert output_size(input_size, depth, padding) == output

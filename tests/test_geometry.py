import pytest

from unetflow.geometry import input_size_for, margin, output_size, sample_sizes, valid_output_size


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
    with pytest.raises(ValueError, match="not valid for a depth-4 U-Net"):
        output_size(570, 4)


def test_same_padding_keeps_the_size_and_needs_multiples():
    assert output_size(256, 4, "same") == 256
    assert margin(4, "same") == 0
    assert valid_output_size(100, 4, "same") == 112
    with pytest.raises(ValueError):
        output_size(100, 4, "same")


def test_sample_sizes_fit_every_model():
    models = {"a": {"depth": 3, "padding": "valid"}, "b": {"depth": 4, "padding": "valid"}, "c": {"depth": 2, "padding": "same"}}
    input_size, output = sample_sizes(models, 100)
    assert input_size - output == 2 * margin(4)
    for config in models.values():
        if config["padding"] == "valid":
            crop = output + 2 * margin(config["depth"])
            assert output_size(crop, config["depth"]) == output

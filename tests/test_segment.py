import numpy as np
from skimage.metrics import adapted_rand_error

from unetflow.segment import components, watershed_fill


def known_cells() -> np.ndarray:
    """Four square cells on a 2x2 grid, touching across one-pixel membranes."""
    objects = np.zeros((64, 64), np.uint32)
    objects[2:31, 2:31], objects[2:31, 32:62] = 1, 2
    objects[32:62, 2:31], objects[32:62, 32:62] = 3, 4
    return objects


def test_components_of_a_known_probability_map_are_the_known_objects():
    objects = known_cells()
    probability = np.where(objects > 0, 0.9, 0.1)
    found = components(probability, threshold=0.5)
    assert found.max() == 4
    assert adapted_rand_error(objects, found)[0] == 0.0


def test_watershed_fills_membranes_and_closes_gaps_the_network_left_open():
    objects = known_cells()
    probability = np.where(objects > 0, 0.9, 0.1)
    probability[15, 31] = probability[46, 31] = 0.6  # two gaps in the membrane between cells
    assert components(probability, threshold=0.5).max() == 2  # the gaps merge cells pairwise
    filled = watershed_fill(probability, threshold=0.5, h=2)
    assert filled.max() == 4 and filled.min() == 1  # every pixel belongs to a cell
    assert adapted_rand_error(objects, filled)[0] == 0.0  # membranes (label 0) are ignored by the score
    for label in range(1, 5):
        assert len(np.unique(filled[objects == label])) == 1


def test_small_objects_are_dropped():
    objects = known_cells()
    probability = np.where(objects > 0, 0.9, 0.1)
    probability[40:42, 40:42] = 0.0  # a hole does not matter
    probability[0:2, 62:64] = 0.9  # a 4-pixel speck
    assert components(probability, threshold=0.5).max() == 5
    assert components(probability, threshold=0.5, min_size=10).max() == 4


def test_probability_seeds_also_find_the_cells():
    objects = known_cells()
    probability = np.where(objects > 0, 0.9, 0.1)
    filled = watershed_fill(probability, threshold=0.5, seeds="probability", h=0.05)
    assert adapted_rand_error(objects, filled)[0] == 0.0

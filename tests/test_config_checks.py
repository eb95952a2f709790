import pytest

from unetflow.config_checks import check_disjoint, check_path, check_seed_height, check_unique, parse_slice_selection
from unetflow.errors import InputError
from unetflow.readers import parse_slices


@pytest.mark.parametrize("spec, expected", [("", None), (None, None), ("0-3", [0, 1, 2, 3]), ("0,3,5-7", [0, 3, 5, 6, 7]),
                                            (4, [4]), ("2-2", [2])])
def test_slice_selections_read_as_written(spec, expected):
    assert parse_slice_selection(spec, "here") == expected


@pytest.mark.parametrize("spec, message", [
    ("3-1", r"here: slice range '3-1' runs backwards; write it as \"1-3\""),
    ("0-3,2", r"here: slice selection '0-3,2' names slices \[2\] more than once"),
    ("a-b", r"here: slice selection 'a-b' is not understood"),
])
def test_bad_slice_selections_are_refused_with_the_fix(spec, message):
    with pytest.raises(InputError, match=message):
        parse_slice_selection(spec, "here")


def test_selected_slices_must_exist_in_the_stack():
    assert parse_slices("", 3, "s.tif") == [0, 1, 2]
    with pytest.raises(InputError, match=r"s\.tif: slices \[3\] do not exist, the stack has 3"):
        parse_slices("1-3", 3, "s.tif")


def test_probability_seeds_need_a_height_below_one():
    check_seed_height("probability", 0.15)
    check_seed_height("distance", 2.0)
    with pytest.raises(InputError, match=r"segment.h is 2.0 with segment.seeds: probability.*set segment.h below 1"):
        check_seed_height("probability", 2.0)


def test_repeated_names_and_braces_are_refused_naming_the_key():
    check_unique(["a", "b"], "predict_on")
    with pytest.raises(InputError, match="config: predict_on names a more than once"):
        check_unique(["a", "b", "a"], "predict_on")
    with pytest.raises(InputError, match=r"config: datasets.x.images is 'data/run\{1\}.tif', whose braces"):
        check_path("data/run{1}.tif", "datasets.x.images")


def stack(slices="", images="stack.tif") -> dict:
    return {"images": images, "slices": slices}


def test_train_tune_and_report_data_may_share_no_slice():
    datasets = {"train": stack("0-14"), "tune": stack("15-17"), "report": stack("18-21"), "other": stack(images="b.tif")}
    check_disjoint({"train_on": ["train"], "validate_on": ["tune"], "predict_on": ["report", "other"]}, datasets)
    datasets["report"] = stack("17-21")
    with pytest.raises(InputError, match=r"tune \(validate_on\) and report \(predict_on\) share slices \[17\] of "
                                         r"stack.tif.*must be disjoint"):
        check_disjoint({"train_on": ["train"], "validate_on": ["tune"], "predict_on": ["report"]}, datasets)
    datasets["whole"] = stack()  # no selection: every slice
    with pytest.raises(InputError, match=r"train \(train_on\) and whole \(predict_on\) share every slice"):
        check_disjoint({"train_on": ["train"], "predict_on": ["whole"]}, datasets)
    with pytest.raises(InputError, match=r"tune \(validate_on\) and tune \(predict_on\) share slices \[15, 16, 17\]"):
        check_disjoint({"validate_on": ["tune"], "predict_on": ["tune"]}, datasets)


def test_the_same_stack_under_another_spelling_of_its_path_is_the_same_stack(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    datasets = {"a": stack("0-3", "data/s.tif"), "b": stack("3", "./data/../data/s.tif")}
    with pytest.raises(InputError, match=r"share slices \[3\]"):
        check_disjoint({"train_on": ["a"], "predict_on": ["b"]}, datasets)

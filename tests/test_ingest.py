from pathlib import Path

import numpy as np
import pytest

from unetflow.intensity import Normalization
import tifffile
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Label, Multiscales, Reader

from unetflow import io
from unetflow.errors import InputError
from unetflow.label_targets import touching_borders
from unetflow.steps.ingest import ingest
from unetflow.readers import open_stack


def save(path: Path, stack: np.ndarray) -> Path:
    tifffile.imwrite(path, stack, photometric="minisblack")
    return path


@pytest.fixture
def images(tmp_path) -> Path:
    stack = np.random.default_rng(0).integers(0, 256, size=(3, 24, 32), dtype=np.uint8)
    return save(tmp_path / "images.tif", stack)


def binary_labels() -> np.ndarray:
    labels = np.full((3, 24, 32), 255, dtype=np.uint8)
    labels[:, 10, :] = 0  # a membrane splits each slice into two cells
    return labels


def run_ingest(images: Path, labels: np.ndarray | None, out: Path, **options) -> zarr.Group:
    label_stack = None
    if labels is not None:
        label_stack = open_stack(save(out.parent / "labels.tif", labels))
    ingest(open_stack(images), label_stack, out, **{"label_kind": "auto", "num_classes": 2, **options})
    return zarr.open_group(str(out), mode="r")


def test_store_keeps_the_image_exactly_and_its_normalisation(tmp_path, images):
    store = run_ingest(images, None, tmp_path / "data.zarr")
    source = tifffile.imread(images)
    np.testing.assert_array_equal(store["0"][:], source)
    assert store["0"].dtype == np.uint8 and store["0"].chunks == (1, 24, 32)
    stats = Normalization.from_attrs(store["0"].attrs["unetflow"]["normalization"])
    assert (stats.method, stats.scope) == ("zscore", "dataset")
    assert stats.offset[0, 0] == pytest.approx(source.mean()) and stats.scale[0, 0] == pytest.approx(source.std())
    assert "labels" not in store


def test_binary_labels_become_classes_and_connected_objects(tmp_path, images):
    store = run_ingest(images, binary_labels(), tmp_path / "data.zarr")
    classes, objects = store["labels/classes/0"][:], store["labels/objects/0"][:]
    np.testing.assert_array_equal(classes, binary_labels() == 255)
    assert objects.dtype == np.uint32
    assert [len(np.unique(o)) - 1 for o in objects] == [2, 2, 2]
    assert store["0"].attrs["unetflow"]["labels"]["kind"] == "binary"


def test_instance_labels_are_kept_and_touching_objects_separated(tmp_path, images):
    instances = np.zeros((3, 24, 32), dtype=np.uint16)
    instances[:, 2:20, 2:15] = 1
    instances[:, 2:20, 15:30] = 2  # touches object 1 along column 15
    instances[:, 21:23, 2:5] = 3
    store = run_ingest(images, instances, tmp_path / "data.zarr")
    np.testing.assert_array_equal(store["labels/objects/0"][:], instances)
    classes = store["labels/classes/0"][:]
    assert not classes[:, 2:20, 15].any()  # the one-pixel border between 1 and 2
    assert classes[:, 2:20, 14].all() and classes[:, 2:20, 16].all()
    assert classes[:, 21:23, 2:5].all()  # an object that touches nobody keeps its border


def test_touching_borders_are_one_pixel_and_separate_objects():
    objects = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [0, 3, 3, 0]])
    border = touching_borders(objects)
    expected = np.array([[0, 0, 1, 0], [0, 0, 1, 0], [0, 1, 1, 0]], dtype=bool)
    np.testing.assert_array_equal(border, expected)


def test_in_3d_a_cell_through_the_slices_is_one_object_and_cells_touching_in_z_are_separated(tmp_path, images):
    labels = binary_labels()
    labels[1:, :, 20] = 0  # from slice 1 on, a second membrane: the cell right of it starts there
    objects = run_ingest(images, labels, tmp_path / "volume.zarr", dims=3)["labels/objects/0"][:]
    assert objects[0, 0, 0] == objects[2, 0, 0] == objects[1, 0, 25] != objects[1, 20, 0] > 0  # IDs through z
    assert len(np.unique(objects[objects > 0])) == 2  # the cell right of the new membrane joins slice 0's
    per_slice = run_ingest(images, labels, tmp_path / "slices.zarr")["labels/objects/0"][:]
    assert per_slice[1, 0, 25] != per_slice[1, 0, 0]  # per slice, the same region is another object there
    instances = np.ones((3, 24, 32), np.uint16)
    instances[2] = 2  # two cells stacked in z, touching face to face
    classes = run_ingest(images, instances, tmp_path / "stacked.zarr", dims=3, label_kind="instance")["labels/classes/0"][:]
    assert classes[0].all() and not classes[2].any() and classes[1].all()  # the border is cut in z


def test_store_opens_with_an_ome_zarr_reader(tmp_path, images):
    out = tmp_path / "data.zarr"
    run_ingest(images, binary_labels(), out)
    nodes = list(Reader(parse_url(str(out)))())
    image = nodes[0]
    assert any(isinstance(spec, Multiscales) for spec in image.specs)
    assert image.zarr.version == "0.4"
    assert image.data[0].shape == (3, 24, 32)
    assert [axis["name"] for axis in image.metadata["axes"]] == ["z", "y", "x"]
    label_nodes = [node for node in nodes if any(isinstance(spec, Label) for spec in node.specs)]
    assert sorted(node.zarr.basename() for node in label_nodes) == ["classes", "objects"]
    assert (out / ".zgroup").exists()  # Zarr format 2, which Fiji reads


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_sixteen_bit_and_float_images_ingest(tmp_path, dtype):
    stack = (np.random.default_rng(1).random((2, 16, 16)) * 4000).astype(dtype)
    store = run_ingest(save(tmp_path / "img.tif", stack), None, tmp_path / "data.zarr")
    assert store["0"].dtype == dtype
    np.testing.assert_array_equal(store["0"][:], stack)


def test_shape_mismatch_names_both_files(tmp_path, images):
    with pytest.raises(InputError, match=r"labels\.tif: labels have shape \(2, 24, 32\).*images\.tif.*one label slice"):
        run_ingest(images, binary_labels()[:2], tmp_path / "data.zarr")


def test_fractional_labels_are_refused(tmp_path, images):
    labels = binary_labels().astype(np.float32) / 255 * 0.7
    with pytest.raises(InputError, match=r"labels\.tif \(page 0\): labels hold fractional.*integer type"):
        run_ingest(images, labels, tmp_path / "data.zarr")


def test_negative_labels_are_refused(tmp_path, images):
    labels = binary_labels().astype(np.int16)
    labels[1, 0, 0] = -1
    with pytest.raises(InputError, match=r"\(page 1\): labels hold negative values.*use 0 for background"):
        run_ingest(images, labels, tmp_path / "data.zarr")


def test_more_classes_than_configured_are_refused(tmp_path, images):
    labels = np.zeros((3, 24, 32), dtype=np.uint8)
    labels[2, :5] = 3
    with pytest.raises(InputError, match=r"\(page 2\): labels hold the value 3, which is not one of the classes "
                                         r"0\.\.2 of num_classes 3: save them as class indices 0\.\.2; if they are "
                                         r"a binary mask .* set the dataset's label_kind: binary"):
        run_ingest(images, labels, tmp_path / "data.zarr", num_classes=3)


def test_a_binary_mask_with_three_classes_is_refused_with_a_fix_that_works(tmp_path, images):
    with pytest.raises(InputError, match=r"labels hold the value 255.*label_kind: binary"):
        run_ingest(images, binary_labels(), tmp_path / "data.zarr", num_classes=3)
    store = run_ingest(images, binary_labels(), tmp_path / "data.zarr", num_classes=3, label_kind="binary")
    np.testing.assert_array_equal(store["labels/classes/0"][:], binary_labels() == 255)


def test_an_all_zero_binary_stack_has_no_foreground(tmp_path, images):
    store = run_ingest(images, np.zeros((3, 24, 32), np.uint8), tmp_path / "data.zarr")
    assert store["labels/classes/0"][:].max() == 0 and store["labels/objects/0"][:].max() == 0


def test_class_labels_within_range_are_kept(tmp_path, images):
    labels = np.zeros((3, 24, 32), dtype=np.uint8)
    labels[:, :5], labels[:, 10:12] = 1, 2
    store = run_ingest(images, labels, tmp_path / "data.zarr", num_classes=3)
    np.testing.assert_array_equal(store["labels/classes/0"][:], labels)


def test_nan_in_image_is_refused_and_nothing_is_written(tmp_path):
    stack = np.ones((3, 8, 8), dtype=np.float32)
    stack[2, 3, 3] = np.nan
    out = tmp_path / "data.zarr"
    with pytest.raises(InputError, match=r"img\.tif \(page 2\): image holds 1 NaN or infinite values; replace"):
        run_ingest(save(tmp_path / "img.tif", stack), None, out)
    assert list(tmp_path.iterdir()) == [tmp_path / "img.tif"]  # no store, no temporary left


def test_failed_rerun_keeps_no_stale_store(tmp_path, images):
    out = tmp_path / "data.zarr"
    run_ingest(images, None, out)
    stack = np.full((3, 8, 8), np.inf, dtype=np.float32)
    with pytest.raises(InputError):
        run_ingest(save(tmp_path / "bad.tif", stack), None, out)
    assert out.exists() and sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_store_with_a_missing_chunk_is_refused(tmp_path, images):
    out = tmp_path / "data.zarr"
    run_ingest(images, binary_labels(), out)
    (out / "0" / "1.0.0").unlink()  # one slice's chunk lost
    with pytest.raises(InputError, match=r"data\.zarr/0: 1 of 3 chunks are missing .* delete the store and rerun"):
        io.open_raw(io.open_store(out))


def test_an_all_zero_slice_is_still_written_as_a_chunk(tmp_path):
    stack = np.zeros((2, 8, 8), dtype=np.uint8)
    store = run_ingest(save(tmp_path / "zeros.tif", stack), None, tmp_path / "data.zarr")
    assert io.open_raw(store).nchunks_initialized == 2


def test_temporary_stores_of_killed_jobs_are_removed_by_the_next_run(tmp_path, images):
    for pid in (4242, 4343):  # what two killed ingest jobs left behind
        leftover = tmp_path / f".data.zarr.tmp-{pid}"
        leftover.mkdir()
        (leftover / "raw").write_bytes(b"\0" * 1000)
    (tmp_path / ".other.zarr.tmp-4242").mkdir()  # another output's: not ours to remove
    run_ingest(images, None, tmp_path / "data.zarr")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [".other.zarr.tmp-4242"]

import numpy as np
import pytest
import zarr
from distributed import LocalCluster

from unetflow import io, ngff
from unetflow.errors import InputError
from unetflow.parallel import dask_config
from unetflow.synthetic import generate_stack
from unetflow.steps.weights import main as weights_main


@pytest.fixture
def labelled_store(tmp_path):
    images, binary, instances = generate_stack(3, 96, seed=1, mode="touching")
    store = io.create_group(tmp_path / "data.zarr")
    ngff.create_image(store, images.shape, images.dtype, name="raw")[:] = images
    ngff.create_label(store, "classes", images.shape, np.dtype(np.uint8))[:] = (binary > 0).astype(np.uint8)
    ngff.create_label(store, "objects", images.shape, np.dtype(np.uint32))[:] = instances
    return tmp_path / "data.zarr"


def test_weights_on_a_distributed_cluster_equal_the_threaded_run(labelled_store, tmp_path):
    weights_main([str(labelled_store), str(tmp_path / "threads.zarr"), "--workers", "2"])
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        weights_main([str(labelled_store), str(tmp_path / "cluster.zarr"), "--scheduler", cluster.scheduler_address])
    threaded = zarr.open_group(str(tmp_path / "threads.zarr"), mode="r")["0"][:]
    distributed = zarr.open_group(str(tmp_path / "cluster.zarr"), mode="r")["0"][:]
    np.testing.assert_array_equal(distributed, threaded)


def test_an_unknown_scheduler_is_refused_with_the_choices():
    with pytest.raises(InputError, match="dask scheduler 'gpu' is unknown; use one of threads, processes, synchronous"):
        with dask_config("gpu", 1):
            pass

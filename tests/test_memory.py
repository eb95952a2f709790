"""A dataset larger than the memory a step is given still ingests, weights and predicts,
slice by slice. The limit is a cgroup (v1 or v2) memory limit on the step's process;
skipped where no writable memory cgroup exists (not root, or none mounted)."""

import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from unetflow.inference import save_model
from unetflow.methods.architectures import ModelConfig
from unetflow.model import UNet

pytestmark = pytest.mark.slow

SLICES, EDGE = 180, 1024  # float32 images: 755 MB, more than any limit below
MB = 2**20


def memory_cgroup(limit_bytes: int) -> Path:
    """A new memory cgroup with the limit; returns its cgroup.procs file (write a pid to join)."""
    name = f"unetflow-test-{uuid.uuid4().hex[:8]}"
    for root, limit_file, procs in ((Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes", "cgroup.procs"),
                                    (Path("/sys/fs/cgroup"), "memory.max", "cgroup.procs")):
        if (root / limit_file).exists() or (root / "cgroup.controllers").exists():
            group = root / name
            try:
                group.mkdir()
                (group / limit_file).write_text(str(limit_bytes))
                return group / procs
            except OSError:
                continue
    pytest.skip("no writable memory cgroup here (needs root and a cgroup v1/v2 memory controller)")


def run_limited(limit_mb: int, *arguments: str) -> subprocess.CompletedProcess:
    procs = memory_cgroup(limit_mb * MB)
    script = f'echo $$ > {procs} && exec "$0" "$@"'
    try:
        return subprocess.run(["sh", "-c", script, sys.executable, "-m", *arguments], capture_output=True, text=True,
                              timeout=1200)
    finally:
        try:
            procs.parent.rmdir()
        except OSError:
            pass


@pytest.fixture(scope="module")
def large_stack(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("large")
    rng = np.random.default_rng(0)
    inside = np.arange(EDGE) % 32 > 1
    labels = np.where(inside[:, None] & inside[None, :], 255, 0).astype(np.uint8)  # a grid of cells
    with tifffile.TiffWriter(folder / "images.tif") as images, tifffile.TiffWriter(folder / "labels.tif") as masks:
        for _ in range(SLICES):
            images.write(rng.random((EDGE, EDGE), dtype=np.float32), photometric="minisblack", contiguous=True)
            masks.write(labels, photometric="minisblack", contiguous=True)
    return folder


def test_a_stack_larger_than_the_memory_limit_streams_through(large_stack):
    assert (large_stack / "images.tif").stat().st_size > 700 * MB
    data = large_stack / "data.zarr"
    step = run_limited(450, "unetflow.steps.ingest", "--images", str(large_stack / "images.tif"),
                       "--labels", str(large_stack / "labels.tif"), "--out", str(data))
    assert step.returncode == 0, step.stderr[-3000:]
    step = run_limited(450, "unetflow.steps.weights", str(data), str(large_stack / "weights.zarr"), "--workers", "2")
    assert step.returncode == 0, step.stderr[-3000:]
    config = ModelConfig(depth=1, base_channels=4, dropout=0.0)
    save_model(large_stack / "model.pt", config, UNet(config))
    step = run_limited(700, "unetflow.steps.predict", str(large_stack / "model.pt"), str(data),
                       str(large_stack / "predictions.zarr"), "--settings", '{"tile": 512, "dtype": "uint8"}', "--runtime", '{"device": "cpu"}')
    assert step.returncode == 0, step.stderr[-3000:]
    assert zarr.open_group(str(large_stack / "predictions.zarr"), mode="r")["0"].shape == (2, SLICES, EDGE, EDGE)
    assert zarr.open_group(str(large_stack / "weights.zarr"), mode="r")["0"].shape == (SLICES, EDGE, EDGE)


def test_the_limit_is_real(tmp_path):
    """The same cgroup kills a process that does hold more than the limit."""
    procs = memory_cgroup(200 * MB)
    script = f'echo $$ > {procs} && exec "$0" -c "import numpy; a = numpy.ones(400 * 2**20 // 8); print(a.sum())"'
    try:
        result = subprocess.run(["sh", "-c", script, sys.executable], capture_output=True, text=True, timeout=120)
    finally:
        procs.parent.rmdir()
    assert result.returncode != 0

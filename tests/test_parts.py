"""A stack split into parts: predict and segment as several jobs that fill one store, the
result bit-identical to one job's; one GPU per job on a machine with several."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml
import zarr
from unetflow import inference, parts
from unetflow.errors import InputError
from unetflow.methods.architectures import ModelConfig
from unetflow.synthetic import generate_stack

from conftest import copy_workflow, snakemake, snakemake_environment
from test_demo import planned_jobs


@pytest.mark.parametrize("count, pieces", [(10, 4), (3, 4), (64, 2), (1, 1)])
def test_parts_cover_the_stack_once_in_balanced_ranges(count, pieces):
    ranges = [parts.slice_range(part, pieces, count) for part in range(1, pieces + 1)]
    assert [z for piece in ranges for z in piece] == list(range(count))
    assert max(map(len, ranges)) - min(map(len, ranges)) <= 1


def test_parts_starting_together_share_one_store_and_a_stale_one_is_replaced(tmp_path):
    output = tmp_path / "out.zarr"

    def create(path):
        zarr.open_group(str(path), mode="w", zarr_format=2).create_array("a", shape=(8,), dtype="u1", fill_value=0)

    stores = []
    threads = [threading.Thread(target=lambda: stores.append(parts.shared_store(output, {"k": 1}, create)))
               for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(stores) == 6 and {store.store.root for store in stores} == {parts.workspace(output) / "store"}
    stores[0]["a"][:4] = 7
    assert parts.shared_store(output, {"k": 1}, create)["a"][0] == 7  # the same settings: kept
    assert parts.shared_store(output, {"k": 2}, create)["a"][0] == 0  # other settings: replaced
    with pytest.raises(InputError, match=r"out\.zarr: parts \[1\] of 1 are not finished"):
        parts.merge(output, 1)
    parts.mark_done(output, 1, 1, range(8))
    parts.merge(output, 1)
    assert output.is_dir() and not parts.workspace(output).exists()
    parts.shared_store(output, {"k": 3}, create)  # a split run stopped half-way, then one job:
    parts.discard_workspace(output)
    assert not parts.workspace(output).exists()


FAKE_GPUS = textwrap.dedent("""
    import sys, time, torch
    torch.cuda.is_available = lambda: True
    torch.cuda.device_count = lambda: 4
    torch.cuda.set_device = lambda index: None
    from unetflow.inference import resolve_device
    device = resolve_device(sys.argv[1])
    print(device, flush=True)
    time.sleep(float(sys.argv[2]))
""")


def test_concurrent_jobs_on_a_four_gpu_machine_get_four_different_gpus(tmp_path):
    environment = {**os.environ, "UNETFLOW_GPU_LOCKS": str(tmp_path / "locks")}
    jobs = [subprocess.Popen([sys.executable, "-c", FAKE_GPUS, name, "4"], stdout=subprocess.PIPE, text=True,
                             env=environment) for name in ("auto", "auto", "cuda", "auto")]
    devices = [job.stdout.readline().strip() for job in jobs]
    assert sorted(devices) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    fifth = subprocess.Popen([sys.executable, "-c", FAKE_GPUS, "auto", "0"], stdout=subprocess.PIPE, text=True,
                             env=environment)
    started = time.monotonic()
    assert fifth.stdout.readline().strip().startswith("cuda:")  # after one of the four ended
    assert time.monotonic() - started > 1.0
    named = subprocess.run([sys.executable, "-c", FAKE_GPUS, "cuda:2", "0"], capture_output=True, text=True,
                           env=environment)
    assert named.stdout.strip() == "cuda:2"  # a named card is used as named, held or not
    for job in [*jobs, fifth]:
        job.wait()




def split_run(directory: Path, model: Path, stack: Path, pieces: int) -> list[str]:
    config = {"datasets": {"big": {"images": str(stack)}}, "models": {"mine": {"file": str(model)}},
              "run_models": ["mine"], "train_on": [], "validate_on": [], "predict_on": ["big"],
              "predict": {"parts": pieces, "tile": 64}, "segment": {"settings": "fixed"}}
    (directory / "split.yaml").write_text(yaml.safe_dump(config))
    # one thread per predict job, in every run: another thread count may round a convolution's sums
    # differently (1.8e-7 seen on an AMD EPYC), which is not a difference that parts make
    return ["--configfile", str(directory / "split.yaml"), "--set-threads", "predict=1"]


@pytest.fixture(scope="module")
def model_and_stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    architecture = ModelConfig(depth=2, base_channels=8, dropout=0.0)
    torch.manual_seed(0)
    inference.save_model(folder / "model.pt", architecture, architecture.network())
    images, _, _ = generate_stack(8, 256, seed=3)
    tifffile.imwrite(folder / "stack.tif", images, imagej=True, metadata={"axes": "ZYX"})
    return folder / "model.pt", folder / "stack.tif"


def arrays(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    return (zarr.open_group(str(directory / "results/predictions/mine/big.zarr"), mode="r")["0"][:],
            zarr.open_group(str(directory / "results/segmentation/mine/big.zarr"), mode="r")["0"][:])


def kill_part(directory: Path, part: int) -> None:
    """SIGKILL the predict job of ``part`` as soon as it runs."""
    wanted = ["unetflow.steps.predict", "--part", str(part)]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                arguments = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue
            if wanted[0] in arguments and any(arguments[i:i + 2] == wanted[1:] for i in range(len(arguments))):
                if Path(f"/proc/{pid}/cwd").resolve() == directory.resolve():
                    os.kill(int(pid), signal.SIGKILL)
                    return
        time.sleep(0.02)
    raise AssertionError(f"part {part} never ran")


@pytest.mark.slow
def test_four_parts_equal_one_and_a_killed_part_alone_is_redone(model_and_stack, tmp_path):
    model, stack = model_and_stack
    whole = copy_workflow(tmp_path / "one")
    snakemake(whole, "--cores", "2", *split_run(whole, model, stack, 1))
    split = copy_workflow(tmp_path / "four")
    options = split_run(split, model, stack, 4)
    jobs = planned_jobs(split, *options)
    assert jobs["predict"] == 4 and jobs["segment"] == 4 and jobs["merge_predictions"] == 1
    running = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "1", "--keep-going", *options],
                               cwd=split, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=snakemake_environment(options))
    kill_part(split, 2)
    assert running.wait(timeout=600) != 0  # part 2 failed; 1, 3 and 4 finished (--keep-going)
    assert planned_jobs(split, *options) == Counter({"predict": 1, "merge_predictions": 1, "segment": 4,
                                                     "merge_segmentation": 1, "view": 1, "report": 1,
                                                     "all": 1})
    snakemake(split, "--cores", "2", *options)
    for ours, reference in zip(arrays(split), arrays(whole)):
        assert np.array_equal(ours, reference)
    assert not list((split / "results/predictions/mine").glob(".*"))  # no workspace left

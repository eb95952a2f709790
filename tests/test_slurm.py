"""The workflow through `snakemake --profile profiles/slurm` on a real one-node SLURM cluster.

tests/cluster/start-slurm.sh installs SLURM (with slurmdbd and MariaDB, as real
clusters have) from Debian's packages and starts it; the test runs the demo,
checks that every rule ran as a SLURM job, and that its metrics equal a local
run's. Skipped where the machine lacks root or apt.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO, copy_workflow, on_demo, snakemake

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

QUICK = {
    "augment": {"samples": 16},
    "train": {"iterations": 12, "batch_size": 2, "validate_every": 6, "checkpoint_every": 6, "log_every": 3},
    "predict": {"parts": 2},  # prediction and segmentation split into two jobs each
}
RULES = ("demo_data", "ingest", "weights", "augment", "train", "predict", "merge_predictions", "tune", "segment",
         "merge_segmentation", "evaluate", "view", "report")
# the shipped profile asks for 8 cores per heavy job; the test node has 2
SMALL_NODE = [
    "--set-threads", *(f"{rule}=2" for rule in ("weights", "augment", "segment", "train", "predict")),
    "--set-resources", *(f"{rule}:cpus_per_task=2" for rule in ("weights", "augment", "segment", "train", "predict")),
    *(f"{rule}:mem_mb=3000" for rule in ("train", "predict")),
    "--slurm-init-seconds-before-status-checks", "5",
]


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("starting a SLURM cluster needs root")
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        pytest.skip("SLURM is not installed and apt-get is not available to install it")
    state = tmp_path_factory.mktemp("slurm-state")
    environment = {**os.environ, "SLURM_TEST_STATE": str(state)}
    started = subprocess.run(["bash", str(REPO / "tests/cluster/start-slurm.sh")], env=environment,
                             capture_output=True, text=True, timeout=900)
    try:
        if started.returncode != 0:
            pytest.fail(f"SLURM did not start:\n{started.stdout[-3000:]}\n{started.stderr[-3000:]}")
        yield state
    finally:
        subprocess.run(["bash", str(REPO / "tests/cluster/stop-slurm.sh")], env=environment, timeout=120)


def quick_config(directory: Path) -> str:
    path = directory / "quick.yaml"
    path.write_text(yaml.safe_dump(QUICK))
    return str(path)


def test_demo_runs_as_slurm_jobs_with_the_results_of_a_local_run(slurm_cluster, tmp_path):
    local = copy_workflow(tmp_path / "local")
    snakemake(local, "--cores", "2", *on_demo(quick_config(local)))
    cluster = copy_workflow(tmp_path / "cluster")
    snakemake(cluster, "--profile", "profiles/slurm", *SMALL_NODE, *on_demo(quick_config(cluster)))
    accounting = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State,Comment,ReqTRES"],
                                capture_output=True, text=True, check=True).stdout
    jobs = [line.split("|") for line in accounting.splitlines() if line]
    assert len(jobs) >= 15 and {state for _, state, _, _ in jobs} == {"COMPLETED"}
    for rule in RULES:  # the plugin puts rule_<name>[_wildcards_...] into each job's comment
        assert any(comment == f"rule_{rule}" or comment.startswith(f"rule_{rule}_") for _, _, comment, _ in jobs), \
            f"{rule} ran as no SLURM job"
    parts = [requested for _, _, comment, requested in jobs if comment.startswith("rule_predict_")]
    # two parts each of the test stack and of the tuning stack
    assert len(parts) == 4 and all("gres/gpu=1" in requested for requested in parts), parts
    assert (cluster / "results/report/metrics.md").read_text() == (local / "results/report/metrics.md").read_text()

"""Shared fixtures: the real ISBI data (skipped where absent), workflow copies and the demos' complete runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ISBI = REPO.parent / "shared" / "data" / "isbi2012"
WORKFLOW_PARTS = ("Snakefile", "workflow", "config", "profiles", "envs")


# The suite runs on pytest-xdist workers (pyproject's addopts: -n auto --dist loadgroup). A session or
# module fixture is made once per worker that needs it, so the tests that share one stay together:
# those of each demo run in one group (a test names the run it uses as an argument), the rest in one
# group per file. Groups with a slow test are collected first, and xdist hands them out in that order
# (--no-loadscope-reorder): by default it hands out the groups with the most tests first, which left
# the 3-D demo and the SLURM test to the end of the run (50 min against 39 on one machine, one day:
# benchmarks/RESULTS.md, "The test suite on pytest-xdist").
SHARED_RUNS = ("demo_run", "demo3d_run")

# Every job gets as many threads as cores (--cores 2), so two workers' jobs share each core. PyTorch's
# OpenMP threads spin while they wait for each other by default, taking the core from the other
# worker's job: two concurrent trainings of the demo model each ran 1.5-2x slower than with passive
# waiting (benchmarks/concurrent_trainings.py). Waiting changes no result; a process alone runs
# faster spinning, so the policy is set only where workers share the cores.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") != "1":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_xdist_auto_num_workers(config) -> int:
    """Workers for ``-n auto``: one per core, at most four (each test's snakemake uses two cores,
    and a worker holding a trained model needs a few GiB)."""
    return max(1, min(os.cpu_count() or 1, 4))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    groups = {}
    for item in items:
        shared = [name for name in SHARED_RUNS if name in item.fixturenames]
        groups[item] = shared[0] if shared else item.path.stem
        item.add_marker(pytest.mark.xdist_group(groups[item]))
    slow_groups = {groups[item] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: groups[item] not in slow_groups)  # stable: order within a group is kept


@pytest.fixture
def isbi_dir() -> Path:
    """The ISBI 2012 PNG folders in ../shared, or skip."""
    if not (ISBI / "train" / "image").is_dir():
        pytest.skip(f"ISBI 2012 data not found at {ISBI}")
    return ISBI


def copy_workflow(destination: Path) -> Path:
    """Copy the workflow (not results) into ``destination`` and return it."""
    destination.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, destination / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, destination / part)
    return destination


@pytest.fixture
def workflow_dir(tmp_path: Path) -> Path:
    """A fresh copy of the workflow in a temporary folder."""
    return copy_workflow(tmp_path / "workflow-copy")


DEMO_CONFIG = "config/config.yaml"


def on_demo(*configs: str | Path) -> list[str]:
    """Options that run the 2-D demo's config with ``configs`` on top (a --configfile alone
    stands alone: only it and the schema's defaults apply)."""
    return ["--configfile", DEMO_CONFIG, *map(str, configs)]


# Snakemake's SLURM executor plugin runs `scontrol show config` whenever Snakemake starts (for a
# help text). Where SLURM's client is installed but no controller answers (after test_slurm has
# stopped its cluster, or on a machine set up so), that waits out the plugin's 10-s timeout on
# every run: runs that do not use SLURM get an scontrol that fails at once.
NO_SLURM = Path(tempfile.mkdtemp(prefix="unetflow-no-slurm-"))
(NO_SLURM / "scontrol").write_text("#!/bin/sh\nexit 1\n")
(NO_SLURM / "scontrol").chmod(0o755)


def snakemake_environment(args: tuple[str, ...], env: dict | None = None) -> dict:
    """The environment of a snakemake run: this one with ``env`` added, and the failing scontrol
    first on the PATH unless the run uses the SLURM profile."""
    environment = {**os.environ, **(env or {})}
    if "profiles/slurm" not in args:
        environment["PATH"] = f"{NO_SLURM}{os.pathsep}{environment.get('PATH', '')}"
    return environment


def snakemake(cwd: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the snakemake CLI in ``cwd`` (with ``env`` added to the environment); output captured as text."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1800,
        env=snakemake_environment(args, env),
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """A workflow copy where the 2-D demo (config/config.yaml) ran to the end; tests that change
    it restore it, or work on a copy (copy_run)."""
    directory = copy_workflow(tmp_path_factory.mktemp("demo") / "workflow")
    snakemake(directory, "--cores", "2")
    return directory


@pytest.fixture(scope="session")
def demo3d_run(tmp_path_factory) -> Path:
    """A workflow copy where the 3-D demo (config/demo3d.yaml) ran to the end."""
    directory = copy_workflow(tmp_path_factory.mktemp("demo3d") / "workflow")
    snakemake(directory, "--configfile", "config/demo3d.yaml", "--cores", "2")
    return directory


def copy_run(run: Path, destination: Path) -> Path:
    """A copy of a workflow folder with its results, Snakemake's records and file times, whose
    view stores' relative links point into the copy."""
    shutil.copytree(run, destination, symlinks=True)
    return destination


def planned_jobs(directory: Path, *options: str, env: dict | None = None) -> Counter:
    """Rule -> number of jobs a dry run would execute."""
    result = snakemake(directory, "-n", *options, env=env)
    output = result.stdout + result.stderr
    if "Nothing to be done" in output:
        return Counter()
    table = output.split("Job stats:")[1].split("total")[0]
    return Counter({rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)\s*$", table, re.MULTILINE)})

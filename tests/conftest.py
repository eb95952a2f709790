"""Shared fixtures: the real ISBI data (skipped where absent) and workflow copies."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ISBI = REPO.parent / "shared" / "data" / "isbi2012"
WORKFLOW_PARTS = ("Snakefile", "workflow", "config", "profiles", "envs")


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


def snakemake(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the snakemake CLI in ``cwd``; output captured as text."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result

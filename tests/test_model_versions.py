"""Every training is kept as a version that outlives a retraining (unetflow.model_versions)."""

from datetime import datetime, timezone
from pathlib import Path

import pytest

from unetflow import model_versions

FIRST = datetime(2026, 12, 6, 2, 15, 0, tzinfo=timezone.utc)
LATER = datetime(2026, 12, 7, 9, 0, 0, tzinfo=timezone.utc)


def trained(model_dir: Path, weights: bytes) -> Path:
    """What the train step writes: model.pt, metrics.csv and loss.png (each replaced, as io.atomic_store does)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    for name, content in (("model.pt", weights), ("metrics.csv", b"iteration,loss\n1,0.5\n"), ("loss.png", b"png")):
        temporary = model_dir / f".{name}.tmp"
        temporary.write_bytes(content)
        temporary.replace(model_dir / name)
    return model_dir


def test_a_version_holds_hard_links_to_the_training_outputs(tmp_path):
    model_dir = trained(tmp_path / "small", b"weights one")
    kept = model_versions.keep(model_dir, now=FIRST)
    assert kept.name == f"20261206T021500Z-{model_versions.file_sha256(model_dir / 'model.pt')[:12]}"
    for name in model_versions.KEPT_FILES:
        assert (kept / name).stat().st_ino == (model_dir / name).stat().st_ino
    assert model_versions.versions(model_dir) == [kept]


def test_the_kept_model_outlives_the_deletion_and_replacement_of_model_pt(tmp_path):
    model_dir = trained(tmp_path / "small", b"weights one")
    kept = model_versions.keep(model_dir, now=FIRST)
    (model_dir / "model.pt").unlink()  # what Snakemake does before a rerun of train
    trained(model_dir, b"weights two")
    newer = model_versions.keep(model_dir, now=LATER)
    assert (kept / "model.pt").read_bytes() == b"weights one"
    assert (newer / "model.pt").read_bytes() == b"weights two"
    assert model_versions.versions(model_dir) == [kept, newer]  # oldest first


def test_the_same_model_is_kept_once(tmp_path):
    model_dir = trained(tmp_path / "small", b"weights one")
    kept = model_versions.keep(model_dir, now=FIRST)
    trained(model_dir, b"weights one")  # a rerun that ended with the same weights
    assert model_versions.keep(model_dir, now=LATER) == kept
    assert model_versions.versions(model_dir) == [kept]


def test_a_file_system_without_hard_links_gets_copies(tmp_path, monkeypatch):
    def no_links(source, target):
        raise OSError("Operation not permitted")

    monkeypatch.setattr(model_versions.os, "link", no_links)
    model_dir = trained(tmp_path / "small", b"weights one")
    kept = model_versions.keep(model_dir, now=FIRST)
    assert (kept / "model.pt").read_bytes() == b"weights one"
    assert (kept / "model.pt").stat().st_ino != (model_dir / "model.pt").stat().st_ino


def test_no_versions_folder_means_no_versions(tmp_path):
    assert model_versions.versions(tmp_path) == []


def test_keeping_needs_a_model(tmp_path):
    with pytest.raises(FileNotFoundError):
        model_versions.keep(tmp_path)

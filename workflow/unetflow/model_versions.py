"""Every trained model is kept: a retraining replaces ``model.pt``, never an earlier training.

Snakemake deletes a rule's outputs before it reruns the rule, so when a model's data,
settings or code change, the ``model.pt`` of the last training is gone before the new
training starts, and with it hours of GPU time if the rerun was not meant. So each
training also files its outputs under ``<model dir>/versions/<UTC time>-<hash>/``, where
``<hash>`` is the start of ``model.pt``'s SHA-256. The files are hard links: no second
copy on disk while the newest version is also ``model.pt``, and a plain copy where the
file system has no hard links. No rule writes or deletes ``versions/``; an earlier model
is applied by giving its path as ``models.<name>.file``, and old versions are removed by
hand.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from . import io

log = logging.getLogger(__name__)

VERSIONS = "versions"
KEPT_FILES = ("model.pt", "metrics.csv", "loss.png")  # the train rule's outputs
HASH_CHARACTERS = 12


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def versions(model_dir: Path) -> list[Path]:
    """The kept versions of a model, oldest first (their names start with the UTC time)."""
    folder = Path(model_dir) / VERSIONS
    return sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith(".")) \
        if folder.is_dir() else []


def keep(model_dir: Path, *, now: datetime | None = None) -> Path:
    """File the training outputs in ``model_dir`` as a new version and return its folder.

    A ``model.pt`` already kept byte for byte (a resumed or repeated training that ended
    with the same weights) is not kept twice: its existing folder is returned.
    """
    model_dir = Path(model_dir)
    digest = file_sha256(model_dir / "model.pt")[:HASH_CHARACTERS]
    for kept in versions(model_dir):
        if kept.name.endswith(f"-{digest}"):
            return kept
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    folder = model_dir / VERSIONS / f"{stamp}-{digest}"
    with io.atomic_store(folder) as temporary:
        temporary.mkdir(parents=True)
        for name in KEPT_FILES:
            if (model_dir / name).exists():
                link_or_copy(model_dir / name, temporary / name)
    log.info("kept this training's %s in %s (a retraining replaces %s, never this folder)",
             ", ".join(KEPT_FILES), folder, model_dir / "model.pt")
    return folder


def link_or_copy(source: Path, target: Path) -> None:
    """A hard link to ``source`` at ``target``, or a copy where the file system has none."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)

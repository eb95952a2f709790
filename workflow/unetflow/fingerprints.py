"""Short, stable hashes of settings and of store contents (standard library only: the
workflow imports this while it builds the DAG)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def settings_fingerprint(settings: Any) -> str:
    """A short hash of JSON-able settings, independent of key order."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def store_fingerprint(path: Path) -> str:
    """A hash of the content of a store (every file under it, by relative name and bytes).

    A checkpoint is resumed only onto the same data: a store rewritten with other
    samples, labels or weights has another fingerprint even at the same path.
    """
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    digest = hashlib.blake2b(digest_size=16)
    for file in files:
        digest.update(str(file.relative_to(root) if root.is_dir() else file.name).encode())
        with open(file, "rb") as handle:
            digest.update(hashlib.file_digest(handle, "blake2b").digest())
    return digest.hexdigest()

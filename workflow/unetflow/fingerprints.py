"""Short, stable hashes of settings and of store contents (standard library only: the
workflow imports this while it builds the DAG)."""

from __future__ import annotations

import ast
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


PACKAGE = Path(__file__).resolve().parent


def code_fingerprint(step: str) -> str:
    """A hash of the code a step runs: ``steps/<step>.py`` and every module of this package it
    imports, directly or not (lazy imports inside functions included).

    Each module counts by its syntax tree without docstrings, so an edit that can change
    what the step computes makes its results stale, and a comment, a docstring or
    reformatting does not. Third-party packages are not included (their versions are the
    environment's business: Snakemake's ``software-env`` trigger under ``--sdm conda``).
    """
    digest = hashlib.sha256()
    for module in sorted(imported_modules(PACKAGE / "steps" / f"{step}.py")):
        digest.update(str(module.relative_to(PACKAGE)).encode())
        digest.update(_code_without_docstrings(module).encode())
    return digest.hexdigest()[:16]


def imported_modules(start: Path) -> set[Path]:
    """``start`` and the package's modules it imports, transitively (package ``__init__`` files too)."""
    seen: set[Path] = set()
    pending = [start]
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        pending.extend(_package_imports(module))
    return seen


def _package_imports(module: Path) -> list[Path]:
    tree = ast.parse(module.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.parent
                for _ in range(node.level - 1):
                    base = base.parent
            elif (node.module or "").split(".")[0] == PACKAGE.name:
                base = PACKAGE.parent
            else:
                continue
            target = base.joinpath(*node.module.split(".")) if node.module else base
            found += _existing(target)
            found += [path for alias in node.names for path in _existing(target / alias.name)]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE.name:
                    found += _existing(PACKAGE.parent.joinpath(*alias.name.split(".")))
    return found


def _existing(target: Path) -> list[Path]:
    """The module file of a dotted target: ``target.py`` or ``target/__init__.py``, if either exists."""
    candidates = [target.with_suffix(".py"), target / "__init__.py"]
    return [path for path in candidates if path.is_file() and PACKAGE in path.parents][:1]


def _code_without_docstrings(module: Path) -> str:
    tree = ast.parse(module.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)

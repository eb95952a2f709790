"""Shared plumbing of the ``python -m unetflow.<step>`` entry points."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

from .errors import InputError

T = TypeVar("T")
log = logging.getLogger("unetflow")
LOG_INTERVAL_S = 10.0


def run(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run a step's ``main`` with logging set up; user errors exit 1 without a traceback."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        main(argv)
    except InputError as error:
        log.error("%s", error)
        print(f"unetflow error: {error}", file=sys.stderr)
        sys.exit(1)


def progress(items: Iterable[T], *, total: int | None = None, desc: str) -> Iterator[T]:
    """Iterate with a progress bar on a terminal, or progress lines in a log file.

    In a log (what Snakemake's ``log:`` captures) a line ``desc: done/total``
    appears every ``LOG_INTERVAL_S`` seconds and at the end.
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if sys.stderr.isatty():
        return iter(tqdm(items, total=total, desc=desc, file=sys.stderr, dynamic_ncols=True))
    return _logged_progress(items, total, desc)


def _logged_progress(items: Iterable[T], total: int | None, desc: str) -> Iterator[T]:
    last_report = time.monotonic()
    done = 0
    for done, item in enumerate(items, start=1):
        yield item
        if time.monotonic() - last_report >= LOG_INTERVAL_S:
            log.info("%s: %d/%s", desc, done, total if total is not None else "?")
            last_report = time.monotonic()
    log.info("%s: %d/%s done", desc, done, total if total is not None else done)

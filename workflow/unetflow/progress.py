"""Progress of long loops: a bar on a terminal, a line every ``LOG_INTERVAL_S`` in a log."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
log = logging.getLogger("unetflow")
LOG_INTERVAL_S = 10.0


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

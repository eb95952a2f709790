"""Shared plumbing of the ``python -m unetflow.<step>`` entry points."""

from __future__ import annotations

import errno
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
        fail(str(error))
    except OSError as error:
        if error.errno not in DISK_FULL:
            raise
        fail(disk_full_message(error))


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full_message(error: OSError) -> str:
    """Name the file being written when the disk (or quota) ran out, and the fix."""
    where = error.filename or "a file of this step"
    return (f"{where}: {error.strerror} while writing it; nothing of this step was kept. Free space on that "
            "disk (or raise the quota), or run the workflow where results/ has room, then rerun")


def fail(message: str) -> None:
    """Log ``message``, print it as the job's last line and exit 1."""
    log.error("%s", message)
    print(f"unetflow error: {message}", file=sys.stderr)
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

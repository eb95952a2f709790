"""Shared plumbing of the ``python -m unetflow.<step>`` entry points."""

from __future__ import annotations

import errno
import logging
import sys
from collections.abc import Callable

from .errors import InputError

log = logging.getLogger("unetflow")


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
    """Log ``message`` once, as the job's last line, and exit 1."""
    log.error("%s", message)
    sys.exit(1)

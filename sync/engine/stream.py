"""Reading a side: its pages, batched across page boundaries, with the side's clock watched."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from crmbridge.adapters.base import Page, RawRecord
from crmbridge.core.errors import RetryableError, SystemUnavailableError
from crmbridge.sync.engine.context import Side
from crmbridge.sync.report import RunReport

__all__ = ["batched", "count_reads", "reading"]


def batched(pages: Iterable[Page], n: int) -> Iterator[list[RawRecord]]:
    """Records of successive pages in batches of ``n``: a batch may span pages, so a job's batch size (and with it
    the target's write concurrency) is not capped by the source's page size."""
    buf: list[RawRecord] = []
    for page in pages:
        buf.extend(page.records)
        while len(buf) >= n:
            yield buf[:n]
            buf = buf[n:]
    if buf:
        yield buf


def reading(side: Side, pages: Iterator[Page], report: RunReport | None = None) -> Iterator[Page]:
    """A side's pages; a change list that cannot be read after every retry means the system is down.

    With ``report``, the side's clock is measured as the pages arrive: a record stamped after the instant it was
    read was stamped by a clock running ahead of this host's by at least that much (the run reports it; nothing
    is compensated)."""
    while True:
        try:
            page = next(pages)
        except StopIteration:
            return
        except RetryableError as exc:
            raise SystemUnavailableError(f"reading {side.object} changes failed after every retry: {exc}",
                                         system=side.system) from exc
        if report is not None:
            now = datetime.now(UTC)
            stamps = [r.modified_at for r in page.records if r.modified_at is not None]
            if stamps:
                report.note_clock_ahead(side.system, (max(stamps) - now).total_seconds())
        yield page


def count_reads(*raws: RawRecord | None) -> int:
    """How many records were read for a merge (its source and/or target record)."""
    return sum(r is not None for r in raws)


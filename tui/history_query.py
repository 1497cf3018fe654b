"""The history list's search, filters, sort orders and grouping, as plain functions of job records.

The search box takes words (each must appear in the prompt or the source) and filters:
``status:failed`` (done, failed, cancelled, interrupted or all; done when not given), ``source:street``,
``after:2026-11-01`` and ``before:2026-11-30`` (local dates, both days included).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.api import CANCELLED, DONE, FAILED, INTERRUPTED, PSNR_EDITED, PSNR_ROUND_TRIP, JobRecord, variant_key

FINISHED_STATUSES = (DONE, FAILED, CANCELLED, INTERRUPTED)
DAY_SECONDS = 86400
FILTER_HELP = "words, status:failed|all, source:NAME, after:YYYY-MM-DD, before:YYYY-MM-DD"


@dataclass
class HistoryQuery:
    words: list[str] = field(default_factory=list)
    statuses: tuple[str, ...] = (DONE,)
    source: str = ""
    after: float | None = None  # finished at or after (a local midnight)
    before: float | None = None  # finished before (the local midnight after the day given)
    problems: list[str] = field(default_factory=list)  # filters that could not be read, one line each

    def matches(self, record: JobRecord) -> bool:
        text = f"{record.prompt}\n{record.source}".lower()
        finished = record.finished or 0.0
        return (record.status in self.statuses and all(word in text for word in self.words)
                and self.source in record.source.lower()
                and (self.after is None or finished >= self.after)
                and (self.before is None or finished < self.before))


def parse_query(text: str) -> HistoryQuery:
    """The search box's text as a query; an unreadable filter is named in ``problems`` and ignored."""
    query = HistoryQuery()
    for token in text.lower().split():
        name, colon, value = token.partition(":")
        if not colon or name not in ("status", "source", "after", "before"):
            query.words.append(token)
        elif name == "status":
            if value == "all":
                query.statuses = FINISHED_STATUSES
            elif value in FINISHED_STATUSES:
                query.statuses = (value,)
            else:
                query.problems.append(f"status:{value}? use {'|'.join(FINISHED_STATUSES)}|all")
        elif name == "source":
            query.source = value
        else:
            day = _local_midnight(value)
            if day is None:
                query.problems.append(f"{name}:{value}? use a date like 2026-11-01")
            elif name == "after":
                query.after = day
            else:
                query.before = day + DAY_SECONDS
    return query


def _local_midnight(value: str) -> float | None:
    try:
        return time.mktime(time.strptime(value, "%Y-%m-%d"))
    except ValueError:
        return None


def _metric(key: str) -> Callable[[JobRecord], tuple]:
    """Highest first; records without the metric last."""
    return lambda r: (r.metrics.get(key) is None, -(r.metrics.get(key) or 0.0), -(r.finished or 0.0))


BY_SOURCE = "source, variants together"

# The orders s cycles through, the first the default.
SORTS: dict[str, Callable[[JobRecord], tuple]] = {
    "newest first": lambda r: (-(r.finished or 0.0),),
    "oldest first": lambda r: (r.finished or 0.0,),
    "edit PSNR": _metric(PSNR_EDITED),
    "round-trip PSNR": _metric(PSNR_ROUND_TRIP),
    "prompt": lambda r: (r.prompt.lower(), -(r.finished or 0.0)),
    BY_SOURCE: lambda r: (-(r.finished or 0.0),),  # the groups by their newest result, see arrange
}


def arrange(records: list[JobRecord], query: HistoryQuery, sort: str) -> list[JobRecord]:
    """The records the query keeps, in ``sort`` order; by source: the variants of one source (one
    inversion: same clip, same parameters but the seed) together, the newest group first."""
    kept = sorted((r for r in records if query.matches(r)), key=SORTS[sort])
    if sort != BY_SOURCE:
        return kept
    groups: dict[tuple, list[JobRecord]] = {}
    for record in kept:
        groups.setdefault(variant_key(record), []).append(record)
    return [record for members in groups.values() for record in members]


def variants_of(record: JobRecord, records: list[JobRecord]) -> list[JobRecord]:
    """The finished results that share ``record``'s inversion (``record`` first, then the newest)."""
    key = variant_key(record)
    others = [r for r in records if r.id != record.id and r.status == DONE and r.output_dir
              and variant_key(r) == key]
    return [record, *sorted(others, key=SORTS["newest first"])]

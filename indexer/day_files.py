"""Logged events as day files for training: ``<folder>/events-YYYY-MM-DD.jsonl``, one event per
line, the day being the event's own timestamp in UTC.

`clik events --days FOLDER` appends each batch here before counting it (indexer.events.consume
``before_commit``), flushed and fsynced: a consumer killed after writing and before counting
has its batch claimed by another consumer, which writes it again. So a line may repeat, never
go missing; `read_days` drops repeats by event_id. Several consumers may append to the same
file: each batch is one ``write`` of whole lines on a file opened for appending (O_APPEND), so
lines of two consumers never interleave inside a line.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

PATTERN = "events-*.jsonl"


def day_of(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d")


class DayFiles:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, day: str) -> Path:
        return self.folder / f"events-{day}.jsonl"

    def append(self, events: Iterable[Mapping[str, object]]) -> int:
        by_day: dict[str, list[str]] = {}
        n = 0
        for e in events:
            ts = e.get("timestamp")
            by_day.setdefault(day_of(float(ts) if isinstance(ts, (int, float)) else 0.0), []).append(
                json.dumps(e, separators=(",", ":"), sort_keys=True)
            )
            n += 1
        for day, lines in by_day.items():
            fd = os.open(self.path(day), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, ("\n".join(lines) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        return n

    def append_entries(self, entries: Sequence[tuple[str, dict]]) -> int:
        """The consumer's hook: (stream entry id, event) pairs."""
        return self.append(e for _, e in entries)


def read_days(folder: str | Path, since: str | None = None, until: str | None = None) -> Iterator[dict]:
    """Every event of the day files in [since, until] (YYYY-MM-DD, inclusive), each event_id
    once. A torn last line (a crash mid-write) is skipped."""
    seen: set[str] = set()
    for path in sorted(Path(folder).glob(PATTERN)):
        day = path.stem.removeprefix("events-")
        if (since and day < since) or (until and day > until):
            continue
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                event_id = event.get("event_id")
                if not isinstance(event, dict) or event_id in seen:
                    continue
                seen.add(event_id)
                yield event

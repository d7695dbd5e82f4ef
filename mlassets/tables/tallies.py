"""The tallies of an inference record: per day table, its UTC day, its row key and whether it was right, in one string.

The drain writes them into every record it stores, so the server counts each day table with a `$match` + `$group`
on one field and sends a row per (day, key, verdict) instead of every record: FerretDB v1 has no date or
conditional operators to derive these itself, groups on a document key a third slower than on a field, and takes
longer the more groups there are, hence one small tally per table rather than one wide one.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import NamedTuple

PRODUCER_TALLY = "tally_producer"
"""The field of an inference record that holds its producer_error_counts tally: `<day>|<producer_id>|<verdict>`."""
CLASS_TALLY = "tally_class"
"""The field of an inference record that holds its class_accuracy tally: `<day>|<GroundTruth>|<verdict>`."""
RIGHT, WRONG, PENDING = "right", "wrong", "pending"
"""The verdicts of a record: its InferredValue equals its GroundTruth, or not, or it has none yet (never tallied)."""

_TALLY = re.compile(r"(\d{4}-\d{2}-\d{2})\|(.*)\|(right|wrong)", re.DOTALL)


class Tally(NamedTuple):
    """What a tally names: the UTC day of the inference, the table's row key and the verdict (RIGHT or WRONG)."""

    day: str
    key: str
    verdict: str


def tally_key(inferred_at: dt.datetime, key: str, right: bool) -> str:
    """The tally of a record inferred at `inferred_at` (timezone-aware) under the row key `key`, which may hold any
    character (parse_tally splits the day off the left and the verdict off the right)."""
    return _tally(_utc_day(inferred_at), key, RIGHT if right else WRONG)


def record_tallies(inferred_at: dt.datetime, producer_id: str, ground_truth: str, inferred: str) -> dict[str, str]:
    """The tally fields of an inferred record, for each day table (as tally_key writes them, the day computed once)."""
    day, verdict = _utc_day(inferred_at), RIGHT if inferred == ground_truth else WRONG
    return {PRODUCER_TALLY: _tally(day, producer_id, verdict), CLASS_TALLY: _tally(day, ground_truth, verdict)}


def _tally(day: str, key: str, verdict: str) -> str:
    """The tally `<day>|<key>|<verdict>`, the shape _TALLY parses."""
    return f"{day}|{key}|{verdict}"


def _utc_day(inferred_at: dt.datetime) -> str:
    if inferred_at.tzinfo is None:
        raise ValueError(f"a tally needs a timezone-aware inferred_at, got {inferred_at!r}")
    return inferred_at.astimezone(dt.timezone.utc).date().isoformat()


def parse_tally(tally: str) -> Tally:
    """The fields of a tally written by tally_key; ValueError names a value of any other shape."""
    match = _TALLY.fullmatch(tally)
    if match is None:
        raise ValueError(f"not a tally (<YYYY-MM-DD>|<key>|right or wrong): {tally!r:.120}")
    return Tally(*match.groups())

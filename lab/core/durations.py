"""The one duration parser: every duration the command line, scenarios, claims and grid files
accept goes through `parse_duration`."""

from __future__ import annotations

import math
import re
from typing import Any

from lab.core.errors import BadInput

# One or more parts, largest unit first: `1h30m`, `2m`, `20s`, `1.5s`, `500ms`, `1m30` (a bare last
# number is seconds), `90`; spaces between a number and its unit and any letter case are fine.
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|h|m|s)?", re.IGNORECASE)
# Every part but the last has its unit, so a string has one reading (and matching never backtracks).
_FORM = re.compile(r"\s*(?:\d+(?:\.\d+)?\s*(?:ms|h|m|s)\s*)*(?:\d+(?:\.\d+)?\s*)?", re.IGNORECASE)
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "": 1.0, "ms": 0.001}
_RANK = {"h": 0, "m": 1, "s": 2, "": 2, "ms": 3}
EXAMPLES = "500ms, 20s, 2m or 1h30m"


def parse_duration(value: Any, where: str = "duration", *, minimum: float = 0.0, positive: bool = False) -> float:
    """Seconds from `500ms`, `20s`, `2m`, `1h30m`, `1.5s` or a bare number of seconds (an int or a
    float too). Raises BadInput naming `where` for anything else, for what has no finite value, for
    less than `minimum` seconds and, with `positive`, for zero."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = finite(value, where)
    elif isinstance(value, str) and value.strip() and _FORM.fullmatch(value):
        seconds, last = 0.0, -1
        for number, unit in _PART.findall(value):
            unit = unit.lower()
            if _RANK[unit] <= last:
                raise BadInput(
                    f"{where}: {short(value)!r} is not a duration like {EXAMPLES} (units largest first, each once)"
                )
            last = _RANK[unit]
            seconds += finite(number, where) * _UNIT[unit]
        seconds = finite(seconds, where)
    else:
        raise BadInput(f"{where}: {short(value)!r} is not a duration like {EXAMPLES}")
    if positive and not seconds > 0:
        raise BadInput(f"{where}: {short(value)!r} must be a positive, finite time")
    if seconds < minimum:
        raise BadInput(f"{where}: {short(value)!r} is shorter than {minimum:g} s")
    return seconds


def finite(value: float | str, where: str) -> float:
    """float(value), refusing what has no finite float (inf, nan, a 400-digit number)."""
    try:
        out = float(value)
    except OverflowError:
        out = math.inf
    if not math.isfinite(out):
        raise BadInput(f"{where}: {short(value)} is not a finite number")
    return out


def short(value: Any) -> Any:
    """A value for a message: at most 40 characters (an error line quotes, it does not copy)."""
    text = str(value)
    return value if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"

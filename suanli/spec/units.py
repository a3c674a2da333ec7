"""Parsing of the human units users write in specs: durations, token counts, memory sizes."""

from __future__ import annotations

import re

_DURATION_UNITS_S = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_COUNT_SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}


def parse_duration_s(value: str | int | float) -> float:
    """`90`, `"90s"`, `"30m"`, `"2h"`, `"1d"`, `"01:30:00"` (Slurm style) or `"2-00:00:00"` → seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30m, 2h or 01:30:00, got {value!r}")
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError(f"must be > 0 seconds, got {value}")
        return float(value)
    text = str(value).strip().lower()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|min|m|h|d)?", text)
    if match:
        seconds = float(match.group(1)) * _DURATION_UNITS_S[match.group(2) or "s"]
    else:
        match = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d{1,2})(?::(\d{1,2}))?", text)
        if not match:
            raise ValueError(f"expected a duration such as 30m, 2h or 01:30:00, got {value!r}")
        days, first, second, third = match.groups()
        hours, minutes, secs = (first, second, third) if third is not None else (0, first, second)
        seconds = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(secs)
    if seconds <= 0:
        raise ValueError(f"must be > 0 seconds, got {value!r}")
    return seconds


def parse_count(value: str | int | float) -> int:
    """`1000`, `"300B"`, `"15T"`, `"2.5k"` → an integer count (tokens, steps, ...)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a count such as 300B or 15T, got {value!r}")
    if isinstance(value, int | float):
        return int(value)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmbgt]?)", str(value).strip().lower())
    if not match:
        raise ValueError(f"expected a count such as 300B or 15T, got {value!r}")
    return int(float(match.group(1)) * _COUNT_SUFFIXES[match.group(2)])


def parse_memory_gb(value: str | int | float) -> float:
    """`80`, `"80GB"`, `"80G"`, `"512MB"`, `"2TB"` → gigabytes."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(mb|m|gb|g|tb|t)?", str(value).strip().lower())
    if not match:
        raise ValueError(f"expected a memory size such as 80GB, got {value!r}")
    scale = {"mb": 1e-3, "m": 1e-3, "gb": 1.0, "g": 1.0, "tb": 1e3, "t": 1e3}[match.group(2) or "gb"]
    return float(match.group(1)) * scale

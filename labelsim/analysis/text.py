"""Numbers as text for tables people read: missing values, infinities and intervals."""

from __future__ import annotations

import math


def fmt_num(value: object, fmt: str = ".3f") -> str:
    """A number for people: '-' for missing/NaN, 'never' for infinity."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "never"
    text = format(value, fmt)
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.000"


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt_ci(lo: object, hi: object, fmt: str = ".3f", why: str = "") -> str:
    """An interval as '[lo, hi]'; '(no interval)' when both ends are missing and 'unbounded'
    when an end is infinite, each followed by ``why`` when given."""
    reason = f": {why}" if why else ""
    if _missing(lo) and _missing(hi):
        return f"(no interval{reason})"
    if any(isinstance(v, float) and math.isinf(v) for v in (lo, hi)):
        return f"(unbounded{reason})"
    return f"[{fmt_num(lo, fmt)}, {fmt_num(hi, fmt)}]"

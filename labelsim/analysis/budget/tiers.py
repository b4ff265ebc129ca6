"""Budget inputs: labeling tiers (NAME:PRICE:NOISE) and per-class values (price multipliers,
available images, weights) from text, a .json object or a two-column .csv file."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from labelsim.analysis.budget.errors import BudgetError

# Prices per label the planner takes: it counts costs in 64-bit integer cells as fine as 1e-9
# of a currency unit, in which a far smaller price rounds to nothing and a far larger one (times
# a label step) overflows. Other prices fit once every amount is written in another unit.
MIN_PRICE = 1e-6
MAX_PRICE = 1e9


@dataclass(frozen=True)
class Tier:
    """A labeling source: price per label (currency units) and expected label-noise rate."""

    name: str
    price: float
    noise: float

    def __post_init__(self) -> None:
        check_tier(self)


def check_tier(tier: Tier) -> None:
    """Raise BudgetError unless the tier has a name, a positive price (within [MIN_PRICE,
    MAX_PRICE]) and a noise in [0, 1)."""
    if not tier.name:
        raise BudgetError("a tier needs a name; write NAME:PRICE:NOISE, e.g. crowd:0.04:0.20")
    if not (math.isfinite(tier.price) and tier.price > 0):
        raise BudgetError(
            f"tier {tier.name!r} has price {tier.price!r}; give a positive price per label"
        )
    if not MIN_PRICE <= tier.price <= MAX_PRICE:
        raise BudgetError(
            f"tier {tier.name!r} has price {tier.price:g} per label, outside [{MIN_PRICE:g}, {MAX_PRICE:g}]; "
            "fix its --tier, writing every price and --budget in another currency unit if need be"
        )
    if not (math.isfinite(tier.noise) and 0.0 <= tier.noise < 1.0):
        raise BudgetError(
            f"tier {tier.name!r} has noise rate {tier.noise!r}, outside [0, 1); "
            "give the expected fraction of wrong labels, e.g. 0.2"
        )


def parse_tier(spec: str) -> Tier:
    """Parse NAME:PRICE:NOISE (e.g. 'crowd:0.04:0.20') into a Tier."""
    parts = spec.split(":")
    if len(parts) != 3:
        raise BudgetError(
            f"tier {spec!r} does not parse; write NAME:PRICE:NOISE, e.g. crowd:0.04:0.20"
        )
    name, price, noise = (p.strip() for p in parts)
    if not (_is_number(price) and _is_number(noise)):
        raise BudgetError(
            f"tier {spec!r}: price and noise must be numbers; write NAME:PRICE:NOISE, "
            "e.g. crowd:0.04:0.20"
        )
    return Tier(name, float(price), float(noise))


def check_tiers(tiers: Sequence[Tier]) -> tuple[Tier, ...]:
    """Raise BudgetError for no tiers or repeated names; returns the tiers as a tuple."""
    if not tiers:
        raise BudgetError("no labeling tier given; add --tier NAME:PRICE:NOISE")
    names = [t.name for t in tiers]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise BudgetError(f"tier name(s) {', '.join(repeated)} given twice; name each tier once")
    for tier in tiers:
        check_tier(tier)
    return tuple(tiers)


def parse_class_values(
    spec: str, classes: Sequence[str], what: str, *, allow_all: bool = False
) -> dict[str, float]:
    """Per-class numbers from 'cat=1.5,dog=2', a .json object or a two-column .csv file.

    With ``allow_all``, a bare number applies to every class.
    """
    text = spec.strip()
    if allow_all and _is_number(text):
        return {name: float(text) for name in classes}
    if "=" in text:
        pairs = _pairs_from_text(text, what)
    elif Path(text).suffix.lower() in (".json", ".csv"):
        pairs = _pairs_from_file(Path(text), what)
    else:
        raise BudgetError(
            f"{what} {spec!r} does not parse; write CLASS=VALUE[,CLASS=VALUE...] "
            "or give a .json or .csv file"
        )
    return _check_class_names(pairs, classes, what)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _pairs_from_text(text: str, what: str) -> dict[str, float]:
    pairs: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not _is_number(value.strip()):
            raise BudgetError(f"{what} item {item!r} does not parse; write CLASS=NUMBER")
        pairs[name.strip()] = float(value)
    return pairs


def _pairs_from_file(path: Path, what: str) -> dict[str, float]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BudgetError(f"cannot read the {what} file {path} ({exc.strerror})") from None
    if path.suffix.lower() == ".json":
        return _pairs_from_json(text, path, what)
    return _pairs_from_csv(text, path, what)


def _pairs_from_json(text: str, path: Path, what: str) -> dict[str, float]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BudgetError(f"{what} file {path} is not JSON ({exc.msg})") from None
    if not isinstance(data, dict) or not all(_is_number(str(v)) for v in data.values()):
        raise BudgetError(f"{what} file {path} must hold one object {{class: number}}")
    return {str(k): float(v) for k, v in data.items()}


def _pairs_from_csv(text: str, path: Path, what: str) -> dict[str, float]:
    pairs: dict[str, float] = {}
    for row in csv.reader(io.StringIO(text)):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 2:
            raise BudgetError(f"{what} file {path}: each row must be CLASS,NUMBER; got {row}")
        name, value = row[0].strip(), row[1].strip()
        if not _is_number(value):
            if not pairs:
                continue  # a header row
            raise BudgetError(f"{what} file {path}: {value!r} is not a number (class {name})")
        pairs[name] = float(value)
    return pairs


def _check_class_names(pairs: dict[str, float], classes: Sequence[str], what: str) -> dict[str, float]:
    unknown = [name for name in pairs if name not in classes]
    if unknown:
        raise BudgetError(
            f"{what}: unknown class(es) {', '.join(unknown)}; the run's classes are "
            f"{', '.join(classes)}"
        )
    return pairs

"""Valid values of a config field, declared beside the field in config/ (``knob``).

A ``Range`` says which numbers a field takes (open or closed ends, integer or not, null or not)
and words its own one-line complaint, so every field's default and its valid range live in one
place and every reader (the CLI's checks, ``point.run.run_point``, a Python caller) applies the same.
Pure Python: the command line checks a config before torch loads.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """Finite numbers between ``low`` and ``high`` (each end open or closed, or absent)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    nullable: bool = False
    each: bool = False           # the field is a list (or null): every element must lie here

    def problem(self, name: str, value) -> str | None:
        """The one-line complaint about ``value`` of field ``name``, or None when it is valid."""
        if self.each and isinstance(value, (list, tuple)):
            return next((p for v in value if (p := self._one(name, v)) is not None), None)
        return self._one(name, value)

    def _one(self, name: str, value) -> str | None:
        if value is None and self.nullable:
            return None
        if self.contains(value):
            return None
        return f"{name} must be {self.describe()}, got {value!r}"

    def contains(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            return False
        if self.integer and int(value) != value:
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        """'a positive integer', 'a number above 1', 'a number in [0, 1)', ... (+ ' or null')."""
        kind = "an integer" if self.integer else "a number"
        if self.low == 0 and self.low_open and self.high is None:
            text = f"a positive {'integer' if self.integer else 'number'}"
        elif self.high is None:
            text = f"{kind} {'above' if self.low_open else '>='} {self.low:g}"
        else:
            text = (f"{kind} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                    f"{')' if self.high_open else ']'}")
        return text + (" or null" if self.nullable else "")


POSITIVE = Range(0, low_open=True)
POSITIVE_INT = Range(0, low_open=True, integer=True)
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1, high_open=True)          # [0, 1)
OPEN_FRACTION = Range(0, 1, low_open=True, high_open=True)


def maybe(r: Range) -> Range:
    """The same range, null allowed."""
    return dataclasses.replace(r, nullable=True)


def each(r: Range) -> Range:
    """The same range for every element of a list field."""
    return dataclasses.replace(r, each=True)


def knob(default=dataclasses.MISSING, valid: Range | None = None, factory=dataclasses.MISSING):
    """A dataclass field with its default and its valid range in one declaration."""
    metadata = {"range": valid} if valid is not None else {}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def field_problems(node, prefix: str = ""):
    """Each field of a (nested) config dataclass outside its declared range, as one line."""
    nested = []
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            nested.append((value, f"{prefix}{f.name}."))
            continue
        valid = f.metadata.get("range")
        problem = valid.problem(f"{prefix}{f.name}", value) if valid is not None else None
        if problem:
            yield problem
    for value, name in nested:
        yield from field_problems(value, name)

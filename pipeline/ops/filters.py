"""The ``--filter`` language shared by replay and the dead-letter commands.

One filter is ``NAME=V1[,V2...]`` (the field equals one of the values) or ``NAME!=V1[,V2...]`` (equals
none of them); several filters must all hold. What a NAME means is up to the caller's resolver, so that
replay can look into the decoded event (``model.name``, ``priority``) while ``dlq`` looks into the context
headers (``error_code``, ``stage``), and both share one syntax and one parser that fails before any I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pipeline.ops.errors import CommandError

_FILTER = re.compile(r"^\s*([A-Za-z_][\w.\-:]*)\s*(!=|=)(.*)$")

# name -> the field's value in one record, or None when the record has no such field
Resolver = Callable[[str], str | None]


class FilterError(CommandError, ValueError):
    """A ``--filter`` the operator wrote that cannot be read."""


@dataclass(frozen=True)
class Condition:
    name: str
    values: frozenset[str]
    negated: bool = False

    def holds(self, resolve: Resolver) -> bool:
        value = resolve(self.name)
        inside = value is not None and value in self.values
        return not inside if self.negated else inside


@dataclass(frozen=True)
class RecordFilter:
    """All conditions must hold; no conditions keeps everything."""

    conditions: tuple[Condition, ...] = ()

    def keeps(self, resolve: Resolver) -> bool:
        return all(c.holds(resolve) for c in self.conditions)

    def names(self) -> set[str]:
        return {c.name for c in self.conditions}

    def __bool__(self) -> bool:
        return bool(self.conditions)


def parse_filter(text: str, known: Iterable[str] | None = None, prefixes: Sequence[str] = ()) -> Condition:
    """One ``NAME=VALUES`` or ``NAME!=VALUES``; ``known``/``prefixes`` restrict NAME when given, so that
    a typo (``erorr_code=...``) is refused instead of silently matching nothing."""
    m = _FILTER.match(text)
    if not m:
        raise FilterError(f"cannot read filter {text!r}: use NAME=VALUE[,VALUE...] or NAME!=VALUE[,VALUE...]")
    name, op, raw = m.group(1), m.group(2), m.group(3)
    values = frozenset(v.strip() for v in raw.split(",") if v.strip())
    if not values:
        raise FilterError(f"filter {text!r} names no value")
    if known is not None:
        allowed = set(known)
        if name not in allowed and not any(name.startswith(p) for p in prefixes):
            hint = ", ".join(sorted(allowed) + [p + "..." for p in prefixes])
            raise FilterError(f"unknown filter field {name!r}; use one of: {hint}")
    return Condition(name, values, negated=op == "!=")


def parse_filters(
    texts: Iterable[str], known: Iterable[str] | None = None, prefixes: Sequence[str] = ()
) -> RecordFilter:
    known_list = list(known) if known is not None else None
    return RecordFilter(tuple(parse_filter(t, known_list, prefixes) for t in texts))

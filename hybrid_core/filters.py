"""Filters on attribute fields: parsed and validated once, then rendered for each store.

The accepted form is a mapping ``field -> value``: a scalar (exact match), a list
(any of), or ``{"gte"|"gt"|"lte"|"lt": number}`` on numeric fields. Every store
applies the same conditions to every leg before ranking, so a filter never lets a
leg fill its window with documents the user excluded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hybrid_core.errors import FilterError
from hybrid_core.layout import FieldLayout

RANGE_OPS = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}
_ARG = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|=|>|<)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Condition:
    """One field's condition: ``values`` (any of) or ``bounds`` (a range)."""

    field: str
    values: tuple[Any, ...] = ()
    bounds: tuple[tuple[str, float], ...] = ()


def parse_filters(spec: Mapping[str, Any] | None, layout: FieldLayout) -> list[Condition]:
    """Validate a filter mapping against the layout."""
    if not spec:
        return []
    if not isinstance(spec, Mapping):
        raise FilterError(f"filters must be a mapping of field to value, got {type(spec).__name__}")
    conditions = []
    for name, value in spec.items():
        if name not in layout.attribute_names:
            raise FilterError(f"cannot filter on {name!r}; filterable fields are {layout.attribute_names}")
        attr = layout.attribute(name)
        if isinstance(value, Mapping):
            if not attr.numeric:
                raise FilterError(f"{name} is a keyword field: ranges need a numeric field, got {dict(value)!r}")
            unknown = sorted(set(value) - set(RANGE_OPS))
            if unknown or not value:
                raise FilterError(f"range on {name} has unknown operators {unknown}; use {sorted(RANGE_OPS)}")
            bounds = tuple((op, _number(name, bound)) for op, bound in sorted(value.items()))
            conditions.append(Condition(name, bounds=bounds))
            continue
        values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        if not values:
            raise FilterError(f"filter on {name} lists no values")
        if attr.numeric:
            conditions.append(Condition(name, values=tuple(_number(name, v) for v in values)))
        else:
            for v in values:
                if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                    raise FilterError(f"filter on {name}: {v!r} is not a string")
            conditions.append(Condition(name, values=tuple(str(v) for v in values)))
    return conditions


def _number(name: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise FilterError(f"filter on {name}: {value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FilterError(f"filter on {name}: {value!r} is not a finite number")
    return float(value)


def parse_filter_args(args: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """CLI form: ``colour=Red``, ``colour=Red,Blue``, ``price>=10``, ``price<50``."""
    spec: dict[str, Any] = {}
    for arg in args:
        match = _ARG.match(arg)
        if not match or not match.group(3):
            raise FilterError(f"cannot read filter {arg!r}; write field=value, field=a,b or field>=number")
        name, op, raw = match.groups()
        if op == "=":
            values = [v.strip() for v in raw.split(",") if v.strip()]
            spec[name] = values if len(values) > 1 else values[0]
        else:
            key = {">=": "gte", ">": "gt", "<=": "lte", "<": "lt"}[op]
            existing = spec.get(name)
            spec[name] = (existing if isinstance(existing, dict) else {}) | {key: raw}
    return spec


def to_sql(conditions: list[Condition]) -> tuple[str, list[Any]]:
    """A SQL boolean expression over the store's attribute columns, with parameters."""
    parts: list[str] = []
    params: list[Any] = []
    for cond in conditions:
        column = f'"{cond.field}"'
        if cond.values:
            parts.append(f"{column} IN ({', '.join('?' * len(cond.values))})")
            params.extend(cond.values)
        for op, bound in cond.bounds:
            parts.append(f"{column} {RANGE_OPS[op]} ?")
            params.append(bound)
    return (" AND ".join(parts) or "1"), params


def to_es(conditions: list[Condition]) -> list[dict[str, Any]]:
    """Elasticsearch filter clauses (``term``/``terms``/``range``) for ``bool.filter`` and ``knn.filter``."""
    clauses: list[dict[str, Any]] = []
    for cond in conditions:
        if len(cond.values) == 1:
            clauses.append({"term": {cond.field: cond.values[0]}})
        elif cond.values:
            clauses.append({"terms": {cond.field: list(cond.values)}})
        if cond.bounds:
            clauses.append({"range": {cond.field: dict(cond.bounds)}})
    return clauses

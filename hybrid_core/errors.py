"""The exceptions every layer raises.

One hierarchy so callers can catch ``SearchError`` for anything this package
raises on purpose. Every exception survives ``pickle`` (Celery sends exceptions
between processes), which is why the ones with extra attributes define
``__reduce__``.
"""

from __future__ import annotations

from typing import Any


class SearchError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(SearchError):
    """The configuration is unusable: unknown model, wrong dims, unreadable file."""


class LayoutError(ConfigError):
    """A vector or a document does not fit the field layout it is written to."""


class ValidationError(SearchError, ValueError):
    """A query or an argument is invalid; raised before any store call."""


class FilterError(ValidationError):
    """A filter names an unknown field or has a value of the wrong kind."""


class FusionError(ValidationError):
    """Fusion arguments Elasticsearch would reject too (negative weight, bad window)."""


class StoreError(SearchError):
    """A store failed to read or write."""


class TransientStoreError(StoreError):
    """A store error worth retrying: a locked database, a 429 or 503, a dropped connection."""


class IndexWriteError(StoreError):
    """Some documents of a write failed; ``errors`` lists them (id and reason)."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = list(errors or [])

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.args[0], self.errors))


class ItemError(SearchError):
    """One catalogue item is unusable; the rest of its batch goes on."""

    def __init__(self, item: str, reason: str) -> None:
        super().__init__(f"{item}: {reason}")
        self.item = item
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.item, self.reason))

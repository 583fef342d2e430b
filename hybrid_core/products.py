"""Catalogue updates: the wire format of the queue and the validation of each item.

An update travels as plain JSON::

    {"ref": "catalogue.jsonl:12", "op": "upsert", "version": 1732200000000000,
     "data": {...product...} | "<raw JSON line>"}

``data`` may be the raw line so the worker, not the producer, decides whether it
parses: a bad line then becomes a recorded, listable error like any other bad item.

Versions are integers. A product's own ``version`` wins; else its ``updated_at``
(epoch seconds or ISO 8601) in microseconds; else the producer's sequence, also in
microseconds since the epoch, so the three stay comparable.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from hybrid_core.errors import ItemError
from hybrid_core.layout import FieldLayout

MAX_ID_LENGTH = 512
MAX_TITLE_LENGTH = 1_000
MAX_DESCRIPTION_LENGTH = 20_000
MAX_KEYWORD_LENGTH = 256
MAX_IMAGES = 10
MAX_VERSION = 2**63 - 1
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

RESERVED_KEYS = {"id", "title", "description", "image", "images", "version", "updated_at", "attributes"}


@dataclass
class Product:
    """A validated product: what the worker embeds and the store keeps."""

    id: str
    title: str
    version: int
    description: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def embedding_text(self) -> str:
        """The text both text encoders see: title, then description."""
        return f"{self.title}. {self.description}" if self.description else self.title

    def text_hash(self, model_ids: list[str]) -> str:
        """Changes when the embedded text or the text models change."""
        return _digest(json.dumps([self.embedding_text, sorted(model_ids)], ensure_ascii=False).encode())

    def source(self) -> dict[str, Any]:
        """The stored, returned document (no vectors)."""
        doc: dict[str, Any] = {"id": self.id, "title": self.title, "version": self.version}
        if self.description:
            doc["description"] = self.description
        doc.update(self.attributes)
        if self.images:
            doc["images"] = list(self.images)
        if self.extra:
            doc["extra"] = dict(self.extra)
        return doc


@dataclass
class Update:
    """One validated queue item: an upsert carries its product, a delete only id and version."""

    op: str
    id: str
    version: int
    ref: str
    product: Product | None = None


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_hash(contents: list[bytes], model_ids: list[str]) -> str:
    """Changes when any image's bytes, their order, or the image model change."""
    digest = hashlib.sha256(json.dumps(sorted(model_ids)).encode())
    for blob in contents:
        digest.update(hashlib.sha256(blob).digest())
    return digest.hexdigest()


def parse_version(value: Any, *, what: str) -> int:
    """An integer version from an int, an epoch number of seconds or an ISO 8601 time."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number or an ISO 8601 time, got {value!r}")
    if isinstance(value, int):
        version = value if what == "version" else value * 1_000_000
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{what} must be finite, got {value!r}")
        version = int(value) if what == "version" else int(round(value * 1_000_000))
    elif isinstance(value, str) and what == "updated_at":
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"updated_at {value!r} is not an ISO 8601 time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        version = int(round(moment.timestamp() * 1_000_000))
    else:
        raise ValueError(f"{what} must be {'an integer' if what == 'version' else 'a number or an ISO 8601 time'}, got {value!r}")
    if not 0 <= version <= MAX_VERSION:
        raise ValueError(f"{what} {value!r} is out of range (0 .. 2^63-1)")
    return version


def _text(data: dict[str, Any], key: str, limit: int, *, required: bool) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise ValueError(f"missing {key}")
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, got {type(value).__name__}")
    value = value.strip()
    if required and not value:
        raise ValueError(f"{key} is empty")
    if len(value) > limit:
        raise ValueError(f"{key} has {len(value)} characters, the limit is {limit}")
    return value


def _product_id(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"id must be a string or an integer, got {type(value).__name__ if value is not None else 'nothing'}")
    pid = str(value).strip()
    if not pid:
        raise ValueError("id is empty")
    if len(pid.encode()) > MAX_ID_LENGTH:
        raise ValueError(f"id is longer than {MAX_ID_LENGTH} bytes")
    if _CONTROL.search(pid):
        raise ValueError("id contains control characters")
    return pid


def _attributes(data: dict[str, Any], layout: FieldLayout) -> dict[str, Any]:
    nested = data.get("attributes") or {}
    if not isinstance(nested, dict):
        raise ValueError(f"attributes must be an object, got {type(nested).__name__}")
    attrs: dict[str, Any] = {}
    for spec in layout.attribute_fields:
        value = data.get(spec.name, nested.get(spec.name))
        if value is None:
            continue
        if spec.numeric:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{spec.name} must be a finite number, got {value!r}")
            if spec.type == "integer" and float(value) != int(value):
                raise ValueError(f"{spec.name} must be an integer, got {value!r}")
            attrs[spec.name] = int(value) if spec.type == "integer" else float(value)
        else:
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise ValueError(f"{spec.name} must be a string, got {type(value).__name__}")
            text = str(value).strip()
            if len(text) > MAX_KEYWORD_LENGTH:
                raise ValueError(f"{spec.name} is longer than {MAX_KEYWORD_LENGTH} characters")
            if text:
                attrs[spec.name] = text
    return attrs


def _images(data: dict[str, Any]) -> list[str]:
    raw = data.get("images", data.get("image"))
    if raw is None:
        return []
    refs = [raw] if isinstance(raw, str) else raw
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise ValueError("image/images must be a string or a list of strings")
    refs = [r.strip() for r in refs if r.strip()]
    if len(refs) > MAX_IMAGES:
        raise ValueError(f"{len(refs)} images, the limit is {MAX_IMAGES}")
    return refs


def parse_update(item: dict[str, Any], layout: FieldLayout, *, title_field: str = "title") -> Update:
    """Validate one queue item; raise ``ItemError`` naming the item and the problem."""
    ref = str(item.get("ref") or "item")
    if item.get("error"):
        raise ItemError(ref, str(item["error"]))
    op = item.get("op", "upsert")
    data = item.get("data")
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ItemError(ref, f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ItemError(ref, f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise ItemError(ref, f"a product must be a JSON object, got {type(data).__name__}")
    try:
        pid = _product_id(data.get("id", item.get("id")))
    except ValueError as exc:
        raise ItemError(ref, str(exc)) from None
    where = f"{ref} (id {pid})" if pid not in ref else ref
    if op not in ("upsert", "delete"):
        raise ItemError(where, f"unknown op {op!r}; expected 'upsert' or 'delete'")
    try:
        if "version" in data:
            version = parse_version(data["version"], what="version")
        elif "updated_at" in data:
            version = parse_version(data["updated_at"], what="updated_at")
        elif item.get("version") is not None:
            version = parse_version(item["version"], what="version")
        else:
            raise ValueError("no version: give version or updated_at (the producer normally assigns one)")
        if op == "delete":
            return Update("delete", pid, version, where)
        title = _text(data, title_field, MAX_TITLE_LENGTH, required=True)
        if title_field != "title" and "title" in data:
            data = {k: v for k, v in data.items() if k != "title"} | {"original_title": data["title"]}
        product = Product(
            id=pid,
            title=title,
            version=version,
            description=_text(data, "description", MAX_DESCRIPTION_LENGTH, required=False),
            attributes=_attributes(data, layout),
            images=_images(data),
            extra={
                k: v
                for k, v in data.items()
                if k not in RESERVED_KEYS and k != title_field and k not in layout.attribute_names
            },
        )
    except ValueError as exc:
        raise ItemError(where, str(exc)) from None
    return Update("upsert", pid, version, where, product)

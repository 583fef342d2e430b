"""Settings shared by producers, workers and searchers.

Read from an optional JSON file (``HYBRID_SEARCH_CONFIG``) and then from environment
variables, so a worker started by ``celery -A indexer.celery_app worker`` and a CLI
in another shell agree on the store, the broker and the models without passing
flags around. ``to_dict``/``from_dict`` round-trip, and ``from_dict`` tolerates
keys missing from older files.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hybrid_core.dicts import known_keys
from hybrid_core.errors import ConfigError
from hybrid_core.json_files import read_json
from hybrid_core.layout import FieldLayout, build_layout
from hybrid_core.spaces import EmbeddingSpace, SpaceSpec, default_image_spec, default_text_spec
from hybrid_core.synonyms import PACKAGED
from hybrid_core.synonyms import load as load_synonyms

ENV_PREFIX = "HYBRID_SEARCH_"
STORES = ("embedded", "elasticsearch")
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"


def default_store_path() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "es-hybrid-search" / "products.sqlite")


def _flag(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


_flag.__name__ = "flag (true/false)"


def _networks(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


_networks.__name__ = "comma-separated CIDR list"


@dataclass
class Settings:
    """Where things are and which models fill which vectors."""

    store: str = "embedded"
    store_path: str = field(default_factory=default_store_path)
    store_busy_timeout_s: float = 30.0  # embedded store: how long a write waits for a lock before the task retries
    # embedded store: exact kNN up to this many rows, an HNSW graph per field above (unfiltered legs)
    exact_knn_max_rows: int = 20_000
    broker_url: str = DEFAULT_BROKER
    queue: str = "catalogue-updates"
    result_backend: str | None = None  # defaults to the broker
    visibility_timeout_s: int = 600
    # keep each batch in Redis until written, so workers resend one a dying worker took along (indexer.ledger)
    queue_ledger: bool = True
    batch_size: int = 128
    text_space: SpaceSpec = field(default_factory=default_text_spec)
    image_space: SpaceSpec | None = field(default_factory=default_image_spec)
    image_max_bytes: int = 20 * 1024 * 1024
    image_timeout_s: float = 10.0
    # image URLs on loopback/private/link-local addresses are refused unless allowed here (SSRF)
    image_allow_private_networks: bool = False
    image_allowed_networks: tuple[str, ...] = ()
    es_url: str | None = None
    es_alias: str = "products"
    es_refresh: str = "false"  # "false" | "true" | "wait_for": the bulk refresh policy
    fusion_profile: str | None = None  # a JSON file from ``hybrid-search tune``: fusion per query kind
    # search-time synonyms for BM25: "packaged" (the fashion list shipped in hybrid_core/lexicons),
    # "none", or a file of Solr-format rules (hybrid_core.synonyms)
    synonyms: str = PACKAGED
    # the same rules for the vector legs: they embed the query in each rule's canonical wording
    # (``ladies tee`` -> ``women t shirt``; SynonymRules.canonical); False embeds the text as typed
    vector_synonyms: bool = True
    # with an image space that has a photo vocabulary: the indexer writes each product's photo read in it
    # ("Women Green Kurtas") to a photo_caption text field that BM25 searches (hybrid_core.layout)
    photo_captions: bool = True

    def __post_init__(self) -> None:
        if self.store not in STORES:
            raise ConfigError(f"unknown store {self.store!r}; choose one of {list(STORES)}")
        if self.es_refresh not in ("false", "true", "wait_for"):
            raise ConfigError(f"es_refresh must be false, true or wait_for, got {self.es_refresh!r}")
        if not 1 <= self.batch_size <= 1024:
            raise ConfigError(f"batch_size must be in 1..1024, got {self.batch_size}")
        try:
            self.image_allowed_networks = tuple(str(ipaddress.ip_network(n, strict=False)) for n in self.image_allowed_networks)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"image_allowed_networks must be CIDRs such as 10.20.0.0/16: {exc}") from None
        if self.exact_knn_max_rows < 0:
            raise ConfigError(f"exact_knn_max_rows must be >= 0, got {self.exact_knn_max_rows}")
        load_synonyms(self.synonyms)  # a missing file or a bad rule fails here, naming the line
        if self.visibility_timeout_s < 10:
            raise ConfigError(f"visibility_timeout_s must be >= 10 seconds, got {self.visibility_timeout_s}")

    @property
    def backend_url(self) -> str:
        return self.result_backend or self.broker_url

    def layout(self) -> FieldLayout:
        return build_layout(self.text_space, self.image_space, load_synonyms(self.synonyms), photo_captions=self.photo_captions)

    def open_store(self):  # -> Store; the concrete type depends on ``store``
        if self.store == "elasticsearch":
            from hybrid_core.stores.elasticsearch import ElasticsearchStore

            refresh = {"false": False, "true": True}.get(self.es_refresh, self.es_refresh)
            return ElasticsearchStore(es_client(self), self.layout(), alias=self.es_alias, refresh=refresh)
        from hybrid_core.stores.embedded import EmbeddedStore

        return EmbeddedStore(
            self.store_path, self.layout(), busy_timeout_s=self.store_busy_timeout_s, exact_knn_max_rows=self.exact_knn_max_rows
        )

    def embedding_spaces(self) -> tuple[EmbeddingSpace, EmbeddingSpace | None]:
        """The text and image spaces, not loaded yet."""
        return EmbeddingSpace(self.text_space), (EmbeddingSpace(self.image_space) if self.image_space else None)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["text_space"] = self.text_space.to_dict()
        data["image_space"] = self.image_space.to_dict() if self.image_space else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Settings:
        values = known_keys(cls, data, "config", ConfigError)
        if isinstance(values.get("text_space"), Mapping):
            values["text_space"] = SpaceSpec.from_dict(dict(values["text_space"]))
        if isinstance(values.get("image_space"), Mapping):
            values["image_space"] = SpaceSpec.from_dict(dict(values["image_space"]))
        return cls(**values)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The config file named by ``HYBRID_SEARCH_CONFIG`` (if any), then env overrides."""
        env = os.environ if env is None else env
        data: dict[str, Any] = {}
        path = env.get(ENV_PREFIX + "CONFIG")
        if path:
            data = read_json(path, "config file")
            if not isinstance(data, dict):
                raise ConfigError(f"config file {path} must hold a JSON object")
        for key, caster in (
            ("store", str),
            ("store_path", str),
            ("store_busy_timeout_s", float),
            ("exact_knn_max_rows", int),
            ("broker_url", str),
            ("queue", str),
            ("result_backend", str),
            ("visibility_timeout_s", int),
            ("queue_ledger", _flag),
            ("batch_size", int),
            ("es_url", str),
            ("es_alias", str),
            ("es_refresh", str),
            ("fusion_profile", str),
            ("synonyms", str),
            ("vector_synonyms", _flag),
            ("photo_captions", _flag),
            ("image_max_bytes", int),
            ("image_timeout_s", float),
            ("image_allow_private_networks", _flag),
            ("image_allowed_networks", _networks),
        ):
            raw = env.get(ENV_PREFIX + key.upper())
            if raw:
                try:
                    data[key] = caster(raw)
                except ValueError:
                    raise ConfigError(f"{ENV_PREFIX}{key.upper()}={raw!r} is not a valid {caster.__name__}") from None
        settings = cls.from_dict(data)
        if env.get(ENV_PREFIX + "IMAGE_SPACE", "").lower() == "none":
            settings.image_space = None
        device = env.get(ENV_PREFIX + "DEVICE")
        if device:
            from dataclasses import replace

            settings.text_space = replace(settings.text_space, device=device)
            if settings.image_space:
                settings.image_space = replace(settings.image_space, device=device)
        return settings


def es_client(settings: Settings, env: Mapping[str, str] | None = None):
    """An ``Elasticsearch`` client; credentials come from the environment only and are never logged.

    ``HYBRID_SEARCH_ES_API_KEY``, or ``HYBRID_SEARCH_ES_USERNAME`` + ``HYBRID_SEARCH_ES_PASSWORD``;
    ``HYBRID_SEARCH_ES_CLOUD_ID`` instead of a URL; ``HYBRID_SEARCH_ES_CA_CERTS`` for a private CA.
    TLS verification stays on unless ``HYBRID_SEARCH_ES_VERIFY_CERTS=false`` is set explicitly.
    """
    from elasticsearch import Elasticsearch

    env = os.environ if env is None else env
    kwargs: dict[str, Any] = {"request_timeout": 30, "retry_on_timeout": True, "max_retries": 3}
    cloud_id = env.get(ENV_PREFIX + "ES_CLOUD_ID")
    if cloud_id:
        kwargs["cloud_id"] = cloud_id
    elif settings.es_url:
        kwargs["hosts"] = [settings.es_url]
    else:
        raise ConfigError("the elasticsearch store needs HYBRID_SEARCH_ES_URL (or es_url in the config file) or HYBRID_SEARCH_ES_CLOUD_ID")
    if env.get(ENV_PREFIX + "ES_API_KEY"):
        kwargs["api_key"] = env[ENV_PREFIX + "ES_API_KEY"]
    elif env.get(ENV_PREFIX + "ES_USERNAME"):
        kwargs["basic_auth"] = (env[ENV_PREFIX + "ES_USERNAME"], env.get(ENV_PREFIX + "ES_PASSWORD", ""))
    if env.get(ENV_PREFIX + "ES_CA_CERTS"):
        kwargs["ca_certs"] = env[ENV_PREFIX + "ES_CA_CERTS"]
    if env.get(ENV_PREFIX + "ES_VERIFY_CERTS", "true").lower() == "false":
        kwargs["verify_certs"] = False
    return Elasticsearch(**kwargs)

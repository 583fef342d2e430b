"""Every exception pickles (Celery ships them between processes); settings round-trip."""

from __future__ import annotations

import json
import pickle

import pytest

from hybrid_core import errors
from hybrid_core.config import Settings
from hybrid_core.spaces import SpaceSpec, random_clip_spec

EXCEPTIONS = [
    errors.SearchError("x"),
    errors.ConfigError("bad config"),
    errors.LayoutError("wrong dims"),
    errors.ValidationError("bad query"),
    errors.FilterError("bad filter"),
    errors.FusionError("bad weight"),
    errors.StoreError("down"),
    errors.TransientStoreError("locked"),
    errors.IndexWriteError("2 failed", errors=[{"id": "a", "reason": "r"}]),
    errors.ItemError("catalogue.jsonl:3", "missing title"),
]


@pytest.mark.parametrize("exc", EXCEPTIONS, ids=lambda e: type(e).__name__)
def test_exceptions_survive_pickle(exc):
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    assert back.__dict__ == exc.__dict__


def test_settings_round_trip_and_tolerate_missing_keys(tmp_path):
    settings = Settings(store_path=str(tmp_path / "s.sqlite"), image_space=random_clip_spec(3))
    data = json.loads(json.dumps(settings.to_dict()))
    assert Settings.from_dict(data) == settings
    older = {"store_path": "/x.sqlite"}  # a file written before other keys existed
    assert Settings.from_dict(older).store_path == "/x.sqlite"


def test_settings_refuse_unknown_keys_and_bad_values():
    with pytest.raises(errors.ConfigError, match="unknown keys \\['colour'\\]"):
        Settings.from_dict({"colour": "red"})
    with pytest.raises(errors.ConfigError, match="unknown store 'mongo'"):
        Settings(store="mongo")
    with pytest.raises(errors.ConfigError, match="unknown kind"):
        SpaceSpec(name="x", kind="word2vec", model="m", dims=3)


def test_settings_from_env_and_config_file(tmp_path):
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"batch_size": 64, "image_space": None}))
    env = {
        "HYBRID_SEARCH_CONFIG": str(config),
        "HYBRID_SEARCH_STORE_PATH": str(tmp_path / "p.sqlite"),
        "HYBRID_SEARCH_QUEUE": "q1",
    }
    settings = Settings.from_env(env)
    assert settings.batch_size == 64 and settings.image_space is None
    assert settings.store_path.endswith("p.sqlite") and settings.queue == "q1"
    with pytest.raises(errors.ConfigError, match="HYBRID_SEARCH_BATCH_SIZE='many'"):
        Settings.from_env({"HYBRID_SEARCH_BATCH_SIZE": "many"})
    for broken in (tmp_path / "missing.json", tmp_path / "broken.json"):
        if broken.name == "broken.json":
            broken.write_text('{"batch_size": 64,')
        with pytest.raises(errors.ConfigError, match=f"cannot read config file {broken}"):
            Settings.from_env({"HYBRID_SEARCH_CONFIG": str(broken)})

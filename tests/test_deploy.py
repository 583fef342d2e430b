"""docker-compose.yml and the Kibana saved objects: what a user's machine gets."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from hybrid_core.kibana import saved_objects
from hybrid_core.layout import build_layout
from hybrid_core.spaces import default_image_spec, default_text_spec

ROOT = Path(__file__).resolve().parents[1]


def test_kibana_file_is_the_data_view_for_the_default_layout():
    expected = saved_objects(build_layout(default_text_spec(), default_image_spec()))
    assert (ROOT / "kibana" / "saved_objects.ndjson").read_text() == expected, "regenerate: hybrid-search kibana-objects"
    view = json.loads(expected)
    assert view["type"] == "index-pattern" and view["attributes"]["title"] == "products"
    hidden = {f["value"] for f in json.loads(view["attributes"]["sourceFilters"])}
    assert {"text_vector", "image_vector", "product_vector"} <= hidden


def test_compose_services_volumes_and_persistence():
    yaml = pytest.importorskip("yaml", reason="PyYAML reads the compose file")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"elasticsearch", "kibana", "redis", "worker"}
    assert all("healthcheck" in s for s in services.values())
    assert services["elasticsearch"]["image"].split(":")[-1] == services["kibana"]["image"].split(":")[-1]
    assert "--appendonly" in services["redis"]["command"] and "yes" in services["redis"]["command"]
    assert set(compose["volumes"]) == {"esdata", "redisdata"}
    env = services["worker"]["environment"]
    assert "HYBRID_SEARCH_STORE=elasticsearch" in env and services["worker"]["build"] == "."


def test_docker_compose_config_validates():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on this machine")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"the docker CLI here has no compose plugin: {probe.stderr.strip()[:120]}")
    done = subprocess.run([docker, "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

"""Real Redis and real Celery workers for the integration tests (no fakes)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _redis_up(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RedisServer:
    url: str
    process: subprocess.Popen | None = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)


def redis_server() -> RedisServer:
    """The machine's Redis on 6379 if it answers, else a private redis-server on a free port."""
    if _redis_up(6379):
        return RedisServer("redis://127.0.0.1:6379/0")
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no Redis on 127.0.0.1:6379 and no redis-server binary to start one")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        if _redis_up(port):
            return RedisServer(f"redis://127.0.0.1:{port}/0", process)
        time.sleep(0.1)
    process.kill()
    pytest.skip(f"redis-server did not start on port {port}")


@dataclass
class WorkerEnv:
    """Settings shared by the producer (this process) and the worker subprocesses."""

    broker_url: str
    store_path: Path
    queue: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:8]}")
    visibility_timeout_s: int = 600
    batch_size: int = 16
    extra: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "HYBRID_SEARCH_BROKER_URL": self.broker_url,
                "HYBRID_SEARCH_STORE_PATH": str(self.store_path),
                "HYBRID_SEARCH_QUEUE": self.queue,
                "HYBRID_SEARCH_VISIBILITY_TIMEOUT_S": str(self.visibility_timeout_s),
                "HYBRID_SEARCH_BATCH_SIZE": str(self.batch_size),
                "HF_HUB_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
                "OMP_NUM_THREADS": "1",
            }
        )
        env.update(self.extra)
        return env

    def settings(self):
        from hybrid_core.config import Settings

        return Settings.from_env(self.env())

    def app(self):
        from indexer.celery_app import make_app

        return make_app(self.settings())


class Worker:
    """``hybrid-search worker`` as a subprocess, with its log in a file."""

    def __init__(self, wenv: WorkerEnv, log: Path, *, concurrency: int = 1) -> None:
        self.log = log
        self.name = f"w{uuid.uuid4().hex[:6]}@%h"
        cli = [sys.executable, "-m", "hybrid_cli", "worker", "--loglevel", "info", "--concurrency", str(concurrency)]
        self.process = subprocess.Popen(
            [*cli, "--hostname", self.name],
            cwd=REPO,
            env=wenv.env(),
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 120) -> Worker:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            if " ready." in self.log.read_text(errors="replace"):
                return self
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready after {timeout} s:\n{self.log.read_text()[-3000:]}")

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def kill_all(self) -> None:
        """SIGKILL the whole worker (main process and pool), as a crash or OOM kill would."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill_all()
        try:  # pool processes outlive a killed parent: clean the whole group
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def wait_until(predicate, timeout: float, what: str, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")

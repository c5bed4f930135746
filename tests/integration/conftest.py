"""Fixtures for the integration tests: real services started by ``docker/launcher.py up``.

The session fixture ``services`` runs the launcher unless ``AGENTFLOW_SERVICES_STARTED=1`` says
the Makefile already did. A service that fails to start is a test failure, never a skip. The
services are left running afterwards (``make down`` / ``launcher.py down`` stops them).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import load_launcher

if TYPE_CHECKING:
    import psycopg2.extensions
    import redis
    from cassandra.cluster import Session

REPO_ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = REPO_ROOT / "docker" / "launcher.py"
KAFKA_BOOTSTRAP = "127.0.0.1:9092"
UP_TIMEOUT_S = 1800


def run_launcher(*args: str, timeout: float = UP_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run ``docker/launcher.py`` with this interpreter and return the finished process."""
    return subprocess.run(
        [sys.executable, str(LAUNCHER), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO_ROOT,
    )


@pytest.fixture(scope="session")
def launcher() -> ModuleType:
    """The launcher module (its paths, ports and helpers)."""
    return load_launcher()


@pytest.fixture(scope="session")
def stack_layout(launcher: ModuleType) -> Any:
    """The StackLayout the launcher uses in this environment."""
    return launcher.StackLayout.from_env()


@pytest.fixture(scope="session")
def services(launcher: ModuleType) -> None:
    """Kafka, Cassandra, PostgreSQL and Redis, up and bootstrapped."""
    if os.environ.get("AGENTFLOW_SERVICES_STARTED") == "1":
        return
    proc = run_launcher("up")
    assert proc.returncode == 0, (
        f"`launcher.py up` exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )


@pytest.fixture(scope="session")
def kafka_bootstrap(services: None) -> str:
    """The Kafka bootstrap servers."""
    return KAFKA_BOOTSTRAP


@pytest.fixture(scope="session")
def cassandra_session(services: None) -> Iterator[Session]:
    """A cassandra-driver session on 127.0.0.1:9042 (no keyspace selected)."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy

    profile = ExecutionProfile(
        load_balancing_policy=DCAwareRoundRobinPolicy(local_dc="datacenter1"), request_timeout=60
    )
    cluster = Cluster(["127.0.0.1"], port=9042, execution_profiles={EXEC_PROFILE_DEFAULT: profile})
    session = cluster.connect()
    try:
        yield session
    finally:
        cluster.shutdown()


@pytest.fixture
def pg_conn(services: None) -> Iterator[psycopg2.extensions.connection]:
    """A psycopg2 connection to database ``agentflow`` as ``airflow`` over TCP."""
    import psycopg2

    conn = psycopg2.connect(
        host="127.0.0.1",
        port=5432,
        user="airflow",
        password="airflow",
        dbname="agentflow",
        connect_timeout=10,
    )
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def redis_client(services: None) -> Iterator[redis.Redis]:
    """A redis-py client on 127.0.0.1:6379, database 1."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=1, socket_timeout=10)
    try:
        yield client
    finally:
        client.close()

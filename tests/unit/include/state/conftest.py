"""A fake cassandra-driver session: the driver boundary, nothing else is mocked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cassandra.query import PreparedStatement

from include.state.session import CassandraClient
from include.state.settings import CassandraSettings


class FakePrepared(PreparedStatement):
    """A ``PreparedStatement`` made without a server; ``bind`` keeps the values."""

    def __init__(self, cql: str) -> None:  # no super().__init__: it needs server metadata
        self.query_string = cql
        self.values: Any = None
        self.consistency_level: int | None = None
        self.serial_consistency_level: int | None = None

    def bind(self, values: Any) -> FakePrepared:
        bound = FakePrepared(self.query_string)
        bound.values = values
        return bound


class FakeSession:
    """Records statements; raises the queued ``failures`` first; answers with ``rows(statement)``."""

    def __init__(self) -> None:
        self.executed: list[Any] = []
        self.prepared: list[str] = []
        self.failures: list[BaseException] = []
        self.rows: Callable[[Any], list[Any]] = lambda statement: []

    def prepare(self, cql: str) -> FakePrepared:
        self.prepared.append(cql)
        return FakePrepared(cql)

    def execute(self, statement: Any, params: Any = None, timeout: float | None = None) -> Any:
        if self.failures:
            raise self.failures.pop(0)
        self.executed.append(statement)
        return _Result(self.rows(statement))


class _Result(list[Any]):
    def one(self) -> Any:
        return self[0] if self else None


@pytest.fixture
def fake_session() -> FakeSession:
    return FakeSession()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(fake_session: FakeSession, sleeps: list[float]) -> CassandraClient:
    settings = CassandraSettings(
        contact_points=("10.0.0.1", "10.0.0.2"), vector_dimension=4, max_value_bytes=2000, max_retries=3
    )
    return CassandraClient(settings, session=fake_session, sleep=sleeps.append)  # type: ignore[arg-type]

"""Settings of the Cassandra state: where it is, how consistent, how long things live.

Built from an Airflow connection's fields and extras by ``CassandraHook`` (or directly with
``CassandraSettings.from_connection_fields``); nothing here imports Airflow or the driver.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from include.errors import ConfigurationError

#: Consistency levels cassandra-driver knows (``cassandra.ConsistencyLevel``).
CONSISTENCY_LEVELS = frozenset(
    {"ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE"}
)
SERIAL_CONSISTENCY_LEVELS = frozenset({"SERIAL", "LOCAL_SERIAL"})

_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")
_DAY_S = 86_400
_DEFAULT_REPLICATION: dict[str, str | int] = {"class": "SimpleStrategy", "replication_factor": 1}


class CassandraSettings(BaseModel):
    """How to reach the Cassandra state and how to use it.

    :param contact_points: host names or addresses of the nodes to connect to first.
    :param port: the CQL native port.
    :param keyspace: the keyspace holding the project's tables.
    :param local_dc: the data centre the client prefers (``DCAwareRoundRobinPolicy``);
        ``None`` lets the driver pick the first node's.
    :param username: login for ``PlainTextAuthProvider``; ``None`` for no authentication.
    :param password: password for ``username`` (never shown in ``repr``).
    :param consistency: consistency level of reads and writes.
    :param serial_consistency: consistency of the Paxos phase of lightweight transactions.
    :param protocol_version: the CQL native protocol version (5 for Cassandra 4 and 5);
        ``None`` lets the driver negotiate (and log a warning for each downgrade).
    :param request_timeout: seconds the client waits for one request.
    :param connect_timeout: seconds the client waits to open a connection.
    :param max_retries: retries after a timeout or unavailability (0 means one attempt).
    :param retry_backoff: first backoff in seconds; doubled on every retry.
    :param retry_backoff_max: the longest backoff in seconds.
    :param replication: the keyspace replication map the migrator creates the keyspace with,
        e.g. ``{"class": "SimpleStrategy", "replication_factor": 1}`` or
        ``{"class": "NetworkTopologyStrategy", "dc1": 3}``.
    :param vector_dimension: the dimension of knowledge embeddings (``vector<float, N>``).
    :param max_value_bytes: the largest JSON value or text one row may hold.
    :param memory_ttl_s: how long conversation turns live.
    :param memory_bucket_s: the time span of one conversation partition (bounds its size).
    :param ledger_ttl_s: how long an event id stays claimed.
    :param audit_ttl_s: how long audit records live.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    contact_points: tuple[str, ...] = ("127.0.0.1",)
    port: int = Field(default=9042, ge=1, le=65535)
    keyspace: str = "agentflow"
    local_dc: str | None = None
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    consistency: str = "LOCAL_QUORUM"
    serial_consistency: str = "SERIAL"
    protocol_version: int | None = Field(default=5, ge=3, le=6)
    request_timeout: float = Field(default=10.0, gt=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    max_retries: int = Field(default=3, ge=0, le=20)
    retry_backoff: float = Field(default=0.2, ge=0)
    retry_backoff_max: float = Field(default=5.0, ge=0)
    replication: dict[str, str | int] = Field(default_factory=lambda: dict(_DEFAULT_REPLICATION))
    vector_dimension: int = Field(default=384, ge=1, le=8192)
    max_value_bytes: int = Field(default=1_000_000, ge=1, le=64_000_000)
    memory_ttl_s: int = Field(default=30 * _DAY_S, ge=1)
    memory_bucket_s: int = Field(default=7 * _DAY_S, ge=60)
    ledger_ttl_s: int = Field(default=7 * _DAY_S, ge=1)
    audit_ttl_s: int = Field(default=90 * _DAY_S, ge=1)

    @field_validator("contact_points", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        if isinstance(value, list | tuple):
            hosts = tuple(str(part).strip() for part in value if str(part).strip())
            if not hosts:
                raise ValueError("give at least one contact point (a host name or address)")
            return hosts
        return value

    @field_validator("keyspace")
    @classmethod
    def _check_keyspace(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(f"keyspace {value!r} is not a valid CQL identifier (letters, digits, _)")
        return value.lower()

    @field_validator("consistency")
    @classmethod
    def _check_consistency(cls, value: str) -> str:
        name = value.upper()
        if name not in CONSISTENCY_LEVELS:
            raise ValueError(f"consistency {value!r} is not one of {sorted(CONSISTENCY_LEVELS)}")
        return name

    @field_validator("serial_consistency")
    @classmethod
    def _check_serial(cls, value: str) -> str:
        name = value.upper()
        if name not in SERIAL_CONSISTENCY_LEVELS:
            raise ValueError(f"serial_consistency {value!r} must be SERIAL or LOCAL_SERIAL")
        return name

    @field_validator("replication")
    @classmethod
    def _check_replication(cls, value: dict[str, str | int]) -> dict[str, str | int]:
        strategy = str(value.get("class", "")).rsplit(".", 1)[-1]
        factors = {k: v for k, v in value.items() if k != "class"}
        if strategy == "SimpleStrategy":
            if set(factors) != {"replication_factor"}:
                raise ValueError("SimpleStrategy replication takes exactly 'replication_factor'")
        elif strategy == "NetworkTopologyStrategy":
            if not factors:
                raise ValueError("NetworkTopologyStrategy replication needs a factor per data centre")
        else:
            raise ValueError(
                f"replication class {value.get('class')!r} must be SimpleStrategy or NetworkTopologyStrategy"
            )
        checked: dict[str, str | int] = {"class": strategy}
        for name, factor in factors.items():
            if not re.match(r"^[A-Za-z0-9_.-]+$", name):
                raise ValueError(f"replication key {name!r} is not a data centre name")
            try:
                number = int(factor)
            except (TypeError, ValueError):
                raise ValueError(f"replication factor {name}={factor!r} is not an integer") from None
            if number < 1:
                raise ValueError(f"replication factor {name}={number} must be at least 1")
            checked[name] = number
        return checked

    @model_validator(mode="after")
    def _check_pairs(self) -> CassandraSettings:
        if self.password is not None and self.username is None:
            raise ValueError("a password was given without a username (login)")
        if self.retry_backoff_max < self.retry_backoff:
            raise ValueError("retry_backoff_max must be at least retry_backoff")
        return self

    def replication_cql(self) -> str:
        """Return the replication map as a CQL literal, e.g. ``{'class': 'SimpleStrategy', ...}``."""
        parts = [f"'{key}': '{value}'" for key, value in self.replication.items()]
        return "{" + ", ".join(parts) + "}"

    @classmethod
    def from_connection_fields(
        cls,
        host: str | None,
        port: int | None,
        schema: str | None,
        login: str | None,
        password: str | None,
        extra: Mapping[str, Any] | None,
    ) -> CassandraSettings:
        """Build settings from an Airflow connection's fields and its extra.

        ``host`` may list several contact points separated by commas; ``schema`` is the
        keyspace. Every other setting comes from the extra under its own name
        (``local_dc``, ``consistency``, ``serial_consistency``, ``request_timeout``,
        ``max_retries``, ``replication``, ``memory_ttl_s``, ...).

        :raises ConfigurationError: on an unknown extra key or an invalid value.
        """
        values: dict[str, Any] = dict(extra or {})
        unknown = sorted(set(values) - set(cls.model_fields) - {"contact_points"})
        if unknown:
            raise ConfigurationError(
                f"unknown Cassandra connection extra {unknown}; known: {sorted(cls.model_fields)}"
            )
        if host:
            values["contact_points"] = host
        if port:
            values["port"] = port
        if schema:
            values["keyspace"] = schema
        if login:
            values["username"] = login
        if password:
            values["password"] = password
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'connection'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigurationError(f"invalid Cassandra connection settings: {problems}") from exc

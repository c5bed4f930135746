"""Apply the CQL schema in ``config/cassandra/`` once, in version order, one migrator at a time.

``python -m include.state.migrate`` (or ``migrate(settings)``):

1. creates the keyspace (replication from the settings, not from the file) and the lock
   table, both ``IF NOT EXISTS``;
2. takes the lock: a row inserted with ``IF NOT EXISTS`` (a lightweight transaction) and a
   TTL, so a migrator that dies cannot hold it for longer than ``lock_ttl_s``; a second
   migrator waits for it;
3. applies every file whose version is not in ``<keyspace>.schema_version`` and records it;
4. releases the lock (``DELETE ... IF owner = ?``).

The files are plain CQL that ``cqlsh -f`` also applies (the compose stack does); the
migrator rewrites three things from configuration: the keyspace name (``agentflow``), the
keyspace replication map and the embedding dimension (``vector<float, 384>``). Every
statement must be idempotent (``IF NOT EXISTS``), so re-running a file that failed half-way
is safe.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import socket
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from include.errors import AgentFlowError, ConfigurationError, SchemaMigrationError
from include.state.session import CassandraClient
from include.state.settings import CassandraSettings

log = logging.getLogger(__name__)

#: The schema files shipped with the project.
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "config" / "cassandra"
#: The keyspace name the files are written with.
FILE_KEYSPACE = "agentflow"
LOCK_TABLE = "schema_migration_lock"
LOCK_NAME = "schema"

_KEYSPACE_DDL = re.compile(
    r"^(\s*CREATE\s+KEYSPACE\s+IF\s+NOT\s+EXISTS\s+)"
    + FILE_KEYSPACE
    + r"(\s+WITH\s+replication\s*=\s*)\{[^}]*\}",
    re.IGNORECASE,
)
_QUALIFIED = re.compile(r"\b" + FILE_KEYSPACE + r"\.")
_VECTOR = re.compile(r"vector\s*<\s*float\s*,\s*\d+\s*>", re.IGNORECASE)


@dataclass(frozen=True)
class Migration:
    """One schema file.

    :param version: the leading number of the file name.
    :param name: the file name.
    :param statements: its CQL statements, comments removed.
    """

    version: int
    name: str
    statements: tuple[str, ...]


@dataclass
class MigrationReport:
    """What one ``migrate`` call did.

    :param applied: versions this call applied, in order.
    :param already_applied: versions found recorded before this call applied anything.
    :param replication: the keyspace's replication map as Cassandra reports it afterwards.
    :param replication_matches: whether it equals the configured one.
    """

    applied: list[int] = field(default_factory=list)
    already_applied: list[int] = field(default_factory=list)
    replication: dict[str, str] = field(default_factory=dict)
    replication_matches: bool = True


def split_cql(text: str) -> list[str]:
    """Split CQL into statements on ``;`` outside comments (``--``, ``//``, ``/* */``) and literals."""
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(text)
    while i < n:
        two = text[i : i + 2]
        ch = text[i]
        if two in ("--", "//"):
            end = text.find("\n", i)
            i = n if end == -1 else end
        elif two == "/*":
            end = text.find("*/", i + 2)
            i = n if end == -1 else end + 2
            current.append(" ")
        elif two == "$$":
            end = text.find("$$", i + 2)
            stop = n if end == -1 else end + 2
            current.append(text[i:stop])
            i = stop
        elif ch in ("'", '"'):
            j = i + 1
            while j < n:
                if text[j] == ch:
                    if j + 1 < n and text[j + 1] == ch:
                        j += 2
                        continue
                    break
                j += 1
            current.append(text[i : j + 1])
            i = j + 1
        elif ch == ";":
            statement = "".join(current).strip()
            if statement:
                statements.append(statement)
            current = []
            i += 1
        else:
            current.append(ch)
            i += 1
    statement = "".join(current).strip()
    if statement:
        statements.append(statement)
    return statements


def load_migrations(folder: Path = SCHEMA_DIR) -> list[Migration]:
    """Read ``folder/*.cql`` in version order.

    :raises ConfigurationError: if a file name has no leading version or two share one.
    """
    migrations: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.cql")):
        match = re.match(r"(\d+)_", path.name)
        if not match:
            raise ConfigurationError(f"schema file {path} must start with its version, e.g. 002_tables.cql")
        version = int(match.group(1))
        if version in migrations:
            raise ConfigurationError(
                f"schema files {migrations[version].name} and {path.name} share version {version}"
            )
        migrations[version] = Migration(version, path.name, tuple(split_cql(path.read_text())))
    if not migrations:
        raise ConfigurationError(f"no schema files (*.cql) in {folder}")
    return [migrations[v] for v in sorted(migrations)]


def render(statement: str, settings: CassandraSettings) -> str:
    """Rewrite a statement for ``settings``: keyspace name, replication, vector dimension."""
    statement = _KEYSPACE_DDL.sub(
        lambda m: f"{m.group(1)}{settings.keyspace}{m.group(2)}{settings.replication_cql()}", statement
    )
    statement = _QUALIFIED.sub(f"{settings.keyspace}.", statement)
    return _VECTOR.sub(f"vector<float, {settings.vector_dimension}>", statement)


def is_keyspace_ddl(statement: str) -> bool:
    """Return whether a statement creates the project's keyspace."""
    return bool(_KEYSPACE_DDL.match(statement))


class _Migrator:
    def __init__(
        self,
        client: CassandraClient,
        migrations: Sequence[Migration],
        *,
        lock_ttl_s: int,
        lock_wait_s: float,
        poll_s: float,
        sleep: Callable[[float], None],
    ) -> None:
        self.client = client
        self.settings = client.settings
        self.ks = client.settings.keyspace
        self.migrations = migrations
        self.lock_ttl_s = lock_ttl_s
        self.lock_wait_s = lock_wait_s
        self.poll_s = poll_s
        self.sleep = sleep
        self.owner = uuid.uuid4()
        self.holder = f"{socket.gethostname()}:{os.getpid()}"

    def ddl(self, statement: str) -> None:
        self.client.execute(statement, timeout=max(60.0, self.settings.request_timeout))

    def bootstrap(self) -> None:
        keyspace_ddl = [s for m in self.migrations for s in m.statements if is_keyspace_ddl(s)]
        if not keyspace_ddl:
            keyspace_ddl = [
                f"CREATE KEYSPACE IF NOT EXISTS {FILE_KEYSPACE} WITH replication = "
                "{'class': 'SimpleStrategy', 'replication_factor': 1}"
            ]
        for statement in keyspace_ddl:
            self.ddl(render(statement, self.settings))
        self.ddl(
            f"CREATE TABLE IF NOT EXISTS {self.ks}.{LOCK_TABLE} "
            "(name text PRIMARY KEY, owner uuid, holder text, acquired_at timestamp)"
        )

    def acquire(self) -> None:
        deadline = time.monotonic() + self.lock_wait_s
        insert = (
            f"INSERT INTO {self.ks}.{LOCK_TABLE} (name, owner, holder, acquired_at) "
            "VALUES (?, ?, ?, toTimestamp(now())) IF NOT EXISTS USING TTL ?"
        )
        while True:
            row = self.client.execute(
                insert, (LOCK_NAME, self.owner, self.holder, self.lock_ttl_s), serial=True
            ).one()
            # A retried insert that had applied sees its own row: the lock is ours.
            if row.applied or row.owner == self.owner:
                log.info("cassandra schema lock taken by %s", self.holder)
                return
            if time.monotonic() >= deadline:
                raise SchemaMigrationError(
                    f"the schema lock of keyspace {self.ks} is held by {row.holder} since "
                    f"{row.acquired_at}; gave up after {self.lock_wait_s:.0f}s (it expires "
                    f"{self.lock_ttl_s}s after it was taken)"
                )
            log.info("cassandra schema lock held by %s; waiting", row.holder)
            self.sleep(self.poll_s)

    def release(self) -> None:
        self.client.execute(
            f"DELETE FROM {self.ks}.{LOCK_TABLE} WHERE name = ? IF owner = ?",
            (LOCK_NAME, self.owner),
            serial=True,
        )

    def applied_versions(self) -> set[int]:
        tables = self.client.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?", (self.ks,)
        )
        if not any(row.table_name == "schema_version" for row in tables):
            return set()
        return {row.version for row in self.client.execute(f"SELECT version FROM {self.ks}.schema_version")}

    def apply(self, migration: Migration) -> None:
        log.info("cassandra: applying %s to keyspace %s", migration.name, self.ks)
        for statement in migration.statements:
            rendered = render(statement, self.settings)
            try:
                self.ddl(rendered)
            except AgentFlowError as exc:
                raise SchemaMigrationError(
                    f"cassandra schema {migration.name} failed at {rendered[:120]!r}: {exc}"
                ) from exc
        self.client.execute(
            f"INSERT INTO {self.ks}.schema_version (version, name, applied_at) "
            "VALUES (?, ?, toTimestamp(now()))",
            (migration.version, migration.name),
        )

    def replication(self) -> dict[str, str]:
        row = self.client.execute(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?", (self.ks,)
        ).one()
        return dict(row.replication) if row is not None else {}

    def run(self, alter_replication: bool) -> MigrationReport:
        report = MigrationReport()
        self.bootstrap()
        self.acquire()
        try:
            done = self.applied_versions()
            report.already_applied = sorted(done)
            for migration in self.migrations:
                if migration.version not in done:
                    self.apply(migration)
                    report.applied.append(migration.version)
            report.replication = self.replication()
            wanted = {k: str(v) for k, v in self.settings.replication.items()}
            wanted["class"] = f"org.apache.cassandra.locator.{wanted['class']}"
            report.replication_matches = report.replication == wanted
            if not report.replication_matches:
                if alter_replication:
                    self.ddl(f"ALTER KEYSPACE {self.ks} WITH replication = {self.settings.replication_cql()}")
                    log.warning(
                        "cassandra: keyspace %s replication changed from %s to %s; run a full repair",
                        self.ks,
                        report.replication,
                        wanted,
                    )
                    report.replication = self.replication()
                    report.replication_matches = report.replication == wanted
                else:
                    log.warning(
                        "cassandra: keyspace %s has replication %s, the configuration says %s; "
                        "pass --alter-replication to change it",
                        self.ks,
                        report.replication,
                        wanted,
                    )
        finally:
            self.release()
        return report


def migrate(
    target: CassandraSettings | CassandraClient,
    *,
    folder: Path = SCHEMA_DIR,
    lock_ttl_s: int = 300,
    lock_wait_s: float = 600.0,
    poll_s: float = 0.5,
    alter_replication: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> MigrationReport:
    """Bring the keyspace of ``target`` up to the schema in ``folder``; idempotent.

    :param target: settings to connect with (closed afterwards), or a client to use.
    :param folder: the folder of ``NNN_name.cql`` files.
    :param lock_ttl_s: how long the lock lives if its holder dies.
    :param lock_wait_s: how long to wait for another migrator's lock.
    :param poll_s: the pause between lock attempts.
    :param alter_replication: change an existing keyspace's replication to the configured one.
    :param sleep: the function that waits between lock attempts.
    :raises SchemaMigrationError: a statement failed or the lock stayed taken.
    :raises StateStoreUnavailableError: Cassandra is unreachable (the message names it).
    """
    migrations = load_migrations(folder)
    client = target if isinstance(target, CassandraClient) else CassandraClient(target)
    try:
        migrator = _Migrator(
            client, migrations, lock_ttl_s=lock_ttl_s, lock_wait_s=lock_wait_s, poll_s=poll_s, sleep=sleep
        )
        return migrator.run(alter_replication)
    finally:
        if client is not target:
            client.close()


def settings_from_env(env_var: str = "AIRFLOW_CONN_CASSANDRA_DEFAULT") -> CassandraSettings | None:
    """Read settings from an ``AIRFLOW_CONN_*`` variable in Airflow's JSON form, if it is set.

    :raises ConfigurationError: if the variable is not a JSON connection.
    """
    raw = os.environ.get(env_var)
    if not raw:
        return None
    try:
        conn: dict[str, Any] = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{env_var} must be a connection in Airflow's JSON form: {exc}") from exc
    return CassandraSettings.from_connection_fields(
        host=conn.get("host"),
        port=conn.get("port"),
        schema=conn.get("schema"),
        login=conn.get("login"),
        password=conn.get("password"),
        extra=conn.get("extra") or {},
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The ``python -m include.state.migrate`` command; returns its exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m include.state.migrate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--env-var", default="AIRFLOW_CONN_CASSANDRA_DEFAULT", help="connection variable")
    parser.add_argument("--host", help="contact points, comma-separated (overrides the connection)")
    parser.add_argument("--port", type=int)
    parser.add_argument("--keyspace")
    parser.add_argument("--local-dc")
    parser.add_argument("--replication", help='JSON, e.g. \'{"class": "NetworkTopologyStrategy", "dc1": 3}\'')
    parser.add_argument("--vector-dimension", type=int)
    parser.add_argument("--folder", type=Path, default=SCHEMA_DIR)
    parser.add_argument("--alter-replication", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("cassandra").setLevel(logging.ERROR)
    try:
        settings = settings_from_env(args.env_var) or CassandraSettings()
        overrides: dict[str, Any] = {
            "contact_points": args.host,
            "port": args.port,
            "keyspace": args.keyspace,
            "local_dc": args.local_dc,
            "replication": json.loads(args.replication) if args.replication else None,
            "vector_dimension": args.vector_dimension,
        }
        values = settings.model_dump()
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = CassandraSettings.model_validate(values)
        report = migrate(settings, folder=args.folder, alter_replication=args.alter_replication)
    except (AgentFlowError, ValueError) as exc:
        print(f"migrate: {exc}", file=sys.stderr)
        return 2
    print(
        f"keyspace {settings.keyspace}: applied {report.applied or 'nothing'}, "
        f"already applied {report.already_applied or 'nothing'}, replication {report.replication}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Kafka events start DAG runs exactly once, through triggerer crashes, on a real Airflow.

Starts its own Airflow (api-server on :8791, scheduler, dag-processor, triggerer) on its own
PostgreSQL database ``agentflow_e2e_kafka`` and AIRFLOW_HOME, with the LocalExecutor: the
executor is not what is under test (the triggerer, the asset events and the run claims are),
and on a 2-core machine a Celery worker and Redis round trip per task only slows the runs.
The DAGs folder holds only ``tests/e2e/dags/kafka_exactly_once_e2e.py``, watching a topic
unique to this run (never the shared ``support.tickets``).

The stream: N events (5% malformed, 10% repeating an earlier valid ``event_id``, the rest
valid and distinct); the triggerer is SIGKILLed (its whole process group) twice while it
consumes, and restarted. Then every valid distinct event must be in the output (XCom) of
exactly one DAG run, every malformed one on the dead-letter topic with its reason, and
nothing else anywhere.

Kafka, Cassandra and PostgreSQL come from ``docker/launcher.py up`` (run by the
``services`` fixture). ``bench/events.py`` reuses :class:`AirflowUnderTest`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load_launcher

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
TEST_DAG = Path(__file__).resolve().parent / "dags" / "kafka_exactly_once_e2e.py"
DAG_ID = "kafka_exactly_once_e2e"
KAFKA_BOOTSTRAP = "127.0.0.1:9092"
PG = {"host": "127.0.0.1", "port": 5432, "user": "airflow", "password": "airflow"}
DB_NAME = "agentflow_e2e_kafka"
API_PORT = 8791
# The figure. A run of 1,000 takes about four minutes on a 2-core machine; CI runs
# the default. AGENTFLOW_E2E_KAFKA_EVENTS makes it smaller for a quick local check.
DEFAULT_EVENTS = 1000
COMPONENTS: dict[str, tuple[str, ...]] = {
    "api-server": ("api-server", "--host", "127.0.0.1", "--port", str(API_PORT)),
    "scheduler": ("scheduler",),
    "dag-processor": ("dag-processor",),
    "triggerer": ("triggerer",),
}
DLQ_REASON = "agentflow.dlq.reason"
DLQ_OFFSET = "agentflow.dlq.original_offset"
DLQ_PARTITION = "agentflow.dlq.original_partition"


def ticket(event_id: str | None, n: int) -> bytes:
    """A valid ``support.ticket.created`` envelope (without ``event_id`` when None)."""
    event: dict[str, Any] = {
        "event_type": "support.ticket.created",
        "timestamp": "2026-11-21T09:30:00Z",
        "source": "e2e",
        "payload": {"ticket_id": f"T-{n}", "customer_id": f"c-{n % 7}", "subject": "Hi", "body": f"#{n}"},
    }
    if event_id is not None:
        event["event_id"] = event_id
    return json.dumps(event).encode()


MALFORMED: list[tuple[str, Callable[[int], bytes | None]]] = [
    ("empty", lambda n: None),
    ("not_json", lambda n: b"\x00\x9f\xff binary " + str(n).encode()),
    ("not_json", lambda n: b"{not json " + str(n).encode()),
    ("too_large", lambda n: ticket(f"big-{n}", n) + b" " * 300_000),
    ("schema", lambda n: json.dumps({"hello": "world", "event_id": f"w-{n}"}).encode()),
    ("missing_event_id", lambda n: ticket(None, n)),
]


@dataclass
class Stream:
    """The messages of one run, in production order, and what each should become."""

    values: list[bytes | None] = field(default_factory=list)
    expected_reason: list[str | None] = field(default_factory=list)  # None: valid or repeat
    valid_ids: list[str] = field(default_factory=list)
    repeats: int = 0

    @classmethod
    def build(cls, n: int, prefix: str, seed: int = 4) -> Stream:
        """``n`` messages: 5% malformed, 10% repeats of an earlier valid id, 85% valid."""
        rng = random.Random(seed)
        kinds = ["bad"] * round(n * 0.05) + ["repeat"] * round(n * 0.10)
        kinds += ["valid"] * (n - len(kinds))
        rng.shuffle(kinds)
        first_valid = kinds.index("valid")  # a repeat needs an earlier valid event
        kinds[0], kinds[first_valid] = kinds[first_valid], kinds[0]
        stream = cls()
        bad = 0
        for i, kind in enumerate(kinds):
            if kind == "valid":
                event_id = f"{prefix}-{i}"
                stream.valid_ids.append(event_id)
                stream.values.append(ticket(event_id, i))
                stream.expected_reason.append(None)
            elif kind == "repeat":
                stream.values.append(ticket(rng.choice(stream.valid_ids), 10_000 + i))
                stream.expected_reason.append(None)
                stream.repeats += 1
            else:
                reason, make = MALFORMED[bad % len(MALFORMED)]
                bad += 1
                stream.values.append(make(i))
                stream.expected_reason.append(reason)
        return stream


def create_topics(*topics: str, partitions: int = 3) -> None:
    """Create ``topics`` and their ``.dlq`` topics (waits for the broker)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})
    new = [NewTopic(t, partitions, 1) for t in topics] + [NewTopic(t + ".dlq", 1, 1) for t in topics]
    for future in admin.create_topics(new).values():
        future.result(30)


def delete_topics(*topics: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})
    for future in admin.delete_topics([*topics, *(t + ".dlq" for t in topics)]).values():
        future.result(30)


class Producer:
    """An idempotent producer that records where each message landed."""

    def __init__(self) -> None:
        from confluent_kafka import Producer as KafkaProducer

        self.producer = KafkaProducer(
            {"bootstrap.servers": KAFKA_BOOTSTRAP, "enable.idempotence": True, "acks": "all", "linger.ms": 5}
        )
        self.positions: dict[int, tuple[int, int]] = {}  # index in the stream -> (partition, offset)
        self.sent_at: dict[int, float] = {}

    def send(self, topic: str, index: int, value: bytes | None, key: bytes | None = None) -> None:
        def on_delivery(err: Any, msg: Any) -> None:
            assert err is None, f"message {index} not delivered: {err}"
            self.positions[index] = (msg.partition(), msg.offset())

        self.sent_at[index] = time.time()
        self.producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
        self.producer.poll(0)

    def flush(self) -> None:
        assert self.producer.flush(60) == 0


def read_topic(topic: str, settle_s: float = 5.0, timeout_s: float = 60.0) -> list[Any]:
    """Every message on ``topic``, read from the start until nothing new arrives for ``settle_s``."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": KAFKA_BOOTSTRAP,
            "group.id": f"e2e-reader-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    last = time.monotonic()
    deadline = last + timeout_s
    try:
        while time.monotonic() - last < settle_s and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                messages.append(message)
                last = time.monotonic()
    finally:
        consumer.close()
    return messages


def pg_connect(dbname: str) -> Any:
    import psycopg2

    conn = psycopg2.connect(dbname=dbname, connect_timeout=10, **PG)
    conn.autocommit = True
    return conn


def recreate_database(name: str = DB_NAME) -> None:
    """Drop (disconnecting leftovers) and create the metadata database."""
    conn = pg_connect("postgres")
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cur.execute(f'CREATE DATABASE "{name}" OWNER airflow')
    finally:
        conn.close()


class AirflowUnderTest:
    """An Airflow of its own: PostgreSQL metadata DB, LocalExecutor, one process group per part.

    :param tmp: a folder for AIRFLOW_HOME, the DAGs folder and the logs.
    :param extra_env: settings for the Airflow processes (the test DAG's topic, connections).
    """

    def __init__(self, tmp: Path, extra_env: Mapping[str, str]) -> None:
        self.tmp = tmp
        self.home = tmp / "airflow-home"
        self.dags = tmp / "dags"
        self.logs = tmp / "logs"
        for folder in (self.home, self.dags, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(TEST_DAG, self.dags / TEST_DAG.name)
        launcher = load_launcher()
        base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env = launcher.airflow_env(base=base)
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (
                    f"postgresql+psycopg2://airflow:airflow@127.0.0.1:5432/{DB_NAME}"
                ),
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                    self.home / "simple_auth_manager_passwords.json.generated"
                ),
                "AIRFLOW__API__PORT": str(API_PORT),
                "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{API_PORT}",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{API_PORT}/execution/",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": "8795",
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": "8796",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__AGENTFLOW_EVENTS__ENABLED": "False",
                # A restarted triggerer takes over the dead one's triggers once its heartbeat
                # is this old; the default 30 s only makes the test slower.
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "8",
                "PYTHONPATH": str(ROOT),
            }
        )
        env.update(extra_env)
        self.env = env
        self.marker = f"AIRFLOW_HOME={self.home}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.pgids: set[int] = set()
        self.airflow = str(ROOT / ".venv" / "bin" / "airflow")

    def migrate(self) -> None:
        recreate_database()
        with (self.logs / "migrate.log").open("ab") as log:
            subprocess.run(
                [self.airflow, "db", "migrate"],
                env=self.env,
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=300,
            )

    def start(self, name: str) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [self.airflow, *COMPONENTS[name]],
            env=self.env,
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs[name] = proc
        self.pgids.add(proc.pid)

    def start_all(self) -> None:
        for name in COMPONENTS:
            self.start(name)

    def wait_healthy(self, timeout: float = 300) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                assert proc.poll() is None, f"{name} exited ({proc.returncode}):\n{self.tail(name)}"
            try:
                health = httpx.get(f"http://127.0.0.1:{API_PORT}/api/v2/monitor/health", timeout=5).json()
                parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
                bad = [p for p in parts if (health.get(p) or {}).get("status") != "healthy"]
                if not bad:
                    return
                last = f"unhealthy: {bad}"
            except (httpx.HTTPError, ValueError) as exc:
                last = repr(exc)
            time.sleep(2)
        raise AssertionError(f"Airflow not healthy after {timeout}s ({last})")

    def sigkill(self, name: str) -> None:
        """SIGKILL the component's whole process group (a crashed container) and reap it."""
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        deadline = time.monotonic() + 30
        while load_launcher().group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def leftovers(self) -> list[int]:
        """Live processes of this Airflow: in its process groups, or with its AIRFLOW_HOME."""
        launcher = load_launcher()
        found = {pid for pgid in self.pgids for pid in launcher.group_members(pgid)}
        for entry in Path("/proc").iterdir():
            pid = int(entry.name) if entry.name.isdigit() else 0
            if pid and launcher.process_environ_has(pid, self.marker) and launcher.pid_alive(pid):
                found.add(pid)
        found.discard(os.getpid())
        return sorted(found)

    def stop(self, grace: float = 30) -> list[int]:
        """SIGTERM every process group, SIGKILL what is left after ``grace``; return survivors."""
        for pgid in self.pgids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.leftovers() and time.monotonic() < deadline:
            for proc in self.procs.values():
                proc.poll()
            time.sleep(0.5)
        for pid in self.leftovers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        time.sleep(1)
        return self.leftovers()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = pg_connect(DB_NAME)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        finally:
            conn.close()

    def run_outputs(self, dag_id: str, task_id: str) -> dict[str, list[str]]:
        """The XCom return value of ``task_id`` in every run of ``dag_id`` that has one."""
        rows = self.query(
            "SELECT run_id, value FROM xcom WHERE dag_id = %s AND task_id = %s AND key = 'return_value'",
            (dag_id, task_id),
        )
        return {
            run_id: (json.loads(value) if isinstance(value, str | bytes) else value) for run_id, value in rows
        }

    def unfinished_runs(self, dag_id: str) -> int:
        rows = self.query(
            "SELECT count(*) FROM dag_run WHERE dag_id = %s AND state IN ('queued', 'running')", (dag_id,)
        )
        return int(rows[0][0])

    def failed(self, dag_id: str) -> list[tuple[Any, ...]]:
        return self.query(
            "SELECT run_id, task_id, state, try_number FROM task_instance "
            "WHERE dag_id = %s AND state IN ('failed', 'upstream_failed', 'up_for_retry')",
            (dag_id,),
        )


def kafka_connection(group: str) -> str:
    extra = {
        "bootstrap.servers": KAFKA_BOOTSTRAP,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        # A SIGKILLed consumer's partitions are reassigned after this, not the default 45 s.
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        # As config/airflow/connections.env: a fetch the broker holds for want of data is
        # answered within 100 ms, not 500 ms, so an idle partition's next message is seen soon.
        "fetch.wait.max.ms": 100,
    }
    return json.dumps({"conn_type": "kafka", "extra": extra})


def write_registry(path: Path) -> Path:
    path.write_text(
        "topics:\n  'e2e.tickets.*':\n"
        "    payloads: {support.ticket.created: include.events.schemas.SupportTicket}\n"
    )
    return path


@pytest.fixture
def airflow_e2e(services: None, tmp_path: Path) -> Iterator[tuple[AirflowUnderTest, str]]:
    suffix = uuid.uuid4().hex[:10]
    topic = f"e2e.tickets.{suffix}"
    create_topics(topic)
    env = {
        "AGENTFLOW_E2E_TOPIC": topic,
        "AGENTFLOW_E2E_KAFKA_CONN": "kafka_e2e",
        "AGENTFLOW_E2E_REGISTRY": str(write_registry(tmp_path / "payloads.yaml")),
        "AIRFLOW_CONN_KAFKA_E2E": kafka_connection(f"e2e-{suffix}"),
    }
    airflow = AirflowUnderTest(tmp_path, env)
    try:
        airflow.migrate()
        airflow.start_all()
        airflow.wait_healthy()
        yield airflow, topic
    finally:
        survivors = airflow.stop()
        delete_topics(topic)
        assert not survivors, f"processes left running: {survivors}"


@pytest.fixture(scope="session")
def services() -> None:
    """Kafka, Cassandra and PostgreSQL from the project's launcher (idempotent)."""
    import sys

    proc = subprocess.run(
        [sys.executable, str(ROOT / "docker" / "launcher.py"), "up"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"launcher up failed:\n{proc.stdout}\n{proc.stderr}"


def _wait(what: str, done: Callable[[], bool], timeout: float, airflow: AirflowUnderTest) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n--- triggerer\n{airflow.tail('triggerer')}")
        time.sleep(1)


def test_every_valid_event_is_processed_by_exactly_one_run_through_triggerer_crashes(
    airflow_e2e: tuple[AirflowUnderTest, str],
) -> None:
    airflow, topic = airflow_e2e
    n = int(os.environ.get("AGENTFLOW_E2E_KAFKA_EVENTS", DEFAULT_EVENTS))
    stream = Stream.build(n, prefix=f"e2e-{uuid.uuid4().hex[:8]}")
    producer = Producer()
    expected = set(stream.valid_ids)

    def processed() -> set[str]:
        return {e for ids in airflow.run_outputs(DAG_ID, "claim").values() for e in ids}

    # Three slices; the triggerer is killed while it consumes the second and the third.
    def asset_events() -> int:
        """Events the triggerer stored: the envelopes of the topic's asset events (one per batch)."""
        rows = airflow.query(
            "SELECT COALESCE(SUM(COALESCE(json_array_length(extra->'payload'->'envelopes'), 1)), 0) "
            "FROM asset_event WHERE extra::text LIKE %s",
            (f"%{topic}%",),
        )
        return int(rows[0][0])

    def at_least(target: int) -> bool:
        return asset_events() >= target

    slices = [range(0, n // 3), range(n // 3, 2 * n // 3), range(2 * n // 3, n)]
    for number, part in enumerate(slices):
        before = asset_events()
        for i in part:
            producer.send(topic, i, stream.values[i], key=str(i).encode())
            if i % 20 == 0:
                time.sleep(0.05)  # a stream, not one burst
        producer.flush()
        if number < 2:
            # Kill mid-consumption: once about a third of this slice's messages made asset events.
            target = before + len(part) // 3
            _wait("the triggerer to consume part of the slice", partial(at_least, target), 180, airflow)
            airflow.sigkill("triggerer")
            airflow.start("triggerer")

    # Airflow 3.3.2 can leave the last asset events of a burst un-run until another event
    # arrives (apache/airflow#56050: the scheduler's event window ends at the queue row's
    # created_at, and the row is deleted with the events stored after it). So, like live
    # traffic, keep a trickle of valid "tail" events coming until the stream's events are all
    # in runs; each tail event is held to the same once-at-most rule (the last may still wait).
    tail: list[str] = []
    deadline = time.monotonic() + 300
    while not expected <= processed():
        assert time.monotonic() < deadline, (
            f"{len(expected - processed())} valid events never reached a run\n{airflow.tail('triggerer')}"
        )
        tail.append(f"{stream.valid_ids[0]}-tail-{len(tail)}")
        producer.send(topic, n + len(tail), ticket(tail[-1], n + len(tail)))
        producer.flush()
        time.sleep(5)
    _wait("all runs to finish", lambda: airflow.unfinished_runs(DAG_ID) == 0, 120, airflow)

    outputs = airflow.run_outputs(DAG_ID, "claim")
    counts = Counter(e for ids in outputs.values() for e in ids)
    assert set(counts) - set(tail) == expected, f"unexpected ids: {sorted(set(counts) - expected)[:10]}"
    twice = {e: c for e, c in counts.items() if c != 1}
    assert not twice, f"processed by more than one run: {dict(list(twice.items())[:10])}"
    assert not airflow.failed(DAG_ID)

    dead = read_topic(topic + ".dlq")
    where = {pos: i for i, pos in producer.positions.items()}
    got: dict[int, str] = {}
    for message in dead:
        headers = {k: v.decode() for k, v in message.headers() or []}
        index = where[(int(headers[DLQ_PARTITION]), int(headers[DLQ_OFFSET]))]
        assert index not in got, f"message {index} dead-lettered twice"
        got[index] = headers[DLQ_REASON]
        assert message.value() == stream.values[index]
    want = {i: r for i, r in enumerate(stream.expected_reason) if r is not None}
    assert got == want
    runs = airflow.query("SELECT count(*) FROM dag_run WHERE dag_id = %s", (DAG_ID,))[0][0]
    log.info(
        "%d events: %d valid distinct, %d repeats, %d malformed; %d runs, %d asset events, %d tail events",
        n,
        len(expected),
        stream.repeats,
        len(want),
        runs,
        asset_events(),
        len(tail),
    )

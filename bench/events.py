"""Kafka-started runs: ``KafkaEventTrigger`` against the provider's stock ``KafkaMessageQueueTrigger``.

One run, one Airflow (the e2e harness of ``tests/e2e/test_kafka_exactly_once.py``: its own
PostgreSQL database, api-server on :8791, scheduler, dag-processor, triggerer, LocalExecutor)
with two DAGs from ``tests/e2e/dags/kafka_exactly_once_e2e.py``: one scheduled on a topic
watched by ``KafkaEventTrigger`` (validation, Cassandra ledger, commit after store), one on a
topic watched by the stock ``KafkaMessageQueueTrigger`` (which restarts its consumer after
every event). Each is fed in turn the same stream of valid ticket events at ``--rate`` events/s
for ``--events`` events; each event's envelope ``timestamp`` is its produce time.

Measured from the metadata DB: per event, produce time to the ``queued_at`` of the DAG run
that consumed its asset event (p50, p95), split at the time the triggerer stored the asset
event holding it (p95 of each part); sustained events/s into runs (events in runs over
the time from the first produce to the last of those runs being queued); how many events
were stored, in how many asset events (``KafkaEventTrigger`` stores one per batch of a
partition's messages, the stock trigger one per message), and at what rate. An event not in
a run ``--wait`` seconds after the last produce counts as missing. The load average at the
start and the end is recorded: the machine may be shared. Appends a section to
``bench/RESULTS.md`` (not with ``--no-write``).

    .venv/bin/python docker/launcher.py up
    .venv/bin/python bench/events.py --events 2000 --rate 200
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench.events")


def stock_message_value(message: Any) -> Any:
    """The stock trigger's ``apply_function``: the message's JSON, or None (skipped) if it is not JSON."""
    try:
        return json.loads(message.value())
    except (TypeError, ValueError):
        return None


def _envelope(event_id: str, n: int) -> bytes:
    return json.dumps(
        {
            "event_type": "support.ticket.created",
            "event_id": event_id,
            "timestamp": datetime.now(UTC).isoformat(),
            "source": "bench",
            "payload": {"ticket_id": f"T-{n}", "customer_id": f"c-{n % 7}", "subject": "Hi", "body": f"#{n}"},
        }
    ).encode()


def _feed(producer: Any, topic: str, prefix: str, events: int, rate: float) -> float:
    """Produce ``events`` valid events to ``topic`` at ``rate`` per second; return the first send time.

    ``producer`` is the trigger's one producer for the warm-up and the stream: a new idempotent
    producer holds its first messages until it has connected and got its producer id (~0.4 s
    here), which would count as the trigger's latency.
    """
    start = time.time()
    for i in range(events):
        delay = start + i / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        producer.send(topic, i, _envelope(f"{prefix}-{i}", i), key=str(i).encode())
    producer.flush()
    return start


# Each bench event's envelope: our watcher stores a batch per asset event ('envelopes'); asset
# events stored before batching hold one ('envelope'); the stock trigger's hold the message itself.
_EVENTS = """
    CROSS JOIN LATERAL json_array_elements(
        COALESCE(
            ae.extra->'payload'->'envelopes',
            json_build_array(COALESCE(ae.extra->'payload'->'envelope', ae.extra->'payload'))
        )
    ) AS env
"""


def _consumed(airflow: Any, dag_id: str, prefix: str) -> list[tuple[float, float, float]]:
    """(produce time, stored as an asset event, run queued_at) of each bench event in a run of ``dag_id``."""
    rows = airflow.query(
        f"""
        SELECT env->>'timestamp', MIN(dr.queued_at), MIN(ae.timestamp)
        FROM asset_event ae
        JOIN dagrun_asset_event dae ON dae.event_id = ae.id
        JOIN dag_run dr ON dr.id = dae.dag_run_id
        {_EVENTS}
        WHERE dr.dag_id = %s AND env->>'event_id' LIKE %s
        GROUP BY env->>'event_id', 1
        """,
        (dag_id, prefix + "-%"),
    )
    return [
        (datetime.fromisoformat(ts).timestamp(), stored.timestamp(), queued.timestamp())
        for ts, queued, stored in rows
    ]


def _p95(ordered: list[float]) -> float:
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def _stored(airflow: Any, prefix: str) -> tuple[int, int, float]:
    """Bench events stored by the triggerer, in how many asset events, and when the last was stored."""
    rows = airflow.query(
        f"""
        SELECT count(DISTINCT env->>'event_id'), count(DISTINCT ae.id), max(ae.timestamp)
        FROM asset_event ae
        {_EVENTS}
        WHERE env->>'event_id' LIKE %s
        """,
        (prefix + "-%",),
    )
    events, asset_events, last = rows[0]
    return int(events), int(asset_events), last.timestamp() if last is not None else 0.0


def _runs(airflow: Any, dag_id: str, prefix: str, *, unfinished: bool = False) -> int:
    """How many runs of ``dag_id`` consumed bench events with ``prefix`` (only those not finished
    yet with ``unfinished``)."""
    state = " AND dr.state NOT IN ('success', 'failed')" if unfinished else ""
    rows = airflow.query(
        f"""
        SELECT count(DISTINCT dr.id)
        FROM asset_event ae
        JOIN dagrun_asset_event dae ON dae.event_id = ae.id
        JOIN dag_run dr ON dr.id = dae.dag_run_id
        {_EVENTS}
        WHERE dr.dag_id = %s AND env->>'event_id' LIKE %s{state}
        """,
        (dag_id, prefix + "-%"),
    )
    return int(rows[0][0])


def _warm_up(producer: Any, airflow: Any, dag_id: str, topic: str, events: int, rate: float) -> int:
    """Feed ``events`` uncounted events and wait (60 s at most) until they are in runs and those
    runs have finished: the measured stream then meets a running deployment, as live traffic
    does, not the watcher's first poll or the api-server's first task (its execution API loads
    on the first request: ~3.5 s of CPU here, which would otherwise land on the stream)."""
    if events <= 0:
        return 0
    prefix = f"w-{uuid.uuid4().hex[:8]}"
    _feed(producer, topic, prefix, events, rate)
    deadline = time.time() + 60
    done = 0
    while time.time() < deadline:
        done = len(_consumed(airflow, dag_id, prefix))
        if done >= events and not _runs(airflow, dag_id, prefix, unfinished=True):
            break
        time.sleep(1)
    return done


def _measure(harness: Any, airflow: Any, dag_id: str, topic: str, args: argparse.Namespace) -> dict[str, Any]:
    events, rate, wait = args.events, args.rate, args.wait
    producer = harness.Producer()
    warmed = _warm_up(producer, airflow, dag_id, topic, args.warm_up, rate)
    prefix = f"b-{uuid.uuid4().hex[:8]}"
    start = _feed(producer, topic, prefix, events, rate)
    produced_s = time.time() - start
    deadline = time.time() + wait
    done: list[tuple[float, float, float]] = []
    nudges = 0
    while time.time() < deadline:
        done = _consumed(airflow, dag_id, prefix)
        if len(done) >= events:
            break
        # apache/airflow#56050: the last events of a burst wait for a later event; nudge like live traffic.
        nudges += 1
        harness.Producer().send(topic, -1, _envelope(f"nudge-{prefix}-{nudges}", nudges))
        time.sleep(2)
    latencies = sorted(queued - produced for produced, _, queued in done)
    to_store = sorted(stored - produced for produced, stored, _ in done)
    to_queue = sorted(queued - stored for _, stored, queued in done)
    last_queued = max((q for _, _, q in done), default=start)
    stored = _stored(airflow, prefix)
    result: dict[str, Any] = {
        "events": events,
        "in_runs": len(done),
        "produce_s": produced_s,
        "nudges": nudges,
        "warmed_up": warmed,
        "runs": _runs(airflow, dag_id, prefix),
        "stored": stored[0],
        "asset_events": stored[1],
        "stored_per_s": stored[0] / max(stored[2] - start, 1e-9) if stored[0] else 0.0,
    }
    if latencies:
        result["p50"] = statistics.median(latencies)
        result["p95"] = _p95(latencies)
        result["events_per_s"] = len(done) / max(last_queued - start, 1e-9)
        result["store_p95"] = _p95(to_store)
        result["queue_p95"] = _p95(to_queue)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2000, help="events per trigger")
    parser.add_argument("--rate", type=float, default=200.0, help="produce rate, events/s")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds after producing to wait for runs")
    parser.add_argument(
        "--warm-up", type=int, default=20, help="uncounted events fed to each trigger first (0: none)"
    )
    parser.add_argument("--no-write", action="store_true", help="print, do not append to RESULTS.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    load_start = os.getloadavg()[0]

    from tests.e2e import test_kafka_exactly_once as harness

    suffix = uuid.uuid4().hex[:10]
    ours, stock = f"e2e.tickets.{suffix}", f"e2e.stock.{suffix}"
    harness.create_topics(ours, stock)
    tmp = Path(tempfile.mkdtemp(prefix="agentflow-bench-events-"))
    env = {
        "AGENTFLOW_E2E_TOPIC": ours,
        "AGENTFLOW_E2E_KAFKA_CONN": "kafka_bench",
        "AGENTFLOW_E2E_REGISTRY": str(harness.write_registry(tmp / "payloads.yaml")),
        "AIRFLOW_CONN_KAFKA_BENCH": harness.kafka_connection(f"bench-{suffix}"),
        "AGENTFLOW_E2E_STOCK_TOPIC": stock,
        "AGENTFLOW_E2E_STOCK_KAFKA_CONN": "kafka_bench_stock",
        "AIRFLOW_CONN_KAFKA_BENCH_STOCK": harness.kafka_connection(f"bench-stock-{suffix}"),
    }
    airflow = harness.AirflowUnderTest(tmp, env)
    results: dict[str, dict[str, Any]] = {}
    try:
        airflow.migrate()
        airflow.start_all()
        airflow.wait_healthy()
        time.sleep(10)  # both watchers subscribed
        for name, dag_id, topic in (
            ("KafkaEventTrigger (this project)", "kafka_exactly_once_e2e", ours),
            ("KafkaMessageQueueTrigger (stock)", "kafka_stock_e2e", stock),
        ):
            log.info("measuring %s", name)
            results[name] = _measure(harness, airflow, dag_id, topic, args)
            log.info("%s: %s", name, results[name])
    finally:
        survivors = airflow.stop()
        harness.delete_topics(ours, stock)
    if survivors:
        log.error("processes left running: %s", survivors)
        return 1
    report = _report(
        results, args, argv if argv is not None else sys.argv[1:], (load_start, os.getloadavg()[0])
    )
    sys.stdout.write(report + "\n")
    if not args.no_write:
        with RESULTS.open("a") as out:
            out.write("\n" + report)
    return 0


def _report(
    results: dict[str, dict[str, Any]], args: argparse.Namespace, argv: list[str], load: tuple[float, float]
) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    lines = [
        f"## Kafka-started runs: KafkaEventTrigger vs stock KafkaMessageQueueTrigger ({now} UTC)",
        "",
        f"Command: `python bench/events.py {shlex.join(argv)}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()};"
        " Kafka, Cassandra and PostgreSQL from `docker/launcher.py` on the same machine; one Airflow 3.3"
        " (api-server, scheduler, dag-processor, triggerer, LocalExecutor) on its own PostgreSQL DB. Each"
        f" trigger is fed, in turn, {args.warm_up} uncounted warm-up events ('warmed up': how many reached"
        " a run within 60 s; the stream waits for those runs to finish, 60 s at most) from the producer"
        f" that then feeds it {args.events} valid events at {args.rate:g} events/s; latency is produce"
        " time to the `queued_at` of the run that consumed the event; 'stored' counts the events the"
        " triggerer stored, in how many asset events, and 'stored/s' their rate (first produce to last"
        " stored)."
        f" Load average (1 min) {load[0]:.2f} at the start, {load[1]:.2f} at the end.",
        "",
        "| trigger | warmed up | events | stored | asset events | stored/s | in runs | runs | p50 s | p95 s"
        " | p95 produce to stored s | p95 stored to queued s | events/s into runs | vs stock |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    stock = next((r for n, r in results.items() if "stock" in n), {})
    for name, r in results.items():
        ratio = (
            f"{r['events_per_s'] / stock['events_per_s']:.1f}x"
            if r.get("events_per_s") and stock.get("events_per_s")
            else "n/a"
        )
        lines.append(
            f"| {name} | {r.get('warmed_up', 0)} | {r['events']} | {r.get('stored', 0)} |"
            f" {r.get('asset_events', 0)} |"
            f" {r.get('stored_per_s', 0):.1f} |"
            f" {r['in_runs']} | {r['runs']} | {r.get('p50', float('nan')):.2f} |"
            f" {r.get('p95', float('nan')):.2f} | {r.get('store_p95', float('nan')):.2f} |"
            f" {r.get('queue_p95', float('nan')):.2f} | {r.get('events_per_s', 0):.1f} | {ratio} |"
        )
    ours = next((r for n, r in results.items() if "stock" not in n), {})
    latency_met = ours.get("p95", 1e9) <= 2.0 and ours["in_runs"] == ours["events"]
    met = latency_met and ours.get("events_per_s", 0) >= 100
    measured = (
        f"p95 {ours.get('p95', float('nan')):.2f} s, {ours.get('events_per_s', 0):.1f} events/s,"
        f" {ours.get('in_runs', 0)} of {ours.get('events', 0)} events in runs"
    )
    if args.rate <= 100:
        # Events/s into runs counts from the first produce to the last run queued, so it stays
        # just under the feed: a feed of 100 events/s or less can only show the latency half.
        goal = (
            f"Goal, latency half (p95 at most 2 s): {'met' if latency_met else 'NOT met'} ({measured});"
            f" the 100 events/s half needs a --rate above 100."
        )
    else:
        goal = (
            "Goal (p95 at most 2 s, at least 100 events/s into runs):"
            f" {'met' if met else 'NOT met'} ({measured})."
        )
    lines += ["", goal, ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

"""State-store writes: the Cassandra backend against Airflow's default metastore backend.

Measures, in one run and side by side, ``set()`` throughput (writes/s) and latency (p50, p99)
of ``operators.state_store.cassandra.CassandraStoreBackend`` on the local Cassandra node and of
``airflow.state.metastore.MetastoreBackend`` (the default ``[state_store] backend``) on a fresh
SQLite metadata DB, with the same scopes, keys and values (a ~300-byte JSON journal entry with
an ``expires_at``). Cassandra is measured twice: one write at a time (as the metastore runs),
and with ``--concurrency`` writes in flight through the async twin ``aset`` (the driver's
``execute_async``), as an API server under load issues them. Appends a section to
``bench/RESULTS.md``.

    .venv/bin/python docker/launcher.py up
    .venv/bin/python bench/state_store.py --writes 20000 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
SCHEMA = ROOT / "config" / "cassandra" / "010_state_store.cql"
BENCH_DAG = """
from __future__ import annotations
from airflow.sdk import dag, task

@dag(schedule=None, catchup=False)
def state_store_bench():
    @task
    def t() -> None:
        pass
    t()

state_store_bench()
"""

# Airflow reads its configuration on import: point it at a throw-away SQLite DB first.
_HOME = Path(tempfile.mkdtemp(prefix="agentflow-bench-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(_HOME / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
)

DAG_ID = "state_store_bench"


def _value(i: int) -> str:
    return json.dumps(
        {
            "name": "agent__function_toolset__steps.call_tool:record_step",
            "kind": "tool",
            "fingerprint": f"{i:064x}",
            "payload": {"receipt": f"receipt-{i}", "rows": list(range(20))},
        }
    )


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(name: str, latencies: list[float], elapsed: float, concurrency: int) -> dict[str, Any]:
    return {
        "backend": name,
        "concurrency": concurrency,
        "writes": len(latencies),
        "writes_per_s": len(latencies) / elapsed,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
    }


def _prepare_metastore(run_id: str) -> None:
    """Migrate the SQLite DB and create the DAG run the metastore backend requires."""
    (_HOME / "dags").mkdir(parents=True, exist_ok=True)
    (_HOME / "dags" / "state_store_bench.py").write_text(BENCH_DAG)
    airflow = str(Path(sys.executable).parent / "airflow")
    for args in (["db", "migrate"], ["dags", "reserialize"], ["dags", "trigger", DAG_ID, "--run-id", run_id]):
        subprocess.run([airflow, *args], check=True, capture_output=True, env=os.environ.copy())


def bench_metastore(n: int, tasks: int, run_id: str) -> dict[str, Any]:
    from airflow.state import TaskScope
    from airflow.state.metastore import MetastoreBackend

    backend = MetastoreBackend()
    expires = datetime.now(UTC) + timedelta(days=1)
    latencies = []
    start = time.perf_counter()
    for i in range(n):
        scope = TaskScope(dag_id=DAG_ID, run_id=run_id, task_id=f"t{i % tasks}")
        t0 = time.perf_counter()
        backend.set(scope, f"k{i}", _value(i), expires_at=expires)
        latencies.append(time.perf_counter() - t0)
    return _summary("metastore (SQLite, Airflow default)", latencies, time.perf_counter() - start, 1)


def _cassandra_backend() -> Any:
    from cassandra.cluster import Cluster

    from include.state.session import CassandraClient
    from include.state.settings import CassandraSettings
    from operators.state_store.cassandra import CassandraStoreBackend

    cluster = Cluster(["127.0.0.1"], port=9042)
    session = cluster.connect()
    text = "\n".join(line for line in SCHEMA.read_text().splitlines() if not line.lstrip().startswith("--"))
    for statement in filter(None, (part.strip() for part in text.split(";"))):
        session.execute(statement)
    cluster.shutdown()
    settings = CassandraSettings(contact_points=("127.0.0.1",), keyspace="agentflow", local_dc="datacenter1")
    return CassandraStoreBackend(CassandraClient(settings))


def bench_cassandra_sequential(backend: Any, n: int, tasks: int, run_id: str) -> dict[str, Any]:
    from airflow.state import TaskScope

    expires = datetime.now(UTC) + timedelta(days=1)
    latencies = []
    start = time.perf_counter()
    for i in range(n):
        scope = TaskScope(dag_id=DAG_ID, run_id=run_id, task_id=f"t{i % tasks}")
        t0 = time.perf_counter()
        backend.set(scope, f"k{i}", _value(i), expires_at=expires)
        latencies.append(time.perf_counter() - t0)
    return _summary("Cassandra backend, set()", latencies, time.perf_counter() - start, 1)


async def _cassandra_async(backend: Any, n: int, tasks: int, run_id: str, concurrency: int) -> dict[str, Any]:
    from airflow.state import TaskScope

    expires = datetime.now(UTC) + timedelta(days=1)
    latencies: list[float] = []
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with slots:
            scope = TaskScope(dag_id=DAG_ID, run_id=run_id, task_id=f"t{i % tasks}")
            t0 = time.perf_counter()
            await backend.aset(scope, f"k{i}", _value(i), expires_at=expires)
            latencies.append(time.perf_counter() - t0)

    await backend.aset(TaskScope(DAG_ID, run_id, "warm"), "k", "1")  # prepare outside the timing
    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return _summary("Cassandra backend, aset()", latencies, time.perf_counter() - start, concurrency)


def _append(results: list[dict[str, Any]], command: str, args: argparse.Namespace) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## State store writes: Cassandra backend vs metastore ({stamp})",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"Cassandra 5.0 single node from `docker/launcher.py` on the same machine. {args.writes} writes "
        f"of a ~{len(_value(0))}-byte JSON value with an `expires_at`, over {args.tasks} task scopes.",
        "",
        "| backend | in flight | writes | writes/s | p50 ms | p99 ms | writes/s vs metastore |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    base = results[0]["writes_per_s"]
    for r in results:
        lines.append(
            f"| {r['backend']} | {r['concurrency']} | {r['writes']} | {r['writes_per_s']:,.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['writes_per_s'] / base:.2f}x |"
        )
    best = results[-1]
    verdict = "met" if best["writes_per_s"] >= 5000 and best["p99_ms"] <= 20 else "NOT met"
    lines += [
        "",
        f"Goal (at least 5,000 writes/s with p99 at most 20 ms on one node): {verdict} "
        f"({best['writes_per_s']:,.0f} writes/s, p99 {best['p99_ms']:.2f} ms "
        f"with {best['concurrency']} in flight).",
        "",
    ]
    section = "\n".join(lines)
    with open(RESULTS, "a", encoding="utf-8") as out:
        out.write("\n" + section)
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=20000, help="writes per measurement")
    parser.add_argument("--metastore-writes", type=int, default=2000, help="writes for the metastore")
    parser.add_argument("--concurrency", type=int, default=64, help="Cassandra writes in flight")
    parser.add_argument("--tasks", type=int, default=100, help="task scopes the writes spread over")
    args = parser.parse_args()
    run_id = f"bench_{int(time.time())}"

    _prepare_metastore(run_id)
    backend = _cassandra_backend()
    results = [
        bench_metastore(args.metastore_writes, args.tasks, run_id),
        bench_cassandra_sequential(backend, args.metastore_writes, args.tasks, run_id),
        asyncio.run(_cassandra_async(backend, args.writes, args.tasks, run_id, args.concurrency)),
    ]
    from airflow.state import TaskScope

    for task_id in ["warm", *(f"t{i}" for i in range(args.tasks))]:
        backend.clear(TaskScope(DAG_ID, run_id, task_id), all_map_indices=True)
    backend.client.close()
    command = "python bench/state_store.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print(_append(results, command.strip(), args))


if __name__ == "__main__":
    main()

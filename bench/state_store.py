"""State-store writes: the Cassandra backend against Airflow's default metastore backend.

Measures, in one run and side by side, ``set()`` throughput (writes/s) and latency (p50, p99)
of ``operators.state_store.cassandra.CassandraStoreBackend`` on the local Cassandra node and of
``airflow.state.metastore.MetastoreBackend`` (the default ``[state_store] backend``) on a fresh
SQLite metadata DB, with the same scopes, keys and values (a ~300-byte JSON journal entry with
an ``expires_at``). Cassandra is measured one write at a time (as the metastore runs), and with
``--concurrency`` writes in flight through the async twin ``aset`` as an API server under load
issues them: once with one request per write (the driver's ``execute_async``, the backend's
path before group commit, kept as the baseline) and once through the backend's group commit
(concurrent writes leave as unlogged batches), in one process and, with ``--processes``, in
several (as several API-server workers). Records the load average, since the machine may be
shared. Appends a section to ``bench/RESULTS.md`` (not with ``--no-write``).

    .venv/bin/python docker/launcher.py up
    .venv/bin/python bench/state_store.py --writes 20000 --concurrency 32 --processes 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
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


def _cassandra_backend(*, apply_schema: bool = True) -> Any:
    from include.state.migrate import split_cql
    from include.state.session import CassandraClient
    from include.state.settings import CassandraSettings
    from operators.state_store.cassandra import CassandraStoreBackend

    if apply_schema:
        from cassandra.cluster import Cluster

        cluster = Cluster(["127.0.0.1"], port=9042)
        session = cluster.connect()
        for statement in split_cql(SCHEMA.read_text()):
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


async def _cassandra_async(
    backend: Any, n: int, tasks: int, run_id: str, concurrency: int, *, group_commit: bool = True
) -> tuple[list[float], float]:
    """Write ``n`` keys with ``concurrency`` in flight; return the latencies and the elapsed time.

    ``group_commit=False`` sends one request per write (the backend's ``_arun``, which its
    reads, deletes and clears still use): the ``aset`` path before group commit.
    """
    from airflow.state import TaskScope

    expires = datetime.now(UTC) + timedelta(days=1)
    latencies: list[float] = []
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with slots:
            scope = TaskScope(dag_id=DAG_ID, run_id=run_id, task_id=f"t{i % tasks}")
            t0 = time.perf_counter()
            if group_commit:
                await backend.aset(scope, f"k{i}", _value(i), expires_at=expires)
            else:
                await backend._arun(*backend._set_params(scope, f"k{i}", _value(i), expires))
            latencies.append(time.perf_counter() - t0)

    await backend.aset(TaskScope(DAG_ID, run_id, "warm"), "k", "1")  # prepare outside the timing
    await backend._arun(*backend._set_params(TaskScope(DAG_ID, run_id, "warm"), "k", "1", None))
    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return latencies, time.perf_counter() - start


def bench_processes(n: int, tasks: int, run_id: str, concurrency: int, processes: int) -> dict[str, Any]:
    """``processes`` writer processes at once, ``n`` writes in all: aggregate writes/s, merged p99."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    start_flags = [ctx.Event() for _ in range(processes)]
    procs = [
        ctx.Process(
            target=_run_worker,
            args=((i, n // processes, run_id, tasks, concurrency), results, start_flags[i]),
        )
        for i in range(processes)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        kind, _index = results.get(timeout=120)
        assert kind == "ready"
    t0 = time.perf_counter()
    for flag in start_flags:
        flag.set()
    latencies: list[float] = []
    for _ in procs:
        kind, lat, _elapsed = results.get(timeout=600)
        latencies += lat
    elapsed = time.perf_counter() - t0
    for proc in procs:
        proc.join(timeout=60)
    name = f"Cassandra backend, aset(), group commit, {processes} processes"
    return _summary(name, latencies, elapsed, concurrency * processes)


def _run_worker(args: tuple[int, int, str, int, int], queue: Any, go: Any) -> None:
    index, n, run_id, tasks, concurrency = args
    backend = _cassandra_backend(apply_schema=False)
    asyncio.run(backend.aset(_task_scope(run_id, "warm"), "k", "1"))  # connect and prepare first
    queue.put(("ready", index))
    go.wait()
    latencies, elapsed = asyncio.run(_cassandra_async(backend, n, tasks, f"{run_id}-p{index}", concurrency))
    backend.client.close()
    queue.put(("done", latencies, elapsed))


def _task_scope(run_id: str, task_id: str) -> Any:
    from airflow.state import TaskScope

    return TaskScope(DAG_ID, run_id, task_id)


def _append(
    results: list[dict[str, Any]], command: str, args: argparse.Namespace, load: tuple[float, float]
) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## State store writes: Cassandra backend vs metastore ({stamp})",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"Cassandra 5.0 single node from `docker/launcher.py` on the same machine. {args.writes} writes "
        f"of a ~{len(_value(0))}-byte JSON value with an `expires_at`, over {args.tasks} task scopes. "
        f"Load average (1 min) {load[0]:.2f} at the start, {load[1]:.2f} at the end.",
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
    best = max(results, key=lambda r: (r["writes_per_s"] >= 5000 and r["p99_ms"] <= 20, r["writes_per_s"]))
    verdict = "met" if best["writes_per_s"] >= 5000 and best["p99_ms"] <= 20 else "NOT met"
    lines += [
        "",
        f"Goal (at least 5,000 writes/s with p99 at most 20 ms on one node): {verdict} "
        f"(best: {best['backend']}, {best['writes_per_s']:,.0f} writes/s, p99 {best['p99_ms']:.2f} ms "
        f"with {best['concurrency']} in flight).",
        "",
    ]
    section = "\n".join(lines)
    if not args.no_write:
        with open(RESULTS, "a", encoding="utf-8") as out:
            out.write("\n" + section)
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=20000, help="writes per measurement")
    parser.add_argument("--metastore-writes", type=int, default=2000, help="writes for the metastore")
    parser.add_argument("--concurrency", type=int, default=32, help="Cassandra writes in flight per process")
    parser.add_argument("--tasks", type=int, default=100, help="task scopes the writes spread over")
    parser.add_argument("--processes", type=int, default=0, help="also measure this many writer processes")
    parser.add_argument("--no-write", action="store_true", help="print, do not append to RESULTS.md")
    args = parser.parse_args()
    run_id = f"bench_{int(time.time())}"
    load_start = os.getloadavg()[0]

    _prepare_metastore(run_id)
    backend = _cassandra_backend()
    results = [
        bench_metastore(args.metastore_writes, args.tasks, run_id),
        bench_cassandra_sequential(backend, args.metastore_writes, args.tasks, run_id),
    ]
    for name, group_commit in (
        ("Cassandra backend, aset(), one request per write (before)", False),
        ("Cassandra backend, aset(), group commit", True),
    ):
        latencies, elapsed = asyncio.run(
            _cassandra_async(
                backend, args.writes, args.tasks, run_id, args.concurrency, group_commit=group_commit
            )
        )
        results.append(_summary(name, latencies, elapsed, args.concurrency))
    run_ids = [run_id]
    if args.processes > 1:
        results.append(bench_processes(args.writes, args.tasks, run_id, args.concurrency, args.processes))
        run_ids += [f"{run_id}-p{i}" for i in range(args.processes)]
    from airflow.state import TaskScope

    for rid in run_ids:
        for task_id in ["warm", *(f"t{i}" for i in range(args.tasks))]:
            backend.clear(TaskScope(DAG_ID, rid, task_id), all_map_indices=True)
    backend.client.close()
    command = "python bench/state_store.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print(_append(results, command.strip(), args, (load_start, os.getloadavg()[0])))


if __name__ == "__main__":
    main()

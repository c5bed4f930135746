"""The ``agentflow_ui`` plugin: agent runs, run transcripts and the Kafka event flow in the Airflow UI.

A FastAPI app mounted by Airflow's api-server at ``/agentflow`` (``fastapi_apps``), shown in
the Airflow UI through ``external_views`` (iframes on the same origin):

* **Agent runs** (nav): the agent task runs of a UTC day, newest first, filterable by DAG:
  status, model, tokens in/out, tool calls, latency, guardrail hits.
* **Agent run** (a DAG run's and a task instance's tab): the transcript (messages, tool
  calls with arguments and results, ``[REDACTED:...]`` placeholders marked), the run's
  audit records (approval decisions, guardrail hits) and, for a run waiting for approval,
  a link to Airflow's Required Actions.
* **Events** (nav): per Kafka topic, messages consumed by the watcher's consumer group,
  its lag, the dead-letter topic's size and its last messages' reasons, and duplicates
  (from ``include.state.eventflow`` when it is installed).

Pages are rendered on the server with Jinja2 autoescaping (no script runs on them, so
transcript text is inert); the same data is JSON under ``/agentflow/api``. Every route
goes through Airflow's auth manager exactly like the core API (``GetUserDep``: the JWT
bearer token, or the UI's ``_token`` cookie): no credentials answers 401, an invalid token
or a user without the permission 403. Runs need DAG task-instance read access
(``requires_access_dag``), the event flow asset read access (``requires_access_asset``).

Settings (``[agentflow_ui]``): ``cassandra_conn_id`` (default ``cassandra_default``; the
embedded SQLite state when it is not defined), ``kafka_config_id`` (``kafka_default``),
``topics_file`` (``config/kafka/topics.yaml``), ``dlq_suffix`` (``.dlq``),
``dlq_last_messages`` (10), ``kafka_timeout_s`` (10).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote, urlparse

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_asset, requires_access_dag
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse

if TYPE_CHECKING:
    from jinja2 import Environment

    from include.state.runs import AgentRunSummary

log = logging.getLogger(__name__)

URL_PREFIX = "/agentflow"
ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = Path(__file__).resolve().parent / "agentflow_ui" / "templates"
DEFAULT_TOPICS_FILE = ROOT / "config" / "kafka" / "topics.yaml"
REDACTION = re.compile(r"\[REDACTED:[^\]\s]{1,64}\]")
MAX_LIMIT = 1000
DLQ_HEADER_PREFIX = "agentflow.dlq."  # operators/triggers/kafka_events.py


# -- settings and data access ------------------------------------------------------------


def _setting(key: str, fallback: str) -> str:
    from airflow.configuration import conf

    return str(conf.get("agentflow_ui", key, fallback=fallback))


def _airflow_path(path: str) -> str:
    """``path`` under the path of ``[api] base_url`` (for deployments not at the root)."""
    from airflow.configuration import conf

    base = str(conf.get("api", "base_url", fallback="/") or "/")
    base_path = urlparse(base).path if base.startswith(("http://", "https://")) else base
    return base_path.rstrip("/") + path


@contextmanager
def _backend() -> Iterator[Any]:
    """The configured state backend (Cassandra, or the embedded SQLite default), closed after use."""
    from operators.hooks.cassandra import state_backend

    backend = state_backend(_setting("cassandra_conn_id", "cassandra_default"))
    try:
        yield backend
    finally:
        backend.close()


def _not_found(message: str) -> HTTPException:
    return HTTPException(status_code=404, detail=message)


def _parse_day(day: str | None) -> date:
    if not day:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(day)
    except ValueError:
        raise HTTPException(
            status_code=400, detail=f"day must be a date as YYYY-MM-DD, got {day!r}"
        ) from None


def _authorized_dag_ids(user: Any) -> set[str]:
    """The DAG ids ``user`` may read (the auth manager's answer)."""
    from airflow.api_fastapi.app import get_auth_manager

    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


def list_runs(day: date, dag_id: str | None, limit: int, user: Any) -> list[AgentRunSummary]:
    """The runs of ``day`` the user may see, newest first."""
    with _backend() as backend:
        runs: list[AgentRunSummary] = backend.agent_runs().list_runs(day, dag_id=dag_id, limit=limit)
    allowed = _authorized_dag_ids(user)
    return [run for run in runs if run.dag_id in allowed]


def audit_of(summaries: list[AgentRunSummary], dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """The audit records of one DAG run, newest first, read from the days its agent tasks ran."""
    days = sorted({d for s in summaries for d in (s.started_at.date(), s.finished_at.date())}, reverse=True)
    if any(s.status == "awaiting_approval" for s in summaries):
        days = sorted({*days, datetime.now(UTC).date()}, reverse=True)  # decisions come later
    with _backend() as backend:
        trail = backend.audit()
        records = [r for day in days for r in trail.read(dag_id, day, limit=1000, run_id=run_id)]
    return [r.model_dump(mode="json") for r in records]


def required_actions_url(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """Airflow's Required Actions page of a task instance (the UI's own route)."""
    path = f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id, safe='')}"
    if map_index >= 0:
        path += f"/mapped/{map_index}"
    return _airflow_path(path + "/required_actions")


def approvals_of(dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """The DAG run's human-in-the-loop requests (Airflow's HITL details), pending ones with their link."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    query = (
        select(
            TaskInstance.task_id,
            TaskInstance.map_index,
            HITLDetail.subject,
            HITLDetail.responded_at,
            HITLDetail.responded_by,
            HITLDetail.chosen_options,
        )
        .join(HITLDetail, HITLDetail.ti_id == TaskInstance.id)
        .where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        .order_by(TaskInstance.task_id, TaskInstance.map_index)
    )
    with create_session(scoped=False) as session:
        rows = session.execute(query).all()
    return [
        {
            "task_id": task_id,
            "map_index": map_index,
            "subject": subject,
            "pending": responded_at is None,
            "responded_at": responded_at.isoformat() if responded_at else None,
            "responded_by": responded_by.get("name") if isinstance(responded_by, dict) else None,
            "chosen_options": chosen or [],
            "url": required_actions_url(dag_id, run_id, task_id, map_index),
        }
        for task_id, map_index, subject, responded_at, responded_by, chosen in rows
    ]


# -- transcripts --------------------------------------------------------------------------


def segments(text: str) -> list[dict[str, Any]]:
    """Split text into plain and ``[REDACTED:...]`` segments (the template marks the latter)."""
    out: list[dict[str, Any]] = []
    last = 0
    for match in REDACTION.finditer(text):
        if match.start() > last:
            out.append({"text": text[last : match.start()], "redacted": False})
        out.append({"text": match.group(0), "redacted": True})
        last = match.end()
    if last < len(text) or not out:
        out.append({"text": text[last:], "redacted": False})
    return out


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def transcript_items(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """pydantic-ai messages (JSON) as display items: who, what kind, text segments, tool name."""
    items: list[dict[str, Any]] = []

    def add(role: str, kind: str, text: str, tool: str | None = None, call_id: str | None = None) -> None:
        items.append(
            {"role": role, "kind": kind, "segments": segments(text), "tool": tool, "call_id": call_id}
        )

    shown_instructions = None
    for message in messages:
        kind = message.get("kind")
        if kind == "agentflow-truncated":
            add(
                "note",
                "truncated",
                f"{message.get('omitted_messages')} message(s) left out: the transcript was "
                f"{message.get('original_bytes')} bytes, more than the store keeps",
            )
            continue
        if message.get("instructions") and message["instructions"] != shown_instructions:
            shown_instructions = message["instructions"]  # pydantic-ai repeats them on every request
            add("system", "instructions", str(shown_instructions))
        for part in message.get("parts") or []:
            part_kind = str(part.get("part_kind", "unknown"))
            role = {"user-prompt": "user", "system-prompt": "system"}.get(
                part_kind, "model" if kind == "response" else "request"
            )
            if part_kind == "tool-call":
                text = _pretty(part.get("args"))
            else:
                content = part.get("content")
                text = (
                    content if isinstance(content, str) and part_kind != "tool-return" else _pretty(content)
                )
            add(role, part_kind, text, part.get("tool_name"), part.get("tool_call_id"))
    return items


# -- Kafka --------------------------------------------------------------------------------


def _topics() -> list[dict[str, Any]]:
    import yaml

    path = Path(_setting("topics_file", str(DEFAULT_TOPICS_FILE)))
    data = yaml.safe_load(path.read_text()) or {}
    return list(data.get("topics") or [])


def _kafka(kafka_config_id: str, overrides: dict[str, Any]) -> Any:
    """A confluent-kafka Consumer from the provider's connection handling, with ``overrides``."""
    from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook

    class _ConsumerHook(KafkaBaseHook):
        def _get_client(self, config: dict[str, Any]) -> Any:
            from confluent_kafka import Consumer

            return Consumer({**config, **overrides})

    hook = _ConsumerHook(kafka_config_id=kafka_config_id)
    return hook.get_conn


def _group_id(kafka_config_id: str) -> str:
    from airflow.sdk import BaseHook

    group = BaseHook.get_connection(kafka_config_id).extra_dejson.get("group.id")
    if not group:
        raise HTTPException(
            status_code=503,
            detail=f"Kafka connection {kafka_config_id!r} sets no group.id (the watcher's group)",
        )
    return str(group)


def event_flow() -> dict[str, Any]:
    """Per topic: consumed and lag of the watcher's group, DLQ size and last reasons, duplicates.

    :raises HTTPException: 503 when Kafka cannot be reached.
    """
    from confluent_kafka import KafkaException, TopicPartition

    kafka_config_id = _setting("kafka_config_id", "kafka_default")
    suffix = _setting("dlq_suffix", ".dlq")
    last_n = int(_setting("dlq_last_messages", "10"))
    timeout = float(_setting("kafka_timeout_s", "10"))
    group = _group_id(kafka_config_id)
    names = [str(t["name"]) for t in _topics()]
    counters, counters_note = _duplicate_counters()
    today = datetime.now(UTC).date()
    offsets = _kafka(kafka_config_id, {"group.id": group, "enable.auto.commit": False})
    rows: list[dict[str, Any]] = []
    try:
        metadata = offsets.list_topics(timeout=timeout)
        for name in names:
            if name.endswith(suffix):
                continue
            row: dict[str, Any] = {"topic": name, "dlq_topic": None, "dlq": None, "last_dlq": []}
            partitions = sorted(metadata.topics[name].partitions) if name in metadata.topics else []
            committed = offsets.committed([TopicPartition(name, p) for p in partitions], timeout=timeout)
            consumed = lag = 0
            any_commit = False
            for tp in committed:
                low, high = offsets.get_watermark_offsets(TopicPartition(name, tp.partition), timeout=timeout)
                if tp.offset >= 0:
                    any_commit = True
                    consumed += tp.offset - low if tp.offset >= low else 0
                    lag += max(high - tp.offset, 0)
                else:
                    lag += high - low
            row["partitions"] = len(partitions)
            row["consumed"] = consumed if any_commit else None
            row["lag"] = lag if any_commit else None
            dlq_name = name + suffix
            if dlq_name in metadata.topics:
                row["dlq_topic"] = dlq_name
                row["dlq"], row["last_dlq"] = _dlq(kafka_config_id, dlq_name, metadata, last_n, timeout)
            row["duplicates_today"] = None
            if counters is not None:
                today_counts = counters(name, today)
                row["duplicates_today"] = today_counts.get("duplicates")
                row["counters_today"] = today_counts
            rows.append(row)
    except KafkaException as exc:
        raise HTTPException(
            status_code=503, detail=f"Kafka ({kafka_config_id}) cannot be read: {exc}"
        ) from exc
    finally:
        offsets.close()
    return {"group_id": group, "day": today.isoformat(), "topics": rows, "duplicates_note": counters_note}


def _dlq(
    kafka_config_id: str, topic: str, metadata: Any, last_n: int, timeout: float
) -> tuple[int, list[dict[str, Any]]]:
    """The dead-letter topic's message count and its last ``last_n`` messages' reason headers."""
    import time
    import uuid

    from confluent_kafka import TopicPartition

    reader = _kafka(
        kafka_config_id,
        {
            "group.id": f"agentflow-ui-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        },
    )
    try:
        total = 0
        starts: list[Any] = []
        ends: dict[int, int] = {}
        for partition in sorted(metadata.topics[topic].partitions):
            low, high = reader.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            total += high - low
            if high > low:
                starts.append(TopicPartition(topic, partition, max(low, high - last_n)))
                ends[partition] = high
        found: list[dict[str, Any]] = []
        if starts:
            reader.assign(starts)
            deadline = time.monotonic() + timeout
            while ends and time.monotonic() < deadline:
                message = reader.poll(0.5)
                if message is None or message.error():
                    continue
                headers = {
                    key[len(DLQ_HEADER_PREFIX) :]: (value.decode(errors="replace") if value else "")
                    for key, value in (message.headers() or [])
                    if key.startswith(DLQ_HEADER_PREFIX)
                }
                found.append(
                    {
                        "partition": message.partition(),
                        "offset": message.offset(),
                        "timestamp_ms": message.timestamp()[1],
                        "reason": headers.get("reason", "unknown"),
                        "detail": headers.get("detail", ""),
                        "original": "{}[{}]@{}".format(
                            headers.get("original_topic", "?"),
                            headers.get("original_partition", "?"),
                            headers.get("original_offset", "?"),
                        ),
                    }
                )
                if message.offset() + 1 >= ends.get(message.partition(), 0):
                    ends.pop(message.partition(), None)
        found.sort(key=lambda m: (m["timestamp_ms"] or 0, m["offset"]), reverse=True)
        return total, found[:last_n]
    finally:
        reader.close()


def _duplicate_counters() -> tuple[Callable[[str, date], dict[str, int]] | None, str | None]:
    """``EventFlowCounters(client).read`` on the Cassandra state, with a note on the embedded one."""
    from include.state.eventflow import EventFlowCounters
    from operators.hooks.cassandra import CassandraHook, state_backend

    backend = state_backend(_setting("cassandra_conn_id", "cassandra_default"))
    if not isinstance(backend, CassandraHook):
        return None, "n/a: the embedded state keeps no event-flow counters (the watcher needs Cassandra)"
    return EventFlowCounters(backend.get_conn()).read, None


# -- the app ------------------------------------------------------------------------------


def _templates() -> Environment:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
    )
    env.filters["ms"] = lambda ms: f"{ms / 1000:.2f} s" if ms is not None else ""
    env.filters["pretty"] = _pretty
    return env


def _page(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    html = (
        _templates()
        .get_template(template)
        .render(base=root, airflow=_airflow_path(""), quote=lambda v: quote(str(v), safe=""), **values)
    )
    return HTMLResponse(
        html,
        status_code=status_code,
        # No script on these pages: transcripts are data, never code.
        headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'"
        },
    )


READ_RUNS = Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.TASK_INSTANCE))
READ_EVENTS = Depends(requires_access_asset(method="GET"))
DayQuery = Annotated[str | None, Query(description="UTC day, YYYY-MM-DD; default today")]
DagQuery = Annotated[str | None, Query(description="only this DAG's runs")]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
MapIndexQuery = Annotated[int, Query(ge=-1)]

app = FastAPI(
    title="AgentFlow UI",
    description="Agent runs, transcripts and the Kafka event flow, behind Airflow's auth manager.",
    openapi_url=None,  # every route needs credentials; no anonymous schema or docs pages
    docs_url=None,
    redoc_url=None,
)


@app.exception_handler(HTTPException)
async def _errors(request: Request, exc: HTTPException) -> Any:
    """JSON under ``/api`` (``{"detail": ...}``), a readable page elsewhere; auth errors stay JSON."""
    path = request.url.path[len(request.scope.get("root_path", "")) :]
    if path.startswith("/ui/") and exc.status_code in (400, 404, 503):
        return _page(request, "error.html", status_code=exc.status_code, message=exc.detail)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _run_page_data(dag_id: str, run_id: str, task_id: str | None, map_index: int) -> dict[str, Any]:
    with _backend() as backend:
        store = backend.agent_runs()
        tasks = store.runs_of(dag_id, run_id)
        if not tasks:
            raise _not_found(f"no agent run recorded for DAG {dag_id!r} run {run_id!r}")
        if task_id is None:
            chosen = tasks[0]
            task_id, map_index = chosen.task_id, chosen.map_index
        found = store.get(dag_id, run_id, task_id, map_index)
    if found is None:
        raise _not_found(
            f"no agent run recorded for task {task_id!r} (map index {map_index}) "
            f"of DAG {dag_id!r} run {run_id!r}"
        )
    summary, transcript = found
    return {
        "summary": summary,
        "tasks": tasks,
        "transcript": transcript,
        "audit": audit_of([summary], dag_id, run_id),
        "required_actions_url": required_actions_url(dag_id, run_id, summary.task_id, summary.map_index)
        if summary.status == "awaiting_approval"
        else None,
        "approvals": approvals_of(dag_id, run_id),
    }


# JSON API


@app.get("/api/runs", dependencies=[READ_RUNS])
def api_runs(user: GetUserDep, day: DayQuery = None, dag_id: DagQuery = None, limit: LimitQuery = 100) -> Any:
    """The agent runs of a UTC day, newest first."""
    when = _parse_day(day)
    runs = list_runs(when, dag_id or None, limit, user)
    return {"day": when.isoformat(), "dag_id": dag_id, "runs": [r.model_dump(mode="json") for r in runs]}


@app.get("/api/runs/{dag_id}/{run_id}", dependencies=[READ_RUNS])
def api_dag_run(dag_id: str, run_id: str) -> Any:
    """The agent tasks of one DAG run (latest try each)."""
    with _backend() as backend:
        tasks = backend.agent_runs().runs_of(dag_id, run_id)
    if not tasks:
        raise _not_found(f"no agent run recorded for DAG {dag_id!r} run {run_id!r}")
    return {"dag_id": dag_id, "run_id": run_id, "tasks": [t.model_dump(mode="json") for t in tasks]}


@app.get("/api/runs/{dag_id}/{run_id}/{task_id}", dependencies=[READ_RUNS])
def api_run(dag_id: str, run_id: str, task_id: str, map_index: MapIndexQuery = -1) -> Any:
    """One agent task's latest try: summary, transcript, audit records, Required Actions link."""
    data = _run_page_data(dag_id, run_id, task_id, map_index)
    return {
        "summary": data["summary"].model_dump(mode="json"),
        "transcript": data["transcript"],
        "audit": data["audit"],
        "required_actions_url": data["required_actions_url"],
        "approvals": data["approvals"],
    }


@app.get("/api/sessions/{session_id}", dependencies=[READ_RUNS])
def api_session(session_id: str) -> Any:
    """A conversation session's stored memory turns, oldest first."""
    return {"session_id": session_id, "turns": _session_turns(session_id)}


@app.get("/api/events", dependencies=[READ_EVENTS])
def api_events() -> Any:
    """The Kafka event flow per topic."""
    return event_flow()


def _session_turns(session_id: str) -> list[dict[str, Any]]:
    from pydantic_ai.messages import ModelMessagesTypeAdapter

    with _backend() as backend:
        turns = backend.memory().turns(session_id, last_turns=None)
    if not turns:
        raise _not_found(f"no conversation stored for session {session_id!r}")
    return [
        {
            "at": turn.at.isoformat(),
            "run_id": turn.run_id,
            "tokens": turn.tokens,
            "messages": ModelMessagesTypeAdapter.dump_python(turn.messages, mode="json"),
        }
        for turn in turns
    ]


# HTML pages


@app.get("/ui/runs", response_class=HTMLResponse, dependencies=[READ_RUNS])
def page_runs(
    request: Request, user: GetUserDep, day: DayQuery = None, dag_id: DagQuery = None, limit: LimitQuery = 100
) -> HTMLResponse:
    """The Agent runs page."""
    when = _parse_day(day)
    runs = list_runs(when, dag_id or None, limit, user)
    return _page(
        request,
        "runs.html",
        runs=runs,
        day=when.isoformat(),
        previous_day=(when - timedelta(days=1)).isoformat(),
        next_day=(when + timedelta(days=1)).isoformat(),
        dag_id=dag_id or "",
        limit=limit,
    )


@app.get("/ui/runs/{dag_id}/{run_id}", response_class=HTMLResponse, dependencies=[READ_RUNS])
def page_dag_run(request: Request, dag_id: str, run_id: str) -> HTMLResponse:
    """A DAG run's agent run page (its first agent task; the others are linked)."""
    data = _run_page_data(dag_id, run_id, None, -1)
    return _page(request, "run.html", items=transcript_items(data["transcript"]), **data)


@app.get("/ui/runs/{dag_id}/{run_id}/{task_id}", response_class=HTMLResponse, dependencies=[READ_RUNS])
def page_run(
    request: Request, dag_id: str, run_id: str, task_id: str, map_index: MapIndexQuery = -1
) -> HTMLResponse:
    """One agent task's run page: transcript, tokens, audit records."""
    data = _run_page_data(dag_id, run_id, task_id, map_index)
    return _page(request, "run.html", items=transcript_items(data["transcript"]), **data)


@app.get("/ui/sessions/{session_id}", response_class=HTMLResponse, dependencies=[READ_RUNS])
def page_session(request: Request, session_id: str) -> HTMLResponse:
    """A conversation session's stored turns."""
    turns = _session_turns(session_id)
    for turn in turns:
        turn["items"] = transcript_items(turn["messages"])
    return _page(request, "session.html", session_id=session_id, turns=turns)


@app.get("/ui/events", response_class=HTMLResponse, dependencies=[READ_EVENTS])
def page_events(request: Request) -> HTMLResponse:
    """The Events page."""
    return _page(request, "events.html", flow=event_flow())


def _view(name: str, path: str, destination: str, url_route: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "href": _airflow_path(URL_PREFIX + path),
        "destination": destination,
        "url_route": url_route,
        **extra,
    }


class AgentFlowUIPlugin(AirflowPlugin):
    """Registers the AgentFlow UI app at ``/agentflow`` and its views in the Airflow UI."""

    name = "agentflow_ui"
    fastapi_apps = [{"name": "agentflow-ui", "app": app, "url_prefix": URL_PREFIX}]
    external_views = [
        _view("Agent runs", "/ui/runs", "nav", "agent-runs", category="browse"),
        _view("Events", "/ui/events", "nav", "agentflow-events", category="browse"),
        _view("Agent run", "/ui/runs/{DAG_ID}/{RUN_ID}", "dag_run", "agent-run"),
        _view(
            "Agent run",
            "/ui/runs/{DAG_ID}/{RUN_ID}/{TASK_ID}?map_index={MAP_INDEX}",
            "task_instance",
            "agent-task",
        ),
    ]

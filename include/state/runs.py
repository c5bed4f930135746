"""Agent runs: one summary and one transcript per agent task try, for the operators' UI.

The agent operator records a run when it finishes (or stops to wait for an approval):
its :class:`AgentRunSummary` (status, model, tokens, tool calls, latency, guardrail hits)
and its transcript, pydantic-ai's messages as JSON
(``ModelMessagesTypeAdapter.dump_python(messages, mode="json")``).

Two tables (``config/cassandra/006_agent_runs.cql``), both living ``audit_ttl_s``:

* ``agent_runs_by_hour``: the listing, one partition per UTC hour of a day (bounded),
  newest first; ``list_runs`` reads a day's 24 partitions from the last hour back.
* ``agent_run_transcripts``: one partition per DAG run, the latest try of each task first;
  ``get`` reads one row.

A transcript larger than ``max_value_bytes`` is stored truncated, never refused: the
run stays visible with its summary. :func:`truncate_transcript` keeps the first message
(the prompt) and as many of the last messages as fit, with a marker message in between
saying how many were left out (:data:`TRUNCATION_MARKER`). A transcript that is not JSON
is refused (``NotJSONError``) and nothing is written.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from include.errors import NotJSONError
from include.state._values import check_key, dump_json
from include.state.session import CassandraClient

log = logging.getLogger(__name__)

#: The most runs one ``list_runs`` returns.
MAX_LIST = 1000
#: ``kind`` of the message that stands in for the messages a truncation left out.
TRUNCATION_MARKER = "agentflow-truncated"

RunStatus = Literal["success", "failed", "awaiting_approval"]


class AgentRunSummary(BaseModel):
    """What one agent task try did, as the UI lists it.

    :param dag_id: the DAG.
    :param run_id: the DAG run.
    :param task_id: the agent task.
    :param map_index: the task's map index (-1 when not mapped).
    :param try_number: the task's try.
    :param session_id: the conversation (memory) session, if the agent used one.
    :param model: the model name as pydantic-ai reports it.
    :param status: ``success``, ``failed`` or ``awaiting_approval``.
    :param started_at: when the agent started (timezone-aware; stored as UTC).
    :param finished_at: when it finished or stopped to wait (timezone-aware; stored as UTC).
    :param latency_ms: wall time of the agent run in milliseconds.
    :param input_tokens: tokens sent to the model, over all requests.
    :param output_tokens: tokens the model produced, over all requests.
    :param requests: model requests made.
    :param tool_calls: tool calls made.
    :param guardrail_hits: guardrail rules that fired.
    :param error: the error message of a failed run.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    dag_id: str = Field(min_length=1, max_length=250)
    run_id: str = Field(min_length=1, max_length=512)
    task_id: str = Field(min_length=1, max_length=512)
    map_index: int = Field(default=-1, ge=-1)
    try_number: int = Field(default=1, ge=0)
    session_id: str | None = None
    model: str | None = None
    status: RunStatus
    started_at: datetime
    finished_at: datetime
    latency_ms: int = Field(ge=0)
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    requests: int = Field(default=0, ge=0)
    tool_calls: int = Field(default=0, ge=0)
    guardrail_hits: int = Field(default=0, ge=0)
    error: str | None = None

    @field_validator("started_at", "finished_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must be timezone-aware (e.g. datetime.now(UTC))")
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _ordered(self) -> AgentRunSummary:
        if self.finished_at < self.started_at:
            raise ValueError(f"finished_at {self.finished_at} is before started_at {self.started_at}")
        return self

    @property
    def day(self) -> date:
        """The UTC day the run is listed under (its ``finished_at``)."""
        return self.finished_at.date()

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


def check_transcript(transcript: Any) -> list[dict[str, Any]]:
    """Return ``transcript`` if it is a list of JSON objects (pydantic-ai's messages as JSON).

    :raises TypeError: if it is not a list of dicts.
    :raises NotJSONError: if it is not JSON-serialisable.
    """
    if not isinstance(transcript, list) or not all(isinstance(m, dict) for m in transcript):
        raise TypeError(
            "transcript must be a list of dicts: ModelMessagesTypeAdapter.dump_python(messages, mode='json')"
        )
    try:
        json.dumps(transcript, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise NotJSONError(f"the transcript is not JSON-serialisable: {exc}") from exc
    return transcript


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def truncate_transcript(
    transcript: Sequence[dict[str, Any]], *, max_bytes: int
) -> tuple[list[dict[str, Any]], bool]:
    """Return the transcript as JSON-ready messages of at most ``max_bytes``, and whether it was cut.

    When it is too large, the result is the first message (the prompt), a marker message
    ``{"kind": "agentflow-truncated", "omitted_messages": n, "original_bytes": b}`` and as
    many of the last messages as fit (the first message too is dropped if it alone is too
    large).
    """
    messages = list(transcript)
    original = _size(messages)
    if original <= max_bytes:
        return messages, False

    def marker(omitted: int) -> dict[str, Any]:
        return {"kind": TRUNCATION_MARKER, "omitted_messages": omitted, "original_bytes": original}

    head = messages[:1]
    if _size([*head, marker(len(messages))]) > max_bytes:
        head = []
    tail: list[dict[str, Any]] = []
    budget = max_bytes - _size([*head, marker(len(messages))])
    for message in reversed(messages[len(head) :]):
        cost = _size(message) + 1  # its comma
        if cost > budget:
            break
        tail.insert(0, message)
        budget -= cost
    omitted = len(messages) - len(head) - len(tail)
    return [*head, marker(omitted), *tail], True


class AgentRunStore:
    """Record and read agent runs in ``<keyspace>.agent_runs_by_hour`` / ``agent_run_transcripts``.

    :param client: the Cassandra client (its settings give the TTL and size limit).
    :param ttl_s: how long runs live; default ``settings.audit_ttl_s``.
    """

    def __init__(self, client: CassandraClient, *, ttl_s: int | None = None) -> None:
        self.client = client
        self.ttl_s = int(ttl_s if ttl_s is not None else client.settings.audit_ttl_s)
        if self.ttl_s < 1:
            raise ValueError(f"ttl_s must be at least 1 second, got {self.ttl_s}")
        self._listing = f"{client.keyspace}.agent_runs_by_hour"
        self._transcripts = f"{client.keyspace}.agent_run_transcripts"

    def record(self, summary: AgentRunSummary, transcript: list[dict[str, Any]]) -> None:
        """Store one run: its transcript (truncated to ``max_value_bytes`` if larger), then its listing.

        :raises TypeError: ``summary`` is not an ``AgentRunSummary`` or ``transcript`` not a list of dicts.
        :raises NotJSONError: the transcript is not JSON-serialisable; nothing is written.
        """
        if not isinstance(summary, AgentRunSummary):
            raise TypeError(f"summary must be an AgentRunSummary, got {type(summary).__name__}")
        messages, cut = truncate_transcript(
            check_transcript(transcript), max_bytes=self.client.settings.max_value_bytes
        )
        if cut:
            log.warning(
                "transcript of %s/%s/%s is larger than max_value_bytes=%s; stored truncated",
                summary.dag_id,
                summary.run_id,
                summary.task_id,
                self.client.settings.max_value_bytes,
            )
        text = dump_json(messages, max_bytes=self.client.settings.max_value_bytes, what="the transcript")
        summary_json = summary.model_dump_json()
        self.client.execute(
            f"INSERT INTO {self._transcripts} (dag_id, run_id, task_id, map_index, try_number, summary, "
            "transcript) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?",
            (
                summary.dag_id,
                summary.run_id,
                summary.task_id,
                summary.map_index,
                summary.try_number,
                summary_json,
                text,
                self.ttl_s,
            ),
        )
        self.client.execute(
            f"INSERT INTO {self._listing} (day, hour, finished_at, dag_id, run_id, task_id, map_index, "
            "try_number, summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?",
            (
                summary.day,
                summary.finished_at.hour,
                summary.finished_at,
                summary.dag_id,
                summary.run_id,
                summary.task_id,
                summary.map_index,
                summary.try_number,
                summary_json,
                self.ttl_s,
            ),
        )

    def list_runs(self, day: date, *, dag_id: str | None = None, limit: int = 100) -> list[AgentRunSummary]:
        """Return the runs that finished on UTC ``day``, newest first.

        :param dag_id: only this DAG's runs (filtered inside each hour's partition).
        :param limit: the most runs (1 to ``MAX_LIST``).
        :raises ValueError: a limit out of range or an empty ``dag_id``.
        """
        day = check_listing(day, dag_id, limit)
        cql = f"SELECT summary FROM {self._listing} WHERE day = ? AND hour = ?"
        if dag_id is not None:
            cql += " AND dag_id = ?"
        cql += " LIMIT ?" + (" ALLOW FILTERING" if dag_id is not None else "")
        found: list[AgentRunSummary] = []
        for hour in range(23, -1, -1):
            params: list[object] = [day, hour, *([dag_id] if dag_id is not None else []), limit - len(found)]
            found += [
                AgentRunSummary.model_validate_json(row.summary) for row in self.client.execute(cql, params)
            ]
            if len(found) >= limit:
                break
        return found

    def get(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1
    ) -> tuple[AgentRunSummary, list[dict[str, Any]]] | None:
        """Return the latest try's summary and transcript of one agent task, or ``None``."""
        check_key(dag_id, what="dag_id", max_len=250)
        check_key(run_id, what="run_id")
        check_key(task_id, what="task_id")
        row = self.client.execute(
            f"SELECT summary, transcript FROM {self._transcripts} "
            "WHERE dag_id = ? AND run_id = ? AND task_id = ? AND map_index = ? LIMIT 1",
            (dag_id, run_id, task_id, int(map_index)),
        ).one()
        if row is None:
            return None
        return AgentRunSummary.model_validate_json(row.summary), json.loads(row.transcript)

    def runs_of(self, dag_id: str, run_id: str) -> list[AgentRunSummary]:
        """Return the latest try of every agent task of one DAG run, by task id and map index."""
        check_key(dag_id, what="dag_id", max_len=250)
        check_key(run_id, what="run_id")
        rows = self.client.execute(
            f"SELECT task_id, map_index, summary FROM {self._transcripts} WHERE dag_id = ? AND run_id = ?",
            (dag_id, run_id),
        )
        latest: dict[tuple[str, int], AgentRunSummary] = {}
        for row in rows:  # clustering order: latest try first within a (task_id, map_index)
            latest.setdefault((row.task_id, row.map_index), AgentRunSummary.model_validate_json(row.summary))
        return list(latest.values())


def check_listing(day: date | datetime, dag_id: str | None, limit: int) -> date:
    """Check ``list_runs``' arguments (both stores); return the UTC day.

    :raises ValueError: a limit out of range or an empty ``dag_id``.
    """
    if dag_id is not None:
        check_key(dag_id, what="dag_id", max_len=250)
    if not 1 <= int(limit) <= MAX_LIST:
        raise ValueError(f"limit must be 1 to {MAX_LIST}, got {limit}")
    return as_day(day)


def as_day(day: date | datetime) -> date:
    """Return ``day`` as a date (an aware datetime as its UTC date).

    :raises TypeError: if it is neither a date nor a datetime.
    """
    if isinstance(day, datetime):
        return day.astimezone(UTC).date() if day.tzinfo else day.date()
    if not isinstance(day, date):
        raise TypeError(f"day must be a date, got {type(day).__name__}")
    return day

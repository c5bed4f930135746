"""The platform's metrics, emitted through Airflow's own ``Stats`` so they land where Airflow's go.

Airflow configures one metrics backend per process from its ``[metrics]`` section (StatsD,
or OpenTelemetry with ``otel_on``), and keeps two copies of the ``Stats`` module: the task
SDK's (``airflow.sdk.observability.stats``, initialised in task processes) and airflow-core's
(``airflow.observability.stats``, initialised in the scheduler, triggerer and api-server).
:func:`stats` returns whichever copy this process initialised, so these functions work
unchanged in a task, the triggerer and the api-server; where neither is (a plain script) the
SDK's no-op logger answers.

Every name starts with ``agentflow.``; dimensions go in ``tags`` (Airflow's OTel logger
turns them into attributes, StatsD with ``statsd_datadog_enabled`` or
``statsd_influxdb_enabled`` into tags), and a tag value is never unbounded user text: DAG,
task, model, topic, rule and status names only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from include.state.runs import AgentRunSummary

PREFIX = "agentflow"
AGENT_RUNS = f"{PREFIX}.agent.runs"
AGENT_TOKENS_IN = f"{PREFIX}.agent.tokens.input"
AGENT_TOKENS_OUT = f"{PREFIX}.agent.tokens.output"
AGENT_REQUESTS = f"{PREFIX}.agent.requests"
AGENT_TOOL_CALLS = f"{PREFIX}.agent.tool_calls"
AGENT_GUARDRAIL_HITS = f"{PREFIX}.agent.guardrail_hits"
AGENT_LATENCY = f"{PREFIX}.agent.latency"
GUARDRAIL_HITS = f"{PREFIX}.guardrail.hits"
INFERENCE_BATCHES = f"{PREFIX}.inference.batches"
INFERENCE_ITEMS = f"{PREFIX}.inference.items"
INFERENCE_LATENCY = f"{PREFIX}.inference.latency"
INFERENCE_THROUGHPUT = f"{PREFIX}.inference.items_per_second"
EVENTS_CONSUMED = f"{PREFIX}.events.consumed"
EVENTS_DLQ = f"{PREFIX}.events.dlq"
EVENTS_DUPLICATES = f"{PREFIX}.events.duplicates"
EVENTS_LAG = f"{PREFIX}.events.lag"


def stats() -> Any:
    """Return the ``Stats`` this process initialised: the task SDK's, else airflow-core's.

    Both copies read the same ``[metrics]`` configuration; a process initialises one of them
    (task processes the SDK's, Airflow's servers core's). When neither is initialised the
    SDK's answers with its no-op logger.
    """
    from airflow.sdk._shared.observability.metrics import stats as sdk_stats

    if getattr(sdk_stats, "_factory", None) is not None:
        return sdk_stats
    try:
        from airflow._shared.observability.metrics import stats as core_stats
    except ImportError:  # a worker with the task SDK only
        return sdk_stats
    if getattr(core_stats, "_factory", None) is not None:
        return core_stats
    return sdk_stats


def agent_run(summary: AgentRunSummary) -> None:
    """Emit one agent run: counted by status, its tokens, requests, tool calls, guardrail hits, latency.

    Tags: ``dag_id``, ``task_id``, ``model`` (``unknown`` when not reported) and ``status``
    on the run counter.
    """
    from datetime import timedelta

    s = stats()
    tags = {"dag_id": summary.dag_id, "task_id": summary.task_id, "model": summary.model or "unknown"}
    s.incr(AGENT_RUNS, tags={**tags, "status": summary.status})
    for name, value in (
        (AGENT_TOKENS_IN, summary.input_tokens),
        (AGENT_TOKENS_OUT, summary.output_tokens),
        (AGENT_REQUESTS, summary.requests),
        (AGENT_TOOL_CALLS, summary.tool_calls),
        (AGENT_GUARDRAIL_HITS, summary.guardrail_hits),
    ):
        if value:
            s.incr(name, count=value, tags=tags)
    s.timing(AGENT_LATENCY, timedelta(milliseconds=summary.latency_ms), tags=tags)


def guardrail_hit(rule: str, action: str) -> None:
    """Count one guardrail rule firing, tagged with the rule and what it did (``block``, ``redact``...).

    :raises ValueError: an empty rule or action.
    """
    if not rule or not action:
        raise ValueError(f"rule and action must be non-empty, got rule={rule!r} action={action!r}")
    stats().incr(GUARDRAIL_HITS, tags={"rule": rule, "action": action})


def inference(model: str, items: int, seconds: float) -> None:
    """Emit one finished inference batch: items done, its latency and throughput (items per second).

    :raises ValueError: a negative item count or duration, or an empty model name.
    """
    from datetime import timedelta

    if not model:
        raise ValueError("model must be a non-empty model name")
    if items < 0 or seconds < 0:
        raise ValueError(f"items and seconds must be >= 0, got items={items} seconds={seconds}")
    s = stats()
    tags = {"model": model}
    s.incr(INFERENCE_BATCHES, tags=tags)
    if items:
        s.incr(INFERENCE_ITEMS, count=items, tags=tags)
    s.timing(INFERENCE_LATENCY, timedelta(seconds=seconds), tags=tags)
    if seconds > 0:
        s.gauge(INFERENCE_THROUGHPUT, items / seconds, tags=tags)


def events(
    topic: str, *, consumed: int = 0, dlq: int = 0, duplicates: int = 0, lag: int | None = None
) -> None:
    """Emit event-flow counts of one topic: consumed, dead-lettered and duplicate events, and the lag.

    Counts are increments since the last call; ``lag`` (messages behind the high watermark,
    over all partitions) is a gauge, sent only when given.

    :raises ValueError: an empty topic or a negative count.
    """
    if not topic:
        raise ValueError("topic must be a non-empty topic name")
    if min(consumed, dlq, duplicates) < 0 or (lag is not None and lag < 0):
        raise ValueError(
            f"counts must be >= 0, got consumed={consumed} dlq={dlq} duplicates={duplicates} lag={lag}"
        )
    s = stats()
    tags = {"topic": topic}
    for name, value in ((EVENTS_CONSUMED, consumed), (EVENTS_DLQ, dlq), (EVENTS_DUPLICATES, duplicates)):
        if value:
            s.incr(name, count=value, tags=tags)
    if lag is not None:
        s.gauge(EVENTS_LAG, lag, tags=tags)

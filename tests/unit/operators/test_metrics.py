"""operators.metrics: names, values and tags, with Airflow's Stats backend replaced at the boundary.

The boundary is Airflow's own ``stats.initialize(factory=...)``: the recorder below is the
backend a StatsD or OTel logger would be, so everything between our functions and the
backend (Airflow's module-level ``incr``/``gauge``/``timing``) is the real code.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest

from include.state.runs import AgentRunSummary
from operators import metrics


class Recorder:
    """A stats backend that remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any, dict[str, Any]]] = []

    def incr(self, stat: str, count: int = 1, rate: float = 1, *, tags: dict[str, Any] | None = None) -> None:
        self.calls.append(("incr", stat, count, dict(tags or {})))

    def decr(self, stat: str, count: int = 1, rate: float = 1, *, tags: dict[str, Any] | None = None) -> None:
        self.calls.append(("decr", stat, count, dict(tags or {})))

    def gauge(
        self,
        stat: str,
        value: float,
        rate: float = 1,
        delta: bool = False,
        *,
        tags: dict[str, Any] | None = None,
    ) -> None:
        self.calls.append(("gauge", stat, value, dict(tags or {})))

    def timing(self, stat: str, dt: Any, *, tags: dict[str, Any] | None = None) -> None:
        self.calls.append(("timing", stat, dt, dict(tags or {})))

    def of(self, stat: str) -> list[tuple[str, str, Any, dict[str, Any]]]:
        return [call for call in self.calls if call[1] == stat]


def _install(module: ModuleType, recorder: Recorder | None) -> tuple[Any, Any, bool]:
    saved = (module._factory, module._backend, module._export_legacy_names)
    if recorder is None:
        module._factory = None
        module._backend = None
    else:
        module.initialize(factory=lambda: recorder, export_legacy_names=False)
    return saved


def _restore(module: ModuleType, saved: tuple[Any, Any, bool]) -> None:
    module._factory, module._backend, module._export_legacy_names = saved


@pytest.fixture
def sdk_modules() -> tuple[ModuleType, ModuleType]:
    from airflow._shared.observability.metrics import stats as core
    from airflow.sdk._shared.observability.metrics import stats as sdk

    return sdk, core


@pytest.fixture
def recorder(sdk_modules: tuple[ModuleType, ModuleType]) -> Iterator[Recorder]:
    """The task process's case: the SDK's Stats initialised, core's not."""
    sdk, core = sdk_modules
    rec = Recorder()
    saved_sdk, saved_core = _install(sdk, rec), _install(core, None)
    try:
        yield rec
    finally:
        _restore(sdk, saved_sdk)
        _restore(core, saved_core)


def _summary(**fields: Any) -> AgentRunSummary:
    finished = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)
    values: dict[str, Any] = {
        "dag_id": "support_ticket_triage",
        "run_id": "r1",
        "task_id": "draft_reply",
        "status": "success",
        "model": "gpt-5",
        "started_at": finished - timedelta(milliseconds=1500),
        "finished_at": finished,
        "latency_ms": 1500,
        "input_tokens": 321,
        "output_tokens": 54,
        "requests": 3,
        "tool_calls": 2,
        "guardrail_hits": 1,
        **fields,
    }
    return AgentRunSummary(**values)


def test_agent_run_emits_counts_tokens_and_latency(recorder: Recorder) -> None:
    metrics.agent_run(_summary())
    tags = {"dag_id": "support_ticket_triage", "task_id": "draft_reply", "model": "gpt-5"}
    assert recorder.of("agentflow.agent.runs") == [
        ("incr", "agentflow.agent.runs", 1, {**tags, "status": "success"})
    ]
    assert recorder.of("agentflow.agent.tokens.input") == [
        ("incr", "agentflow.agent.tokens.input", 321, tags)
    ]
    assert recorder.of("agentflow.agent.tokens.output") == [
        ("incr", "agentflow.agent.tokens.output", 54, tags)
    ]
    assert recorder.of("agentflow.agent.requests")[0][2] == 3
    assert recorder.of("agentflow.agent.tool_calls")[0][2] == 2
    assert recorder.of("agentflow.agent.guardrail_hits")[0][2] == 1
    assert recorder.of("agentflow.agent.latency") == [
        ("timing", "agentflow.agent.latency", timedelta(milliseconds=1500), tags)
    ]


def test_agent_run_skips_zero_counts_and_names_an_unknown_model(recorder: Recorder) -> None:
    metrics.agent_run(
        _summary(model=None, status="failed", tool_calls=0, guardrail_hits=0, input_tokens=0, output_tokens=0)
    )
    names = [call[1] for call in recorder.calls]
    assert names == ["agentflow.agent.runs", "agentflow.agent.requests", "agentflow.agent.latency"]
    assert recorder.calls[0][3]["model"] == "unknown"
    assert recorder.calls[0][3]["status"] == "failed"


def test_guardrail_hit(recorder: Recorder) -> None:
    metrics.guardrail_hit("pii.email", "redact")
    assert recorder.calls == [
        ("incr", "agentflow.guardrail.hits", 1, {"rule": "pii.email", "action": "redact"})
    ]
    with pytest.raises(ValueError, match="rule"):
        metrics.guardrail_hit("", "block")


def test_inference_emits_items_latency_and_throughput(recorder: Recorder) -> None:
    metrics.inference("all-minilm-l6-v2", 64, 0.5)
    tags = {"model": "all-minilm-l6-v2"}
    assert recorder.calls == [
        ("incr", "agentflow.inference.batches", 1, tags),
        ("incr", "agentflow.inference.items", 64, tags),
        ("timing", "agentflow.inference.latency", timedelta(seconds=0.5), tags),
        ("gauge", "agentflow.inference.items_per_second", 128.0, tags),
    ]
    with pytest.raises(ValueError, match="items"):
        metrics.inference("m", -1, 1.0)
    with pytest.raises(ValueError, match="model"):
        metrics.inference("", 1, 1.0)


def test_events_counts_and_lag(recorder: Recorder) -> None:
    metrics.events("support.tickets", consumed=10, dlq=2, duplicates=0, lag=7)
    tags = {"topic": "support.tickets"}
    assert recorder.calls == [
        ("incr", "agentflow.events.consumed", 10, tags),
        ("incr", "agentflow.events.dlq", 2, tags),
        ("gauge", "agentflow.events.lag", 7, tags),
    ]
    recorder.calls.clear()
    metrics.events("support.tickets", duplicates=1)
    assert recorder.calls == [("incr", "agentflow.events.duplicates", 1, tags)]
    with pytest.raises(ValueError, match="counts"):
        metrics.events("t", consumed=-1)


def test_server_processes_use_cores_stats(sdk_modules: tuple[ModuleType, ModuleType]) -> None:
    """The triggerer and api-server initialise airflow-core's copy: the metrics go there."""
    sdk, core = sdk_modules
    rec = Recorder()
    saved_sdk, saved_core = _install(sdk, None), _install(core, rec)
    try:
        assert metrics.stats() is core
        metrics.guardrail_hit("toxicity", "block")
    finally:
        _restore(sdk, saved_sdk)
        _restore(core, saved_core)
    assert rec.calls == [("incr", "agentflow.guardrail.hits", 1, {"rule": "toxicity", "action": "block"})]


def test_uninitialised_process_uses_the_sdks_no_op(sdk_modules: tuple[ModuleType, ModuleType]) -> None:
    sdk, core = sdk_modules
    saved_sdk, saved_core = _install(sdk, None), _install(core, None)
    try:
        assert metrics.stats() is sdk
        metrics.inference("m", 1, 0.1)  # the no-op logger: nothing raised
    finally:
        _restore(sdk, saved_sdk)
        _restore(core, saved_core)


def test_inference_operators_emit_a_batch_after_execute(recorder: Recorder) -> None:
    """The inference operators' mixin times execute and emits metrics.inference on success."""
    from airflow.sdk import BaseOperator

    from operators.inference._common import InferenceDefaultsMixin

    class Embedder(InferenceDefaultsMixin, BaseOperator):
        def __init__(self, texts: Any, model: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.texts = texts
            self.model = model

        def execute(self, context: Any) -> Any:
            return None

    class Classifier(InferenceDefaultsMixin, BaseOperator):
        def __init__(self, texts: Any, classifier: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.texts = texts
            self.classifier = classifier

    task = Embedder(task_id="embed", texts='["a", "b", "c"]', model="all-minilm-l6-v2")
    task.pre_execute({})
    task.post_execute({}, None)
    batch = recorder.of("agentflow.inference.items")
    assert batch == [("incr", "agentflow.inference.items", 3, {"model": "all-minilm-l6-v2"})]
    assert len(recorder.of("agentflow.inference.latency")) == 1

    recorder.calls.clear()
    classify = Classifier(task_id="classify", texts=["x"], classifier="support_tickets")
    classify.post_execute({}, None)  # no pre_execute: no batch was timed, nothing is emitted
    assert recorder.calls == []
    classify.pre_execute({})
    classify.post_execute({}, None)
    assert recorder.of("agentflow.inference.items")[0][3] == {"model": "support_tickets"}

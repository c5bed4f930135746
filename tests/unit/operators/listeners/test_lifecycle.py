"""The lifecycle listener publishes our envelopes with deterministic ids to the right topics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from include.events import WorkflowStarted, validate_message
from operators.listeners import lifecycle


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    def produce(self, topic: str, value: bytes, key: bytes, headers: Any, on_delivery: Any) -> None:
        self.sent.append((topic, value, key))

    def poll(self, timeout: float) -> int:
        return 0


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> FakeProducer:
    fake = FakeProducer()
    monkeypatch.setattr(lifecycle, "_producer", fake)
    monkeypatch.setenv("AIRFLOW__AGENTFLOW_EVENTS__ENABLED", "True")
    return fake


def _dag_run() -> Any:
    start = datetime(2026, 11, 21, tzinfo=UTC)
    return SimpleNamespace(
        dag_id="d",
        run_id="r",
        run_type="asset_triggered",
        start_date=start,
        end_date=start + timedelta(seconds=3),
        consumed_asset_events=[SimpleNamespace(extra={"payload": {"envelope": {"event_id": "evt-9"}}})],
    )


class AgentOperator:  # named like common.ai's: the listener recognises agent tasks by class name
    pass


def _ti(task: object) -> Any:
    return SimpleNamespace(
        dag_id="d",
        run_id="r",
        task_id="t",
        map_index=-1,
        try_number=1,
        task=task,
        start_date=None,
        end_date=None,
    )


def test_dag_run_hooks_publish_workflow_events(producer: FakeProducer) -> None:
    listener = lifecycle.LifecycleListener()
    listener.on_dag_run_running(_dag_run(), "")
    listener.on_dag_run_success(_dag_run(), "")
    listener.on_dag_run_failed(_dag_run(), "task x failed")
    assert [topic for topic, _, _ in producer.sent] == ["workflow.events"] * 3
    envelopes = [validate_message(topic, value) for topic, value, _ in producer.sent]
    assert [e.event_type for e in envelopes] == ["workflow.started", "workflow.completed", "workflow.failed"]
    assert envelopes[0].payload["triggering_event_ids"] == ["evt-9"]
    assert envelopes[1].payload["duration_s"] == 3.0
    assert envelopes[2].payload["reason"] == "task x failed"
    assert {key for _, _, key in producer.sent} == {b"d/r"}  # one run's events stay in order


def test_task_hooks_publish_steps_and_agent_events(producer: FakeProducer) -> None:
    listener = lifecycle.LifecycleListener()
    listener.on_task_instance_success(None, _ti(object()))
    listener.on_task_instance_failed(None, _ti(object()), "boom")  # not an agent: nothing
    listener.on_task_instance_success(None, _ti(AgentOperator()))
    listener.on_task_instance_failed(None, _ti(AgentOperator()), RuntimeError("boom"))
    types = [validate_message(t, v).event_type for t, v, _ in producer.sent]
    assert types == ["workflow.step_completed", "workflow.step_completed", "agent.executed", "agent.failed"]


def test_event_ids_are_deterministic(producer: FakeProducer) -> None:
    listener = lifecycle.LifecycleListener()
    listener.on_dag_run_running(_dag_run(), "")
    listener.on_dag_run_running(_dag_run(), "")  # a hook firing twice: the same id, deduped downstream
    ids = [validate_message(t, v).event_id for t, v, _ in producer.sent]
    assert ids[0] == ids[1]
    assert ids[0] != lifecycle.event_id_for("workflow.completed", "d", "r")


def test_nothing_is_published_unless_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeProducer()
    monkeypatch.setattr(lifecycle, "_producer", fake)
    monkeypatch.delenv("AIRFLOW__AGENTFLOW_EVENTS__ENABLED", raising=False)
    lifecycle.LifecycleListener().on_dag_run_running(_dag_run(), "")
    assert fake.sent == []


def test_a_broken_producer_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(FakeProducer):
        def produce(self, *args: Any, **kwargs: Any) -> None:
            raise BufferError("queue full")

    monkeypatch.setattr(lifecycle, "_producer", Broken())
    monkeypatch.setenv("AIRFLOW__AGENTFLOW_EVENTS__ENABLED", "True")
    lifecycle.LifecycleListener().on_dag_run_running(_dag_run(), "")
    assert "Could not publish workflow.started" in caplog.text


def test_build_event_refuses_a_mismatched_payload() -> None:
    with pytest.raises(ValueError, match="not a lifecycle event"):
        lifecycle.build_event(
            "agent.executed", WorkflowStarted(dag_id="d", run_id="r"), event_id="x", session_id="s"
        )


def test_the_plugin_registers_the_listener() -> None:
    from plugins.agentflow_events import AgentFlowEventsPlugin

    assert AgentFlowEventsPlugin.listeners == [lifecycle.lifecycle_listener]

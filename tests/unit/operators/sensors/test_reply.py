"""KafkaReplySensor defers to KafkaReplyTrigger and returns the reply envelope."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.exceptions import TaskDeferred

from include.errors import EventStreamError
from operators.sensors.reply import KafkaReplySensor
from operators.triggers.reply import KafkaReplyTrigger


def test_it_defers_from_the_start_of_the_run() -> None:
    sensor = KafkaReplySensor(task_id="s", topic="support.replies", correlation_id="evt-1", timeout=30)
    start = datetime(2026, 11, 21, tzinfo=UTC)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({"dag_run": SimpleNamespace(start_date=start)})  # type: ignore[arg-type]
    trigger = deferred.value.trigger
    assert isinstance(trigger, KafkaReplyTrigger)
    assert (trigger.topic, trigger.correlation_id, trigger.since_ms) == (
        "support.replies",
        "evt-1",
        int(start.timestamp() * 1000),
    )
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout is not None
    assert deferred.value.timeout.total_seconds() == 30


def test_execute_complete_returns_the_envelope() -> None:
    sensor = KafkaReplySensor(task_id="s", topic="support.replies", correlation_id="evt-1")
    envelope = {"event_id": "r-1", "correlation_id": "evt-1"}
    assert sensor.execute_complete({}, {"status": "success", "envelope": envelope}) == envelope  # type: ignore[arg-type]


@pytest.mark.parametrize("event", [None, {"status": "error"}])
def test_execute_complete_without_a_reply_fails(event: Any) -> None:
    sensor = KafkaReplySensor(task_id="s", topic="support.replies", correlation_id="evt-1")
    with pytest.raises(EventStreamError, match="no reply to evt-1"):
        sensor.execute_complete({}, event)  # type: ignore[arg-type]

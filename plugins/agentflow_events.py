"""The ``agentflow_events`` plugin: publishes workflow and agent lifecycle events to Kafka.

The listener lives in ``operators.listeners.lifecycle`` (importable by the scheduler and
the task processes); it is off unless ``[agentflow_events] enabled = True``.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from operators.listeners.lifecycle import lifecycle_listener


class AgentFlowEventsPlugin(AirflowPlugin):
    """Registers the lifecycle listener (``workflow.events``, ``agent.events``)."""

    name = "agentflow_events"
    listeners = [lifecycle_listener]

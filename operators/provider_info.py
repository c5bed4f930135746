"""Provider metadata read by Airflow's ProvidersManager through the entry point."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    """Return the provider-info dict Airflow validates and registers.

    It lists the connection types (with their hook classes), the hook modules, the
    trigger modules and the task decorators this package adds to Airflow.
    """
    from operators import __version__

    return {
        "package-name": "agentflow",
        "name": "AgentFlow",
        "description": "AI agent workflows on Airflow: common.ai agents, Kafka event starts, "
        "Cassandra state and OpenVINO inference.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "AgentFlow",
                "external-doc-url": "https://github.com/agentflow/agentflow#readme",
                "tags": ["ai"],
            }
        ],
        "hooks": [
            {
                "integration-name": "AgentFlow",
                "python-modules": [
                    "operators.hooks.extractive",
                    "operators.hooks.scripted",
                    "operators.hooks.cassandra",
                    "operators.hooks.openvino",
                ],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "operators.hooks.extractive.ExtractivePolicyHook",
                "connection-type": "pydanticai_extractive",
            },
            {
                "hook-class-name": "operators.hooks.scripted.ScriptedModelHook",
                "connection-type": "pydanticai_scripted",
            },
            {
                "hook-class-name": "operators.hooks.cassandra.CassandraHook",
                "connection-type": "agentflow_cassandra",
            },
            {
                "hook-class-name": "operators.hooks.openvino.OpenVINOLLMHook",
                "connection-type": "pydanticai_openvino",
            },
        ],
        "triggers": [
            {
                "integration-name": "AgentFlow",
                "python-modules": ["operators.triggers.kafka_events", "operators.triggers.reply"],
            }
        ],
        "task-decorators": [
            {"name": "agentflow_agent", "class-name": "operators.agents.decorator.agentflow_agent_task"},
        ],
    }

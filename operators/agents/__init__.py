"""Agent operators and the capabilities that wire the platform into common.ai agents."""

from __future__ import annotations

from operators.agents.capabilities import AuditCapability, GuardrailCapability, RunRecorder
from operators.agents.decorator import agentflow_agent_task
from operators.agents.operator import AgentflowAgentOperator

__all__ = [
    "AgentflowAgentOperator",
    "AuditCapability",
    "GuardrailCapability",
    "RunRecorder",
    "agentflow_agent_task",
]

"""The project's error taxonomy, as seen from the Airflow-facing package (see ``include.errors``)."""

from __future__ import annotations

from include.errors import AgentFlowError, ConfigurationError

__all__ = ["AgentFlowError", "ConfigurationError"]

"""AgentFlow: Airflow operators, hooks and toolsets for AI agent workflows.

Installed as an Airflow provider (entry point ``apache_airflow_provider``), so the
scheduler, triggerer, workers and UI import it the same way. Heavy libraries (OpenVINO,
cassandra-driver, numpy) are imported inside ``execute()``, never at module level.
"""

from __future__ import annotations

from operators.exceptions import AgentFlowError, ConfigurationError

__version__ = "0.1.0"

__all__ = ["AgentFlowError", "ConfigurationError", "__version__"]

"""The project's error taxonomy: every error we raise on purpose derives from AgentFlowError.

Errors from confluent-kafka, cassandra-driver and OpenVINO are translated into a subclass
at the boundary where we call them, with the original kept as ``__cause__``. It lives in
``include`` (no Airflow) so both ``include`` and ``operators`` raise the same classes;
``operators.exceptions`` re-exports it.
"""

from __future__ import annotations


class AgentFlowError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigurationError(AgentFlowError, ValueError):
    """A connection, a configuration file or an operator argument is missing or invalid."""

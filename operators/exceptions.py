"""The project's error taxonomy: every error we raise on purpose derives from AgentFlowError."""

from __future__ import annotations


class AgentFlowError(Exception):
    """Base class of every error this project raises on purpose.

    Errors from confluent-kafka, cassandra-driver and OpenVINO are translated into a
    subclass at the hook boundary, with the original kept as ``__cause__``.
    """


class ConfigurationError(AgentFlowError, ValueError):
    """A connection, a configuration file or an operator argument is missing or invalid."""

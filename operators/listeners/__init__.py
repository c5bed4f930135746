"""Listeners registered by the ``agentflow_events`` plugin (importable by every component)."""

from __future__ import annotations

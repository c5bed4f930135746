"""Sensors (deferrable): waiting for a correlated reply event."""

from __future__ import annotations

"""Triggers: the exactly-once Kafka event watcher and the reply waiter."""

from __future__ import annotations

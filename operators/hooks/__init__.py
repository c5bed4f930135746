"""Hooks: one connection type each."""

from __future__ import annotations

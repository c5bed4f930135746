"""Operators: producing result events."""

from __future__ import annotations

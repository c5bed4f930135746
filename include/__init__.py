"""Code with no Airflow in it: event schemas, knowledge retrieval, agent policies."""

from __future__ import annotations

"""Test-wide set-up: the embedded Airflow configuration, in a throw-away AIRFLOW_HOME.

Runs before any test module imports Airflow, so every test sees the same configuration
that `make demo` uses (config/airflow/*.env), never the developer's ~/airflow.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a KEY=VALUE file as the Makefile's dotenv does (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _configure_embedded_airflow() -> None:
    home = Path(tempfile.mkdtemp(prefix="agentflow-test-airflow-"))
    for name in ("connections.env", "embedded.env"):
        for key, value in read_env_file(ROOT / "config" / "airflow" / name).items():
            os.environ.setdefault(key, value)
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
    os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home}/airflow.db"


_configure_embedded_airflow()

"""Test-wide set-up: the embedded Airflow configuration, in a throw-away AIRFLOW_HOME.

Runs before any test module imports Airflow, so every test sees the same configuration
that `make demo` uses (config/airflow/*.env), never the developer's ~/airflow.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def load_launcher() -> ModuleType:
    """Import ``docker/launcher.py`` (a script, not a package) once, as ``agentflow_launcher``."""
    if "agentflow_launcher" in sys.modules:
        return sys.modules["agentflow_launcher"]
    spec = importlib.util.spec_from_file_location("agentflow_launcher", ROOT / "docker" / "launcher.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _configure_embedded_airflow() -> None:
    home = Path(tempfile.mkdtemp(prefix="agentflow-test-airflow-"))
    for name in ("connections.env", "embedded.env"):
        for key, value in load_launcher().read_env_file(ROOT / "config" / "airflow" / name).items():
            os.environ.setdefault(key, value)
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
    os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home}/airflow.db"


_configure_embedded_airflow()

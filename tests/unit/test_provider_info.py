"""The package is a valid Airflow provider and Airflow discovers it through the entry point."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path

import airflow
import jsonschema

from operators.provider_info import get_provider_info


def test_provider_info_matches_airflow_schema() -> None:
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_entry_point_is_registered() -> None:
    points = [ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("operators.")]
    assert [ep.load()()["package-name"] for ep in points] == ["agentflow"]


def test_providers_manager_registers_our_connection_type() -> None:
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    manager = ProvidersManagerTaskRuntime()
    assert "agentflow" in manager.providers
    hook = manager.hooks["pydanticai_extractive"]
    assert hook is not None
    assert hook.hook_class_name == "operators.hooks.extractive.ExtractivePolicyHook"

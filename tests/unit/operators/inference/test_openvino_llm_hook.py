"""The ``pydanticai_openvino`` connection type: registered, lazy, and clear about a bad extra."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
from airflow.sdk import Connection

from include.errors import ConfigurationError
from include.inference.llm import OpenVINOModel
from operators.hooks.openvino import OpenVINOLLMHook
from operators.provider_info import get_provider_info


def _hook(extra: str) -> OpenVINOLLMHook:
    conn = Connection(conn_id="openvino_llm", conn_type="pydanticai_openvino", extra=extra)
    hook = OpenVINOLLMHook(llm_conn_id="openvino_llm")
    hook.get_connection = mock.MagicMock(return_value=conn)  # type: ignore[method-assign]
    return hook


def test_the_connection_type_is_registered_with_the_provider() -> None:
    types = {c["connection-type"]: c["hook-class-name"] for c in get_provider_info()["connection-types"]}
    assert types["pydanticai_openvino"] == "operators.hooks.openvino.OpenVINOLLMHook"
    assert OpenVINOLLMHook.conn_type == "pydanticai_openvino"


def test_get_conn_builds_the_model_from_the_extra_without_loading_it(tmp_path: Path) -> None:
    hook = _hook(f'{{"model_dir": "{tmp_path}", "max_new_tokens": 64, "seed": 5, "device": "CPU"}}')
    model = hook.get_conn()
    assert isinstance(model, OpenVINOModel)
    assert (model.llm.max_new_tokens, model.llm.seed, model.llm.device) == (64, 5, "CPU")
    assert hook.get_conn() is model


def test_an_invalid_extra_names_the_field() -> None:
    with pytest.raises(ConfigurationError, match="max_new_tokens"):
        _hook('{"model_dir": "/m", "max_new_tokens": "lots"}').get_conn()
    with pytest.raises(ConfigurationError, match="exactly one"):
        _hook("{}").get_conn()
    with pytest.raises(ConfigurationError, match="temprature"):
        _hook('{"model_dir": "/m", "temprature": 0.2}').get_conn()


def test_test_connection_reports_a_folder_that_is_not_an_export(tmp_path: Path) -> None:
    ok, message = _hook(f'{{"model_dir": "{tmp_path}"}}').test_connection()
    assert not ok
    assert "openvino_model.xml" in message
    for name in ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml"):
        (tmp_path / name).write_text("<net/>")
    ok, message = _hook(f'{{"model_dir": "{tmp_path}"}}').test_connection()
    assert ok
    assert str(tmp_path) in message

"""``make models``: names, the one-line error when the hub is unreachable, exporter failures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from include.inference._errors import ConversionError
from include.inference.export_llm import ExporterUnavailableError, default_name, export_model, main


def test_default_names_come_from_the_model_id() -> None:
    assert default_name("Qwen/Qwen2.5-0.5B-Instruct", "int4") == "qwen2.5-0.5b-instruct-int4"
    assert default_name("/models/My Model/", "fp16") == "my-model-fp16"


def test_an_unreachable_hub_is_one_clear_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_HOME", str(tmp_path / "hf"))
        code = main(["--model", "nobody-here/not-a-model", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("make models: cannot fetch 'nobody-here/not-a-model' from the Hugging Face hub")
    assert not (tmp_path / "out").exists()


def _fake_cli(tmp_path: Path, code: int, message: str) -> str:
    script = tmp_path / "fake_cli.py"
    script.write_text(f"import sys\nprint({message!r}, file=sys.stderr)\nsys.exit({code})\n")
    return f"{sys.executable} {script}"


def test_an_unusable_exporter_and_a_failed_export_are_told_apart(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AGENTFLOW_OPTIMUM_CLI", _fake_cli(tmp_path, 2, "optimum-intel cannot export here"))
        with pytest.raises(ExporterUnavailableError, match="cannot export here"):
            export_model(tmp_path, tmp_path / "out", "generate", "fp32")
        mp.setenv("AGENTFLOW_OPTIMUM_CLI", _fake_cli(tmp_path, 1, "KeyError: 'qwen9'"))
        with pytest.raises(ConversionError, match=r"exit 1.*qwen9") as caught:
            export_model(tmp_path, tmp_path / "out", "generate", "fp32")
        assert not isinstance(caught.value, ExporterUnavailableError)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".tmp-*"))


def test_bad_arguments_are_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="task"):
        export_model(tmp_path, tmp_path / "o", task="summarize")
    with pytest.raises(ValueError, match="weight_format"):
        export_model(tmp_path, tmp_path / "o", weight_format="int3")

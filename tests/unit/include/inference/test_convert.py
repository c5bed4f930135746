"""Conversion caching: content hash, atomic folders, the missing-torch message, corrupt IRs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from include.inference import CorruptModelError, get_model_spec
from include.inference import convert as convert_module
from include.inference.convert import ConversionError, content_hash, ensure_converted, export_ir
from include.inference.registry import ModelSpec
from include.inference.runtime import load_encoder

SPEC = get_model_spec("all-minilm-l6-v2")


def _fake_convert(calls: list[Path]):  # type: ignore[no-untyped-def]
    def convert(spec: ModelSpec, source: Path, out: Path, key: str) -> None:
        calls.append(out)
        for name in convert_module.IR_FILES:
            (out / name).write_text(name)

    return convert


def test_a_conversion_is_cached_by_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(convert_module, "_convert_into", _fake_convert(calls))
    first = ensure_converted(SPEC, tmp_path)
    second = ensure_converted(SPEC, tmp_path)
    assert (first.converted, second.converted) == (True, False)
    assert len(calls) == 1
    assert first.folder == second.folder == tmp_path / f"all-minilm-l6-v2-{first.content_hash}"
    assert calls[0].name.startswith(".tmp-")  # written elsewhere, renamed into place
    # the pooling settings are part of the key
    other = SPEC.model_copy(update={"pooling": "cls"})
    assert content_hash(other, SPEC.source.resolve()) != first.content_hash


def test_a_failed_conversion_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(spec: ModelSpec, source: Path, out: Path, key: str) -> None:
        (out / "model.xml").write_text("half")
        raise ConversionError("boom")

    monkeypatch.setattr(convert_module, "_convert_into", broken)
    with pytest.raises(ConversionError, match="boom"):
        ensure_converted(SPEC, tmp_path)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_a_half_written_folder_is_not_a_cache_hit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = content_hash(SPEC, SPEC.source.resolve())
    half = tmp_path / f"all-minilm-l6-v2-{key}"
    half.mkdir()
    (half / "model.xml").write_text("partial")
    calls: list[Path] = []
    monkeypatch.setattr(convert_module, "_convert_into", _fake_convert(calls))
    assert ensure_converted(SPEC, tmp_path).converted is True
    assert (half / "manifest.json").read_text() == "manifest.json"


def test_without_torch_the_error_names_the_convert_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"install the `convert` extra"):
        export_ir(SPEC, SPEC.source.resolve())


def test_a_corrupt_ir_names_the_model_and_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTFLOW_MODEL_CACHE", str(tmp_path))
    key = content_hash(SPEC, SPEC.source.resolve())
    folder = tmp_path / f"all-minilm-l6-v2-{key}"
    folder.mkdir()
    for name in convert_module.IR_FILES:
        (folder / name).write_text("<not an IR")
    with pytest.raises(CorruptModelError, match=r"(?s)model 'all-minilm-l6-v2'.*model\.xml.*Delete"):
        load_encoder(SPEC)
